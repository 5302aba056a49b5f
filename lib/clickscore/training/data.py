"""Spark -> PyTorch: gold.training_examples through Petastorm. The only module that imports
Petastorm (barely maintained upstream), so the loader can be swapped without touching the
model or the jobs.

`model_frame` selects what the model reads, as Petastorm-ready columns (fixed-length int
arrays, one float array of aggregates); `converted` materializes a frame once under the data
root's cache folder and deletes it when the block ends; `batches` opens a rank's shard of a
converted frame as a PyTorch DataLoader of dicts of tensors.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.features.contract import FeatureContract

log = logging.getLogger(__name__)

# Petastorm 0.13 still calls pyarrow APIs deprecated since pyarrow 2 and 5 on every reader;
# pyarrow is pinned at 14 for it (ARCHITECTURE.md), so the notices say nothing actionable.
warnings.filterwarnings("ignore", category=FutureWarning, module="petastorm")

LABELS = ("purchased_within_horizon", "target_seq", "next_items", "next_items_len")


def dense_columns(contract: FeatureContract) -> list[str]:
    """The aggregate features the propensity head reads, in the order of `dense`."""
    return [*contract.window_arrays, *contract.scalars]


def model_frame(examples_df: DataFrame, contract: FeatureContract, *,
                with_labels: bool = True, keep: tuple[str, ...] = ()) -> DataFrame:
    """The model's inputs: the sequences, `dense` (window arrays then scalars, as one float
    array), the labels when training or evaluating, and `keep` (e.g. user_id)."""
    parts = [F.col(c).cast("array<float>") for c in contract.window_arrays]
    parts += [F.array(F.col(c).cast("float")) for c in contract.scalars]
    return examples_df.select(
        *keep, *contract.sequences, F.concat(*parts).alias("dense"),
        *(LABELS if with_labels else ()))


def cache_url(data_root: str) -> str:
    """Where Petastorm materializes frames: under the data root, as a URL."""
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/training/petastorm-cache"
    path = Path(data_root) / "training" / "petastorm-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve().as_uri()


@contextmanager
def converted(spark: SparkSession, frame_df: DataFrame, data_root: str, *,
              partitions: int) -> Iterator[Any]:
    """A Petastorm converter of `frame_df`, written as at least `partitions` files so every
    rank's shard has row groups; the cached files are deleted when the block ends."""
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url(data_root))
    converter = make_spark_converter(frame_df.repartition(partitions))
    log.debug("petastorm converter: %d rows in %s", len(converter), converter.cache_dir_url)
    try:
        yield converter
    finally:
        converter.delete()


@contextmanager
def batches(converter: Any, *, batch_size: int, rank: int = 0, world_size: int = 1,
            num_epochs: int | None = None, seed: int = 0, shuffle: bool = True
            ) -> Iterator[Any]:
    """A DataLoader over this rank's shard (`cur_shard=rank, shard_count=world_size`) that
    yields dicts of tensors; `num_epochs=None` repeats without end (the training loop takes
    a fixed number of steps per epoch on every rank, so uneven shards never hang DDP). One
    reader thread, so the order is the same for the same seed.

    A read of a fixed number of passes does not shuffle: petastorm 0.13.1's reader with
    `shuffle_row_groups` and `num_epochs` set now and then ends before its first row under
    load (measured with two busy processes beside it, 160 two-shard reads of a 4-file dataset
    each: 6 came back empty with seed 0, 4 with seed 7, none without shuffling; no endless
    read ended early)."""
    if shuffle and num_epochs is not None:
        raise ValueError("a read of a fixed number of passes must not shuffle row groups "
                         "(petastorm may end it early); pass shuffle=False")
    sharding = {"cur_shard": rank, "shard_count": world_size} if world_size > 1 else {}
    with converter.make_torch_dataloader(
            batch_size=batch_size, num_epochs=num_epochs, workers_count=1,
            shuffle_row_groups=shuffle, seed=seed, **sharding) as loader:
        yield loader
