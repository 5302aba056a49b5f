"""clickscore_daily: one day of clickstream to published scores, every night.

wait_for_landing -> ingest -> sessionize -> previous_day_published -> features -> score ->
export, each stage a `spark-submit` of its job with the packaged code. The run first waits for
its landing file (a sensor in reschedule mode: it holds no worker slot between looks, and fails
clearly after $CLICKSCORE_LANDING_TIMEOUT, 12 h by default). The data-quality gates live inside
the jobs: a failed gate fails its task (nothing published) and stops everything after it. A
day D+1 is not scored without day D: `previous_day_published` fails D+1 (before its features)
unless D's run succeeded; its ingest and sessionize still run, and once D is repaired, clearing
D+1 redoes it. `catchup` backfills missed days, one run at a time, oldest first
(`max_active_runs=1`: every stage reads what the previous day published). The scores of day D
are due by 06:00 UTC the day after (a deadline alert), and every task has an execution
timeout; a task failing for good and a missed deadline e-mail the `clickscore_alerts`
connection's recipients. Connections and variables: see clickscore_common.py.

Run the notebooks and the training DAG against the shared metastore
($CLICKSCORE_METASTORE_URL) when they share a data root with this DAG: with the embedded
catalog one process holds the root at a time, and a daily task waits for a notebook kernel or a
training task holding it (its log names the holder), which can push the scores past their
deadline.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference
from airflow.timetables.interval import CronDataIntervalTimetable
from clickscore_common import (
    TAGS,
    WAREHOUSE_CONN,
    deadlines,
    default_args,
    duration,
    landed,
    previous_day_published,
    stage,
    start_date,
    task_timeout,
    var,
)

RUN_DATE = "{{ ds }}"  # the data interval's day: the run of 2019-10-01 starts after it ends
WAREHOUSE = "{{ conn." + WAREHOUSE_CONN + ".%s }}"
LANDING = "{{ var.value.clickscore_landing | replace('{ds}', ds) }}"

with DAG(
    dag_id="clickscore_daily",
    description="ingest -> sessionize -> features -> score -> export, one day at a time",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=start_date("2019-10-01"),
    catchup=True,
    max_active_runs=1,
    default_args=default_args("clickscore"),
    tags=[*TAGS, "daily"],
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=30),  # the day's end + 6 h
        callback=AsyncCallback("clickscore_common.scores_late"),
    ) if deadlines() else None,
    doc_md=__doc__,
) as dag:
    landing = PythonSensor(
        task_id="wait_for_landing", python_callable=landed, op_kwargs={"pattern": LANDING},
        mode="reschedule",
        poke_interval=duration(os.environ.get("CLICKSCORE_LANDING_POKE", "5m")),
        timeout=duration(os.environ.get("CLICKSCORE_LANDING_TIMEOUT", "12h")),
        retries=0)  # its timeout is final: the file did not come
    ingest = stage("ingest", "ingest", [
        "--source", var("clickscore_source", "rees46"), "--input", LANDING,
        "--run-date", RUN_DATE,
    ])
    sessionize = stage("sessionize", "sessionize", ["--run-date", RUN_DATE])
    day_before = PythonOperator(task_id="previous_day_published",
                                python_callable=previous_day_published,
                                execution_timeout=task_timeout("previous_day_published"))
    # gold.user_features at the end of the day, built as the champion reads them
    features = stage("features", "features", [
        "--as-of", "{{ macros.ds_add(ds, 1) }}", "--model-version", "champion"])
    score = stage("score", "score", ["--run-date", RUN_DATE, "--reuse-features"])
    export = stage("export", "export", [
        "--run-date", RUN_DATE,
        "--jdbc-url", "jdbc:postgresql://" + WAREHOUSE % "host" + ":" + WAREHOUSE % "port"
        + "/" + WAREHOUSE % "schema"],
        env_vars={"CLICKSCORE_JDBC_USER": WAREHOUSE % "login",
                  "CLICKSCORE_JDBC_PASSWORD": WAREHOUSE % "password"})

    landing >> ingest >> sessionize >> day_before >> features >> score >> export
