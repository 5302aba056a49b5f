"""The training function each process runs (under TorchDistributor, or directly): DDP over
Gloo on CPU or NCCL on GPU, AdamW with linear warm-up, gradient clipping, bf16 autocast on
GPU, a fixed number of steps per epoch on every rank, validation and early stopping on rank 0,
a checkpoint each epoch, and `resume` from the last one. No Spark here: it reads batches from
the converters it is handed (see `training.data`), so it runs on any executor or GPU box.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from clickscore.model.config import ModelConfig
from clickscore.model.device import pick_device
from clickscore.model.metrics import all_targets_hits, first_target_hits
from clickscore.model.network import SEQUENCES, SequenceModel

# early stopping and model selection: recall@k over all of a validation user's next items
STOP_METRIC = "recall_all"


@dataclass(frozen=True)
class LoopConfig:
    """How to train: steps, optimizer, stopping, checkpoints. Picklable, sent to each rank."""

    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    patience: int = 2
    keep: str = "best"  # the weights returned: the best validation epoch's, or the last's
    seed: int = 42
    k: int = 20
    checkpoint_dir: str = ""
    resume: bool = False
    max_steps_per_epoch: int | None = None


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Petastorm's tensors as the model wants them: indices as int64, the rest as given."""
    out = {}
    for name, value in batch.items():
        if not isinstance(value, Tensor):
            continue
        if name in SEQUENCES or name in ("target_seq", "next_items"):
            value = value.long()
        out[name] = value.to(device, non_blocking=True)
    return out


class _Losses(nn.Module):
    """DDP wraps `forward`; this one returns the model's training losses."""

    def __init__(self, model: SequenceModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model.losses(batch)


@torch.no_grad()
def validate(model: SequenceModel, loader: Iterable[dict[str, Tensor]], device: torch.device,
             k: int) -> dict[str, float]:
    """Next-item metrics on the items after each validation cutoff: recall/ndcg/mrr@k of the
    first next item, and recall/ndcg@k over all of `next_items` (up to K per user, a steadier
    early-stopping signal). Positions inside the histories are not used: with a lookback
    longer than the gap to the training period they hold training targets (leakage)."""
    model.eval()
    sums: dict[str, float] = {}
    counts = {"first": 0, "all": 0}
    for raw in loader:
        batch = to_device(raw, device)
        next_items = batch["next_items"]
        has_any = (next_items >= 2).any(dim=1)
        if not has_any.any():
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            scores, _ = model({name: value[has_any] for name, value in batch.items()})
        scores, next_items = scores.float(), next_items[has_any]
        first = next_items[:, 0]
        has_first = first >= 2
        parts = all_targets_hits(scores.topk(k, dim=1).indices, next_items, k)
        if has_first.any():
            parts |= first_target_hits(scores[has_first], first[has_first], k)
        for name, values in parts.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
        counts["all"] += int(has_any.sum())
        counts["first"] += int(has_first.sum())
    return {name: total / max(counts["all" if "_all" in name else "first"], 1)
            for name, total in sums.items()} | {"users": counts["all"]}


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint


def train_function(model_cfg: ModelConfig, loop: LoopConfig, train_converter: Any,
                   validation_converter: Any, n_train: int,
                   item_counts: list[int] | None = None,
                   item_categories: list[int] | None = None) -> dict[str, Any]:
    """Train on this process's rank; returns (on every rank) rank 0's history, the best
    validation metric and the best weights' path. `item_counts` (per vocabulary index, its
    count as a training target) sets the model's popularity prior, `item_categories` (per
    index, its category index) the categories its output embeddings share."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from clickscore.training.data import batches

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(f"train rank {os.environ.get('RANK', 0)}", "training")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(loop.seed)
    model = SequenceModel(model_cfg)
    if item_counts is not None:
        model.set_item_prior(torch.tensor(item_counts))
    if item_categories is not None:
        model.set_item_categories(torch.tensor(item_categories))
    model = model.to(device)
    wrapped: nn.Module = _Losses(model)
    if world > 1:
        wrapped = DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameter_groups(loop.learning_rate,
                                                         loop.weight_decay))
    steps = math.ceil(n_train / (loop.batch_size * world))
    if loop.max_steps_per_epoch:
        steps = min(steps, loop.max_steps_per_epoch)
    # warm-up: the configured steps, at most a tenth of the run (small data has few steps)
    warmup = max(1, min(loop.warmup_steps, steps * loop.epochs // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup))
    folder = Path(loop.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    last, best_path = folder / "last.pt", folder / "best.pt"
    state: dict[str, Any] = {"epoch": 0, "best": -1.0, "stale": 0, "history": []}
    if loop.resume and last.exists():
        saved = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = {k: saved[k] for k in ("epoch", "best", "stale", "history")}
        _log(rank, f"resumed from {last} after epoch {state['epoch']}")
    stop = state["stale"] >= loop.patience
    with batches(train_converter, batch_size=loop.batch_size, rank=rank, world_size=world,
                 seed=loop.seed + state["epoch"]) as loader:
        stream: Iterator[dict[str, Tensor]] = iter(loader)
        for epoch in range(state["epoch"], loop.epochs):
            if stop:
                break
            model.train()
            started, seen, totals = time.perf_counter(), 0, {"total": 0.0, "next_item": 0.0,
                                                             "propensity": 0.0}
            for _ in range(steps):
                batch = to_device(next(stream), device)
                with torch.autocast(device.type, dtype=torch.bfloat16,
                                    enabled=device.type == "cuda"):
                    losses = wrapped(batch)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
                optimizer.step()
                scheduler.step()
                seen += batch["item_seq"].shape[0]
                for name in totals:
                    totals[name] += float(losses[name].detach())
            seconds = time.perf_counter() - started
            record: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(seconds, 2),
                                      "sequences_per_s": round(seen * world / seconds, 1),
                                      **{f"loss_{n}": v / steps for n, v in totals.items()}}
            if rank == 0:
                with batches(validation_converter, batch_size=loop.batch_size, num_epochs=1,
                             shuffle=False) as validation_loader:
                    record |= {f"val_{n}": v for n, v in
                               validate(model, validation_loader, device, loop.k).items()}
                metric = record.get(f"val_{STOP_METRIC}@{loop.k}", 0.0)
                if metric > state["best"]:
                    state["best"], state["stale"] = metric, 0
                    _save(best_path, {"model": model.state_dict(), "epoch": epoch + 1})
                else:
                    state["stale"] += 1
                state["epoch"] = epoch + 1
                state["history"].append(record)
                _save(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                             **state})
                _log(rank, _progress(record, loop))
                stop = state["stale"] >= loop.patience
            if world > 1:
                flag = torch.tensor([1.0 if stop else 0.0], device=device)
                dist.broadcast(flag, src=0)
                stop = bool(flag.item())
    # the weights kept and their validation metric: the best epoch's, or the last's (with
    # a small validation set the best epoch is mostly noise: see TrainConfig.keep)
    last_metric = (state["history"][-1].get(f"val_{STOP_METRIC}@{loop.k}", 0.0)
                   if state["history"] else -1.0)
    result = {"history": state["history"], "weights_path": str(
                  best_path if loop.keep == "best" else last),
              "metric": state["best"] if loop.keep == "best" else last_metric,
              "kept": loop.keep, "device": str(device), "world_size": world}
    if world > 1:
        # each rank's final weights, so anyone can check that DDP kept them identical
        _save(folder / f"final-rank{rank}.pt", model.state_dict())
        # every rank returns rank 0's result: TorchDistributor's local mode keeps whichever
        # process writes its output last
        shared: list[dict[str, Any] | None] = [result if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        assert shared[0] is not None
        result = shared[0]
        dist.destroy_process_group()
    return result


def _progress(record: dict[str, Any], loop: LoopConfig) -> str:
    k = loop.k
    return (f"epoch {record['epoch']}/{loop.epochs}: loss {record['loss_total']:.4f} "
            f"(next-item {record['loss_next_item']:.4f}, propensity "
            f"{record['loss_propensity']:.4f}), {record['sequences_per_s']:,.0f} sequences/s; "
            f"validation recall@{k} {record.get(f'val_recall_all@{k}', 0):.4f} (all next "
            f"items), {record.get(f'val_recall@{k}', 0):.4f} (first)")


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(f"{time.strftime('%H:%M:%S')} train {message}", flush=True)
