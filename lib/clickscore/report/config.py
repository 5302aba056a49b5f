"""The `report` command's typed config."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from clickscore.core.commands import Command, option


@dataclass(frozen=True)
class ReportConfig:
    """A one-page, self-contained HTML summary of one day's runs."""

    run_date: date = field(metadata=option("the day to report on (YYYY-MM-DD)"))
    data_root: str
    output: str | None = field(default=None, metadata=option(
        "where to write the page (default: <data root>/reports/report-<run date>.html)"))


COMMANDS = (
    Command("report", "write a one-page HTML summary of a day's runs (counts, gates, "
            "quarantine, model, scores)", ReportConfig, "clickscore.report.job:run_report"),
)
