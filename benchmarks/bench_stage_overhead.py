"""The fixed cost of a stage run on a small batch: Spark jobs and seconds per ingest and
sessionize of one generated day, under the production session settings and under the test
suite's (`tests/conftest.py`), alternated day by day in one Spark session so both meet the
same warm JVM and the same machine.

    python benchmarks/bench_stage_overhead.py [--days 5] [--users 2000]

The first day warms the JVM and is not counted. Jobs are counted per run through a job group
(Delta's own jobs included), which is steadier than seconds on a machine whose timings vary:
the test settings must run fewer jobs, and the seconds are printed beside them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("CLICKSCORE_DATA_DOCS", "off")

from clickscore.core.config import RunDate  # noqa: E402
from clickscore.core.spark import get_spark  # noqa: E402
from clickscore.demo.config import GenerateConfig  # noqa: E402
from clickscore.demo.generator import generate  # noqa: E402
from clickscore.ingest.config import IngestConfig  # noqa: E402
from clickscore.ingest.job import run_ingest  # noqa: E402
from clickscore.sessionize.config import SessionizeConfig  # noqa: E402
from clickscore.sessionize.job import run_sessionize  # noqa: E402

SETTINGS = {
    "production": {"spark.sql.adaptive.enabled": "true", "spark.sql.shuffle.partitions": "4"},
    "tests": {"spark.sql.adaptive.enabled": "false", "spark.sql.shuffle.partitions": "2"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-stage-overhead-")
    spark = get_spark(root, app_name="bench-stage-overhead", conf={
        "spark.master": "local[2]", "spark.driver.memory": "3g",
        "spark.sql.codegen.wholeStage": "false", "spark.ui.enabled": "false"})
    landing = Path(root) / "landing"
    manifest = generate(GenerateConfig(output_dir=str(landing), days=args.days,
                                       users=args.users, seed=11))
    start = datetime(2019, 10, 1, tzinfo=UTC)
    totals: dict[str, list[float]] = {name: [0, 0.0, 0] for name in SETTINGS}
    sc = spark.sparkContext
    for offset, name in enumerate(manifest["files"]):
        day = RunDate((start + timedelta(days=offset)).date())
        setting = list(SETTINGS)[offset % 2] if offset else None
        for key, value in SETTINGS[setting or "production"].items():
            spark.conf.set(key, value)
        for stage, run in (
                ("ingest", lambda d=day, n=name: run_ingest(spark, IngestConfig(
                    source="rees46", input_path=str(landing / n), run_date=d,
                    data_root=root))),
                ("sessionize", lambda d=day: run_sessionize(spark, SessionizeConfig(
                    run_date=d, data_root=root)))):
            group = f"{stage}-{day}"
            sc.setJobGroup(group, group)
            started = time.perf_counter()
            counts = run()
            seconds = time.perf_counter() - started
            jobs = len(sc.statusTracker().getJobIdsForGroup(group))
            print(f"{day} {stage:10s} {setting or 'warm-up':10s} {counts.input_rows:>7,} rows "
                  f"{jobs:4d} jobs {seconds:6.1f} s")
            if setting:
                totals[setting][0] += 1
                totals[setting][1] += seconds
                totals[setting][2] += jobs
    for setting, (runs, seconds, jobs) in totals.items():
        print(f"{setting:10s} {runs} stage runs: {jobs / runs:5.1f} jobs and "
              f"{seconds / runs:5.1f} s per run")
    spark.stop()


if __name__ == "__main__":
    main()
