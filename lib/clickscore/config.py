"""Typed, validated configuration for every job. The run date is always given, never now()."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

DATA_ROOT_ENV = "CLICKSCORE_DATA_ROOT"
DEFAULT_DATA_ROOT = ".clickscore"
SOURCES = ("rees46", "taobao", "retailrocket")

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|min|h|d)\s*$")
_UNITS = {"us": timedelta(microseconds=1), "ms": timedelta(milliseconds=1),
          "s": timedelta(seconds=1), "m": timedelta(minutes=1), "min": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(text: str) -> timedelta:
    """`30m`, `90s`, `24h`, `7d` -> timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"duration must look like 30m, 90s, 24h or 7d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_timestamp(text: str) -> datetime:
    """ISO date or timestamp -> aware UTC datetime (naive input is taken as UTC)."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def resolve_data_root(value: str | None = None) -> str:
    """The data root: the argument, else $CLICKSCORE_DATA_ROOT, else ./.clickscore.

    Local paths are made absolute so that every process (and Derby) sees the same place;
    URIs (s3a://, abfss://, file://) are kept as given.
    """
    root = value or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    if _URI.match(root):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


@dataclass(frozen=True)
class RunDate:
    """A run's logical date (`YYYY-MM-DD`), or `all` for a whole-input backfill."""

    day: date | None

    @classmethod
    def parse(cls, text: str) -> RunDate:
        if text == "all":
            return cls(None)
        try:
            return cls(date.fromisoformat(text))
        except ValueError:
            raise ValueError(f"run date must be YYYY-MM-DD or 'all', got {text!r}") from None

    @property
    def is_all(self) -> bool:
        return self.day is None

    def start(self) -> datetime:
        """Midnight UTC at the start of the run date."""
        if self.day is None:
            raise ValueError("run date 'all' has no start")
        return datetime.combine(self.day, time(0), tzinfo=UTC)

    def __str__(self) -> str:
        return "all" if self.day is None else self.day.isoformat()


def _positive(name: str, value: float | timedelta) -> None:
    is_positive = value > timedelta(0) if isinstance(value, timedelta) else value > 0
    if not is_positive:
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class IngestConfig:
    """What one ingest run reads, which event timestamps it accepts, and its row rules.

    A dated run accepts events in [run date - lateness_days, run date + 1 day + future_skew);
    `all` accepts [window_start, window_end) when given, else any timestamp.
    """

    source: str
    input_path: str
    run_date: RunDate
    data_root: str
    allow_empty: bool = False
    lateness_days: int = 3
    future_skew: timedelta = timedelta(hours=1)
    max_price: float = 1_000_000.0
    window_start: datetime | None = None
    window_end: datetime | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.lateness_days < 0:
            raise ValueError(f"lateness_days must be >= 0, got {self.lateness_days}")
        _positive("max_price", self.max_price)
        if self.window_start and self.window_end and self.window_start >= self.window_end:
            raise ValueError("window_start must be before window_end")

    def accepted_window(self) -> tuple[datetime | None, datetime | None]:
        """The [start, end) interval of event timestamps this run accepts (None = open)."""
        if self.run_date.is_all:
            return self.window_start, self.window_end
        start = self.run_date.start()
        return (
            start - timedelta(days=self.lateness_days),
            start + timedelta(days=1) + self.future_skew,
        )


@dataclass(frozen=True)
class SessionizeConfig:
    """Session rules: a gap of `session_gap` or more, or `max_session_length`, starts a session."""

    run_date: RunDate
    data_root: str
    session_gap: timedelta = timedelta(minutes=30)
    max_session_length: timedelta = timedelta(hours=24)
    bot_events_per_minute: int = 100
    allow_empty: bool = False

    def __post_init__(self) -> None:
        _positive("session_gap", self.session_gap)
        _positive("max_session_length", self.max_session_length)
        _positive("bot_events_per_minute", self.bot_events_per_minute)
        if self.max_session_length < self.session_gap:
            raise ValueError("max_session_length must be at least session_gap")


@dataclass(frozen=True)
class GenerateConfig:
    """Synthetic REES46-format clickstream for the demo and the benchmarks."""

    output_dir: str
    days: int = 3
    users: int = 2_000
    start_date: date = date(2019, 10, 1)
    seed: int = 42
    sessions_per_user_per_day: float = 0.6
    mean_events_per_session: float = 6.0
    items: int = 5_000
    dirty_share: float = 0.003
    duplicate_share: float = 0.002
    late_share: float = 0.003
    with_bot: bool = True

    def __post_init__(self) -> None:
        for name in ("days", "users", "items"):
            _positive(name, getattr(self, name))
        for name in ("dirty_share", "duplicate_share", "late_share"):
            value = getattr(self, name)
            if not 0 <= value < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {value}")


@dataclass(frozen=True)
class DqRunConfig:
    """An on-demand validation of a published table's partition."""

    table: str
    run_date: RunDate
    data_root: str

    def __post_init__(self) -> None:
        from clickscore.schemas import suite_tables

        if self.table not in suite_tables():
            raise ValueError(f"{self.table!r} has no expectation suite; tables with one: "
                             f"{', '.join(suite_tables())}")
