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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from clickscore.model.config import ModelConfig
from clickscore.model.device import pick_device
from clickscore.model.metrics import FIRST_TARGET, NextItemMetrics
from clickscore.model.network import SEQUENCES, SequenceModel
from clickscore.training.config import LoopConfig

# early stopping and model selection: recall@k over all of a validation user's next items
STOP_METRIC = "recall_all"


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
    metrics = NextItemMetrics(k)
    for raw in loader:
        batch = to_device(raw, device)
        has_any = (batch["next_items"] >= FIRST_TARGET).any(dim=1)
        if not has_any.any():
            continue
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            scores, _ = model({name: value[has_any] for name, value in batch.items()})
        metrics.add(scores.float(), batch["next_items"][has_any])
    return metrics.means() | {"users": metrics.users["all"]}


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint


@dataclass
class _Rank:
    """One training process's state: where it runs, what it trains, where it checkpoints."""

    rank: int
    world: int
    device: torch.device
    model: SequenceModel
    wrapped: nn.Module  # the losses module, DDP-wrapped when there are several processes
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps: int  # per epoch, the same on every rank (uneven shards never hang DDP)
    folder: Path
    state: dict[str, Any]  # epoch, best, stale, history: what a checkpoint carries

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"


def train_function(model_cfg: ModelConfig, loop: LoopConfig, train_converter: Any,
                   validation_converter: Any, n_train: int,
                   item_counts: list[int] | None = None,
                   item_categories: list[int] | None = None,
                   on_epoch: Callable[[dict[str, Any]], None] | None = None
                   ) -> dict[str, Any]:
    """Train on this process's rank; returns (on every rank) rank 0's history, the best
    validation metric and the best weights' path. `item_counts` (per vocabulary index, its
    count as a training target) sets the model's popularity prior, `item_categories` (per
    index, its category index) the categories its output embeddings share.

    The steps: set up the rank, resume from its checkpoint when asked, then each epoch
    trains and (on rank 0) validates and checkpoints, until the epochs or the patience run
    out. `on_epoch` (one local process only: tuning) sees each epoch's record after
    validation and may raise to stop the run (a pruned trial)."""
    from clickscore.training.data import batches

    run = _set_up(model_cfg, loop, n_train, item_counts, item_categories)
    if loop.resume:
        _resume(run)
    stop = run.state["stale"] >= loop.patience
    with batches(train_converter, batch_size=loop.batch_size, rank=run.rank,
                 world_size=run.world, seed=loop.seed + run.state["epoch"]) as loader:
        stream: Iterator[dict[str, Tensor]] = iter(loader)
        for epoch in range(run.state["epoch"], loop.epochs):
            if stop:
                break
            record = _train_epoch(run, loop, stream, epoch)
            if run.rank == 0:
                stop = _validate_and_checkpoint(run, loop, validation_converter, record)
                if on_epoch is not None:
                    on_epoch(record)
            stop = _agreed(run, stop)
    return _result(run, loop)


def _set_up(model_cfg: ModelConfig, loop: LoopConfig, n_train: int,
            item_counts: list[int] | None, item_categories: list[int] | None) -> _Rank:
    """The rank's device and process group, its model (priors set), optimizer and
    warm-up schedule, steps per epoch and checkpoint folder."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(f"train rank {rank}", "training")
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
    return _Rank(rank, world, device, model, wrapped, optimizer, scheduler, steps, folder,
                 {"epoch": 0, "best": -1.0, "stale": 0, "history": []})


def _resume(run: _Rank) -> None:
    """Continue from the last checkpoint, when there is one: weights, optimizer, schedule,
    random state and the epochs done."""
    if not run.last.exists():
        return
    saved = torch.load(run.last, map_location=run.device, weights_only=True)
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    run.state = {k: saved[k] for k in ("epoch", "best", "stale", "history")}
    _log(run.rank, f"resumed from {run.last} after epoch {run.state['epoch']}")


def _train_epoch(run: _Rank, loop: LoopConfig, stream: Iterator[dict[str, Tensor]],
                 epoch: int) -> dict[str, Any]:
    """One epoch's steps; its record (losses, speed)."""
    run.model.train()
    device = run.device
    started, seen = time.perf_counter(), 0
    totals = {"total": 0.0, "next_item": 0.0, "propensity": 0.0}
    for _ in range(run.steps):
        batch = to_device(next(stream), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = run.wrapped(batch)
        run.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        nn.utils.clip_grad_norm_(run.model.parameters(), loop.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        seen += batch["item_seq"].shape[0]
        for name in totals:
            totals[name] += float(losses[name].detach())
    seconds = time.perf_counter() - started
    return {"epoch": epoch + 1, "seconds": round(seconds, 2),
            "sequences_per_s": round(seen * run.world / seconds, 1),
            **{f"loss_{n}": v / run.steps for n, v in totals.items()}}


def _validate_and_checkpoint(run: _Rank, loop: LoopConfig, validation_converter: Any,
                             record: dict[str, Any]) -> bool:
    """Rank 0: the epoch's validation metrics, the best weights when they improved, the
    checkpoint to resume from; whether to stop (patience spent)."""
    from clickscore.training.data import batches

    with batches(validation_converter, batch_size=loop.batch_size, num_epochs=1,
                 shuffle=False) as validation_loader:
        record |= {f"val_{n}": v for n, v in
                   validate(run.model, validation_loader, run.device, loop.k).items()}
    state = run.state
    metric = record.get(f"val_{STOP_METRIC}@{loop.k}", 0.0)
    if metric > state["best"]:
        state["best"], state["stale"] = metric, 0
        _save(run.best, {"model": run.model.state_dict(), "epoch": record["epoch"]})
    else:
        state["stale"] += 1
    state["epoch"] = record["epoch"]
    state["history"].append(record)
    _save(run.last, {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                     "scheduler": run.scheduler.state_dict(), "rng": torch.get_rng_state(),
                     **state})
    _log(run.rank, _progress(record, loop))
    return bool(state["stale"] >= loop.patience)


def _agreed(run: _Rank, stop: bool) -> bool:
    """Rank 0's decision, on every rank."""
    if run.world == 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1.0 if stop else 0.0], device=run.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _result(run: _Rank, loop: LoopConfig) -> dict[str, Any]:
    """The weights kept and their validation metric: the best epoch's, or the last's (with
    a small validation set the best epoch is mostly noise: see LoopConfig.keep); rank 0's,
    on every rank."""
    state = run.state
    last_metric = (state["history"][-1].get(f"val_{STOP_METRIC}@{loop.k}", 0.0)
                   if state["history"] else -1.0)
    result = {"history": state["history"],
              "weights_path": str(run.best if loop.keep == "best" else run.last),
              "metric": state["best"] if loop.keep == "best" else last_metric,
              "kept": loop.keep, "device": str(run.device), "world_size": run.world}
    if run.world > 1:
        import torch.distributed as dist

        # each rank's final weights, so anyone can check that DDP kept them identical
        _save(run.folder / f"final-rank{run.rank}.pt", run.model.state_dict())
        # every rank returns rank 0's result: TorchDistributor's local mode keeps whichever
        # process writes its output last
        shared: list[dict[str, Any] | None] = [result if run.rank == 0 else None]
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
