"""The driver machine's clock does not matter: every stage gives the same tables under
`TZ=Asia/Shanghai` and `TZ=America/Los_Angeles` as under UTC (dated ingest windows and their
gates, incremental sessionize's recompute date, the data-quality bounds, feature cutoffs)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import generate
from tests.integration.helpers import assert_same_rows
from tests.integration.tz_pipeline import DAYS, TABLES, pipeline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN_COLUMNS = ("_ingested_at", "_run_id")  # when and by which run a row was written


ZONES = ("Asia/Shanghai", "America/Los_Angeles")


def test_every_stage_gives_the_tables_of_a_utc_run_whatever_the_drivers_time_zone(
        spark, data_root, warehouse_states, tmp_path):
    landing = tmp_path / "landing"
    generate(GenerateConfig(output_dir=str(landing), days=len(DAYS), users=300, items=400,
                            seed=3, late_share=0.03))
    # one driver per zone, both at once, while this UTC test session builds the reference
    runs = {}
    for zone in ZONES:
        root = tmp_path / zone.replace("/", "-")
        runs[zone] = (root, subprocess.Popen(
            [sys.executable, "-m", "tests.integration.tz_pipeline", str(root), str(landing)],
            env={**os.environ, "TZ": zone}, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    warehouse_states.start_from("tz-reference", lambda: pipeline(spark, data_root, landing))
    for zone, (root, process) in runs.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, (zone, err[-4000:])
        offset = datetime.now(ZoneInfo(zone)).strftime("%z")
        assert offset != "+0000" and f"driver started at UTC offset {offset}" in out, out
        for table in TABLES:
            database, name = table.split(".")
            theirs = spark.read.format("delta").load(f"{root}/warehouse/{database}.db/{name}")
            ours = spark.table(table)
            columns = [c for c in ours.columns if c not in RUN_COLUMNS]
            assert ours.count() > 0, table
            assert_same_rows(ours.select(columns), theirs.select(columns), str((zone, table)))
