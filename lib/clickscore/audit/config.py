"""The data-quality commands' typed configs: a report of results, validation on demand."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickscore.core.commands import Command, option
from clickscore.core.config import RunDate
from clickscore.core.paths import suite_tables

FORMATS = ("table", "csv", "json")


def _formats() -> tuple[str, ...]:
    return FORMATS


@dataclass(frozen=True)
class DqRunConfig:
    """An on-demand validation of a published table's partition."""

    table: str = field(metadata=option("a table with a suite in schemas/expectations",
                                       choices=suite_tables))
    run_date: RunDate = field(metadata=option("the partition (YYYY-MM-DD) or 'all'"))
    data_root: str

    def __post_init__(self) -> None:
        if self.table not in suite_tables():
            raise ValueError(f"{self.table!r} has no expectation suite; tables with one: "
                             f"{', '.join(suite_tables())}")


@dataclass(frozen=True)
class DqReportConfig:
    """The summary of ops.dq_results, and where the Data Docs are."""

    data_root: str
    run_date: RunDate | None = field(default=None, metadata=option(
        "only this run date (YYYY-MM-DD or 'all')"))
    format: str = field(default="table", metadata=option("output format", choices=_formats))


COMMANDS = (
    Command("dq report", "summary of ops.dq_results and the Data Docs path", DqReportConfig,
            "clickscore.audit.report:run_dq_report"),
    Command("dq run", "validate a published table's partition now", DqRunConfig,
            "clickscore.audit.job:run_dq"),
)
