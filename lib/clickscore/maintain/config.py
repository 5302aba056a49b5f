"""The `maintain` command's typed config."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from clickscore.core.commands import Command, option


@dataclass(frozen=True)
class MaintainConfig:
    """Keep the data root from growing without bound: compact the Delta tables where many
    small files pay for it, VACUUM what no version inside the retention needs, and prune
    what is older than the retention elsewhere (validation results and their Data Docs
    pages, finished or abandoned training runs' checkpoints, Petastorm caches killed runs
    left, model versions nothing points at)."""

    run_date: date = field(metadata=option("the day this maintenance is recorded under"))
    data_root: str
    retention: timedelta = field(default=timedelta(days=30), metadata=option(
        "what stays readable: time travel, `score --reproduce` and the runbook's rollbacks "
        "work for versions written within it"))
    compact_min_files: int = field(default=16, metadata=option(
        "compact a table (OPTIMIZE) once it has this many files averaging under "
        "--compact-file-mb"))
    compact_file_mb: int = field(default=32, metadata=option(
        "the average file size under which a table counts as fragmented"))
    tables: str | None = field(default=None, metadata=option(
        "comma-separated tables to compact and VACUUM (default: every table)"))
    keep_versions: int = field(default=10, metadata=option(
        "model versions always kept (the newest); older ones without an alias and unused by "
        "gold.user_scores within the retention are deleted with their files"))

    def __post_init__(self) -> None:
        if self.retention < timedelta(0):
            raise ValueError("--retention must not be negative")
        if self.compact_min_files < 2 or self.compact_file_mb < 1 or self.keep_versions < 1:
            raise ValueError("--compact-min-files must be at least 2, --compact-file-mb and "
                             "--keep-versions at least 1")


COMMANDS = (
    Command("maintain", "compact and VACUUM the tables, prune old validations, checkpoints, "
            "caches and unused model versions", MaintainConfig,
            "clickscore.maintain.job:run_maintain"),
)
