"""How a set of features was built: one value, made once and carried, never re-derived.

The training-examples build makes it (with the label horizon), the model stores it, run
records carry it, and scoring and `score --reproduce` read it back to build the same features
again (without the horizon: features at a cutoff have no labels)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class FeatureSpec:
    """Feature contract and vocabulary versions, the lookback and aggregation windows, and
    (for training examples) the label horizon."""

    feature_version: int
    vocab_version: str
    lookback_s: float
    windows: tuple[tuple[str, float], ...]  # (label, seconds), shortest first
    horizon_s: float | None = None

    def __post_init__(self) -> None:
        if self.lookback_s <= 0:
            raise ValueError(f"lookback must be positive, got {self.lookback_s} s")
        if not self.windows:
            raise ValueError("a feature spec needs at least one aggregation window")
        if max(seconds for _, seconds in self.windows) > self.lookback_s:
            raise ValueError(f"windows {self.labels} exceed the lookback ({self.lookback_s} s)")

    @classmethod
    def of(cls, feature_version: int, vocab_version: str, lookback: timedelta,
           windows: tuple[tuple[str, timedelta], ...],
           horizon: timedelta | None = None) -> FeatureSpec:
        return cls(feature_version=int(feature_version), vocab_version=vocab_version,
                   lookback_s=lookback.total_seconds(),
                   windows=tuple((label, span.total_seconds()) for label, span in windows),
                   horizon_s=None if horizon is None else horizon.total_seconds())

    @property
    def lookback(self) -> timedelta:
        return timedelta(seconds=self.lookback_s)

    @property
    def window_spans(self) -> tuple[tuple[str, timedelta], ...]:
        return tuple((label, timedelta(seconds=seconds)) for label, seconds in self.windows)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.windows]

    def at_cutoff(self, lookback: timedelta | None = None,
                  windows: tuple[tuple[str, timedelta], ...] | None = None) -> FeatureSpec:
        """The features of one cutoff built this way (no labels, so no horizon), with the
        lookback or windows replaced where given."""
        spec = replace(self, horizon_s=None)
        if lookback is not None:
            spec = replace(spec, lookback_s=lookback.total_seconds())
        if windows is not None:
            spec = replace(spec, windows=tuple((label, span.total_seconds())
                                               for label, span in windows))
        return spec

    def differences(self, other: FeatureSpec | None) -> list[str]:
        """What differs from `other`, field by field (`lookback_s 3600.0, wanted 7200.0`)."""
        if other is None:
            return ["no feature spec recorded"]
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k} {theirs[k]!r}, wanted {v!r}" for k, v in mine.items() if theirs[k] != v]

    def to_dict(self) -> dict[str, Any]:
        return {"feature_version": self.feature_version, "vocab_version": self.vocab_version,
                "lookback_s": self.lookback_s,
                "windows": [[label, seconds] for label, seconds in self.windows],
                "horizon_s": self.horizon_s}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureSpec:
        return cls(feature_version=int(values["feature_version"]),
                   vocab_version=str(values["vocab_version"]),
                   lookback_s=float(values["lookback_s"]),
                   windows=tuple((str(label), float(seconds))
                                 for label, seconds in values["windows"]),
                   horizon_s=None if values.get("horizon_s") is None
                   else float(values["horizon_s"]))

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))
