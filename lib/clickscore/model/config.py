"""The model's typed hyper-parameters, saved with it, with the versions it was trained on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from clickscore.model.spec import FeatureSpec

LOSSES = ("full", "sampled")


class IncompatibleFeaturesError(ValueError):
    """Features built under another feature contract or vocabulary than the model's."""


def _choice(help: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata the command line reads (`core.commands`): help text and choices. Plain,
    so the model package stays free of everything above it."""
    return {"help": help, **({"choices": choices} if choices else {})}


@dataclass(frozen=True)
class ModelHyper:
    """The model's hyper-parameters: the choices, each default written here once (the train
    command's options and every trained model's config read them from here)."""

    d_model: int = field(default=64, metadata=_choice("embedding and hidden size"))
    n_heads: int = field(default=2, metadata=_choice("attention heads"))
    n_layers: int = field(default=2, metadata=_choice("Transformer layers"))
    dropout: float = field(default=0.1, metadata=_choice("dropout"))
    loss: str = field(default="full", metadata=_choice(
        "next-item loss: full softmax, or sampled (shared log-uniform negatives, logQ)",
        choices=LOSSES))
    negatives: int = field(default=256, metadata=_choice("negatives for --loss sampled"))
    propensity_weight: float = field(default=1.0, metadata=_choice(
        "weight of the propensity loss in the total"))
    repeat: bool = field(default=True, metadata=_choice(
        "a learned bonus for items already in the user's history (users revisit items: "
        "with --anchored it ties recently-viewed on the Taobao sample, where without it the "
        "model lost)"))
    anchored: bool = field(default=True, metadata=_choice(
        "the history's match with the item embeddings is scaled by a learned factor that "
        "starts at 0: an untrained model ranks by the prior and bonuses alone, and moves "
        "away from them only as far as training pulls the factor (with the repeat bonus it "
        "keeps the planted pairs the bonus alone cost)"))
    popularity_prior: bool = field(default=True, metadata=_choice(
        "item scores start from the log of each item's frequency as a training target, so "
        "the model learns what a user's history adds to popularity"))
    category_output: bool = field(default=False, metadata=_choice(
        "an item's output embedding adds its category's, shared by the items of a category"))
    category_affinity: bool = field(default=True, metadata=_choice(
        "a learned bonus for items of the categories the user's history holds, in "
        "proportion to each category's share of it (shoppers come back to their categories)"))
    cutoff_weight: float = field(default=1.0, metadata=_choice(
        "weight of the loss at each sequence's last position (the first item after the "
        "cutoff, what scoring predicts) against the positions inside the history"))

    @property
    def uses_item_categories(self) -> bool:
        """Whether the model reads each item's category (set_item_categories)."""
        return self.category_output or self.category_affinity

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads "
                             f"({self.n_heads})")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss == "sampled" and not self.negatives >= 1:
            raise ValueError(f"negatives must be at least 1, got {self.negatives}")
        if not self.cutoff_weight > 0:
            raise ValueError(f"cutoff_weight must be positive, got {self.cutoff_weight}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes come from the feature contract and the vocabulary; `hyper` holds the choices.

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
    hyper: ModelHyper = field(default_factory=ModelHyper)
    # how the features it reads were built (scoring builds them the same way), and the
    # training set (a build of gold.training_examples) it was trained on
    features: FeatureSpec | None = None
    training_set: str = ""

    def __post_init__(self) -> None:
        if self.item_vocab_size < 3:
            raise ValueError(f"item_vocab_size must be at least 3 (padding, OOV, one item), "
                             f"got {self.item_vocab_size}")
        if self.features is not None and (
                self.features.feature_version, self.features.vocab_version) != (
                self.feature_version, self.vocab_version):
            raise ValueError(f"the feature spec says contract v{self.features.feature_version}"
                             f" with vocabulary {self.features.vocab_version}, the model "
                             f"v{self.feature_version} with {self.vocab_version}")

    def check_features(self, feature_version: int, vocab_version: str) -> None:
        """Refuse features of another contract or vocabulary version, naming both."""
        if (feature_version, vocab_version) != (self.feature_version, self.vocab_version):
            raise IncompatibleFeaturesError(
                f"the model was trained on feature contract v{self.feature_version} with "
                f"vocabulary {self.vocab_version}; these features are contract "
                f"v{feature_version} with vocabulary {vocab_version}")

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["features"] = self.features.to_dict() if self.features else None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if values.get("features") is not None:
            values["features"] = FeatureSpec.from_dict(values["features"])
        if isinstance(values.get("hyper"), dict):
            values["hyper"] = ModelHyper(**{**ABSENT_SWITCHES, **values["hyper"]})
        return cls(**values)


# A saved config without one of the model's switches was saved before the switch existed, by
# a model built without what it adds: it loads with the switch off, whatever today's default
# (`repeat` and `anchored` became defaults after models were registered without them; such a
# model's weights have no parameters of theirs).
ABSENT_SWITCHES = {f.name: False for f in dataclasses.fields(ModelHyper) if f.type == "bool"}
