"""Every stage through spark-submit on a real standalone cluster (a master and two workers on
127.0.0.1) with the packaged code, on real Taobao data (one user in ten of the sample, with all
their events), both DAGs through Airflow (`airflow dags test`) as a first deployment would run
them: the daily DAG's first half (ingest and sessionize, checked against an independent
session count), the training DAG's Sunday in 3-minute units (vocabulary, training examples,
training with TorchDistributor in executor mode on workers that advertise a GPU, evaluation,
promotion of the version its run registered), then the daily DAG's second half (features,
score and export with that champion). Each task runs once
(every spark-submit costs this 2-core machine a driver and an executor JVM); each stage's
idempotence on a rerun of its date is tested in tests/integration, and so is a corrupted input
(`test_bad_inputs.py`: a truncated gzip fails the ingest naming the file and the cause, and
nothing is written; Airflow then runs nothing downstream, its default trigger rule, which
tests/dags checks is every task's). The tables are read by path from the test session's
Spark, never through the cluster."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from clickscore import registry
from tests.cluster.conftest import GPU_CONF, PY_FILES, airflow_submitting
from tests.conftest import TEST_SPARK_CONF
from tests.dags.conftest import airflow_cli, dags_test, task_states
from tests.integration import postgres as pg
from tests.integration.helpers import table_at, taobao_users_share
from tests.integration.test_real_data import taobao_sessions_in_duckdb

pytestmark = pytest.mark.integration

DAILY, TRAIN = "clickscore_daily", "clickscore_train"
DAY = "2017-11-26"  # the Taobao sample's day (01:00 to 03:10 of it)
# the training DAG's Sunday (2017-11-26 is one) at 03:00, its days 3-minute units: cutoffs
# 01:36, 01:45, 01:54 (train), 02:18 (validation), 02:39 (test), 21-minute labels
SUNDAY = f"{DAY}T03:00:00+00:00"
TRAIN_PARAMS = {"unit_s": 180, "lookback_s": 86400, "windows": "5m,15m,40m", "min_support": 1,
                "num_processes": 2, "epochs": 1}
# one executor where training is not in play: the stages are Spark jobs like any other, and a
# second executor JVM per submit only competes for this machine's two cores
ONE_EXECUTOR = {"spark.cores.max": "1"}


def runs(spark, root: Path) -> list:
    return (table_at(spark, root, "ops.pipeline_runs").orderBy("started_at")
            .select("job", "run_key", "status", "input_rows", "output_rows", "details",
                    "error")
            .collect())


@pytest.fixture
def warehouse_db():
    """A PostgreSQL server of this test's own (the export tests share the session's)."""
    server = pg.start(Path(tempfile.mkdtemp(prefix="clickscore-cluster-postgres-")))
    yield server
    server.stop()


def exported(spark, server, day: str) -> int:
    properties = {"user": pg.USER, "password": pg.PASSWORD, "driver": "org.postgresql.Driver"}
    return spark.read.jdbc(server.url, "user_scores", properties=properties).where(
        F.col("score_date") == day).count()


def test_every_stage_runs_on_a_standalone_cluster_and_both_dags_through_airflow(
        spark, cluster, taobao_file, warehouse_db, tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    sample = tmp_path / "taobao-tenth.csv.gz"  # one user in ten, with all their events
    sample_rows = taobao_users_share(taobao_file, sample)

    # Airflow against the cluster: ingest -> sessionize -> features -> score -> export
    home = tmp_path / "airflow"
    env = airflow_submitting(home, cluster.master_url, root, DAY, ONE_EXECUTOR, **{
        "AIRFLOW_CONN_CLICKSCORE_WAREHOUSE": (f"postgresql://{pg.USER}:{pg.PASSWORD}@127.0.0.1:"
                                              f"{warehouse_db.port}/postgres"),
        "AIRFLOW_VAR_CLICKSCORE_LANDING": str(sample),
        "AIRFLOW_VAR_CLICKSCORE_SOURCE": "taobao",
        "CLICKSCORE_DAG_DEADLINE": "off",  # see airflow_dags/clickscore_common.deadlines
    })
    migrated = airflow_cli(home, env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    # the README's backfill: the DAGs reach the metadata database, then the runs a backfill
    # of two dates would create (a dry run: the scheduler is not running here)
    for argv in (["dags", "reserialize"],
                 ["backfill", "create", "--dag-id", "clickscore_daily", "--from-date",
                  "2017-11-26", "--to-date", "2017-11-27", "--dry-run"]):
        done = airflow_cli(home, env, *argv, timeout=300)
        assert done.returncode == 0, (argv, done.stderr[-3000:])
    planned = re.findall(r"\| (2017-11-\d\d) 00:00:00\+00:00 ", done.stdout + done.stderr)
    assert planned == ["2017-11-26", "2017-11-27"], done.stdout[-3000:]

    # the day's first half through the DAG, the DAG's first day (no day before it to wait
    # for): its landing file, ingest, sessionize (no model exists yet: the scoring half waits
    # for training, which Airflow's --mark-success-pattern leaves out of this run)
    first = dags_test(home, env, DAILY, DAY, skip="^(features|score|export)$")
    assert set(task_states(home, env, DAILY)[1].values()) == {"success"}, first.stdout[-5000:]
    assert table_at(spark, root, "bronze.events").count() == sample_rows > 8_000
    assert table_at(spark, root, "silver.sessions").count() == taobao_sessions_in_duckdb(sample)

    # the training DAG's Sunday: training as Spark tasks on the two workers, each given a `gpu`
    # (its properties file: no spark.cores.max), then evaluate and promote the version it
    # registered (the first: there is no champion yet)
    train_properties = home / "spark-train.conf"
    train_properties.write_text("".join(f"{k} {v}\n" for k, v in {
        **TEST_SPARK_CONF, "spark.executor.memory": "1g", **GPU_CONF}.items()))
    env["AIRFLOW_VAR_CLICKSCORE_TRAIN_PROPERTIES"] = str(train_properties)
    week = dags_test(home, env, TRAIN, SUNDAY, conf=TRAIN_PARAMS)
    run_id, states = task_states(home, env, TRAIN)
    assert states == {"vocab": "success", "training_examples": "success",
                      "train_or_tune": "success", "train": "success", "tune": "skipped",
                      "evaluate": "success", "promote": "success"}, (
        states, (week.stdout + week.stderr)[-5000:])
    logs = week.stdout + week.stderr + "".join(
        p.read_text(errors="replace") for p in cluster.logs.glob("work*/**/std*"))
    assert "Spark assigned GPU 0 but CUDA sees no device here; training on the CPU" in logs
    succeeded = {r.job: json.loads(r.details) for r in runs(spark, root)
                 if r.status == "succeeded"}
    built, trained = succeeded["training_examples"], succeeded["train"]
    assert [c[11:16] for c in built["cutoffs"]] == ["01:36", "01:45", "01:54", "02:18",
                                                    "02:39"]
    assert trained["training_set"] == built["training_set"]
    assert trained["world_size"] == 2 and trained["device"] == "cpu"
    assert trained["model_version"] == "1"
    model, found = registry.load_model(str(root), "1")
    assert found.tags[registry.REGISTERED_BY] == f"{TRAIN}/{run_id}"
    assert model.cfg.training_set == built["training_set"]
    assert registry.aliases(str(root))["champion"] == "1"
    # the packaged code ran every task (the zip comes first on the path), not the source tree
    assert {d["code"] for d in succeeded.values()} == {
        f"clickscore 0.1.0 from {PY_FILES}/clickscore"}

    # the scoring half: features -> score -> export (ingest and sessionize ran above; their
    # rerun of a date is tested in tests/integration)
    second = dags_test(home, env, DAILY, DAY, skip="^(ingest|sessionize)$")
    assert set(task_states(home, env, DAILY)[1].values()) == {"success"}, second.stdout[-5000:]
    users = spark.sql(f"SELECT count(DISTINCT user_id) FROM delta.`{root}/warehouse/silver.db/"
                      "events`").first()[0]
    scores = table_at(spark, root, "gold.user_scores").where(F.col("score_date") == DAY)
    assert scores.count() == users > 1000
    assert scores.agg(F.collect_set("model_version")).first()[0] == ["1"]
    score_run = json.loads([r for r in runs(spark, root) if r.job == "score"][-1].details)
    features_run = json.loads([r for r in runs(spark, root) if r.job == "features"][-1].details)
    assert score_run["user_features_version"] == features_run["user_features_version"]
    assert exported(spark, warehouse_db, DAY) == users
