"""Metrics that scikit-learn does not provide: full-ranking next-item metrics and expected
calibration error. (ROC-AUC, PR-AUC and log loss come from scikit-learn.)

Ranking is over every item: `scores` (B, V) hold a score per item index, with padding and
out-of-vocabulary at -inf. A target's rank is 1 + the number of items scored above it (ties
count in the target's favour, which is standard for dense scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

FIRST_TARGET = 2  # item indices below this are padding (0) and out-of-vocabulary (1)


class NextItemMetrics:
    """Next-item metrics summed over batches, the one accumulator training's validation and
    evaluation share: the first-item metrics (recall/ndcg/mrr@k) over the users whose first
    next item is in the vocabulary, the all-items ones (recall_all/ndcg_all@k) over the
    users with any; `means()` at the end."""

    def __init__(self, k: int = 20, *, keep_rows: bool = False) -> None:
        self.k = k
        self.sums: dict[str, float] = {}
        self.users = {"first": 0, "all": 0}
        # per metric, each user's value (for bootstrap intervals), when asked to keep them
        self.rows: dict[str, list[np.ndarray]] | None = {} if keep_rows else None

    def add(self, scores: Tensor, next_items: Tensor) -> None:
        """Scores (B, V) of a batch's users and their next items (B, K), 0-padded."""
        next_items = next_items.long()
        first = next_items[:, 0]
        has_first = first >= FIRST_TARGET
        has_any = (next_items >= FIRST_TARGET).any(dim=1)
        self.users["first"] += int(has_first.sum())
        self.users["all"] += int(has_any.sum())
        parts: dict[str, Tensor] = {}
        if has_first.any():
            parts |= first_target_hits(scores[has_first], first[has_first], self.k)
        if has_any.any():
            parts |= all_targets_hits(scores[has_any].topk(self.k, dim=1).indices,
                                      next_items[has_any], self.k)
        for name, values in parts.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
            if self.rows is not None:
                self.rows.setdefault(name, []).append(values.detach().cpu().numpy())

    def means(self) -> dict[str, float]:
        """Each metric's mean over its users (first-item metrics first)."""
        return {name: total / max(self.users["all" if "_all" in name else "first"], 1)
                for name, total in sorted(self.sums.items(),
                                          key=lambda kv: ("_all" in kv[0], kv[0]))}


    def values(self, name: str) -> np.ndarray:
        """Each user's value of one metric, in the order added (needs `keep_rows`)."""
        if self.rows is None:
            raise ValueError("NextItemMetrics(keep_rows=True) keeps each user's values")
        parts = self.rows.get(name, [])
        return np.concatenate(parts).astype(float) if parts else np.zeros(0)

    def estimates(self, *, resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
        """Each metric with its 95% bootstrap interval over users (needs `keep_rows`)."""
        return {name: mean_estimate(self.values(name), resamples=resamples, seed=seed)
                for name in self.means()}


def first_target_hits(scores: Tensor, targets: Tensor, k: int = 20) -> dict[str, Tensor]:
    """Per row: recall@k, ndcg@k and mrr@k of one target item (B,), each (B,) in [0, 1]."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    rank = (scores > target_scores).sum(dim=1) + 1
    hit = rank <= k
    zero = torch.zeros_like(rank, dtype=torch.float)
    return {
        f"recall@{k}": hit.float(),
        f"ndcg@{k}": torch.where(hit, 1.0 / torch.log2(rank.float() + 1), zero),
        f"mrr@{k}": torch.where(hit, 1.0 / rank.float(), zero),
    }


def all_targets_hits(top: Tensor, targets: Tensor, k: int = 20) -> dict[str, Tensor]:
    """Per row: recall@k and ndcg@k (binary relevance) of a set of target items, given the
    top-k item indices `top` (B, k) and the targets (B, K), 0 padding. Recall divides by
    min(k, distinct targets); a row without targets counts 0 and should be left out."""
    top = top[:, :k]
    targets = targets.clone()
    targets[targets < 2] = -1  # padding and OOV are never relevant
    relevant = (top.unsqueeze(2) == targets.unsqueeze(1)).any(dim=2).float()  # (B, k)
    distinct = torch.tensor([len(set(row.tolist()) - {-1}) for row in targets],
                            dtype=torch.float, device=top.device)
    discounts = 1.0 / torch.log2(torch.arange(k, device=top.device).float() + 2)
    ideal = torch.stack([discounts[: int(min(n, k))].sum() for n in distinct.tolist()])
    return {
        f"recall_all@{k}": relevant.sum(1) / distinct.clamp(min=1).clamp(max=k),
        f"ndcg_all@{k}": (relevant * discounts).sum(1) / ideal.clamp(min=1e-12),
    }


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = 10, axis: int = -1) -> Any:
    """Mean |observed rate - mean predicted probability| over equal-width probability bins,
    weighted by the share of predictions in each bin; along an axis, so that many bootstrap
    resamples are computed at once. A bin's term, its share times the gap of its means, is
    |sum of labels - sum of probabilities| in the bin over all rows."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels, dtype=float)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    gaps = sum(np.abs((labels * in_bin).sum(axis=axis) - (probabilities * in_bin).sum(axis=axis))
               for in_bin in (which == b for b in range(bins)))
    with np.errstate(invalid="ignore"):  # no rows: NaN
        return gaps / probabilities.shape[axis]


def average_precision(probabilities: np.ndarray, labels: np.ndarray, axis: int = -1) -> Any:
    """PR-AUC as scikit-learn's average_precision_score computes it (the sum over distinct
    thresholds, highest first, of the gain in recall times the precision there; tied
    probabilities form one threshold), along an axis so that many bootstrap resamples are
    computed at once; NaN where one class is missing."""
    p = np.moveaxis(np.asarray(probabilities, dtype=float), axis, -1)
    y = np.moveaxis(np.asarray(labels, dtype=float), axis, -1)
    order = np.argsort(-p, axis=-1, kind="stable")
    p, y = np.take_along_axis(p, order, -1), np.take_along_axis(y, order, -1)
    true_positives = np.cumsum(y, axis=-1)
    # the last row of each run of tied probabilities: where a threshold ends
    ends = np.ones(p.shape, dtype=bool)
    ends[..., :-1] = p[..., :-1] != p[..., 1:]
    at_ends = np.where(ends, true_positives, 0.0)
    before = np.maximum.accumulate(at_ends, axis=-1)  # true positives at the latest end
    before = np.concatenate([np.zeros(p.shape[:-1] + (1,)), before[..., :-1]], axis=-1)
    precision = true_positives / np.arange(1, p.shape[-1] + 1)
    positives = true_positives[..., -1] if p.shape[-1] else np.zeros(p.shape[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (np.where(ends, true_positives - before, 0.0) * precision).sum(axis=-1) / (
            positives)
    return np.where((positives > 0) & (positives < p.shape[-1]), value, np.nan)


def reliability_curve(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed rate, count) per non-empty equal-width bin."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels, dtype=float)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    kept = [b for b in range(bins) if (which == b).any()]
    return (np.array([probabilities[which == b].mean() for b in kept]),
            np.array([labels[which == b].mean() for b in kept]),
            np.array([(which == b).sum() for b in kept]))


def gains_by_decile(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Share of all positives captured by each propensity decile, highest decile first."""
    order = np.argsort(-np.asarray(probabilities, dtype=float), kind="stable")
    deciles = np.array_split(np.asarray(labels, dtype=float)[order], 10)
    total = max(float(np.sum(labels)), 1e-12)
    return np.array([d.sum() / total for d in deciles])


# ---- intervals: percentile bootstrap over test users ----

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric's value on n rows, with its 95% bootstrap interval [low, high]."""

    value: float
    low: float
    high: float
    n: int

    def __format__(self, spec: str) -> str:
        if self.value != self.value:
            return "nan"
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Estimate:
        return cls(float(values["value"]), float(values["low"]), float(values["high"]),
                   int(values["n"]))


def _interval(statistic: Any, data: tuple[np.ndarray, ...], resamples: int, seed: int
              ) -> tuple[float, float]:
    """The percentile bootstrap interval of `statistic` over paired rows: `resamples` draws
    of the rows with replacement (in batches of 100, so memory stays small), the statistic of
    each (computed along the last axis, a batch at once), and the 2.5th and 97.5th
    percentiles of those that are defined (a draw of one class only has no ROC-AUC: it is
    left out, where scipy.stats.bootstrap would return NaN for the whole interval)."""
    n = len(data[0])
    if n < 2:
        value = float(statistic(*data, axis=-1)) if n else float("nan")
        return value, value
    rng = np.random.default_rng(seed)
    draws: list[np.ndarray] = []
    for start in range(0, resamples, 100):
        index = rng.integers(0, n, size=(min(100, resamples - start), n))
        draws.append(np.asarray(statistic(*(d[index] for d in data), axis=-1), float))
    values = np.concatenate(draws)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _mean(values: np.ndarray, axis: int = -1) -> Any:
    return np.mean(values, axis=axis)


def mean_estimate(values: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> Estimate:
    """The mean of per-user values with its percentile bootstrap interval."""
    values = np.asarray(values, dtype=float)
    value = float(values.mean()) if len(values) else float("nan")
    low, high = _interval(_mean, (values,), resamples, seed)
    return Estimate(value, low, high, len(values))


def auc(p: np.ndarray, labels: np.ndarray, axis: int = -1) -> Any:
    """ROC-AUC from ranks (the Mann-Whitney statistic; ties get their mean rank), along an
    axis so that many bootstrap resamples are computed at once; NaN where one class is
    missing. Equals scikit-learn's roc_auc_score."""
    from scipy.stats import rankdata

    p, labels = np.asarray(p, dtype=float), np.asarray(labels, dtype=float)
    ranks = rankdata(p, axis=axis)
    positives = labels.sum(axis=axis)
    negatives = labels.shape[axis] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * labels).sum(axis=axis) - positives * (positives + 1) / 2) / (
            positives * negatives)


def auc_estimate(p: np.ndarray, labels: np.ndarray, *, resamples: int = 1000,
                 seed: int = 0) -> Estimate:
    """ROC-AUC with its percentile bootstrap interval over rows."""
    p, labels = np.asarray(p, dtype=float), np.asarray(labels, dtype=float)
    value = float(auc(p, labels)) if len(labels) else float("nan")
    if value != value:
        return Estimate(value, value, value, len(labels))
    low, high = _interval(auc, (p, labels), resamples, seed)
    return Estimate(value, low, high, len(labels))


def estimate(statistic: Any, *data: np.ndarray, resamples: int = 1000, seed: int = 0
             ) -> Estimate:
    """A statistic of paired rows that computes along an axis (`statistic(*arrays, axis=-1)`,
    NaN where undefined: `average_precision`, `expected_calibration_error`) with its
    percentile bootstrap interval over rows."""
    arrays = tuple(np.asarray(d, dtype=float) for d in data)
    value = float(statistic(*arrays, axis=-1)) if len(arrays[0]) else float("nan")
    if value != value:
        return Estimate(value, value, value, len(arrays[0]))
    low, high = _interval(statistic, arrays, resamples, seed)
    return Estimate(value, low, high, len(arrays[0]))


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> Any:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _auc_difference(a: np.ndarray, b: np.ndarray, labels: np.ndarray, axis: int = -1) -> Any:
    return auc(a, labels, axis=axis) - auc(b, labels, axis=axis)


def compare(a: np.ndarray, b: np.ndarray, labels: np.ndarray | None = None, *,
            resamples: int = 1000, seed: int = 0) -> tuple[str, Estimate]:
    """Whether scorer a is `better`, `worse` or in a `tie` with b on the same rows: the 95%
    paired bootstrap interval of the difference (a - b) of the mean of per-user values, or
    of ROC-AUC when `labels` are given (a and b are then probabilities). A difference whose
    interval holds 0 is a tie."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if labels is None:
        value = float(_difference(a, b)) if len(a) else float("nan")
        low, high = _interval(_difference, (a, b), resamples, seed)
    else:
        labels = np.asarray(labels, dtype=float)
        value = float(_auc_difference(a, b, labels)) if len(a) else float("nan")
        low, high = ((value, value) if value != value
                     else _interval(_auc_difference, (a, b, labels), resamples, seed))
    difference = Estimate(value, low, high, len(a))
    if value != value or low <= 0 <= high:
        return "tie", difference
    return ("better" if low > 0 else "worse"), difference
