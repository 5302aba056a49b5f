"""What both clickscore DAGs share: one `SparkSubmitOperator` per stage, configured from
Airflow connections and variables only (nothing here reads a file or opens a session).

Connections:
  clickscore_spark      the Spark master (e.g. spark://host:7077, yarn, k8s://...)
  clickscore_warehouse  the relational warehouse the daily export writes to (host, port,
                        schema = database, login, password; the password is masked in logs)

Variables (`airflow variables set NAME VALUE`):
  clickscore_data_root  warehouse + catalog root (required)
  clickscore_home       folder holding jobs/ and dist/clickscore.zip (`make dist`) (required)
  clickscore_landing    the day's input file, `{ds}` replaced by the run date (daily DAG)
  clickscore_source     the input's source format (default rees46)
  clickscore_python     the Python of the driver and the executors, with clickscore's
                        dependencies installed (default python3)
  clickscore_packages   Maven coordinates for --packages (default: Delta + PostgreSQL JDBC);
                        empty when clickscore_jars lists the jar files instead
  clickscore_jars       comma-separated jar files for --jars (none by default)
  clickscore_properties a spark-submit properties file for every stage (executor sizes,
                        spark.cores.max on a shared standalone cluster); none by default
  clickscore_train_properties  a spark-submit properties file for training instead (GPU
                        executors: see deploy/spark-gpu.conf); none by default
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

SPARK_CONN = "clickscore_spark"
WAREHOUSE_CONN = "clickscore_warehouse"
PACKAGES = "io.delta:delta-spark_2.13:4.0.1,org.postgresql:postgresql:42.7.14"
SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
}
TAGS = ["clickscore"]

log = logging.getLogger(__name__)


def default_args(owner: str) -> dict[str, Any]:
    """Retries with exponential back-off (5 min, 10 min, ... at most 1 h). The count can be
    lowered for a test run through $CLICKSCORE_DAG_RETRIES (an environment variable, read
    without IO)."""
    return {
        "owner": owner,
        "retries": int(os.environ.get("CLICKSCORE_DAG_RETRIES", "3")),
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "depends_on_past": False,
    }


def start_date(default: str) -> pendulum.DateTime:
    """The first day a DAG schedules: $CLICKSCORE_START_DATE (YYYY-MM-DD, an environment
    variable of the deployment, read without IO) or `default`. With catchup, the scheduler
    runs every day from it; a test run of an earlier day needs it earlier, since Airflow
    creates no task of a run dated before its tasks' start."""
    return pendulum.parse(os.environ.get("CLICKSCORE_START_DATE", default), tz="UTC")


def deadlines() -> bool:
    """False when $CLICKSCORE_DAG_DEADLINE is `off`: `airflow dags test` of Airflow 3.3.2
    crashes at the end of a successful run of a DAG that has a deadline alert (its test loop
    keeps the serialized alerts where the scheduler keeps their ids: `'dict' object has no
    attribute 'hex'`), so a test run turns the alert off. Scheduled runs keep it."""
    return os.environ.get("CLICKSCORE_DAG_DEADLINE", "on") != "off"


def var(name: str, default: str | None = None) -> str:
    """A Jinja reference to an Airflow variable, read when the task runs (never at parse)."""
    if default is None:
        return "{{ var.value." + name + " }}"
    return "{{ var.value.get('" + name + "', '" + default + "') }}"


def stage(task_id: str, job: str, args: list[str], **kwargs: Any) -> SparkSubmitOperator:
    """`spark-submit jobs/<job>.py ARGS --data-root ROOT` with the packaged code."""
    home = var("clickscore_home")
    python = var("clickscore_python", "python3")
    kwargs.setdefault("properties_file", var("clickscore_properties", ""))
    return SparkSubmitOperator(
        task_id=task_id,
        conn_id=SPARK_CONN,
        application=f"{home}/jobs/{job}.py",
        py_files=f"{home}/dist/clickscore.zip",
        packages=var("clickscore_packages", PACKAGES),
        jars=var("clickscore_jars", ""),
        conf={**SPARK_CONF, **kwargs.pop("conf", {})},
        application_args=[*args, "--data-root", var("clickscore_data_root")],
        env_vars={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
                  **kwargs.pop("env_vars", {})},
        name=f"clickscore-{task_id}",
        **kwargs,
    )


async def scores_late(**kwargs: Any) -> None:
    """The daily deadline's callback (run by the triggerer): the day's scores are not
    published yet. Logged as an error for alerting; swap in a notifier (Slack, e-mail)."""
    run = kwargs.get("context", {}).get("dag_run")
    log.error("clickscore_daily: scores not published by their deadline (%s)", run)
