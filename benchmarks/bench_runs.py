"""Run-record benchmark: what recording a stage run in ops.pipeline_runs costs.

    python benchmarks/bench_runs.py [--runs 8] [--history 40]

Times `core.runs.tracked_run` around an empty body (a `running` row at the start, after the
scan for abandoned runs, and the UPDATE to `succeeded` at the end) against its reference
measured in the same session: one plain append of a finished row, which is all a run recorded
before runs were recorded at their start. Both write to a runs table that already holds
`--history` runs. Prints seconds per run and their ratio, and each part; writes
benchmarks/out/runs.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from bench_etl import save_figures  # type: ignore[import-not-found]

from clickscore.core import runs
from clickscore.core.config import RunKey
from clickscore.core.contracts import table_schema
from clickscore.core.spark import get_spark

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # keys of the benchmark's runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="timed runs of each kind")
    parser.add_argument("--history", type=int, default=40, help="runs already in the table")
    args = parser.parse_args()
    spark = get_spark(tempfile.mkdtemp(prefix="bench-runs-"), app_name="bench-runs", conf={
        "spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"})
    for i in range(args.history):
        with runs.tracked_run(spark, "history", RunKey.at(EPOCH + timedelta(days=i))):
            pass

    def reference(i: int) -> None:  # a finished row in one append
        now = datetime.now(UTC)
        row = {"run_id": f"ref-{i}", "job": "reference", "run_key": f"r{i}",
               "run_kind": "instant",
               "status": "succeeded", "started_at": now, "finished_at": now, "duration_s": 0.0}
        (spark.createDataFrame([row], table_schema(runs.RUNS_TABLE).struct)
         .writeTo(runs.RUNS_TABLE).append())

    def tracked(i: int) -> None:
        with runs.tracked_run(spark, "tracked", RunKey.at(EPOCH + timedelta(hours=i))):
            pass

    seconds: dict[str, list[float]] = {"reference": [], "tracked": []}
    for i in range(args.runs):  # interleaved, so drift hits both alike
        for name, fn in (("reference", reference), ("tracked", tracked)):
            started = time.perf_counter()
            fn(i)
            seconds[name].append(time.perf_counter() - started)
    parts: dict[str, list[float]] = {"abandoned-run scan": [], "running row": [], "update": []}
    for i in range(args.runs):
        run = runs.Run(run_id=f"part-{i}", job="parts", key=RunKey.at(EPOCH + timedelta(
            minutes=i)), source=None)
        steps = {
            "abandoned-run scan": lambda r=run: runs.abandon_dead_runs(
                spark, "parts", r.key, found_by="bench"),
            "running row": lambda r=run: runs._start(spark, r),
            "update": lambda r=run: runs._finish(spark, r, 0.0, "succeeded", None),
        }
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            parts[name].append(time.perf_counter() - started)
    figures = {k: round(statistics.median(v), 3) for k, v in seconds.items()}
    figures["ratio"] = round(figures["tracked"] / figures["reference"], 2)
    figures["parts"] = {k: round(statistics.median(v), 3) for k, v in parts.items()}
    print(f"run record: {figures['tracked']:.3f} s per run (median of {args.runs}); reference, "
          f"one append of a finished row: {figures['reference']:.3f} s; ratio "
          f"{figures['ratio']:.2f}")
    print("parts: " + ", ".join(f"{k} {v:.3f} s" for k, v in figures["parts"].items()))
    save_figures("runs", figures)


if __name__ == "__main__":
    main()
