"""JDBC credentials from the environment: `$CLICKSCORE_JDBC_USER` and
`$CLICKSCORE_JDBC_PASSWORD`, or a file named by `$CLICKSCORE_JDBC_PASSWORD_FILE` (a mounted
secret). Never from the command line, so they reach neither shell history, process lists,
logs nor ops.pipeline_runs."""

from __future__ import annotations

import os
from pathlib import Path

from clickscore.core.errors import ClickscoreError
from clickscore.export.config import PASSWORD_ENV, PASSWORD_FILE_ENV, USER_ENV

DRIVERS = {"postgresql": "org.postgresql.Driver"}


class CredentialsError(ClickscoreError):
    """Missing or unreadable warehouse credentials."""


def jdbc_properties(url: str) -> dict[str, str]:
    """Spark/JDBC connection properties: user, password and the driver class."""
    kind = url.split(":", 2)[1] if url.count(":") >= 2 else ""
    if kind not in DRIVERS:
        raise CredentialsError(f"no JDBC driver for {kind!r} URLs; supported: "
                               f"{', '.join(sorted(DRIVERS))}")
    user = os.environ.get(USER_ENV)
    if not user:
        raise CredentialsError(f"set ${USER_ENV} (and ${PASSWORD_ENV} or "
                               f"${PASSWORD_FILE_ENV}) to export to a warehouse")
    password = os.environ.get(PASSWORD_ENV)
    if password is None and os.environ.get(PASSWORD_FILE_ENV):
        path = Path(os.environ[PASSWORD_FILE_ENV])
        try:
            password = path.read_text().rstrip("\n")
        except OSError as exc:
            raise CredentialsError(f"${PASSWORD_FILE_ENV} names {path}, which cannot be "
                                   f"read: {exc.strerror}") from None
    return {"user": user, "password": password or "", "driver": DRIVERS[kind]}
