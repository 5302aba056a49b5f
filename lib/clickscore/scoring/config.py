"""The scoring stage's typed config and its command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from clickscore.core.commands import Command, option
from clickscore.core.config import end_of_day, parse_windows, positive

Windows = tuple[tuple[str, timedelta], ...]


def _show_windows(windows: Windows | None) -> str:
    return "the model's" if windows is None else ",".join(label for label, _ in windows)


@dataclass(frozen=True)
class ScoreConfig:
    """Score every user active in the lookback before the end of `run_date` with a
    registered model: features rebuilt at that cutoff by the feature stage's own code, then
    gold.user_scores for that date (replaced as a whole)."""

    run_date: date = field(metadata=option(
        "the day to score (YYYY-MM-DD): features read events before its end (UTC)"))
    data_root: str
    model_version: str = field(default="champion", metadata=option(
        "a registry version number, or an alias (champion, challenger)"))
    top_k: int = field(default=20, metadata=option("items in each user's top_items"))
    exclude_purchased: bool = field(default=True, metadata=option(
        "leave out of top_items what the user purchased in the lookback"))
    lookback: timedelta | None = field(default=None, metadata=option(
        "features read [cutoff - lookback, cutoff) (default: the model's training lookback)",
        show=lambda v: "the model's" if v is None else str(v)))
    windows: Windows | None = field(default=None, metadata=option(
        "aggregation windows (default: the model's)", parse=parse_windows, show=_show_windows))
    reproduce: str | None = field(default=None, metadata=option(
        "the run id of an earlier score run of this date: score again with the model version "
        "and the Delta versions of gold.user_features and silver.events it recorded (time "
        "travel), instead of rebuilding the features"))
    reuse_features: bool = field(default=False, metadata=option(
        "use the rows of the last `features` run of this cutoff (`features --model-version`) "
        "when they were built with the model's vocabulary, lookback and windows from the "
        "current silver.events; otherwise rebuild them"))
    batch_size: int = field(default=1024, metadata=option("users per inference batch"))
    export_jdbc_url: str | None = field(default=None, metadata=option(
        "then copy the date's scores to this warehouse (see clickscore export; credentials "
        "from $CLICKSCORE_JDBC_USER / $CLICKSCORE_JDBC_PASSWORD)"))

    def __post_init__(self) -> None:
        from clickscore.export.config import check_jdbc_url

        if self.export_jdbc_url is not None:
            check_jdbc_url(self.export_jdbc_url)
        positive("top_k", self.top_k)
        positive("batch_size", self.batch_size)
        if self.lookback is not None:
            positive("lookback", self.lookback)

    @property
    def cutoff(self) -> datetime:
        """The end of the run date (UTC): features read events strictly before it."""
        return end_of_day(self.run_date)


COMMANDS = (
    Command("score", "score every active user with a registered model -> gold.user_scores",
            ScoreConfig, "clickscore.scoring.job:run_score"),
)
