"""The write-audit-publish staging area: read back without recomputation, removed when the run
ends (also on failure), and areas abandoned by killed runs swept once they are a day old."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clickscore.staging import staging_area

pytestmark = pytest.mark.integration


def test_staging_areas_are_removed_and_abandoned_ones_swept(spark, data_root):
    root = Path(data_root) / "warehouse" / "_staging"
    killed = root / "killed-run"
    (killed / "batch").mkdir(parents=True)
    (killed / "batch" / "part-0.parquet").write_bytes(b"left behind")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(killed, (two_days_ago, two_days_ago))
    running = root / "running-run"
    running.mkdir(parents=True)

    with staging_area(spark, "this-run") as area:
        numbers_df = spark.range(5).selectExpr("id AS n", "id % 2 = 1 AS is_odd")
        staged = area.stage("numbers", numbers_df, partition_by=["is_odd"])
        assert sorted((r.n, r.is_odd) for r in staged.collect()) == [
            (0, False), (1, True), (2, False), (3, True), (4, False)]
        assert (root / "this-run" / "numbers" / "is_odd=true").is_dir()
        assert not killed.exists()
    assert not (root / "this-run").exists()
    assert running.exists()

    with pytest.raises(RuntimeError, match="stage failed"), \
            staging_area(spark, "failing-run") as area:
        area.stage("numbers", spark.range(2))
        raise RuntimeError("stage failed")
    assert not (root / "failing-run").exists()
    running.rmdir()
