"""Evaluation of a bundle's scorers (the sequence model and every baseline, see
`clickscore.model.baselines`) on one split, on the same rows and the same metrics. Works on
batches of tensors (no Spark), so it runs wherever the data can be streamed from.

Next item: full ranking over every item; the first-item metrics (recall/ndcg/mrr@20) over the
users whose first next item is in the vocabulary, the all-items ones (recall_all/ndcg_all@20)
over the users with any. Purchase propensity: ROC-AUC, PR-AUC, log loss (scikit-learn's where
they exist) and expected calibration error, of the calibrated probabilities (what scoring
publishes), with `ece_uncalibrated` before calibration. Every figure carries a 95% bootstrap
interval over users and their number; each baseline row says whether the model is better,
worse or in a tie with it on the head's metric (a paired bootstrap of the difference whose
interval holds zero is a tie).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clickscore.model.bundle import (
    HEAD_METRICS,
    HEADS,
    MODEL,
    HeadChoice,
    ScorerBundle,
    choose_head,
)
from clickscore.model.metrics import (
    Estimate,
    NextItemMetrics,
    auc_estimate,
    average_precision,
    compare,
    estimate,
    expected_calibration_error,
    gains_by_decile,
    mean_estimate,
    reliability_curve,
)
from clickscore.training.loop import to_device

K = 20


@dataclass
class Evaluation:
    """Every scorer's metrics on one split, and the arrays behind comparisons and plots."""

    split: str
    next_item: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    propensity: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    user_values: dict[str, np.ndarray] = field(default_factory=dict)  # head metric per user
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # calibrated
    raw_probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    verdicts: dict[str, dict[str, tuple[str, Estimate]]] = field(default_factory=dict)
    heads: dict[str, HeadChoice] = field(default_factory=dict)  # decided on validation

    def table(self) -> str:
        """The metrics as two aligned text tables, the model first; each cell the value with
        its 95% interval, each baseline row the model's verdict against it."""
        lines = []
        for head, title, block in (
                ("next_item", "next item (full ranking)", self.next_item),
                ("propensity", "purchase propensity", self.propensity)):
            if not block:
                continue
            names = list(next(iter(block.values())))
            counts = {n: e.n for n, e in next(iter(block.values())).items()}
            if head == "next_item":
                users = (f"{counts.get(f'mrr@{K}', 0)} users with an in-vocabulary first next "
                         f"item, {counts.get(f'ndcg_all@{K}', 0)} with any")
            else:
                users = f"{counts.get('roc_auc', 0)} users"
            width = max(len(m) for m in block) + 2
            lines.append(f"{title}, {self.split} split ({users}), 95% bootstrap intervals; "
                         f"model vs baseline on {HEAD_METRICS[head]}:")
            lines.append(" " * width + "".join(f"{n:>24}" for n in names) + "  model vs it")
            for method, values in block.items():
                verdict = self.verdicts.get(head, {}).get(method)
                lines.append(f"{method:<{width}}" + "".join(
                    f"{format(values[n]):>24}" for n in names)
                    + (f"  {verdict[0]}" if verdict else ""))
        for head, choice in self.heads.items():
            lines.append(f"{head.replace('_', ' ')} head: {choice.scorer} ({choice.reason})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """What `evaluate --format json` prints for one split."""
        return {
            "split": self.split,
            "next_item": {m: {k: e.to_dict() for k, e in v.items()}
                          for m, v in self.next_item.items()},
            "propensity": {m: {k: e.to_dict() for k, e in v.items()}
                           for m, v in self.propensity.items()},
            "model_vs_baselines": {
                head: {m: {"verdict": verdict, "difference": difference.to_dict()}
                       for m, (verdict, difference) in by_method.items()}
                for head, by_method in self.verdicts.items()},
            **({"heads": {h: c.to_dict() for h, c in self.heads.items()}}
               if self.heads else {}),
        }


@torch.no_grad()
def evaluate(bundle: ScorerBundle, batches: Iterable[dict[str, Tensor]], *, split: str,
             k: int = K, seed: int = 42, resamples: int = 1000) -> Evaluation:
    """Every scorer of the bundle on the same rows of one split."""
    model = bundle.model.eval()
    device = next(model.parameters()).device
    names = {head: bundle.scorers(head) for head in HEADS}
    metrics = {name: NextItemMetrics(k, keep_rows=True) for name in names["next_item"]}
    raw: dict[str, list[np.ndarray]] = {name: [] for name in names["propensity"]}
    labels = []
    for loaded in batches:
        batch = to_device({n: v for n, v in loaded.items() if isinstance(v, Tensor)}, device)
        hidden = model.encode(batch)
        for name in names["next_item"]:
            metrics[name].add(bundle.next_item_scores(name, batch, hidden).cpu(),
                              batch["next_items"].cpu())
        for name in names["propensity"]:
            raw[name].append(bundle.raw_propensity(name, batch, hidden))
        labels.append(batch["purchased_within_horizon"].cpu().numpy())
    result = Evaluation(split=split, labels=np.concatenate(labels).astype(float) if labels
                        else np.zeros(0))
    head_metric = HEAD_METRICS["next_item"].replace("@20", f"@{k}")
    for name, accumulated in metrics.items():
        if accumulated.sums:
            result.next_item[name] = accumulated.estimates(resamples=resamples, seed=seed)
            result.user_values[name] = accumulated.values(head_metric)
    for name, parts in raw.items():
        p = np.clip(np.concatenate(parts), 1e-7, 1 - 1e-7) if parts else np.zeros(0)
        result.raw_probabilities[name] = p
        result.probabilities[name] = np.clip(bundle.calibrated(name, p), 1e-7, 1 - 1e-7)
        result.propensity[name] = propensity_metrics(result.probabilities[name], result.labels,
                                                     raw=p, resamples=resamples, seed=seed)
    if MODEL in result.user_values:
        result.verdicts["next_item"] = {
            n: compare(result.user_values[MODEL], v, resamples=resamples, seed=seed)
            for n, v in result.user_values.items() if n != MODEL}
    if len(np.unique(result.labels)) == 2:
        result.verdicts["propensity"] = {
            n: compare(result.probabilities[MODEL], p, result.labels, resamples=resamples,
                       seed=seed)
            for n, p in result.probabilities.items() if n != MODEL}
    return result


def propensity_metrics(p: np.ndarray, labels: np.ndarray, *, raw: np.ndarray | None = None,
                       resamples: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """ROC-AUC, PR-AUC, log loss and ECE of probabilities `p` (and ECE of `raw`, the
    probabilities before calibration), each with its bootstrap interval."""
    labels = np.asarray(labels, dtype=float)
    # PR-AUC sorts and ECE bins every resample: a fifth of the resamples
    small = max(100, resamples // 5)
    losses = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    out = {"roc_auc": auc_estimate(p, labels, resamples=resamples, seed=seed),
           "pr_auc": estimate(average_precision, p, labels, resamples=small, seed=seed),
           "log_loss": mean_estimate(losses, resamples=resamples, seed=seed),
           "ece": estimate(expected_calibration_error, p, labels, resamples=small, seed=seed)}
    if raw is not None:
        out["ece_uncalibrated"] = estimate(expected_calibration_error, raw, labels,
                                           resamples=small, seed=seed)
    return out


def choose_heads(validation: Evaluation, margin: float) -> dict[str, HeadChoice]:
    """Per head, the scorer that serves it, decided on validation (`model.bundle`)."""
    heads = {}
    metric = HEAD_METRICS["next_item"]
    if validation.next_item:
        heads["next_item"] = choose_head(
            "next_item", {n: v[metric] for n, v in validation.next_item.items()},
            validation.user_values, None, margin)
    if validation.propensity:
        labels = validation.labels if len(np.unique(validation.labels)) == 2 else None
        heads["propensity"] = choose_head(
            "propensity", {n: v["roc_auc"] for n, v in validation.propensity.items()},
            validation.raw_probabilities, labels, margin)
    validation.heads = heads
    return heads


def write_json(evaluations: list[Evaluation], path: Path) -> Path:
    path.write_text(json.dumps({e.split: e.to_dict() for e in evaluations}, indent=1,
                               allow_nan=True))
    return path


def save_plots(evaluation: Evaluation, history: list[dict[str, Any]], folder: Path,
               k: int = K) -> list[Path]:
    """Learning curves, reliability diagrams before and after calibration and gains by
    propensity decile, as PNG."""
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

    for kind, probabilities in (("reliability_uncalibrated", evaluation.raw_probabilities),
                                ("reliability", evaluation.probabilities)):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        for name, p in probabilities.items():
            predicted, observed, _ = reliability_curve(p, evaluation.labels)
            ax.plot(predicted, observed, marker="o", label=name)
        state = "before" if kind.endswith("uncalibrated") else "after"
        ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate",
               title=f"Reliability, {state} calibration ({evaluation.split} split)")
        ax.legend()
        paths.append(_saved(fig, folder / f"{kind}.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, p in evaluation.probabilities.items():
        ax.plot(range(1, 11), np.cumsum(gains_by_decile(p, evaluation.labels)), marker="o",
                label=name)
    ax.plot(range(1, 11), np.arange(1, 11) / 10, linestyle="--", color="grey", label="random")
    ax.set(xlabel="propensity decile (1 = highest)", ylabel="share of purchases captured",
           title=f"Cumulative gains ({evaluation.split} split)")
    ax.legend()
    paths.append(_saved(fig, folder / "gains.png"))
    return paths


def _saved(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
