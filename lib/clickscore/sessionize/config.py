"""The sessionize stage's typed config and its command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from clickscore.core.commands import Command, option
from clickscore.core.config import RunDate, positive


@dataclass(frozen=True)
class SessionizeConfig:
    """Session rules: a gap of `session_gap` or more, or `max_session_length`, starts a session."""

    run_date: RunDate = field(metadata=option("YYYY-MM-DD, or 'all' for a full rebuild"))
    data_root: str
    session_gap: timedelta = field(default=timedelta(minutes=30), metadata=option(
        "a gap this long or longer starts a new session"))
    max_session_length: timedelta = field(default=timedelta(hours=24), metadata=option(
        "unbroken activity is cut this long after its first event"))
    bot_events_per_minute: int = field(default=100, metadata=option(
        "more events than this in one clock minute flag the session is_bot"))
    allow_empty: bool = field(default=False, metadata=option("an empty input is not an error"))

    def __post_init__(self) -> None:
        positive("session_gap", self.session_gap)
        positive("max_session_length", self.max_session_length)
        positive("bot_events_per_minute", self.bot_events_per_minute)
        if self.max_session_length < self.session_gap:
            raise ValueError(f"max_session_length must be at least session_gap, got "
                             f"{self.max_session_length} < {self.session_gap}")


COMMANDS = (
    Command("sessionize", "bronze.events -> silver.events, silver.sessions", SessionizeConfig,
            "clickscore.sessionize.job:run_sessionize"),
)
