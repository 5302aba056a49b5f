"""The model's typed hyper-parameters, saved with it, with the versions it was trained on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

LOSSES = ("full", "sampled")


class IncompatibleFeaturesError(ValueError):
    """Features built under another feature contract or vocabulary than the model's."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes come from the feature contract and the vocabulary; the rest are choices.

    `item_vocab_size` counts every index (0 = padding, 1 = out-of-vocabulary, 2.. items);
    `n_dense` is the number of aggregate features the propensity head reads.
    """

    item_vocab_size: int
    category_vocab_size: int
    sequence_length: int
    n_event_types: int
    n_time_gap_buckets: int
    n_price_buckets: int
    n_dense: int
    feature_version: int
    vocab_version: str
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.1
    loss: str = "full"
    negatives: int = 256
    propensity_weight: float = 1.0
    repeat: bool = False  # the learned bonus for items already in the user's history
    popularity_prior: bool = False  # item logits start from log-popularity (set_item_prior)
    category_output: bool = False  # output embedding = item + its category (set_item_categories)
    # how the features it reads were built: scoring rebuilds them the same way
    windows: tuple[str, ...] = ()
    lookback_s: float = 0.0
    horizon_s: float = 0.0

    def __post_init__(self) -> None:
        if self.item_vocab_size < 3:
            raise ValueError(f"item_vocab_size must be at least 3 (padding, OOV, one item), "
                             f"got {self.item_vocab_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads "
                             f"({self.n_heads})")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss == "sampled" and not self.negatives >= 1:
            raise ValueError(f"negatives must be at least 1, got {self.negatives}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def check_features(self, feature_version: int, vocab_version: str) -> None:
        """Refuse features of another contract or vocabulary version, naming both."""
        if (feature_version, vocab_version) != (self.feature_version, self.vocab_version):
            raise IncompatibleFeaturesError(
                f"the model was trained on feature contract v{self.feature_version} with "
                f"vocabulary {self.vocab_version}; these features are contract "
                f"v{feature_version} with vocabulary {vocab_version}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "windows" in values:
            values["windows"] = tuple(values["windows"])
        return cls(**values)
