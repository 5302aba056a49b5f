"""The feature stage's typed configs (vocabularies, features at a cutoff, training examples)
and their commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clickscore.core.commands import Command, option
from clickscore.core.config import format_duration, parse_timestamp, parse_windows, positive

Windows = tuple[tuple[str, timedelta], ...]


def parse_timestamps(text: str) -> tuple[datetime, ...]:
    """`2019-10-03,2019-10-06T12:00` -> aware UTC datetimes."""
    return tuple(parse_timestamp(part) for part in text.split(",") if part.strip())


def _show_windows(windows: Windows) -> str:
    return ",".join(label for label, _ in windows)


def _windows_option() -> dict:
    return option("aggregation windows, e.g. 1d,7d,30d or 10m,30m,60m", parse=parse_windows,
                  show=_show_windows)


def _check_windows(windows: Windows, lookback: timedelta) -> None:
    if windows[-1][1] > lookback:
        raise ValueError(f"the longest window ({windows[-1][0]}) must not exceed the lookback "
                         f"({format_duration(lookback)}): features may only read the lookback")


@dataclass(frozen=True)
class VocabConfig:
    """Vocabularies built from the non-bot events of `[window_start, window_end)`."""

    window_start: datetime = field(metadata=option(
        "training window start (ISO date or timestamp, UTC)"))
    window_end: datetime = field(metadata=option("training window end (exclusive)"))
    min_support: int = field(default=1, metadata=option(
        "events an id needs in the window to get its own index"))
    data_root: str = ""

    def __post_init__(self) -> None:
        if self.window_end <= self.window_start:
            raise ValueError(f"the vocab window must end after it starts, got start "
                             f"{self.window_start.isoformat()} and end "
                             f"{self.window_end.isoformat()}")
        if self.min_support < 1:
            raise ValueError(f"min_support must be at least 1, got {self.min_support}")


@dataclass(frozen=True)
class FeaturesConfig:
    """gold.user_features for one cutoff: users with events in `[as_of - lookback, as_of)`."""

    as_of: datetime = field(metadata=option(
        "cutoff T (ISO date or timestamp, UTC): features read events < T"))
    data_root: str
    lookback: timedelta = field(default=timedelta(days=30), metadata=option(
        "features read events in [cutoff - lookback, cutoff)"))
    windows: Windows = field(default=parse_windows("1d,7d,30d"), metadata=_windows_option())
    vocab_version: str | None = field(default=None, metadata=option(
        "the vocabulary to code ids with (default: the latest)"))
    allow_empty: bool = field(default=False, metadata=option("no active user is not an error"))
    model_version: str | None = field(default=None, metadata=option(
        "build them as this registered model reads them (e.g. champion): its vocabulary, "
        "lookback and windows replace --vocab-version, --lookback and --windows; what "
        "`score --reuse-features` then picks up"))

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        positive("lookback", self.lookback)
        _check_windows(self.windows, self.lookback)


@dataclass(frozen=True)
class TrainingExamplesConfig:
    """Examples at several cutoffs, split by time: a cutoff is `train` when its label
    window ends by `validation_from`, `validation` when it starts at or after
    `validation_from` and ends by `test_from`, `test` when it starts at or after `test_from`.
    A cutoff whose label window would cross a boundary is refused, so no test-period event
    can reach a training feature or label."""

    cutoffs: tuple[datetime, ...] = field(metadata=option(
        "comma-separated ISO timestamps, increasing", parse=parse_timestamps))
    validation_from: datetime = field(metadata=option("the validation period's start"))
    test_from: datetime = field(metadata=option("the test period's start"))
    data_root: str
    horizon: timedelta = field(default=timedelta(days=7), metadata=option(
        "labels read [cutoff, cutoff + horizon)"))
    lookback: timedelta = field(default=timedelta(days=30), metadata=option(
        "features read events in [cutoff - lookback, cutoff)"))
    windows: Windows = field(default=parse_windows("1d,7d,30d"), metadata=_windows_option())
    vocab_version: str | None = field(default=None, metadata=option(
        "the vocabulary to code ids with (default: one built from the training period)"))
    min_support: int = field(default=1, metadata=option(
        "for the vocabulary built from the training period (without --vocab-version)"))

    def __post_init__(self) -> None:
        if not self.cutoffs:
            raise ValueError("give at least one cutoff")
        if list(self.cutoffs) != sorted(set(self.cutoffs)):
            raise ValueError("cutoffs must be distinct and in increasing order, got "
                             + ",".join(c.isoformat() for c in self.cutoffs))
        if not self.validation_from <= self.test_from:
            raise ValueError(f"validation_from must not be after test_from, got "
                             f"{self.validation_from.isoformat()} > "
                             f"{self.test_from.isoformat()}")
        positive("horizon", self.horizon)
        positive("lookback", self.lookback)
        _check_windows(self.windows, self.lookback)
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


COMMANDS = (
    Command("vocab", "silver.events -> ml.item/category/brand_vocab (prints the version)",
            VocabConfig, "clickscore.features.vocab_job:build_vocab"),
    Command("features", "silver.events -> gold.user_features at a cutoff", FeaturesConfig,
            "clickscore.features.job:run_features"),
    Command("training-examples", "gold.training_examples at several cutoffs, split by time",
            TrainingExamplesConfig, "clickscore.features.job:run_training_examples"),
)
