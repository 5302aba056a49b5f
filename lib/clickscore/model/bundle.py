"""A registered model version is a bundle of scorers trained on one training set: the
sequence model and every baseline (`model/baselines.py`), with a calibrator per propensity
scorer. Which scorer serves each head (`next_item`, `propensity`) is decided on validation
when the version is registered (`choose_heads`) and recorded with the version; scoring asks
the bundle for that scorer's output.

Stored as one file written by `torch.save` and read by `torch.load(weights_only=True)`: the
model's state dict and its `ModelConfig` as a dict, the baselines as tensors, the
scikit-learn baselines as skops bytes (read by `load_sklearn`, which builds only trusted
types), the calibrators as their thresholds. Loading a bundle runs no code from the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clickscore.model.baselines import (
    NEXT_ITEM_BASELINES,
    PROPENSITY_BASELINES,
    Calibrator,
    ItemStats,
    dump_sklearn,
    load_sklearn,
    propensity_of,
)
from clickscore.model.config import ModelConfig
from clickscore.model.metrics import Estimate, compare
from clickscore.model.network import SequenceModel

FORMAT = 1
MODEL = "model"  # the sequence model's name among a bundle's scorers
HEADS = ("next_item", "propensity")
# the validation metric each head is decided on, and the one every version is compared by
HEAD_METRICS = {"next_item": "ndcg_all@20", "propensity": "roc_auc"}
SCORERS = {"next_item": (MODEL, *NEXT_ITEM_BASELINES),
           "propensity": (MODEL, *PROPENSITY_BASELINES)}


class BundleError(ValueError):
    """A bundle that cannot be read or lacks a scorer it is asked for."""


@dataclass
class ScorerBundle:
    model: SequenceModel
    stats: ItemStats
    propensity: dict[str, Any] = field(default_factory=dict)  # fitted scikit-learn models
    calibrators: dict[str, Calibrator] = field(default_factory=dict)

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg

    def scorers(self, head: str) -> tuple[str, ...]:
        """The scorers this bundle holds for a head."""
        if head == "next_item":
            return SCORERS["next_item"]
        return (MODEL, *(n for n in PROPENSITY_BASELINES if n in self.propensity))

    @torch.no_grad()
    def next_item_scores(self, name: str, batch: dict[str, Tensor],
                         hidden: Tensor | None = None) -> Tensor:
        """Scores (B, V) of one next-item scorer; for the model, pass `hidden` (its
        encoding of the batch) to reuse it."""
        if name == MODEL:
            if hidden is None:
                hidden = self.model.encode(batch)
            return self.model.item_scores(hidden[:, -1], batch["item_seq"],
                                          categories=batch["category_seq"]).float()
        return self.stats.scores(name, batch["item_seq"].cpu()).to(batch["item_seq"].device)

    @torch.no_grad()
    def raw_propensity(self, name: str, batch: dict[str, Tensor],
                       hidden: Tensor | None = None) -> np.ndarray:
        """One propensity scorer's probabilities before calibration."""
        if name == MODEL:
            if hidden is None:
                hidden = self.model.encode(batch)
            logit = self.model.propensity_logit(hidden, batch["dense"]).float()
            return torch.sigmoid(logit).double().cpu().numpy()
        if name not in self.propensity:
            raise BundleError(f"this bundle has no propensity scorer {name!r}")
        return propensity_of(name, self.propensity[name],
                             batch["dense"].float().cpu().numpy()).astype(np.float64)

    def calibrated(self, name: str, p: np.ndarray) -> np.ndarray:
        calibrator = self.calibrators.get(name)
        return calibrator(p) if calibrator is not None else p

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({
            "format": FORMAT,
            "config": self.model.cfg.to_dict(),
            "state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "baselines": self.stats.to_state(),
            "propensity": {n: dump_sklearn(m) for n, m in self.propensity.items()},
            "calibration": {n: c.to_dict() for n, c in self.calibrators.items()},
        }, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "the bundle") -> ScorerBundle:
        """Read a bundle with `weights_only=True`; refuses a file that is not one."""
        try:
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for code, EOF for a torn file
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BundleError(f"{what} is not a clickscore bundle: {type(exc).__name__}"
                              f"{': ' + first if first else ''}") from None
        if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
            raise BundleError(f"{what} is not a clickscore bundle of format {FORMAT}")
        model = SequenceModel(ModelConfig.from_dict(loaded["config"]))
        model.load_state_dict(loaded["state"])
        model.eval()
        return cls(model=model, stats=ItemStats.from_state(loaded["baselines"]),
                   propensity={n: load_sklearn(b, f"{what}'s {n}")
                               for n, b in loaded["propensity"].items()},
                   calibrators={n: Calibrator.from_dict(c)
                                for n, c in loaded["calibration"].items()})


@dataclass(frozen=True)
class HeadChoice:
    """Which scorer serves a head, and the validation figures behind the choice."""

    head: str
    scorer: str
    metric: str
    value: Estimate  # the chosen scorer's validation metric
    best_baseline: str | None
    verdict: str  # the model against the best baseline: better, worse or tie
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "scorer": self.scorer, "metric": self.metric,
                "value": self.value.to_dict(), "best_baseline": self.best_baseline,
                "model_vs_best_baseline": self.verdict, "reason": self.reason}


def choose_head(head: str, estimates: dict[str, Estimate],
                values: dict[str, np.ndarray], labels: np.ndarray | None,
                margin: float) -> HeadChoice:
    """The model serves `head` only when, on validation, it beats the best baseline by more
    than `margin` and the 95% paired bootstrap interval of the difference excludes zero;
    otherwise the best baseline does (a tie goes to the simpler scorer). `estimates` holds
    each scorer's validation metric, `values` what the comparison resamples: per-user metric
    values (next item) or probabilities (propensity, with `labels`)."""
    metric = HEAD_METRICS[head]
    baselines = [n for n in estimates if n != MODEL]
    if not baselines:
        return HeadChoice(head, MODEL, metric, estimates[MODEL], None, "better",
                          "no baseline could be fitted")
    measured = [n for n in baselines if estimates[n].value == estimates[n].value]
    best = max(measured, key=lambda n: estimates[n].value) if measured else baselines[0]
    mine, theirs = estimates[MODEL], estimates[best]
    verdict, difference = compare(values[MODEL], values[best], labels)
    if mine.value != mine.value:
        return HeadChoice(head, best, metric, theirs, best, "tie",
                          "the model could not be measured on validation")
    if verdict == "better" and mine.value > theirs.value + margin:
        return HeadChoice(head, MODEL, metric, mine, best, verdict,
                          f"better than the best baseline, {best}: {difference.value:+.4f} "
                          f"[{difference.low:+.4f}, {difference.high:+.4f}]")
    return HeadChoice(head, best, metric, theirs, best, verdict,
                      f"the best baseline; the model is {verdict}"
                      f"{' but not by the margin ' + str(margin) if verdict == 'better' else ''}"
                      f": {difference.value:+.4f} [{difference.low:+.4f}, "
                      f"{difference.high:+.4f}]")
