"""The model registry's commands: list the versions, move the champion alias."""

from __future__ import annotations

from dataclasses import dataclass, field

from clickscore.core.commands import Command, option


@dataclass(frozen=True)
class ModelsListConfig:
    """Registered model versions with their aliases and metrics."""

    data_root: str


@dataclass(frozen=True)
class PromoteConfig:
    """Move the champion alias to a version (an explicit override of the automatic rule)."""

    version: str = field(metadata=option(
        "the version to promote (a number, an alias such as challenger, or registered-by:ID)",
        positional=True))
    data_root: str
    if_better: bool = field(default=False, metadata=option(
        "only when its next-item head's validation NDCG@20 beats the champion's by more than "
        "--margin (or there is no champion): the automatic rule, for a scheduled promote step"))
    margin: float = field(default=0.0, metadata=option("with --if-better"))


COMMANDS = (
    Command("models list", "registered model versions, aliases and metrics",
            ModelsListConfig, "clickscore.registry:print_models", needs_spark=False),
    Command("models promote", "move the champion alias to a version (or --if-better)",
            PromoteConfig, "clickscore.registry:promote_command", needs_spark=False),
)
