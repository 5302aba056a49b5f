"""The export stage's typed config and its command. Credentials never come from here: see
`credentials`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from clickscore.core.commands import Command, option

USER_ENV = "CLICKSCORE_JDBC_USER"
PASSWORD_ENV = "CLICKSCORE_JDBC_PASSWORD"
PASSWORD_FILE_ENV = "CLICKSCORE_JDBC_PASSWORD_FILE"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SECRET_IN_URL = re.compile(r"(password|user)=", re.IGNORECASE)


def check_jdbc_url(url: str) -> None:
    """A JDBC URL without credentials in it (they would reach logs and run records)."""
    if not url.startswith("jdbc:"):
        raise ValueError(f"a JDBC URL starts with jdbc:, got {url.split('?')[0]!r}")
    if _SECRET_IN_URL.search(url) or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise ValueError(f"put no user or password in the JDBC URL: set ${USER_ENV} and "
                         f"${PASSWORD_ENV} (or ${PASSWORD_FILE_ENV}) instead")


@dataclass(frozen=True)
class ExportConfig:
    """Copy one score date of gold.user_scores into a relational warehouse: replaces that
    date's rows in one transaction. User and password come from $CLICKSCORE_JDBC_USER and
    $CLICKSCORE_JDBC_PASSWORD (or a file named by $CLICKSCORE_JDBC_PASSWORD_FILE)."""

    run_date: date = field(metadata=option("the score date to export (YYYY-MM-DD)"))
    jdbc_url: str = field(metadata=option(
        "e.g. jdbc:postgresql://host:5432/warehouse (no credentials in it)"))
    data_root: str
    table: str = field(default="user_scores", metadata=option(
        "the warehouse table of scores ([schema.]name)"))
    items_table: str = field(default="user_score_items", metadata=option(
        "the child table of top items, one row per user, date and rank"))
    connect_timeout_s: int = field(default=30, metadata=option(
        "seconds to wait for a connection to the warehouse"))
    statement_timeout_s: int = field(default=600, metadata=option(
        "the warehouse cancels a statement running longer, waiting for a lock included "
        "(0: no limit)"))
    socket_timeout_s: int = field(default=1800, metadata=option(
        "a connection that hears nothing from the warehouse this long fails (0: no limit; "
        "else above --statement-timeout-s)"))

    def __post_init__(self) -> None:
        check_jdbc_url(self.jdbc_url)
        if self.connect_timeout_s < 1 or min(self.statement_timeout_s,
                                             self.socket_timeout_s) < 0:
            raise ValueError("--connect-timeout-s must be at least 1, and the statement and "
                             "socket timeouts 0 (none) or more")
        if 0 < self.socket_timeout_s <= self.statement_timeout_s:
            raise ValueError(f"--socket-timeout-s ({self.socket_timeout_s}) must exceed "
                             f"--statement-timeout-s ({self.statement_timeout_s}): the "
                             "warehouse cancels a slow statement before the socket gives up")
        for name in ("table", "items_table"):
            if not _IDENTIFIER.match(getattr(self, name)):
                raise ValueError(f"{name} must be [schema.]name of letters, digits and _, "
                                 f"got {getattr(self, name)!r}")


COMMANDS = (
    Command("export", "copy a score date to a relational warehouse over JDBC", ExportConfig,
            "clickscore.export.job:run_export"),
)
