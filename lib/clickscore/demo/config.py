"""The demo's typed configs (the data generator, the end-to-end demo) and their commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from clickscore.core.commands import Command, option
from clickscore.core.config import positive


@dataclass(frozen=True)
class GenerateConfig:
    """Synthetic REES46-format clickstream for the demo and the benchmarks."""

    output_dir: str = field(metadata=option("folder for events-YYYY-MM-DD.csv.gz",
                                            flag="--output"))
    days: int = field(default=3, metadata=option("days of data, one file each"))
    users: int = field(default=2_000, metadata=option("users in the population"))
    start_date: date = field(default=date(2019, 10, 1), metadata=option("the first day"))
    seed: int = field(default=42, metadata=option("same seed, same files"))
    sessions_per_user_per_day: float = field(default=0.6, metadata=option(
        "mean sessions per user and day"))
    mean_events_per_session: float = field(default=6.0, metadata=option(
        "mean views per session"))
    items: int = field(default=5_000, metadata=option("items in the catalogue"))
    dirty_share: float = field(default=0.003, metadata=option("share of dirty rows"))
    duplicate_share: float = field(default=0.002, metadata=option(
        "share of exact duplicate rows"))
    late_share: float = field(default=0.003, metadata=option(
        "share of events written to a later day's file"))
    with_bot: bool = field(default=True, metadata=option("add one bot user's burst"))

    def __post_init__(self) -> None:
        for name in ("days", "users", "items"):
            positive(name, getattr(self, name))
        for name in ("dirty_share", "duplicate_share", "late_share"):
            value = getattr(self, name)
            if not 0 <= value < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {value}")


@dataclass(frozen=True)
class DemoConfig:
    """The end-to-end demo on generated data, under the data root."""

    data_root: str
    days: int = field(default=3, metadata=option("days of generated data"))
    users: int = field(default=2_000, metadata=option("users in the generated population"))
    seed: int = field(default=42, metadata=option("the generator's seed"))
    epochs: int = field(default=8, metadata=option("training epochs of the demo's model"))

    def __post_init__(self) -> None:
        positive("epochs", self.epochs)
        if self.days < 3:
            # the demo's training examples need a train, a validation and a test cutoff
            raise ValueError(f"the demo needs at least 3 days, got {self.days}")
        positive("users", self.users)


COMMANDS = (
    Command("generate", "write synthetic REES46-format demo data", GenerateConfig,
            "clickscore.demo.generator:generate", needs_spark=False),
    Command("demo", "generate data, run every stage on it, print a summary", DemoConfig,
            "clickscore.demo.job:run_demo"),
)
