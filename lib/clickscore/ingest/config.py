"""The ingest stage's typed config and its command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clickscore.core.commands import Command, option
from clickscore.core.config import RunDate, positive
from clickscore.ingest.sources import source_names


@dataclass(frozen=True)
class IngestConfig:
    """What one ingest run reads, which event timestamps it accepts, and its row rules.

    A dated run accepts events in [run date - lateness_days, run date + 1 day + future_skew);
    `all` accepts [window_start, window_end) when given, else any timestamp. Every run
    rejects events later than the ingestion time + future_skew (`timestamp_in_future`).
    """

    source: str = field(metadata=option("source format", choices=source_names))
    input_path: str = field(metadata=option("file, folder or glob (gzip ok)", flag="--input"))
    run_date: RunDate = field(metadata=option("YYYY-MM-DD, or 'all' for the whole input"))
    data_root: str
    allow_empty: bool = field(default=False, metadata=option("an empty input is not an error"))
    lateness_days: int = field(default=3, metadata=option(
        "accept events up to this many days before the run date"))
    future_skew: timedelta = field(default=timedelta(hours=1), metadata=option(
        "clock skew: accept events up to this long after the run date ends and after the "
        "ingestion time"))
    max_price: float = field(default=1_000_000.0, metadata=option(
        "a higher price is quarantined as absurd_price"))
    max_quarantine_share: float = field(default=0.5, metadata=option(
        "a file with a larger share of its rows quarantined (not counting rows outside the "
        "run's window) fails the run before anything is published"))
    item_categories: str | None = field(default=None, metadata=option(
        "the source's item -> category side table (file, folder or glob): Diginetica's "
        "product-categories.csv, RetailRocket's item_properties files; stored in "
        "silver.item_categories, where an event carries no category of its own"))
    window_start: datetime | None = field(default=None, metadata=option(
        "with --run-date all: earliest accepted event time"))
    window_end: datetime | None = field(default=None, metadata=option(
        "with --run-date all: accepted event times are before this"))

    def __post_init__(self) -> None:
        if self.source not in source_names():
            raise ValueError(f"source must be one of {list(source_names())}, "
                             f"got {self.source!r}")
        if self.lateness_days < 0:
            raise ValueError(f"lateness_days must be >= 0, got {self.lateness_days}")
        positive("max_price", self.max_price)
        if not 0 < self.max_quarantine_share <= 1:
            raise ValueError(f"max_quarantine_share must be in (0, 1], got "
                             f"{self.max_quarantine_share}")
        if self.window_start and self.window_end and self.window_start >= self.window_end:
            raise ValueError(f"the window must start before it ends, got start "
                             f"{self.window_start.isoformat()} and end "
                             f"{self.window_end.isoformat()}")

    def latest_event_time(self, ingested_at: datetime) -> datetime:
        """The latest event time this run accepts whatever its date: a later one has not
        happened yet, beyond the clocks' skew."""
        return ingested_at + self.future_skew

    def accepted_window(self) -> tuple[datetime | None, datetime | None]:
        """The [start, end) interval of event timestamps this run accepts (None = open)."""
        if self.run_date.is_all:
            return self.window_start, self.window_end
        start = self.run_date.start()
        return (
            start - timedelta(days=self.lateness_days),
            start + timedelta(days=1) + self.future_skew,
        )


COMMANDS = (
    Command("ingest", "landing files -> bronze.events (+ quarantine.events)", IngestConfig,
            "clickscore.ingest.job:run_ingest"),
)
