"""Evaluation on the time-based test split: the model next to its baselines, on the same rows
and the same metrics. Works on batches of tensors (no Spark), so it runs wherever the data
can be streamed from.

Next item (full ranking over every item; the target is the first next item, and also every
item in `next_items`):
- most-popular: items by how often they occur in the training sequences;
- recently-viewed: the user's own items, most recent first, then the popular ones;
- item-kNN: cosine similarity of items that co-occur within a session (a gap of 30 minutes or
  more, read from the time-gap buckets, starts a new one) in the training sequences, scored
  from the user's last three items.

Purchase propensity: logistic regression and scikit-learn's HistGradientBoosting on the
aggregate features. Metrics: ROC-AUC, PR-AUC, log loss (scikit-learn) and expected
calibration error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from torch import Tensor

from clickscore.model.metrics import (
    NextItemMetrics,
    expected_calibration_error,
    gains_by_decile,
    reliability_curve,
)
from clickscore.model.network import FIRST_ITEM, SequenceModel
from clickscore.training.loop import to_device

NEXT_ITEM_BASELINES = ("most_popular", "recently_viewed", "item_knn")
PROPENSITY_BASELINES = ("logistic_regression", "hist_gradient_boosting")
KNN_WINDOW = 5  # co-occurrence counts pairs at most this many positions apart in a session
MAX_PROPENSITY_ROWS = 200_000


@dataclass
class ItemStats:
    """What the baselines learn from the training rows."""

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
            if len(labels) * len(batch["dense"]) < MAX_PROPENSITY_ROWS:
                dense.append(batch["dense"].numpy())
                labels.append(batch["purchased_within_horizon"].numpy())
        pairs = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        co = sparse.coo_matrix((np.ones(len(pairs)), (pairs, np.concatenate(cols) if cols
                                                      else pairs)),
                               shape=(vocab_size, vocab_size)).tocsr()
        norm = np.sqrt(np.maximum(counts, 1))
        similarity = sparse.diags(1 / norm) @ co @ sparse.diags(1 / norm)
        return cls(popularity=counts, similarity=similarity.tocsr(),
                   dense=np.concatenate(dense) if dense else np.zeros((0, 0)),
                   labels=np.concatenate(labels) if labels else np.zeros(0))

    def popular_scores(self, rows: int) -> Tensor:
        scores = torch.as_tensor(np.log1p(self.popularity), dtype=torch.float)
        scores[:FIRST_ITEM] = float("-inf")
        return scores.unsqueeze(0).expand(rows, -1).clone()

    def recent_scores(self, items: Tensor) -> Tensor:
        """The user's own items, most recent first (score 1000 + position), then popular."""
        scores = self.popular_scores(items.shape[0]) / 1e3
        length = items.shape[1]
        for position in range(length):  # later positions overwrite: most recent wins
            column = items[:, position]
            seen = column >= FIRST_ITEM
            scores[seen.nonzero().squeeze(1), column[seen]] = 1000.0 + position
        return scores

    def knn_scores(self, items: Tensor) -> Tensor:
        """Similarity to the last three items (weights 1, 1/2, 1/4), popularity as tie-break."""
        last = items[:, -3:].numpy()
        weights = np.array([0.25, 0.5, 1.0])
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


@dataclass
class Evaluation:
    """Metrics per method, and the arrays behind the plots."""

    next_item: dict[str, dict[str, float]] = field(default_factory=dict)
    propensity: dict[str, dict[str, float]] = field(default_factory=dict)
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def table(self) -> str:
        """The metrics as two aligned text tables, the model first."""
        lines = []
        for title, block in (("next item (test split, full ranking)", self.next_item),
                             ("purchase propensity (test split)", self.propensity)):
            if not block:
                continue
            names = list(next(iter(block.values())))
            width = max(len(m) for m in block) + 2
            lines.append(f"{title}:")
            lines.append(" " * width + "".join(f"{n:>14}" for n in names))
            for method, values in block.items():
                lines.append(f"{method:<{width}}" + "".join(f"{values[n]:>14.4f}"
                                                            for n in names))
        return "\n".join(lines)


def propensity_baselines(stats: ItemStats, seed: int) -> dict[str, Any]:
    """Logistic regression and HistGradientBoosting fitted on the training aggregates."""
    log_features = FunctionTransformer(lambda x: np.log1p(np.clip(x, 0, None)))
    models = {
        "logistic_regression": make_pipeline(log_features, StandardScaler(),
                                              LogisticRegression(max_iter=1000)),
        "hist_gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
    }
    if len(np.unique(stats.labels)) < 2:
        return {}
    return {name: model.fit(stats.dense, stats.labels) for name, model in models.items()}


@torch.no_grad()
def evaluate(model: SequenceModel, test_batches: Iterable[dict[str, Tensor]], stats: ItemStats,
             *, k: int = 20, seed: int = 42) -> Evaluation:
    """The model and every baseline on the same test rows."""
    model.eval()
    device = next(model.parameters()).device
    fitted = propensity_baselines(stats, seed)
    methods: dict[str, Callable[[dict[str, Tensor]], Tensor]] = {
        "most_popular": lambda b: stats.popular_scores(b["item_seq"].shape[0]),
        "recently_viewed": lambda b: stats.recent_scores(b["item_seq"].long()),
        "item_knn": lambda b: stats.knn_scores(b["item_seq"].long()),
    }
    metrics = {name: NextItemMetrics(k) for name in ("model", *methods)}
    probabilities: dict[str, list[np.ndarray]] = {"model": [], **{n: [] for n in fitted}}
    labels = []
    for raw in test_batches:
        batch = {n: v for n, v in raw.items() if isinstance(v, Tensor)}
        scores, propensity = model(to_device(batch, device))
        every = {"model": scores.float().cpu(), **{n: f(batch) for n, f in methods.items()}}
        for name, method_scores in every.items():
            metrics[name].add(method_scores, batch["next_items"])
        probabilities["model"].append(propensity.float().cpu().numpy())
        dense = batch["dense"].numpy()
        for name, fitted_model in fitted.items():
            probabilities[name].append(fitted_model.predict_proba(dense)[:, 1])
        labels.append(batch["purchased_within_horizon"].numpy())
    result = Evaluation(labels=np.concatenate(labels) if labels else np.zeros(0))
    for name, accumulated in metrics.items():
        if accumulated.sums:
            result.next_item[name] = accumulated.means()
    for name, parts in probabilities.items():
        p = np.clip(np.concatenate(parts), 1e-7, 1 - 1e-7) if parts else np.zeros(0)
        result.probabilities[name] = p
        result.propensity[name] = propensity_metrics(p, result.labels)
    return result


def propensity_metrics(p: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    both = len(np.unique(labels)) == 2
    return {"roc_auc": float(roc_auc_score(labels, p)) if both else float("nan"),
            "pr_auc": float(average_precision_score(labels, p)) if both else float("nan"),
            "log_loss": float(log_loss(labels, p, labels=[0, 1])) if len(labels) else float("nan"),
            "ece": expected_calibration_error(p, labels) if len(labels) else float("nan")}


def save_plots(evaluation: Evaluation, history: list[dict[str, Any]], folder: Path,
               k: int = 20) -> list[Path]:
    """Learning curves, reliability diagram and gains by propensity decile, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    left.plot(epochs, [h["loss_total"] for h in history], marker="o", label="total")
    left.plot(epochs, [h["loss_next_item"] for h in history], marker="o", label="next item")
    left.plot(epochs, [h["loss_propensity"] for h in history], marker="o", label="propensity")
    left.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    left.legend()
    right.plot(epochs, [h.get(f"val_recall_all@{k}", 0) for h in history], marker="o",
               label=f"recall@{k}, all next items")
    right.plot(epochs, [h.get(f"val_recall@{k}", 0) for h in history], marker="o",
               label=f"recall@{k}, first next item")
    right.set(xlabel="epoch", title="Validation")
    right.legend()
    paths.append(_saved(fig, folder / "learning_curves.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    for name, p in evaluation.probabilities.items():
        predicted, observed, _ = reliability_curve(p, evaluation.labels)
        ax.plot(predicted, observed, marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
           title="Reliability (test split)")
    ax.legend()
    paths.append(_saved(fig, folder / "reliability.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, p in evaluation.probabilities.items():
        ax.plot(range(1, 11), np.cumsum(gains_by_decile(p, evaluation.labels)), marker="o",
                label=name)
    ax.plot(range(1, 11), np.arange(1, 11) / 10, linestyle="--", color="grey", label="random")
    ax.set(xlabel="propensity decile (1 = highest)", ylabel="share of purchases captured",
           title="Cumulative gains (test split)")
    ax.legend()
    paths.append(_saved(fig, folder / "gains.png"))
    return paths


def _saved(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
