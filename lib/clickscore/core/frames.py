"""DataFrame helpers that every stage uses."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

from pyspark.sql import DataFrame


def union_all(frames: Sequence[DataFrame]) -> DataFrame:
    """Frames with the same columns (in any order) as one, matched by name."""
    if not frames:
        raise ValueError("union_all needs at least one frame")
    return reduce(DataFrame.unionByName, frames)
