"""The console script in separate processes: `--help` and a wrong command line, the demo, a busy
data root, and a job submitted with spark-submit (its settings) whose tables resolve by name in
later processes through a shared metastore while a job runs. The commands' own behaviour
(output formats, failures in one line) is tested in this process
(tests/integration/test_invoke.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickscore import registry
from clickscore.core.spark import shared_metastore
from tests.integration.helpers import CLI, run_cli

pytestmark = pytest.mark.integration

run = run_cli  # the CLI in a process of its own


def test_help_lists_the_stages_and_bad_arguments_exit_2():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for stage in ("generate", "ingest", "sessionize", "vocab", "features", "training-examples",
                  "dq", "sql", "demo"):
        assert stage in out
    bad = subprocess.run([*CLI, "sessionize", "--run-date", "yesterday"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "YYYY-MM-DD or 'all'" in bad.stderr


def test_the_demo_runs_every_stage_within_its_line_budget(demo):
    """`clickscore demo` shows each stage's summary line, training's progress per epoch, the
    model next to its baselines on validation and test with the scorer chosen for each head,
    and the summary tables, not the chatter of Spark, Ivy, the metastore, GX or MLflow: at
    most 60 lines before training arrived, 85 with it, 88 with the run report's line, 101
    with the validation table and the heads, 105 with a row per cutoff (seven, not three) in
    the training examples' table."""
    root, demo = demo
    assert demo.returncode == 0, demo.stderr[-3000:]
    # no file of the data root (quarantined lines, scores, the registry, run records, the
    # lock) is readable by other users: the default umask 007, Spark's files included
    shared = [f"{oct(p.stat().st_mode & 0o777)} {p.relative_to(root)}" for p in
              [root, *root.rglob("*")] if p.stat().st_mode & 0o007]
    assert shared == [], shared[:20]
    assert any(p.suffix == ".parquet" for p in root.rglob("*"))  # Spark's files were looked at
    lines = (demo.stdout + demo.stderr).splitlines()
    assert len(lines) <= 105, "\n".join(lines)
    summaries = [line for line in lines if re.search(
        r": [\d,]+ in -> [\d,]+ out.*; (gate passed|no gate); [\d.]+s$", line)]
    days = ("2019-10-01", "2019-10-02", "2019-10-03")
    expected = ([f"{stage} {day}:" for day in days for stage in ("ingest", "sessionize")]
                + ["training_examples 2019-10-02T00:00:00+00:00..2019-10-03T18:00:00+00:00:",
                   "train gold.training_examples@v1:",
                   # scoring the last day rebuilds its features first, as its own run
                   "features 2019-10-04T00:00:00+00:00:", "score 2019-10-03:"])
    assert [line.split(" ", 1)[1].split(": ")[0] + ":" for line in summaries] == expected
    assert len([line for line in lines if " train epoch " in line]) == 3
    for method in ("model", "most_popular", "recently_viewed", "item_knn",
                   "logistic_regression", "hist_gradient_boosting"):
        assert any(line.startswith(method + " ") for line in lines), method
    # the champion's next-item head is at least the best baseline on validation, whichever
    # scorer holds it (the sequence model only where it beat them); the rows record it
    heads = registry.heads(str(root), "champion")
    logged = registry.client(str(root)).get_run(
        registry.resolve_version(str(root), "champion").run_id).data.metrics
    baselines = {m: logged[f"val_{m}_ndcg_all_at_20"] for m in
                 ("most_popular", "recently_viewed", "item_knn")}
    assert logged[registry.VALIDATION_METRIC] >= max(baselines.values()), (heads, baselines)
    assert logged[registry.VALIDATION_METRIC] == logged[
        f"val_{heads['next_item']}_ndcg_all_at_20"]
    assert any(line.startswith(f"next item head: {heads['next_item']} (") for line in lines)
    # every run is in the runs table, the first day's included
    table = demo.stdout.split("Pipeline runs (ops.pipeline_runs):")[1].split("\n\n")[0]
    assert len(table.strip().splitlines()) == 1 + len(expected)
    assert "2019-10-01 succeeded" in table
    # the demo ends with the top of the score table: five users, best first
    scores = demo.stdout.split("Top of the score table (gold.user_scores_latest):")[1]
    rows = scores.strip().splitlines()[1:6]
    assert len(rows) == 5 and all(" 2019-10-03 " in row for row in rows), scores
    # source, user_id, score_date, purchase_propensity, decile, version, and the two scorers
    assert all(row.split()[0] == "rees46" for row in rows), scores
    propensities = [float(row.split()[3]) for row in rows]
    assert propensities == sorted(propensities, reverse=True)
    assert all(row.split()[6:8] == [heads["propensity"], heads["next_item"]] for row in rows)
    # and the path of the last day's run report (tests/integration/test_report_and_notebooks.py)
    assert f"Run report of 2019-10-03: {root}/reports/report-2019-10-03.html" in demo.stdout


def test_a_second_process_on_a_busy_data_root_waits_then_fails_in_one_line(tmp_path):
    """The embedded catalog admits one process: another one waits up to
    $CLICKSCORE_CATALOG_WAIT_S saying which root is busy and who holds it, then fails with one
    line (no Derby stack traces), and runs once the root is free. The root named as a
    `file://` URI, from other working directories (each Airflow task has its own), is the same
    root: the same lock, one catalog, one registry."""
    root = tmp_path / "busy root"
    uri = root.as_uri()
    elsewhere, further = tmp_path / "a task's folder", tmp_path / "another task's"
    elsewhere.mkdir()
    further.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from clickscore.core.spark import hold_data_root\n"
         "hold_data_root(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(root)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = subprocess.run([*CLI, "sql", "SELECT 41 + 1 AS answer", "--data-root", uri],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "CLICKSCORE_CATALOG_WAIT_S": "3"},
                              cwd=elsewhere)
        assert busy.returncode == 1
        lines = (busy.stdout + busy.stderr).strip().splitlines()
        assert len(lines) == 2, lines
        assert f"data root {root.resolve()} is busy (pid {holder.pid} on " in lines[0]
        # the holder's command, not its arguments (here the root; elsewhere maybe a secret),
        # in a lock file that other users cannot read
        assert lines[0].endswith(": python); waiting up to 3 s"), lines[0]
        assert (root / ".clickscore.lock").stat().st_mode & 0o007 == 0
        assert "sql failed: data root" in lines[1] and "gave up after 3 s" in lines[1]
    finally:
        holder.kill()
        holder.wait()
    free = run("sql", "SELECT 41 + 1 AS answer", "--format", "csv", data_root=uri,
               cwd=elsewhere)
    assert free.returncode == 0, free.stderr[-3000:]
    assert free.stdout.split() == ["answer", "42"]
    listed = run("models", "list", data_root=f"file:{root}", cwd=further)
    assert listed.returncode == 0, listed.stderr[-3000:]
    # one catalog and one registry, in the root; nothing in the working directories
    assert (root / "metastore_db").is_dir() and (root / "mlflow" / "mlflow.db").is_file()
    assert [p.name for p in (*elsewhere.iterdir(), *further.iterdir())] == []


def jvm_command_lines(marker: str) -> list[str]:
    """The command lines of the running JVMs that mention `marker` (as `ps` shows them)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:  # ended meanwhile
            continue
        line = b" ".join(argv).decode(errors="replace")
        if argv and argv[0].endswith(b"/java") and marker in line:
            found.append(line)
    return found


def test_a_submitted_job_keeps_its_settings_and_analysts_query_by_name_while_a_job_runs(
        spark, tmp_path, rees46_file, postgres):
    """jobs/*.py through spark-submit: --master and --conf from the submitter's command line
    win over the environment's defaults. With $CLICKSCORE_METASTORE_URL the catalog is in
    PostgreSQL: the tables the submitted job made resolve by name in later processes, and a
    job and an analyst's query use one data root at once, the query answering in full. (One
    submitted JVM serves the spark-submit and the by-name proofs; the standalone cluster test
    submits to a master, reading by name through the embedded catalog.)"""
    from tests.integration import postgres as pg

    root = tmp_path / "shared"
    env = {**os.environ, "CLICKSCORE_DRIVER_MEMORY": "1g",
           "CLICKSCORE_SPARK_MASTER": "local[1]", "PYSPARK_PYTHON": sys.executable,
           "CLICKSCORE_METASTORE_URL": pg.create_database(postgres, "metastore"),
           "CLICKSCORE_METASTORE_USER": pg.USER, "CLICKSCORE_METASTORE_PASSWORD": pg.PASSWORD}

    # the README's spark-submit: Delta through --packages, the metastore's JDBC driver on the
    # driver's class path; the environment asks for local[2] and the submitter's local[1] wins
    driver_jar = shared_metastore(env["CLICKSCORE_METASTORE_URL"])["spark.driver.extraClassPath"]
    submitted = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
         "--driver-memory", "1g", "--packages", "io.delta:delta-spark_2.13:4.0.1",
         "--driver-class-path", driver_jar, "--conf", "spark.sql.shuffle.partitions=3",
         str(Path(__file__).resolve().parents[2] / "jobs" / "ingest.py"),
         "--source", "rees46", "--input", str(rees46_file), "--run-date", "2019-10-01",
         "--data-root", str(root), "--verbose"],
        capture_output=True, text=True, env={**env, "CLICKSCORE_SPARK_MASTER": "local[2]"},
        timeout=600, check=False, cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    # spark-submit sends the driver's log to stdout; --verbose shows the debug lines
    logs = submitted.stdout + submitted.stderr
    assert "master=local[1] submitted=True shuffle.partitions=3" in logs
    assert "'input_rows': 17434" in logs
    assert pg.PASSWORD not in logs
    assert not (root / "metastore_db").exists()  # no embedded catalog was made
    assert spark.read.format("delta").load(str(root / "warehouse" / "bronze.db" / "events")
                                           ).count() == 17434

    def cli(*args: str) -> subprocess.Popen:
        return subprocess.Popen([*CLI, *args, "--data-root", str(root)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # the job, and an analyst reading by name what the submitted job made, at once (one
    # analyst's process: a second one costs a JVM and proves nothing the first does not)
    job = cli("sessionize", "--run-date", "2019-10-01")
    analyst = cli("sql", "SELECT coalesce(event_type, 'all') AS event_type, count(*) AS n "
                  "FROM bronze.events GROUP BY ROLLUP (event_type) ORDER BY 1", "--format",
                  "json")
    # their JVMs' command lines, which any local user can list, carry no password
    seen: set[str] = set()
    while job.poll() is None and len(seen) < 2:
        seen |= set(jvm_command_lines(str(root)))
        time.sleep(0.2)
    assert seen and not [c for c in seen if pg.PASSWORD in c], sorted(seen)
    grouped, err = analyst.communicate(timeout=600)
    _, job_err = job.communicate(timeout=600)
    assert job.returncode == 0, job_err[-3000:]
    assert analyst.returncode == 0, err[-3000:]
    assert [json.loads(line) for line in grouped.splitlines() if line.startswith("{")] == [
        {"event_type": "all", "n": 17434}, {"event_type": "cart", "n": 165},
        {"event_type": "purchase", "n": 214}, {"event_type": "view", "n": 17_055}]
    sessions = spark.read.format("delta").load(str(root / "warehouse" / "silver.db" /
                                                   "sessions"))
    assert sessions.count() > 1000
