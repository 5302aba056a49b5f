"""Metrics that scikit-learn does not provide: full-ranking next-item metrics and expected
calibration error. (ROC-AUC, PR-AUC and log loss come from scikit-learn.)

Ranking is over every item: `scores` (B, V) hold a score per item index, with padding and
out-of-vocabulary at -inf. A target's rank is 1 + the number of items scored above it (ties
count in the target's favour, which is standard for dense scores).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

FIRST_TARGET = 2  # item indices below this are padding (0) and out-of-vocabulary (1)


class NextItemMetrics:
    """Next-item metrics summed over batches, the one accumulator training's validation and
    evaluation share: the first-item metrics (recall/ndcg/mrr@k) over the users whose first
    next item is in the vocabulary, the all-items ones (recall_all/ndcg_all@k) over the
    users with any; `means()` at the end."""

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self.sums: dict[str, float] = {}
        self.users = {"first": 0, "all": 0}

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

    def means(self) -> dict[str, float]:
        """Each metric's mean over its users (first-item metrics first)."""
        return {name: total / max(self.users["all" if "_all" in name else "first"], 1)
                for name, total in sorted(self.sums.items(),
                                          key=lambda kv: ("_all" in kv[0], kv[0]))}


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
                               bins: int = 10) -> float:
    """Mean |observed rate - mean predicted probability| over equal-width probability bins,
    weighted by the share of predictions in each bin."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels, dtype=float)
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(labels[in_bin].mean() - probabilities[in_bin].mean())
    return float(error)


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
