"""A job killed (`SIGKILL` to the driver's process tree) where it has committed part of its
output: the next run of the same date gives the tables of a run never interrupted, nothing is
duplicated, and ops.pipeline_runs shows every attempt (the killed ones `abandoned`).

Ingest and sessionize are the stages that commit two tables; `published` (tables written, run
row still `running`) is the stage runner's, the same for every stage, so features, training
examples and scoring, which publish one table each, are not killed again here, nor is a run
after `staged`, before any commit, which every kill here passes through (CI time).

The killed runs and their reruns are the real CLI in subprocesses on their own data root,
paused at the named points with `CLICKSCORE_PAUSE_AT` (`core.faults`); the uninterrupted
reference runs in this test session at the same time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import generate
from tests.integration.helpers import assert_same_rows, ingest, sessionize

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "clickscore.cli"]
DAY = "2019-10-01"
RUN_COLUMNS = ("_ingested_at", "_run_id")  # when and by which run a row was written
TABLES = ("bronze.events", "quarantine.events", "silver.events", "silver.sessions")


def _stages(landing_file: Path) -> list[tuple[str, list[str], list[str]]]:
    """(job, CLI arguments, the points it is killed at, in turn, before the run that
    completes)."""
    return [
        ("ingest", ["ingest", "--source", "rees46", "--input", str(landing_file),
                    "--run-date", DAY], ["bronze-published"]),
        ("sessionize", ["sessionize", "--run-date", DAY],
         ["silver-events-published", "published"]),
    ]


def _cli(args: list[str], root: Path, log: Path, pause_at: str | None) -> subprocess.Popen:
    env = {**os.environ, "CLICKSCORE_DRIVER_MEMORY": "1g",
           "CLICKSCORE_SPARK_MASTER": "local[2]"}
    env.pop("CLICKSCORE_PAUSE_AT", None)
    if pause_at:
        env["CLICKSCORE_PAUSE_AT"] = pause_at
    with open(log, "w") as out:
        return subprocess.Popen([*CLI, *args, "--data-root", str(root)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its own group: the JVM dies too


def _kill_when_paused(process: subprocess.Popen, log: Path, point: str) -> int:
    """Wait for the pause line, then SIGKILL the driver's whole process group; its pid."""
    deadline = time.monotonic() + 600
    while f"paused at {point}" not in log.read_text():
        assert process.poll() is None, f"ended before {point}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    return process.pid


def _killed_chain(spark, root: Path, landing_file: Path, logs: Path, seen: dict) -> None:
    """Each stage killed at each of its points, then run to the end; what a reader finds
    between sessionize's two silver commits is left in `seen` for the test."""
    for job, args, points in _stages(landing_file):
        for point in points:
            log = logs / f"{job}-{point}.log"
            pid = _kill_when_paused(_cli(args, root, log, f"{job}:{point}"), log,
                                    f"{job}:{point}")
            seen.setdefault("killed", []).append((job, point, pid))
            if point == "silver-events-published":
                seen["between silver commits"] = {
                    t: spark.read.format("delta").load(_path(root, t)).count()
                    for t in ("silver.events", "silver.sessions")}
        log = logs / f"{job}.log"
        finished = _cli(args, root, log, None)
        assert finished.wait(timeout=900) == 0, log.read_text()[-4000:]
        seen.setdefault("finished", []).append(job)


def _path(root: Path, table: str) -> str:
    database, name = table.split(".")
    return f"{root}/warehouse/{database}.db/{name}"


def test_a_run_killed_after_a_partial_commit_is_repaired_by_the_next_run_of_its_date(
        spark, data_root, warehouse_states, tmp_path):
    landing = tmp_path / "landing"
    manifest = generate(GenerateConfig(output_dir=str(landing), days=1, users=300, items=400,
                                       seed=5))
    landing_file = landing / manifest["files"][0]
    root, logs = tmp_path / "killed", tmp_path / "logs"
    logs.mkdir()
    seen: dict = {}
    failures: list[BaseException] = []

    def chain() -> None:
        try:
            _killed_chain(spark, root, landing_file, logs, seen)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    # the killed chain in subprocesses while this session runs the same stages uninterrupted
    worker = threading.Thread(target=chain)
    worker.start()

    warehouse_states.start_from("kill-reference", lambda: {
        "ingest": ingest(spark, data_root, "rees46", landing_file, DAY),
        "sessionize": sessionize(spark, data_root, DAY)})
    worker.join(timeout=1800)
    assert not worker.is_alive(), "the killed chain did not finish"
    if failures:
        raise failures[0]
    assert seen["finished"] == ["ingest", "sessionize"]

    # the rerun repaired every table: the content of an uninterrupted run, nothing twice
    for table in TABLES:
        ours = spark.table(table)
        theirs = spark.read.format("delta").load(_path(root, table))
        columns = [c for c in ours.columns if c not in RUN_COLUMNS]
        assert ours.count() > 0, table
        assert_same_rows(ours.select(columns), theirs.select(columns), table)

    # between sessionize's two commits a reader finds the date's events and no sessions yet
    # (the README says so); the run that repaired them is the next one
    events = spark.table("silver.events").count()
    assert seen["between silver commits"] == {"silver.events": events, "silver.sessions": 0}

    # every attempt is in ops.pipeline_runs: the killed ones abandoned, found by the rerun
    runs = (spark.read.format("delta").load(_path(root, "ops.pipeline_runs"))
            .orderBy("started_at").collect())
    for job, _, points in _stages(landing_file):
        attempts = [r for r in runs if r.job == job]
        assert [r.status for r in attempts] == ["abandoned"] * len(points) + ["succeeded"], job
        finisher = attempts[-1]
        for r, (_, point, pid) in zip(attempts, [k for k in seen["killed"] if k[0] == job],
                                      strict=False):
            assert r.pid == pid and r.host == finisher.host, (job, point)
            assert r.finished_at is not None and r.duration_s is None
            assert f"abandoned: process {pid} on {r.host}" in r.error
        # found by the next run of the date: the one right after it
        assert f"by run {finisher.run_id}" in attempts[-2].error
        assert finisher.finished_at is not None and finisher.error is None
    # the silver versions that agree, for readers who pin them
    sessionized = [r for r in runs if r.job == "sessionize"][-1]
    assert json.loads(sessionized.details)["published_versions"] == {
        t: spark.sql(f"DESCRIBE HISTORY delta.`{_path(root, t)}`").first()["version"]
        for t in ("silver.events", "silver.sessions")}


def test_a_runs_table_from_before_run_records_gets_host_and_pid_and_a_killed_run_is_found(
        spark, data_root):
    from clickscore.core import runs
    from clickscore.core.config import RunKey

    spark.sql("DROP TABLE IF EXISTS ops.pipeline_runs")
    # the contract before runs were recorded at their start
    spark.sql("""CREATE TABLE ops.pipeline_runs (run_id STRING NOT NULL, job STRING NOT NULL,
        run_date STRING NOT NULL, source STRING, status STRING NOT NULL, input_rows BIGINT,
        output_rows BIGINT, quarantined_rows BIGINT, duplicate_rows BIGINT,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL,
        duration_s DOUBLE NOT NULL, error STRING, details STRING) USING DELTA""")
    spark.sql("""INSERT INTO ops.pipeline_runs VALUES ('old', 'ingest', '2019-10-01', NULL,
        'succeeded', 1, 1, 0, 0, TIMESTAMP'2019-10-02 00:00:00', TIMESTAMP'2019-10-02 00:01:00',
        60.0, NULL, '{}'), ('old-train', 'train', 'gold.training_examples@v3', NULL,
        'succeeded', 1, 1, 0, 0, TIMESTAMP'2019-10-02 00:00:00', TIMESTAMP'2019-10-02 00:01:00',
        60.0, NULL, '{}')""")
    runs._checked.clear()  # as a new process would
    day = RunKey.parse("2019-10-01")
    with runs.tracked_run(spark, "ingest", day) as run:
        running = spark.table("ops.pipeline_runs").where(f"run_id = '{run.run_id}'").first()
        assert (running.status, running.pid, running.finished_at) == ("running", os.getpid(),
                                                                       None)
        run.counts = runs.RunCounts(input_rows=2, output_rows=2)
    rows = {r.run_id: r for r in spark.table("ops.pipeline_runs").collect()}
    assert rows["old"].status == "succeeded" and rows["old"].pid is None
    # the key it was recorded under was `run_date`: renamed, and its kind read from its form
    assert [(r.run_key, r.run_kind) for r in (rows["old"], rows["old-train"], rows[run.run_id])
            ] == [("2019-10-01", "date"), ("gold.training_examples@v3", "version"),
                  ("2019-10-01", "date")]
    assert "run_date" not in spark.table("ops.pipeline_runs").columns
    assert rows[run.run_id].status == "succeeded" and rows[run.run_id].output_rows == 2

    # a row left running elsewhere is abandoned by the next run of its job and date (this
    # process holds the data root: no other process can be using its catalog), not by
    # another date's
    spark.sql("""INSERT INTO ops.pipeline_runs (run_id, job, run_key, status, started_at,
        host, pid) VALUES ('dead', 'ingest', '2019-10-01', 'running',
        TIMESTAMP'2019-10-03 00:00:00', 'elsewhere', 7),
        ('other-date', 'ingest', '2019-10-02', 'running', TIMESTAMP'2019-10-03 00:00:00',
        'elsewhere', 7)""")
    assert runs.abandon_dead_runs(spark, "ingest", day, found_by="me") == ["dead"]
    rows = {r.run_id: r for r in spark.table("ops.pipeline_runs").collect()}
    assert rows["dead"].status == "abandoned" and "found at" in rows["dead"].error
    assert rows["dead"].error.endswith("by run me")
    assert rows["other-date"].status == "running"
