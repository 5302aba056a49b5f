"""Per-run scratch space for write-audit-publish.

A stage writes its batch here once, validates what was written, and only then copies it into
the published tables, so a reader never sees a batch that failed its checks. The area is
under the warehouse (`<warehouse>/_staging/<run id>`), works on any Hadoop file system, and is
deleted when the run ends, whether it succeeded or not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class StagingArea:
    def __init__(self, spark: SparkSession, run_id: str) -> None:
        self.spark = spark
        warehouse = spark.conf.get("spark.sql.warehouse.dir") or "spark-warehouse"
        self.root = f"{warehouse.rstrip('/')}/_staging/{run_id}"

    def stage(self, name: str, df: DataFrame, partition_by: Sequence[str] = ()) -> DataFrame:
        """Write `df` once as Parquet and return it read back (later reads do not recompute)."""
        path = f"{self.root}/{name}"
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(path)
        # the schema makes partition values typed as written, not inferred from their text
        return self.spark.read.schema(df.schema).parquet(path)

    def drop(self) -> None:
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        path = jvm.org.apache.hadoop.fs.Path(self.root)
        path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


@contextmanager
def staging_area(spark: SparkSession, run_id: str) -> Iterator[StagingArea]:
    """A staging area for one run, deleted when the block exits."""
    area = StagingArea(spark, run_id)
    try:
        yield area
    finally:
        area.drop()
