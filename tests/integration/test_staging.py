"""The write-audit-publish staging area: a batch is computed once, later actions read what was
staged, and every staged batch is released when the run ends, also on failure."""

from __future__ import annotations

import pytest
from pyspark import StorageLevel
from pyspark.sql import Observation
from pyspark.sql import functions as F

from clickscore.core.staging import new_observation, observed, staging_area

pytestmark = pytest.mark.integration


def holds_batches(spark) -> bool:
    """Whether Spark's cache (the staging area's storage) holds any DataFrame."""
    return not spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_a_staged_batch_is_computed_once_and_released_when_the_run_ends(spark):
    assert not holds_batches(spark)
    computed = Observation("computed")
    numbers_df = (spark.range(5).selectExpr("id AS n", "id % 2 = 1 AS is_odd")
                  .observe(computed, F.count(F.lit(1)).alias("rows")))
    with staging_area() as area:
        staged = area.stage("numbers", numbers_df)
        assert area.rows == {"numbers": 5}
        assert computed.get == {"rows": 5}
        assert staged.storageLevel == StorageLevel.MEMORY_AND_DISK
        assert sorted((r.n, r.is_odd) for r in staged.collect()) == [
            (0, False), (1, True), (2, False), (3, True), (4, False)]
        # read from storage: the plan scans the staged blocks, not the range
        assert "InMemoryTableScan" in staged._jdf.queryExecution().executedPlan().toString()
        assert holds_batches(spark)
    assert not holds_batches(spark)

    with pytest.raises(RuntimeError, match="stage failed"), staging_area() as area:
        area.stage("numbers", spark.range(2))
        assert holds_batches(spark)
        raise RuntimeError("stage failed")
    assert not holds_batches(spark)


def test_an_empty_batch_reports_zero_observed_rows_without_waiting(spark):
    read = new_observation("read")
    empty_df = spark.createDataFrame([], "n BIGINT").observe(read, F.count(F.lit(1)).alias("rows"))
    with staging_area() as area:
        area.stage("empty", empty_df)
        assert observed(read, ["rows"], area.rows["empty"]) == {"rows": 0}

    read = new_observation("read")
    numbers_df = spark.range(3).observe(read, F.count(F.lit(1)).alias("rows"))
    with staging_area() as area:
        area.stage("numbers", numbers_df.where("id > 0"))
        assert observed(read, ["rows"], area.rows["numbers"]) == {"rows": 3}
