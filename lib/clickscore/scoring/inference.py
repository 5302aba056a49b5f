"""Batch inference on Arrow record batches, with no Spark import: the same code runs in a
Spark Python worker (`job` hands it to `mapInArrow`), on a GPU box, and in the benchmark's
in-memory ceiling.

A `Scorer` holds one model version (a bundle of scorers, `clickscore.model.bundle`, and the
scorer that serves each head), the item ids its indices stand for, and the device. It reads
the feature contract's sequences and aggregates as tensors, a batch at a time, and returns per
user the purchase propensity (of the propensity head's scorer, calibrated) and the `top_k`
items the next-item head's scorer ranks highest (in the source's own ids, with its score:
the sequence model's probability of the item being next, or a baseline's score normalized to
sum to one over the catalogue), leaving out padding, the out-of-vocabulary index and each
user's excluded items (what they already purchased). A user is recommended only items of
their own source (`core.identity`): where the vocabulary spans several sources, the items of
the others are left out like the excluded ones.
Workers keep one `Scorer` per model version (`cached_scorer`), so a model is loaded once per
Python worker, not once per batch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from clickscore.model.bundle import HEADS, MODEL, ScorerBundle
from clickscore.model.config import ModelConfig
from clickscore.model.device import pick_device
from clickscore.model.network import FIRST_ITEM, SEQUENCES, SequenceModel

EXCLUDE = "exclude_idx"  # input column: item indices to leave out of a user's top items
SOURCE = "source"  # input and output column: the user's source, which their items must share
OUTPUT_SCHEMA = ("source string, user_id bigint, purchase_propensity double, "
                 "top_items array<struct<item_id:bigint,score:float>>")
_TOP_ITEM = pa.struct([("item_id", pa.int64()), ("score", pa.float32())])
ARROW_OUTPUT = pa.schema([(SOURCE, pa.string()), ("user_id", pa.int64()),
                          ("purchase_propensity", pa.float64()),
                          ("top_items", pa.list_(_TOP_ITEM))])


def model_payload(model: SequenceModel | ScorerBundle, item_ids: np.ndarray,
                  heads: dict[str, str] | None = None,
                  item_sources: list[str] | None = None) -> bytes:
    """A bundle (or a bare sequence model), the scorer of each head, and the item id and
    source of every index ("" for padding and out-of-vocabulary; none: one source), as bytes
    a worker loads with `weights_only=True` (no pickled code crosses to the executors)."""
    buffer = io.BytesIO()
    bundle = model if isinstance(model, ScorerBundle) else None
    bare = model if isinstance(model, SequenceModel) else None
    torch.save({"bundle": bundle.to_bytes() if bundle else None,
                "config": bare.cfg.to_dict() if bare else None,
                "state": ({k: v.detach().cpu() for k, v in bare.state_dict().items()}
                          if bare else None),
                "heads": dict(heads or {}),
                "item_ids": torch.from_numpy(np.asarray(item_ids, dtype=np.int64)),
                "item_sources": list(item_sources) if item_sources is not None else None},
               buffer)
    return buffer.getvalue()


def task_device() -> torch.device:
    """The device of this Spark task: the GPU Spark assigned it, else as `pick_device`."""
    address = None
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        gpus = context.resources().get("gpu") if context else None
        if gpus and gpus.addresses:
            address = gpus.addresses[0]
    except ImportError:  # outside Spark
        pass
    return pick_device("score", "scoring", address)


class Scorer:
    def __init__(self, model: SequenceModel | ScorerBundle, item_ids: np.ndarray, *,
                 top_k: int, heads: dict[str, str] | None = None,
                 item_sources: list[str] | None = None,
                 device: torch.device | None = None, batch_size: int = 1024) -> None:
        self.bundle = model if isinstance(model, ScorerBundle) else None
        network = model.model if isinstance(model, ScorerBundle) else model
        if len(item_ids) != network.cfg.item_vocab_size:
            raise ValueError(f"{len(item_ids)} item ids for a vocabulary of "
                             f"{network.cfg.item_vocab_size} indices")
        self.heads = {head: MODEL for head in HEADS} | dict(heads or {})
        if self.bundle is None and set(self.heads.values()) != {MODEL}:
            raise ValueError(f"heads {self.heads} need a bundle, not a bare model")
        self.device = device or task_device()
        self.model = network.to(self.device).eval()
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        if item_sources is not None and len(item_sources) != len(item_ids):
            raise ValueError(f"{len(item_sources)} item sources for {len(item_ids)} items")
        # each index's source as a code, kept only where items of several sources compete
        names = sorted({s for s in item_sources or [] if s})
        self.source_codes = {name: code for code, name in enumerate(names)}
        self.item_source = (torch.tensor([self.source_codes.get(s, -1) for s in item_sources],
                                         device=self.device)
                            if item_sources is not None and len(names) > 1 else None)
        self.top_k = min(top_k, network.cfg.item_vocab_size - FIRST_ITEM)
        self.batch_size = batch_size

    @classmethod
    def from_payload(cls, payload: bytes, **kwargs: Any) -> Scorer:
        loaded = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        model: SequenceModel | ScorerBundle
        if loaded.get("bundle") is not None:
            model = ScorerBundle.from_bytes(loaded["bundle"])
        else:
            model = SequenceModel(ModelConfig.from_dict(loaded["config"]))
            model.load_state_dict(loaded["state"])
        return cls(model, loaded["item_ids"].numpy(), heads=loaded.get("heads"),
                   item_sources=loaded.get("item_sources"), **kwargs)

    @torch.inference_mode()
    def score_tensors(self, batch: dict[str, Tensor], exclude_rows: np.ndarray,
                      exclude_items: np.ndarray, sources: list[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(propensity (N,), top indices (N, k), their probabilities (N, k)); a slot whose
        probability is NaN holds no item (fewer than k items were left to rank). `sources`:
        each row's source, whose items alone it may be recommended."""
        inputs = {name: batch[name].to(self.device, non_blocking=True)
                  for name in (*SEQUENCES, "dense")}
        next_item, propensity_by = self.heads["next_item"], self.heads["propensity"]
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.device.type == "cuda"):
            hidden = (self.model.encode(inputs) if MODEL in (next_item, propensity_by)
                      else None)
            if self.bundle is None:
                assert hidden is not None
                logits = self.model.item_scores(hidden[:, -1], inputs["item_seq"],
                                               categories=inputs["category_seq"]).float()
                propensity = torch.sigmoid(self.model.propensity_logit(
                    hidden, inputs["dense"]).float()).double().cpu().numpy()
            else:
                logits = self.bundle.next_item_scores(next_item, inputs, hidden).float()
                propensity = self.bundle.calibrated(propensity_by, self.bundle.raw_propensity(
                    propensity_by, inputs, hidden))
        if next_item == MODEL:  # the model's probability of each item being next
            logits = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        else:  # a baseline's score as its share of the catalogue's
            shares = logits.clamp(min=0) + 1e-12  # every known item stays rankable
            shares[:, :FIRST_ITEM] = 0
            logits = torch.log(shares / shares.sum(dim=1, keepdim=True).clamp(min=1e-30))
            logits[:, :FIRST_ITEM] = float("-inf")
        if len(exclude_rows):
            logits[torch.from_numpy(exclude_rows).to(self.device),
                   torch.from_numpy(exclude_items).to(self.device)] = float("-inf")
        if self.item_source is not None and sources is not None:
            own = torch.tensor([self.source_codes.get(s, -2) for s in sources],
                               device=self.device)
            logits = logits.masked_fill(self.item_source[None, :] != own[:, None],
                                        float("-inf"))
        top, index = torch.topk(logits, self.top_k, dim=1)
        probability = torch.exp(top)
        probability[torch.isinf(top)] = float("nan")
        return (np.asarray(propensity, dtype=np.float64), index.cpu().numpy(),
                probability.cpu().numpy())

    def score_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """One Arrow batch of feature rows (source, user_id, the sequences, dense,
        exclude_idx) -> (source, user_id, purchase_propensity, top_items)."""
        parts = [self._score_slice(batch.slice(start, self.batch_size))
                 for start in range(0, batch.num_rows, self.batch_size)]
        if not parts:
            return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in ARROW_OUTPUT],
                                              schema=ARROW_OUTPUT)
        return pa.RecordBatch.from_arrays(
            [pa.concat_arrays([p.column(i) for p in parts]) for i in range(len(ARROW_OUTPUT))],
            schema=ARROW_OUTPUT)

    def _score_slice(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        tensors = {name: torch.from_numpy(_matrix(batch.column(name), n, np.int64))
                   for name in SEQUENCES}
        tensors["dense"] = torch.from_numpy(_matrix(batch.column("dense"), n, np.float32))
        rows, items = _ragged(batch.column(EXCLUDE), n)
        sources = batch.column(SOURCE).cast(pa.string())
        propensity, index, probability = self.score_tensors(
            tensors, rows, items, sources.to_pylist() if self.item_source is not None else None)
        keep = ~np.isnan(probability)
        counts = keep.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        top_items = pa.ListArray.from_arrays(pa.array(offsets), pa.StructArray.from_arrays(
            [pa.array(self.item_ids[index[keep]]), pa.array(probability[keep], pa.float32())],
            fields=list(_TOP_ITEM)))
        return pa.RecordBatch.from_arrays(
            [sources, batch.column("user_id").cast(pa.int64()),
             pa.array(propensity, pa.float64()),
             top_items], schema=ARROW_OUTPUT)


def _matrix(column: pa.Array, rows: int, dtype: type) -> np.ndarray:
    """A fixed-length list column as a (rows, length) array."""
    values = column.flatten().to_numpy(zero_copy_only=False).astype(dtype)  # writable
    return values.reshape(rows, -1) if rows else values.reshape(0, 0)


def _ragged(column: pa.Array, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (row index, value) pairs."""
    lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return np.repeat(np.arange(rows, dtype=np.int64), lengths), values


_SCORERS: dict[tuple[Any, ...], Scorer] = {}


def cached_scorer(key: str, payload: Callable[[], bytes], *, threads: int = 1,
                  **kwargs: Any) -> Scorer:
    """The worker's Scorer for `key` (the model version and its weights' digest) and these
    settings, loaded from `payload()` on first use; a Python worker keeps one at a time. The
    thread count is set on every call: a reused worker may have run other code since, and a
    different count splits the float reductions differently."""
    torch.set_num_threads(max(1, threads))
    cache_key = (key, threads, *sorted(kwargs.items()))
    if cache_key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[cache_key] = Scorer.from_payload(payload(), **kwargs)
    return _SCORERS[cache_key]


def score_batches(batches: Iterable[pa.RecordBatch], key: str, payload: Callable[[], bytes],
                  *, top_k: int, batch_size: int, threads: int = 1
                  ) -> Iterator[pa.RecordBatch]:
    """What each Spark task runs (`mapInArrow`): score its batches with the cached model."""
    scorer = cached_scorer(key, payload, threads=threads, top_k=top_k, batch_size=batch_size)
    for batch in batches:
        if batch.num_rows:
            yield scorer.score_batch(batch)
