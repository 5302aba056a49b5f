"""Config primitives every stage shares: the data root, run dates, durations, timestamps and
aggregation windows. Each stage's own typed config lives in its package (`<stage>/config.py`).
The run date is always given, never now()."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

DATA_ROOT_ENV = "CLICKSCORE_DATA_ROOT"
DEFAULT_DATA_ROOT = ".clickscore"
LOCAL_DIR_ENV = "CLICKSCORE_LOCAL_DIR"

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


def format_duration(delta: timedelta) -> str:
    """timedelta -> the shortest exact `30m` / `24h` / `7d` form `parse_duration` reads."""
    micros = delta // _UNITS["us"]
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS[unit] // _UNITS["us"]
        if micros and micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


def end_of_day(day: date) -> datetime:
    """The instant a UTC day ends (midnight after it): the nightly cutoff for that day."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def parse_timestamp(text: str) -> datetime:
    """ISO date or timestamp -> aware UTC datetime (naive input is taken as UTC)."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def resolve_data_root(value: str | None = None) -> str:
    """The data root: the argument, else $CLICKSCORE_DATA_ROOT, else ./.clickscore.

    Local paths are made absolute so that every process (and Derby) sees the same place; a
    `file:` URI is such a path (`file:///lake` is `/lake`: one catalog, one registry, one lock
    whatever the working directory); other URIs (s3a://, abfss://) are kept as given, their
    local parts under $CLICKSCORE_LOCAL_DIR (`local_dir`).
    """
    root = value or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    if root.startswith("file:"):
        parsed = urlparse(root)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"a file: data root names a local path, got host "
                             f"{parsed.netloc!r} in {root!r}")
        root = unquote(parsed.path)
    elif _URI.match(root):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def is_uri(data_root: str) -> bool:
    """Whether a (resolved) data root is on a remote file system (s3a://, abfss://, ...)."""
    return bool(_URI.match(data_root))


def local_dir(data_root: str, *parts: str | Path) -> Path:
    """A place of the data root's that needs a local (or mounted) file system: the embedded
    catalog and its lock, the MLflow store, training checkpoints, reports, the GX project. A
    local data root holds them; a URI root keeps them under $CLICKSCORE_LOCAL_DIR, which every
    process of the deployment must share (a mount), or fails in one line."""
    if not is_uri(data_root):
        return Path(data_root, *parts)
    base = os.environ.get(LOCAL_DIR_ENV)
    if not base:
        from clickscore.core.errors import DataRootError

        what = "/".join(str(p) for p in parts) or "the embedded catalog and its lock"
        raise DataRootError(
            f"data root {data_root} is a URI, and {what} needs a local folder: set "
            f"${LOCAL_DIR_ENV} to one that every process of this deployment shares (a "
            "mount), or use a local or file:// data root")
    return Path(base, *parts)


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


RunKind = Literal["date", "all", "instant", "span", "version"]
_VERSION_KEY = re.compile(r"^[a-z_]+\.[a-z_]+@v\d+$")


@dataclass(frozen=True)
class RunKey:
    """What a run works on, the key it is recorded under in `ops.pipeline_runs` (`run_key`,
    with its `run_kind`): a logical date (`date`, ingest, sessionize, score, export), a whole
    input (`all`), the instant features were built as of (`instant`), the first and last
    cutoff of a training-examples build (`span`), or the version of the table a training or
    tuning run read (`version`). Its text is what the table stores and `parse` reads back."""

    kind: RunKind
    text: str

    @classmethod
    def of_date(cls, run_date: RunDate) -> RunKey:
        return cls("all", "all") if run_date.is_all else cls("date", str(run_date))

    @classmethod
    def at(cls, instant: datetime) -> RunKey:
        return cls("instant", instant.isoformat())

    @classmethod
    def span(cls, first: datetime, last: datetime) -> RunKey:
        return cls("span", f"{first.isoformat()}..{last.isoformat()}")

    @classmethod
    def version(cls, table: str, version: int) -> RunKey:
        return cls("version", f"{table}@v{version}")

    @classmethod
    def parse(cls, text: str) -> RunKey:
        """The key a stored `run_key` holds (its kind read from its form)."""
        if text == "all":
            return cls("all", text)
        if _VERSION_KEY.match(text):
            return cls("version", text)
        if ".." in text:
            first, last = text.split("..", 1)
            return cls.span(parse_timestamp(first), parse_timestamp(last))
        try:
            return cls("date", date.fromisoformat(text).isoformat())
        except ValueError:
            pass
        try:
            return cls.at(parse_timestamp(text))
        except ValueError:
            raise ValueError(f"not a run key (a date, `all`, an instant, FIRST..LAST or "
                             f"TABLE@vN): {text!r}") from None

    @property
    def run_date(self) -> RunDate | None:
        """The run date of a `date` or `all` key; None for the others."""
        if self.kind == "all":
            return RunDate(None)
        if self.kind == "date":
            return RunDate.parse(self.text)
        return None

    def __str__(self) -> str:
        return self.text


def positive(name: str, value: float | timedelta) -> None:
    is_positive = value > timedelta(0) if isinstance(value, timedelta) else value > 0
    if not is_positive:
        raise ValueError(f"{name} must be positive, got {value}")


def parse_windows(text: str) -> tuple[tuple[str, timedelta], ...]:
    """`1d,7d,30d` or `10m,30m,60m` -> ((label, duration), ...), shortest first."""
    windows = tuple((part.strip(), parse_duration(part)) for part in text.split(",")
                    if part.strip())
    if not windows:
        raise ValueError("give at least one window, e.g. 1d,7d,30d")
    return tuple(sorted(windows, key=lambda w: w[1]))
