"""The driver machine's clock does not matter: every stage gives the same tables under
`TZ=Asia/Shanghai` as under UTC (dated ingest windows and their gates, incremental
sessionize's recompute date, the data-quality bounds, feature cutoffs), and under
`TZ=America/Los_Angeles` (west of UTC, where a shift moves events the other way) every clock a
run reads says UTC: the driver's Python, the JVM, the session and the Python workers.

One full pipeline in a non-UTC zone is the proof that the stages read no other clock; the
probe of the second zone checks the clocks themselves (a full second pipeline cost minutes of
CI for the same guarantee)."""

from __future__ import annotations

import json
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


ZONE = "Asia/Shanghai"  # the full pipeline
PROBED = "America/Los_Angeles"  # the clocks only


def test_every_stage_gives_the_tables_of_a_utc_run_whatever_the_drivers_time_zone(
        spark, data_root, warehouse_states, tmp_path):
    landing = tmp_path / "landing"
    generate(GenerateConfig(output_dir=str(landing), days=len(DAYS), users=300, items=400,
                            seed=3, late_share=0.03))
    # a driver in each zone, at once, while this UTC test session builds the reference
    root = tmp_path / ZONE.replace("/", "-")
    full = _script(ZONE, str(root), str(landing))
    probed = _script(PROBED, "--probe", str(tmp_path / "probe"))
    warehouse_states.start_from("tz-reference", lambda: pipeline(spark, data_root, landing))

    out, err = probed.communicate(timeout=900)
    assert probed.returncode == 0, err[-4000:]
    _started_off_utc(PROBED, out)
    clocks = json.loads(out.split("probe ", 1)[1])
    assert clocks == {"driver": "+0000", "jvm": "UTC", "session": "UTC", "workers": ["+0000"],
                      "round_trip": True, "shown": "2019-10-01 23:30", "day": "2019-10-01"}

    out, err = full.communicate(timeout=900)
    assert full.returncode == 0, (ZONE, err[-4000:])
    _started_off_utc(ZONE, out)
    for table in TABLES:
        database, name = table.split(".")
        theirs = spark.read.format("delta").load(f"{root}/warehouse/{database}.db/{name}")
        ours = spark.table(table)
        columns = [c for c in ours.columns if c not in RUN_COLUMNS]
        assert ours.count() > 0, table
        assert_same_rows(theirs.select(columns), ours.select(columns), f"{ZONE}: {table}")


def _script(zone: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.tz_pipeline", *args],
                            env={**os.environ, "TZ": zone}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _started_off_utc(zone: str, out: str) -> None:
    """The process really started in `zone` (so the run proves something)."""
    offset = datetime.now(ZoneInfo(zone)).strftime("%z")
    assert offset != "+0000" and f"driver started at UTC offset {offset}" in out, out
