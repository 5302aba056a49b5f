"""Where the declarative contracts (`schemas/`) are: packaged in the wheel, or the repository's
own folder. No Spark import here, so command declarations can list tables cheaply."""

from __future__ import annotations

from pathlib import Path


def schemas_dir() -> Path:
    """The contracts folder: packaged inside the wheel, or the repository's `schemas/`."""
    package = Path(__file__).resolve().parents[1]  # clickscore/
    packaged = package / "_schemas"
    if packaged.is_dir():
        return packaged
    repo = package.parents[1] / "schemas"  # lib/clickscore -> the repository root
    if repo.is_dir():
        return repo
    raise FileNotFoundError(f"no schemas folder at {packaged} or {repo}")


def suite_tables() -> list[str]:
    """Tables with an expectation suite in `schemas/expectations/`."""
    return sorted(p.stem for p in (schemas_dir() / "expectations").glob("*.yaml"))
