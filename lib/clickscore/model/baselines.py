"""The baselines as scorers: what each learns from the training rows, how it scores a batch,
and how it is saved and loaded without running code. No Spark: they run in training's
evaluation, in a Spark Python worker (scoring) and on a GPU box alike.

Next item (a score per item index, higher is better; padding and out-of-vocabulary never win):
- `most_popular`: items by how often they occur in the training sequences;
- `recently_viewed`: the user's own items, most recent first, then the popular ones;
- `item_knn`: cosine similarity of items that co-occur within a session (a gap of 30 minutes
  or more, read from the time-gap buckets, starts a new one), scored from the user's last
  three items (weights 1, 1/2, 1/4), popularity breaking ties.

Purchase propensity: logistic regression (on log1p of the aggregates, standardized) and
scikit-learn's HistGradientBoosting, fitted on the training aggregates. They are stored with
skops (`skops.io`), whose loader builds only the types it is told to trust: `load_sklearn`
refuses any other type in the file, so a replaced file cannot run code.

`Calibrator`: isotonic regression (scikit-learn) fitted on the validation split, kept as its
thresholds and applied by interpolation, as `IsotonicRegression.predict` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

FIRST_ITEM = 2  # indices below are padding (0) and out-of-vocabulary (1)
NEXT_ITEM_BASELINES = ("most_popular", "recently_viewed", "item_knn")
PROPENSITY_BASELINES = ("logistic_regression", "hist_gradient_boosting")
KNN_WINDOW = 5  # co-occurrence counts pairs at most this many positions apart in a session
MAX_PROPENSITY_ROWS = 200_000
# the only types a stored propensity baseline may contain beyond skops' defaults
TRUSTED_SKLEARN_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


class UntrustedModelError(ValueError):
    """A stored scorer holds something its loader does not build."""


@dataclass
class ItemStats:
    """What the next-item baselines learn from the training rows, and the aggregates the
    propensity baselines are fitted on."""

    popularity: np.ndarray
    similarity: sparse.csr_matrix
    dense: np.ndarray
    labels: np.ndarray

    @classmethod
    def from_batches(cls, batches: Iterable[dict[str, Tensor]], vocab_size: int,
                     session_bucket: int) -> ItemStats:
        counts = np.zeros(vocab_size)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        dense: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        kept = 0
        for batch in batches:
            items = batch["item_seq"].numpy().astype(np.int64)
            gaps = batch["time_gap_seq"].numpy()
            counts += np.bincount(items[items >= FIRST_ITEM], minlength=vocab_size)
            session = np.cumsum((gaps == 1) | (gaps >= session_bucket), axis=1)
            for offset in range(1, KNN_WINDOW + 1):
                a, b = items[:, :-offset], items[:, offset:]
                keep = ((session[:, :-offset] == session[:, offset:]) & (a >= FIRST_ITEM)
                        & (b >= FIRST_ITEM) & (a != b))
                rows += [a[keep], b[keep]]
                cols += [b[keep], a[keep]]
            if kept < MAX_PROPENSITY_ROWS:
                dense.append(batch["dense"].numpy())
                labels.append(batch["purchased_within_horizon"].numpy())
                kept += len(dense[-1])
        pairs = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        partners = np.concatenate(cols) if cols else pairs
        co = sparse.coo_matrix((np.ones(len(pairs)), (pairs, partners)),
                               shape=(vocab_size, vocab_size)).tocsr()
        norm = np.sqrt(np.maximum(counts, 1))
        similarity = sparse.diags(1 / norm) @ co @ sparse.diags(1 / norm)
        return cls(popularity=counts, similarity=similarity.tocsr(),
                   dense=np.concatenate(dense) if dense else np.zeros((0, 0)),
                   labels=np.concatenate(labels) if labels else np.zeros(0))

    def to_state(self) -> dict[str, Tensor]:
        """The next-item baselines as tensors (saved with `torch.save`, loaded with
        `weights_only=True`); the aggregates stay behind."""
        s = self.similarity.tocsr()
        return {"popularity": torch.from_numpy(self.popularity.astype(np.float64)),
                "similarity_indptr": torch.from_numpy(s.indptr.astype(np.int64)),
                "similarity_indices": torch.from_numpy(s.indices.astype(np.int64)),
                "similarity_data": torch.from_numpy(s.data.astype(np.float64))}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> ItemStats:
        size = len(state["popularity"])
        similarity = sparse.csr_matrix(
            (state["similarity_data"].numpy(), state["similarity_indices"].numpy(),
             state["similarity_indptr"].numpy()), shape=(size, size))
        return cls(popularity=state["popularity"].numpy(), similarity=similarity,
                   dense=np.zeros((0, 0)), labels=np.zeros(0))

    def scores(self, name: str, items: Tensor) -> Tensor:
        """A next-item baseline's scores (B, V) for a batch's item sequences (B, L)."""
        if name == "most_popular":
            return self.popular_scores(items.shape[0])
        if name == "recently_viewed":
            return self.recent_scores(items.long())
        if name == "item_knn":
            return self.knn_scores(items.long())
        raise ValueError(f"no next-item baseline {name!r}; there are {NEXT_ITEM_BASELINES}")

    def popular_scores(self, rows: int) -> Tensor:
        scores = torch.as_tensor(np.log1p(self.popularity), dtype=torch.float)
        scores[:FIRST_ITEM] = float("-inf")
        return scores.unsqueeze(0).expand(rows, -1).clone()

    def recent_scores(self, items: Tensor) -> Tensor:
        """The user's own items, most recent first (score 1000 + position), then popular."""
        scores = self.popular_scores(items.shape[0]) / 1e3
        for position in range(items.shape[1]):  # later positions overwrite: most recent wins
            column = items[:, position]
            seen = column >= FIRST_ITEM
            scores[seen.nonzero().squeeze(1), column[seen]] = 1000.0 + position
        return scores

    def knn_scores(self, items: Tensor) -> Tensor:
        """Similarity to the last three items (weights 1, 1/2, 1/4), popularity as tie-break."""
        last = items[:, -3:].numpy()
        weights = np.array([0.25, 0.5, 1.0])[-last.shape[1]:]
        rows = []
        for user_items in last:
            kept = [(i, w) for i, w in zip(user_items, weights, strict=True) if i >= FIRST_ITEM]
            if kept:
                ids, ws = zip(*kept, strict=True)
                rows.append(self.similarity[list(ids)].T @ np.array(ws))
            else:
                rows.append(np.zeros(self.similarity.shape[0]))
        scores = torch.as_tensor(np.stack(rows), dtype=torch.float)
        return scores + self.popular_scores(len(rows)) / 1e6


def log_dense(dense: np.ndarray) -> np.ndarray:
    """The aggregates as logistic regression sees them: log1p of the non-negative counts."""
    return np.log1p(np.clip(dense, 0, None))


def fit_propensity_baselines(stats: ItemStats, seed: int) -> dict[str, Any]:
    """Logistic regression and HistGradientBoosting fitted on the training aggregates ({}
    when the training labels hold one class only)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(stats.labels)) < 2:
        return {}
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return {"logistic_regression": logistic.fit(log_dense(stats.dense), stats.labels),
            "hist_gradient_boosting": HistGradientBoostingClassifier(random_state=seed).fit(
                stats.dense, stats.labels)}


def propensity_of(name: str, fitted: Any, dense: np.ndarray) -> np.ndarray:
    """A fitted propensity baseline's probabilities for a batch's aggregates."""
    x = log_dense(dense) if name == "logistic_regression" else dense
    return fitted.predict_proba(x)[:, 1]


def dump_sklearn(fitted: Any) -> bytes:
    import skops.io

    return bytes(skops.io.dumps(fitted))


def load_sklearn(data: bytes, what: str) -> Any:
    """A scikit-learn model stored by `dump_sklearn`, built only from trusted types."""
    import skops.io

    untrusted = [t for t in skops.io.get_untrusted_types(data=data)
                 if t not in TRUSTED_SKLEARN_TYPES]
    if untrusted:
        raise UntrustedModelError(f"{what} holds types its loader does not trust: "
                                  f"{', '.join(untrusted[:5])}")
    return skops.io.loads(data, trusted=list(TRUSTED_SKLEARN_TYPES))


@dataclass(frozen=True)
class Calibrator:
    """Isotonic calibration of a propensity scorer, fitted on the validation split."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    @classmethod
    def fit(cls, p: np.ndarray, labels: np.ndarray) -> Calibrator | None:
        """None when validation holds one class only (nothing to calibrate against)."""
        from sklearn.isotonic import IsotonicRegression

        if len(np.unique(labels)) < 2:
            return None
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, labels)
        return cls(x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return np.interp(p, self.x, self.y)

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, values: dict[str, list[float]]) -> Calibrator:
        return cls(x=tuple(values["x"]), y=tuple(values["y"]))
