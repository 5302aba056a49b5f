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


def parse_windows(text: str) -> tuple[tuple[str, timedelta], ...]:
    """`1d,7d,30d` or `10m,30m,60m` -> ((label, duration), ...), shortest first."""
    windows = tuple((part.strip(), parse_duration(part)) for part in text.split(",")
                    if part.strip())
    if not windows:
        raise ValueError("give at least one window, e.g. 1d,7d,30d")
    return tuple(sorted(windows, key=lambda w: w[1]))


@dataclass(frozen=True)
class FeaturesConfig:
    """gold.user_features for one cutoff: users with events in `[as_of - lookback, as_of)`."""

    as_of: datetime
    data_root: str
    lookback: timedelta = timedelta(days=30)
    windows: tuple[tuple[str, timedelta], ...] = parse_windows("1d,7d,30d")
    vocab_version: str | None = None
    allow_empty: bool = False

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        _positive("lookback", self.lookback)
        if self.windows[-1][1] > self.lookback:
            raise ValueError(f"the longest window ({self.windows[-1][0]}) exceeds the lookback "
                             f"({self.lookback}): features may only read the lookback")


@dataclass(frozen=True)
class TrainingExamplesConfig:
    """Examples at several cutoffs, split by time: a cutoff is `train` when its label
    window ends by `validation_from`, `validation` when it starts at or after
    `validation_from` and ends by `test_from`, `test` when it starts at or after `test_from`.
    A cutoff whose label window would cross a boundary is refused, so no test-period event
    can reach a training feature or label."""

    cutoffs: tuple[datetime, ...]
    validation_from: datetime
    test_from: datetime
    data_root: str
    horizon: timedelta = timedelta(days=7)
    lookback: timedelta = timedelta(days=30)
    windows: tuple[tuple[str, timedelta], ...] = parse_windows("1d,7d,30d")
    vocab_version: str | None = None
    min_support: int = 1

    def __post_init__(self) -> None:
        if not self.cutoffs:
            raise ValueError("give at least one cutoff")
        if list(self.cutoffs) != sorted(set(self.cutoffs)):
            raise ValueError("cutoffs must be distinct and in increasing order")
        if not self.validation_from <= self.test_from:
            raise ValueError("validation_from must not be after test_from")
        _positive("horizon", self.horizon)
        _positive("lookback", self.lookback)
        if self.windows[-1][1] > self.lookback:
            raise ValueError("the longest window exceeds the lookback")
        for cutoff in self.cutoffs:
            self.split_of(cutoff)

    def split_of(self, cutoff: datetime) -> str:
        labels_end = cutoff + self.horizon
        if labels_end <= self.validation_from:
            return "train"
        if self.validation_from <= cutoff and labels_end <= self.test_from:
            return "validation"
        if self.test_from <= cutoff:
            return "test"
        raise ValueError(f"cutoff {cutoff.isoformat()}: its label window [cutoff, "
                         f"{labels_end.isoformat()}) crosses a split boundary "
                         f"(validation from {self.validation_from.isoformat()}, test from "
                         f"{self.test_from.isoformat()})")
