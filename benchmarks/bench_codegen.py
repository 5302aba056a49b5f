"""Code generation benchmark: what Spark's generated code costs a stage run on a small batch,
the size the test suite runs.

    python benchmarks/bench_codegen.py [--days 3] [--users 300]

Runs dated ingest and sessionize of `--days` generated days (the first day warms the JVM and
is not counted) once per setting, each in a fresh process and data root: Spark's default
(whole-stage code generation, compiled projections), whole-stage code generation off (every
test JVM's setting, tests/conftest.py), and everything interpreted
(`spark.sql.codegen.factoryMode=NO_CODEGEN`, which the tests cannot use: it breaks
`spark.catalog.listTables`). Prints per setting the wall seconds and the JVM's CPU seconds
of the counted runs, and their ratio to the default measured in the same invocation; writes
benchmarks/out/codegen.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench_etl import save_figures  # type: ignore[import-not-found]

SETTINGS = {
    "default": {},
    "whole-stage off": {"spark.sql.codegen.wholeStage": "false"},
    "interpreted": {"spark.sql.codegen.wholeStage": "false",
                    "spark.sql.codegen.factoryMode": "NO_CODEGEN"},
}


def _jvm_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(days: int, users: int, conf: dict[str, str]) -> dict[str, float]:
    """The counted runs' wall and JVM CPU seconds under `conf`, in this process."""
    from clickscore.core.config import RunDate
    from clickscore.core.spark import get_spark
    from clickscore.demo.config import GenerateConfig
    from clickscore.demo.generator import generate
    from clickscore.ingest.config import IngestConfig
    from clickscore.ingest.job import run_ingest
    from clickscore.sessionize.config import SessionizeConfig
    from clickscore.sessionize.job import run_sessionize

    root = tempfile.mkdtemp(prefix="bench-codegen-")
    spark = get_spark(root, app_name="bench-codegen", conf={
        "spark.master": "local[2]", "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "4", "spark.databricks.delta.snapshotPartitions": "2",
        **conf})
    jvm = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    gen = GenerateConfig(output_dir=f"{root}/landing", days=days, users=users, seed=5)
    files = generate(gen)["files"]
    wall = cpu = 0.0
    for offset, name in enumerate(files):
        day = RunDate(gen.start_date + timedelta(days=offset))
        started, cpu_before = time.perf_counter(), _jvm_cpu_s(jvm)
        run_ingest(spark, IngestConfig(source="rees46", input_path=f"{root}/landing/{name}",
                                       run_date=day, data_root=root))
        run_sessionize(spark, SessionizeConfig(run_date=day, data_root=root))
        if offset:  # the first day warms the JVM up
            wall += time.perf_counter() - started
            cpu += _jvm_cpu_s(jvm) - cpu_before
    return {"wall_s": round(wall, 1), "jvm_cpu_s": round(cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3, help="generated days (the first warms)")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a setting, run in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.days, args.users, SETTINGS[args.one])))
        return
    figures: dict[str, dict[str, float]] = {}
    env = {**os.environ, "CLICKSCORE_DATA_DOCS": "off"}
    for name in SETTINGS:
        done = subprocess.run([sys.executable, __file__, "--one", name, "--days",
                               str(args.days), "--users", str(args.users)], env=env,
                              capture_output=True, text=True, check=True)
        figures[name] = json.loads(done.stdout.strip().splitlines()[-1])
    base = figures["default"]
    for name, got in figures.items():
        got["wall_ratio"] = round(got["wall_s"] / base["wall_s"], 2)
        got["cpu_ratio"] = round(got["jvm_cpu_s"] / base["jvm_cpu_s"], 2)
        print(f"{name:16s} wall {got['wall_s']:6.1f} s  JVM CPU {got['jvm_cpu_s']:6.1f} s  "
              f"vs default: wall x{got['wall_ratio']:.2f}, CPU x{got['cpu_ratio']:.2f}")
    save_figures("codegen", figures)


if __name__ == "__main__":
    main()
