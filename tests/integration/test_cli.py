"""The console script in separate processes: tables written by one process resolve by name in
the next (persistent catalog), `sql` prints CSV/JSON, failures exit non-zero with a message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "clickscore.cli"]


def run(*args: str, data_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLICKSCORE_DRIVER_MEMORY": "1g", "CLICKSCORE_SPARK_MASTER": "local[1]"}
    return subprocess.run([*CLI, *args, "--data-root", str(data_root)], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def test_tables_resolve_by_name_from_a_later_process(tmp_path, rees46_file):
    root = tmp_path / "root"
    ingest = run("ingest", "--source", "rees46", "--input", str(rees46_file),
                 "--run-date", "2019-10-01", data_root=root)
    assert ingest.returncode == 0, ingest.stderr[-3000:]

    query = run("sql", "SELECT event_type, count(*) AS n FROM bronze.events GROUP BY 1 "
                "ORDER BY 1", "--format", "json", data_root=root)
    assert query.returncode == 0, query.stderr[-3000:]
    rows = [json.loads(line) for line in query.stdout.splitlines() if line.startswith("{")]
    assert rows == [{"event_type": "cart", "n": 165}, {"event_type": "purchase", "n": 214},
                    {"event_type": "view", "n": 17_055}]

    checked = run("dq", "run", "--table", "bronze.events", "--run-date", "2019-10-01",
                  data_root=root)
    assert checked.returncode == 0, checked.stderr[-3000:]
    report = run("dq", "report", "--run-date", "2019-10-01", "--format", "csv", data_root=root)
    assert report.returncode == 0, report.stderr[-3000:]
    outcomes = [line.split(",") for line in report.stdout.splitlines()
                if line.startswith("2019-10-01,bronze.events,")]
    assert sorted(row[2] for row in outcomes) == ["dq_run", "ingest"]
    assert {row[7] for row in outcomes} == {"published", "on demand"}
    assert f"Data Docs: {root / 'dq' / 'gx'}" in report.stdout

    bad = run("ingest", "--source", "rees46", "--input", str(tmp_path / "missing*.csv"),
              "--run-date", "2019-10-01", data_root=root)
    assert bad.returncode == 1
    assert "input not found" in bad.stderr and "missing*.csv" in bad.stderr


def test_help_lists_the_stages_and_bad_arguments_exit_2():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for stage in ("generate", "ingest", "sessionize", "vocab", "features", "training-examples",
                  "dq", "sql", "demo"):
        assert stage in out
    bad = subprocess.run([*CLI, "sessionize", "--run-date", "yesterday"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "YYYY-MM-DD or 'all'" in bad.stderr


def test_a_job_under_spark_submit_keeps_the_submitters_master_and_conf(tmp_path, rees46_file):
    """jobs/*.py run through spark-submit: --master and --conf from the command line win."""
    spark_submit = Path(sys.executable).parent / "spark-submit"
    root = tmp_path / "submitted"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "--driver-memory", "1g",
         "--packages", "io.delta:delta-spark_2.13:4.0.1",
         "--conf", "spark.sql.shuffle.partitions=3",
         str(Path(__file__).resolve().parents[2] / "jobs" / "ingest.py"),
         "--source", "rees46", "--input", str(rees46_file), "--run-date", "2019-10-01",
         "--data-root", str(root), "--verbose"],
        capture_output=True, text=True, env=env, timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # spark-submit sends the driver's log to stdout; --verbose shows the debug lines
    logs = result.stdout + result.stderr
    assert "master=local[1] submitted=True shuffle.partitions=3" in logs
    assert "'input_rows': 17434" in logs
    query = run("sql", "SELECT count(*) AS n FROM bronze.events", "--format", "csv",
                data_root=root)
    assert query.returncode == 0, query.stderr[-3000:]
    assert query.stdout.split() == ["n", "17434"]


def test_the_demo_runs_every_stage_within_its_line_budget(tmp_path):
    """`clickscore demo` shows each stage's summary line, training's progress per epoch, the
    model next to its baselines and the summary tables, not the chatter of Spark, Ivy, the
    metastore, GX or MLflow: at most 60 lines before training arrived, 85 with it."""
    demo = run("demo", "--days", "3", "--users", "300", "--epochs", "3",
               data_root=tmp_path / "demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    lines = (demo.stdout + demo.stderr).splitlines()
    assert len(lines) <= 85, "\n".join(lines)
    summaries = [line for line in lines if re.search(
        r": [\d,]+ in -> [\d,]+ out.*; (gate passed|no gate); [\d.]+s$", line)]
    days = ("2019-10-01", "2019-10-02", "2019-10-03")
    expected = ([f"{stage} {day}:" for day in days for stage in ("ingest", "sessionize")]
                + ["training_examples 2019-10-02T12:00:00+00:00..2019-10-03T18:00:00+00:00:",
                   "train gold.training_examples@v1:",
                   # scoring the last day rebuilds its features first, as its own run
                   "features 2019-10-04T00:00:00+00:00:", "score 2019-10-03:"])
    assert [line.split(" ", 1)[1].split(": ")[0] + ":" for line in summaries] == expected
    assert len([line for line in lines if " train epoch " in line]) == 3
    for method in ("model", "most_popular", "recently_viewed", "item_knn",
                   "logistic_regression", "hist_gradient_boosting"):
        assert any(line.startswith(method + " ") for line in lines), method
    # every run is in the runs table, the first day's included
    table = demo.stdout.split("Pipeline runs (ops.pipeline_runs):")[1].split("\n\n")[0]
    assert len(table.strip().splitlines()) == 1 + len(expected)
    assert "2019-10-01 succeeded" in table
    # the demo ends with the top of the score table: five users, best first
    scores = demo.stdout.split("Top of the score table (gold.user_scores_latest):")[1]
    rows = scores.strip().splitlines()[1:6]
    assert len(rows) == 5 and all(" 2019-10-03 " in row for row in rows), scores
    propensities = [float(row.split()[2]) for row in rows]
    assert propensities == sorted(propensities, reverse=True)
