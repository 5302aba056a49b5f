"""Where the declarative contracts (`schemas/`) are: packaged in the wheel, inside the zip that
spark-submit ships with `--py-files`, or the repository's own folder. No Spark import here, so
command declarations can list tables cheaply."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

PACKAGED = "_schemas"  # the wheel's copy of schemas/ (pyproject.toml, force-include)


def schemas_dir() -> Path:
    """The contracts folder: packaged inside the wheel, extracted from the `--py-files` zip
    the package was imported from, or the repository's `schemas/`."""
    package = Path(__file__).resolve().parents[1]  # clickscore/
    packaged = package / PACKAGED
    if packaged.is_dir():
        return packaged
    archive = getattr(globals().get("__loader__"), "archive", None)  # set by zipimport
    if archive:
        return _extracted(archive)
    repo = package.parents[1] / "schemas"  # lib/clickscore -> the repository root
    if repo.is_dir():
        return repo
    raise FileNotFoundError(f"no schemas folder at {packaged} or {repo}")


@functools.cache
def _extracted(archive: str) -> Path:
    """The contracts of a zip archive, extracted once per archive content into the temporary
    folder (they are read as files; Python imports the code from the zip itself)."""
    prefix = f"clickscore/{PACKAGED}/"
    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"clickscore-schemas-{digest}"
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix="clickscore-schemas-", dir=target.parent))
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m.startswith(prefix)]
            if not members:
                raise FileNotFoundError(f"{archive} holds no {prefix} folder")
            for member in members:
                if not member.endswith("/"):
                    path = staging / member[len(prefix):]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(zipped.read(member))
        try:
            os.rename(staging, target)  # atomic: a concurrent process may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
    return target


def suite_tables() -> list[str]:
    """Tables with an expectation suite in `schemas/expectations/`."""
    return sorted(p.stem for p in (schemas_dir() / "expectations").glob("*.yaml"))
