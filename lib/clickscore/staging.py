"""Per-run scratch space for write-audit-publish.

A stage writes its batch here once, validates what was written, and only then copies it into
the published tables, so a reader never sees a batch that failed its checks. The area is
under the warehouse (`<warehouse>/_staging/<run id>`), works on any Hadoop file system, and is
deleted when the run ends, whether it succeeded or not; areas of runs killed before their
cleanup are swept by a later run once they are a day old.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


# A run's staging area older than this belongs to a run that was killed before its cleanup.
ABANDONED_AFTER = timedelta(hours=24)


def _staging_root(spark: SparkSession) -> str:
    warehouse = spark.conf.get("spark.sql.warehouse.dir") or "spark-warehouse"
    return f"{warehouse.rstrip('/')}/_staging"


def _fs_path(spark: SparkSession, path: str):  # -> (FileSystem, Path) JVM objects
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def sweep_abandoned(spark: SparkSession, older_than: timedelta = ABANDONED_AFTER) -> list[str]:
    """Delete staging areas last modified more than `older_than` ago (runs killed before they
    could clean up); returns what was deleted. Younger ones may belong to running stages."""
    fs, root = _fs_path(spark, _staging_root(spark))
    if not fs.exists(root):
        return []
    deadline_ms = (time.time() - older_than.total_seconds()) * 1000
    deleted = []
    for status in fs.listStatus(root):
        if status.isDirectory() and status.getModificationTime() < deadline_ms:
            fs.delete(status.getPath(), True)
            deleted.append(str(status.getPath()))
    if deleted:
        log.warning("deleted %d abandoned staging area(s): %s", len(deleted), deleted)
    return deleted


class StagingArea:
    def __init__(self, spark: SparkSession, run_id: str) -> None:
        self.spark = spark
        self.root = f"{_staging_root(spark)}/{run_id}"

    def stage(self, name: str, df: DataFrame, partition_by: Sequence[str] = ()) -> DataFrame:
        """Write `df` once as Parquet and return it read back (later reads do not recompute)."""
        path = f"{self.root}/{name}"
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(path)
        # the schema makes partition values typed as written, not inferred from their text
        return self.spark.read.schema(df.schema).parquet(path)

    def drop(self) -> None:
        fs, path = _fs_path(self.spark, self.root)
        fs.delete(path, True)


@contextmanager
def staging_area(spark: SparkSession, run_id: str) -> Iterator[StagingArea]:
    """A staging area for one run, deleted when the block exits; abandoned ones of earlier
    runs are swept first."""
    sweep_abandoned(spark)
    area = StagingArea(spark, run_id)
    try:
        yield area
    finally:
        area.drop()
