"""What both clickscore DAGs share: one `SparkSubmitOperator` per stage, configured from
Airflow connections and variables only (nothing here reads a file or opens a session), each
with an execution timeout; the alert e-mail every failed task and a missed deadline send.

Connections:
  clickscore_spark      the Spark master (e.g. spark://host:7077, yarn, k8s://...)
  clickscore_warehouse  the relational warehouse the daily export writes to (host, port,
                        schema = database, login, password; the password is masked in logs)
  clickscore_alerts     an SMTP server (conn_type smtp: host, port, login, password; extra
                        `from_email`, `to`: comma-separated recipients, `disable_tls`,
                        `disable_ssl`, `timeout`). A task's final failure (after its retries)
                        and the daily deadline e-mail `to` through Airflow's SmtpNotifier;
                        without this connection they are only logged as errors

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

Environment of the deployment (read without IO when a DAG file is parsed):
  CLICKSCORE_TASK_TIMEOUTS   execution timeouts by task id, e.g. `score=6h,export=20m`
                             (s, m, h or d), over the defaults in TASK_TIMEOUTS
  CLICKSCORE_LANDING_TIMEOUT how long the daily DAG waits for its landing file (default 12h)
  CLICKSCORE_LANDING_POKE    how often it looks (default 5m; the sensor gives its worker slot
                             back in between: reschedule mode)
"""

from __future__ import annotations

import glob
import html
import logging
import os
import re
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

SPARK_CONN = "clickscore_spark"
WAREHOUSE_CONN = "clickscore_warehouse"
ALERTS_CONN = "clickscore_alerts"
PACKAGES = "io.delta:delta-spark_2.13:4.0.1,org.postgresql:postgresql:42.7.14"
SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
}
TAGS = ["clickscore"]

log = logging.getLogger(__name__)

# how long one try of a task may run before Airflow kills it (then it is retried); a task not
# named gets DEFAULT_TIMEOUT. $CLICKSCORE_TASK_TIMEOUTS overrides any of them.
DEFAULT_TIMEOUT = timedelta(hours=2)
TASK_TIMEOUTS = {
    "ingest": timedelta(hours=2), "sessionize": timedelta(hours=2),
    "previous_day_published": timedelta(minutes=10), "features": timedelta(hours=2),
    "score": timedelta(hours=4), "export": timedelta(hours=1),
    "vocab": timedelta(hours=2), "training_examples": timedelta(hours=4),
    "train_or_tune": timedelta(minutes=10), "train": timedelta(hours=12),
    "tune": timedelta(hours=24),  # its trials stop at params.tune_timeout_s (3 h by default)
    "evaluate": timedelta(hours=2), "promote": timedelta(minutes=30),
    "maintain": timedelta(hours=6),
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """`90s`, `30m`, `4h`, `1d` (or plain seconds) as a timedelta."""
    found = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not found:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 90s, 30m, 4h or 1d)")
    return timedelta(seconds=int(found[1]) * _UNITS[found[2] or "s"])


def task_timeout(task_id: str) -> timedelta:
    """The execution timeout of `task_id`: $CLICKSCORE_TASK_TIMEOUTS (`task=4h,...`) or the
    default."""
    overrides = {}
    for item in filter(None, os.environ.get("CLICKSCORE_TASK_TIMEOUTS", "").split(",")):
        name, _, value = item.partition("=")
        overrides[name.strip()] = duration(value)
    return overrides.get(task_id, TASK_TIMEOUTS.get(task_id, DEFAULT_TIMEOUT))


def default_args(owner: str) -> dict[str, Any]:
    """Retries with exponential back-off (5 min, 10 min, ... at most 1 h), and an alert when
    a task fails for good. The count can be lowered for a test run through
    $CLICKSCORE_DAG_RETRIES (an environment variable, read without IO)."""
    return {
        "owner": owner,
        "retries": int(os.environ.get("CLICKSCORE_DAG_RETRIES", "3")),
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "depends_on_past": False,
        "execution_timeout": DEFAULT_TIMEOUT,
        "on_failure_callback": task_failed,
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
    kwargs.setdefault("execution_timeout", task_timeout(task_id))
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


def send_alert(subject: str, body: str) -> bool:
    """E-mail `subject` and `body` (HTML) to the `clickscore_alerts` connection's recipients
    with Airflow's SmtpNotifier; logged as an error either way. False when that connection
    does not exist (nothing sent)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    from airflow.sdk import BaseHook

    log.error("%s", subject)
    try:
        conn = BaseHook.get_connection(ALERTS_CONN)
    except Exception:  # AirflowNotFoundException, whichever module raises it
        log.warning("no %s connection: the alert was not sent", ALERTS_CONN)
        return False
    extra = conn.extra_dejson
    SmtpNotifier(to=[a.strip() for a in extra.get("to", "").split(",") if a.strip()],
                 from_email=extra.get("from_email") or f"clickscore@{conn.host}",
                 smtp_conn_id=ALERTS_CONN, subject=subject, html_content=body).notify({})
    return True


def task_failed(context: dict[str, Any]) -> None:
    """Every task's `on_failure_callback`: the task failed for good (no retry left)."""
    ti = context["ti"]
    subject = f"clickscore: {ti.dag_id}.{ti.task_id} failed for {context.get('ds')}"
    body = (f"<p>{html.escape(ti.dag_id)} / {html.escape(ti.task_id)}, run "
            f"{html.escape(str(context.get('run_id')))}, try {ti.try_number}</p>"
            f"<pre>{html.escape(str(context.get('exception')))}</pre>")
    send_alert(subject, body)


async def scores_late(**kwargs: Any) -> None:
    """The daily deadline's callback (run by the triggerer): the day's scores are not
    published yet. E-mailed (`send_alert`, in a thread: SMTP is blocking I/O) and logged."""
    import asyncio

    context = kwargs.get("context") or {}
    run = context.get("dag_run")
    run_id = run.get("run_id") if isinstance(run, dict) else getattr(run, "run_id", None)
    subject = f"clickscore: clickscore_daily's scores are late ({run_id or 'a run'})"
    body = (f"<p>The scores of {html.escape(str(run_id))} were not published by their "
            "deadline (06:00 UTC the day after their date). See the run's tasks.</p>")
    await asyncio.to_thread(send_alert, subject, body)


def landed(pattern: str) -> bool:
    """The landing sensor's test: a file matches `pattern` (a local path or `file://` URI,
    globbed; another scheme is checked with Airflow's ObjectStoragePath, unglobbed)."""
    if "://" not in pattern or pattern.startswith("file://"):
        found = [p for p in glob.glob(pattern.removeprefix("file://")) if os.path.isfile(p)]
    else:
        from airflow.sdk import ObjectStoragePath

        found = [pattern] if ObjectStoragePath(pattern).exists() else []
    log.info("landing %s: %s", pattern, f"{len(found)} file(s)" if found else "nothing yet")
    return bool(found)


def previous_day_published(**context: Any) -> None:
    """The daily DAG's rule for a failed day: day D+1's features, scores and export run only
    when day D's run succeeded (or D is the DAG's first day), so no day is scored without the
    day before it. It fails (no retry) naming the day otherwise; once D is repaired (its
    failed task cleared and rerun), clearing D+1's run redoes it."""
    from airflow.sdk.exceptions import AirflowFailException

    day, first = context["logical_date"], context["dag"].start_date
    published = context.get("prev_data_interval_end_success")
    published = getattr(published, "__wrapped__", published)  # a lazy proxy, even of None
    if day <= first or (published is not None and published >= context["data_interval_start"]):
        return
    before = (day - timedelta(days=1)).date().isoformat()
    raise AirflowFailException(
        f"{context['ds']}: the day before ({before}) has no successful run (the latest "
        f"published day ends {published.isoformat() if published else 'nowhere'}); repair "
        f"{before} (clear its failed task), then clear this run")
