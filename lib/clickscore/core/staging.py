"""Per-run staging for write-audit-publish.

A stage computes its batch once into Spark's storage (memory, spilling to the executors' local
disks), validates it there, and only then writes it to the published tables: a reader never
sees a batch that failed its checks, and the batch is computed and written once.

Held in Spark's storage, a batch also keeps the partitioning it was computed with, so the
sessions summarized from sessionized events need no second shuffle. (Staging as Parquet
files cost the 10M-event benchmark a write and a re-read per batch, and that shuffle.) If an
executor is lost, Spark recomputes its blocks from their deterministic inputs: a pinned Delta
version or landing files. Blocks are released when the run ends, whether it succeeded or
not; a killed run's blocks go with its Spark application.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import uuid4

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Observation


class StagingArea:
    """The batches one run holds until it publishes them."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self._held: list[DataFrame] = []

    def stage(self, name: str, df: DataFrame) -> DataFrame:
        """Compute `df` once into Spark's storage and return it; later actions read the
        stored blocks. Its row count is kept in `rows[name]`."""
        held = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._held.append(held)
        self.rows[name] = held.count()  # computes every partition into storage
        return held

    def release(self) -> None:
        for held in self._held:
            held.unpersist()
        self._held.clear()


def new_observation(purpose: str) -> Observation:
    """An Observation (metrics Spark gathers while an action runs) with a name of its own, so
    a stage's plan never matches another run's cached plan and skips the computation."""
    return Observation(f"{purpose}-{uuid4().hex}")


def observed(observation: Observation, names: Sequence[str], staged_rows: int) -> dict[str, int]:
    """The observation's metrics once the batch it watched is staged. A batch with no rows
    had no input; the optimizer may then drop the plan, observation included, and `get` would
    wait for a report that never comes, so the metrics are zero without asking."""
    if staged_rows == 0:
        return dict.fromkeys(names, 0)
    metrics = observation.get
    return {name: int(metrics[name]) for name in names}


@contextmanager
def staging_area() -> Iterator[StagingArea]:
    """A staging area for one run, released when the block exits."""
    area = StagingArea()
    try:
        yield area
    finally:
        area.release()
