"""clickscore_daily: one day of clickstream to published scores, every night.

ingest -> sessionize -> features -> score -> export, each a `spark-submit` of one stage's job
with the packaged code. The data-quality gates live inside the jobs: a failed gate fails its
task (nothing published) and stops everything after it. `catchup` backfills missed days, one
run at a time, oldest first (`max_active_runs=1`: every stage reads what the previous day
published). The scores of day D are due by 06:00 UTC the day after (a deadline alert).
Connections and variables: see clickscore_common.py.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference
from airflow.timetables.interval import CronDataIntervalTimetable
from clickscore_common import (
    TAGS,
    WAREHOUSE_CONN,
    deadlines,
    default_args,
    stage,
    start_date,
    var,
)

RUN_DATE = "{{ ds }}"  # the data interval's day: the run of 2019-10-01 starts after it ends
WAREHOUSE = "{{ conn." + WAREHOUSE_CONN + ".%s }}"

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
    ingest = stage("ingest", "ingest", [
        "--source", var("clickscore_source", "rees46"),
        "--input", "{{ var.value.clickscore_landing | replace('{ds}', ds) }}",
        "--run-date", RUN_DATE,
    ])
    sessionize = stage("sessionize", "sessionize", ["--run-date", RUN_DATE])
    # gold.user_features at the end of the day, built as the champion reads them
    features = stage("features", "features", [
        "--as-of", "{{ macros.ds_add(ds, 1) }}", "--model-version", "champion"])
    score = stage("score", "score", ["--run-date", RUN_DATE, "--reuse-features"],
                  execution_timeout=timedelta(hours=4))
    export = stage("export", "export", [
        "--run-date", RUN_DATE,
        "--jdbc-url", "jdbc:postgresql://" + WAREHOUSE % "host" + ":" + WAREHOUSE % "port"
        + "/" + WAREHOUSE % "schema"],
        env_vars={"CLICKSCORE_JDBC_USER": WAREHOUSE % "login",
                  "CLICKSCORE_JDBC_PASSWORD": WAREHOUSE % "password"})

    ingest >> sessionize >> features >> score >> export
