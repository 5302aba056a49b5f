"""clickscore_train: a new model every week, promoted only when it is better.

vocab -> training_examples -> train_or_tune -> train | tune -> evaluate -> promote. The
training window ends at the data interval's end E: examples at the cutoffs E-28d, E-25d, E-22d
(train), E-14d (validation) and E-7d (test), each labelled over the next 7 days; the
vocabulary comes from the training period only ([E-28d - lookback, E-14d)). Those days are
units of `params.unit_s` seconds (86,400 by default, the cutoffs at midnight of their day); a
shorter unit lays the same geometry over a few hours of data (the cluster test trains on two
hours of Taobao in 3-minute units), with cutoffs at multiples of the unit. `train` registers
the model as the challenger without promoting it, tagged with this DAG run
(`--registered-by`), having chosen on validation which scorer serves each head (the sequence
model only where it beats the best baseline). With `params.tune_trials` above 0, `tune` runs
in its place: that many Optuna trials on validation (at most `tune_timeout_s` seconds of them,
each a nested MLflow run, in the driver process), then the best configuration trained and
registered the same way; `train_or_tune` picks which one runs and the other is skipped.
`evaluate` prints that very version next to the baselines; `promote` makes that version, not
whatever `challenger` points at by then, the champion only when its validation metric beats
the champion's by the margin. `params` (lookback, windows, min_support, processes, epochs,
margin, tune_trials, tune_timeout_s) can be overridden when triggering. Training asks for GPUs
through the properties file named by the `clickscore_train_properties` variable (see
deploy/spark-gpu.conf) and runs its processes as Spark tasks (TorchDistributor's executor
mode).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.python import BranchPythonOperator
from airflow.sdk import DAG, Param, TriggerRule
from airflow.timetables.interval import CronDataIntervalTimetable
from clickscore_common import TAGS, default_args, stage, start_date, var

DAY_S = 86400


def at(end: datetime, units: int, unit_s: int) -> str:
    """`end` floored to a multiple of `unit_s` seconds, moved by `units` of them: a date where
    the unit is whole days (midnight of that day), else a UTC timestamp to the second. A
    template macro (`user_defined_macros`), evaluated when a task renders."""
    step = int(unit_s)
    moment = datetime.fromtimestamp(int(end.timestamp()) // step * step + units * step, UTC)
    return moment.date().isoformat() if step % DAY_S == 0 else moment.strftime(
        "%Y-%m-%dT%H:%M:%S")


def day(offset: int) -> str:
    """The unit `offset` units from the window's end, as a template."""
    return "{{ at(data_interval_end, " + str(offset) + ", params.unit_s) }}"


OURS = "{{ dag.dag_id }}/{{ run_id }}"  # who registered a version: this DAG run



def train_or_tune(params: dict[str, Any]) -> str:
    """The task that trains this week: `tune` when the run asks for trials, else `train`."""
    return "tune" if int(params["tune_trials"]) > 0 else "train"


LOOKBACK_START = ("{{ at(data_interval_end - macros.timedelta(seconds=params.lookback_s), "
                  "-28, params.unit_s) }}")

with DAG(
    dag_id="clickscore_train",
    description="vocab -> training examples -> train -> evaluate -> promote if better",
    schedule=CronDataIntervalTimetable("0 3 * * 0", timezone="UTC"),  # Sundays 03:00
    start_date=start_date("2019-10-06"),
    catchup=False,  # only the latest window matters
    max_active_runs=1,
    default_args=default_args("clickscore-ml"),
    tags=[*TAGS, "training"],
    params={
        "lookback_s": Param(30 * 86400, type="integer", minimum=3600,
                            description="features read this many seconds before a cutoff"),
        "windows": Param("1d,7d,30d", type="string", description="aggregation windows"),
        "min_support": Param(5, type="integer", minimum=1,
                             description="events an item needs to get its own index"),
        "num_processes": Param(2, type="integer", minimum=1,
                               description="training processes (one per GPU on GPU nodes)"),
        "epochs": Param(10, type="integer", minimum=1),
        "promotion_margin": Param(0.0, type="number", minimum=0.0),
        "tune_trials": Param(0, type="integer", minimum=0,
                             description="Optuna trials; 0 trains the default configuration"),
        "tune_timeout_s": Param(3 * 3600, type="integer", minimum=60,
                                description="the trials' wall-clock budget in seconds"),
        "unit_s": Param(DAY_S, type="integer", minimum=60,
                        description="seconds in one unit of the cutoffs' offsets (a day)"),
    },
    user_defined_macros={"at": at},
    doc_md=__doc__,
) as dag:
    vocab = stage("vocab", "vocab", [
        "--window-start", LOOKBACK_START, "--window-end", day(-14),
        "--min-support", "{{ params.min_support }}"])
    examples = stage("training_examples", "training_examples", [
        "--cutoffs", ",".join(day(d) for d in (-28, -25, -22, -14, -7)),
        "--validation-from", day(-14), "--test-from", day(-7),
        "--horizon", "{{ 7 * params.unit_s }}s",
        "--lookback", "{{ params.lookback_s }}s", "--windows", "{{ params.windows }}",
        "--min-support", "{{ params.min_support }}"])
    train = stage("train", "train", [
        "--no-local-mode", "--num-processes", "{{ params.num_processes }}",
        "--epochs", "{{ params.epochs }}", "--no-auto-promote",
        "--promotion-margin", "{{ params.promotion_margin }}", "--registered-by", OURS],
        properties_file=var("clickscore_train_properties", ""))
    tune = stage("tune", "tune", [
        "--trials", "{{ params.tune_trials }}", "--timeout-s", "{{ params.tune_timeout_s }}",
        "--epochs", "{{ params.epochs }}", "--no-auto-promote",
        "--promotion-margin", "{{ params.promotion_margin }}", "--registered-by", OURS],
        properties_file=var("clickscore_train_properties", ""))
    choose = BranchPythonOperator(task_id="train_or_tune", python_callable=train_or_tune)
    # the version this run's train or tune registered, whatever `challenger` points at by
    # then; it runs after whichever of the two ran (the other is skipped)
    evaluate = stage("evaluate", "evaluate", ["--model-version", f"registered-by:{OURS}"],
                     trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    promote = stage("promote", "models", [
        "promote", f"registered-by:{OURS}", "--if-better", "--margin",
        "{{ params.promotion_margin }}"])

    vocab >> examples >> choose >> [train, tune] >> evaluate >> promote
