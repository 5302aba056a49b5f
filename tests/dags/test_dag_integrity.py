"""DAG integrity: the folder parses under the real Airflow, fast, without IO or Spark at
import, and each DAG's tasks, order, retries, schedule, catchup and tags are as designed."""

from __future__ import annotations

import re

import pytest

from tests.dags.conftest import ROOT

DAILY = ["wait_for_landing", "ingest", "sessionize", "previous_day_published", "features",
         "score", "export"]
# the tasks that submit nothing: what each is
NOT_SUBMITTED = {"train_or_tune": "BranchPythonOperator", "wait_for_landing": "PythonSensor",
                 "previous_day_published": "PythonOperator"}
# train_or_tune runs one of `train` and `tune`: a step of the chain that is either
TRAIN = ["vocab", "training_examples", "train_or_tune", ("train", "tune"), "evaluate",
         "promote"]


def chain(dag: dict) -> list[str | tuple[str, ...]]:
    """The tasks in order, when they form one chain whose steps are one task or several
    alternatives side by side between the same two tasks (fails otherwise)."""
    tasks = dag["tasks"]
    heads = set(tasks) - {d for t in tasks.values() for d in t["downstream"]}
    assert len(heads) == 1, heads
    order: list[str | tuple[str, ...]] = [heads.pop()]
    last = [order[-1]]
    while tasks[last[0]]["downstream"]:
        following = sorted({d for t in last for d in tasks[t]["downstream"]})
        assert all(tasks[t]["downstream"] == tasks[last[0]]["downstream"] for t in last), last
        order.append(following[0] if len(following) == 1 else tuple(following))
        last = following
    assert sum(1 if isinstance(s, str) else len(s) for s in order) == len(tasks)
    return order


def test_the_folder_parses_with_no_io_and_no_spark(parsed_dags):
    assert parsed_dags["import_errors"] == {}
    assert sorted(parsed_dags["dags"]) == ["clickscore_daily", "clickscore_maintain",
                                           "clickscore_train"]
    # what keeps parsing fast is what a file does at import: no file opened, no Spark. The
    # seconds per file (parsed_dags["files_s"]) are not asserted: a timed assertion failed
    # at 1.06 s for the first file (the one that imports the Spark provider) on a loaded
    # 2-core machine, which says nothing about the DAGs
    assert parsed_dags["opened"] == []
    assert not parsed_dags["spark_imported"]


@pytest.mark.parametrize(("dag_id", "tasks", "schedule", "catchup"), [
    ("clickscore_daily", DAILY, "0 0 * * *", True),
    ("clickscore_train", TRAIN, "0 3 * * 0", False),
    ("clickscore_maintain", ["maintain"], "0 12 * * 6", False),
])
def test_each_dag_is_one_chain_of_spark_submits_as_designed(parsed_dags, dag_id, tasks,
                                                            schedule, catchup):
    dag = parsed_dags["dags"][dag_id]
    assert chain(dag) == tasks
    assert dag["timetable"] == "CronDataIntervalTimetable"
    assert dag["schedule"] == schedule
    assert dag["catchup"] is catchup
    assert dag["max_active_runs"] == 1
    assert "clickscore" in dag["tags"]
    for task_id, task in dag["tasks"].items():
        # every task may run for a bounded time, and its final failure sends an alert
        assert task["execution_timeout_s"] and task["execution_timeout_s"] <= 24 * 3600, task_id
        assert task["on_failure"] == ["task_failed"], task_id
        if task_id in NOT_SUBMITTED:  # a branch, a sensor, a check: they submit nothing
            assert task["operator"] == NOT_SUBMITTED[task_id]
            continue
        assert task["operator"] == "SparkSubmitOperator"
        assert task["retries"] == 3 and task["retry_exponential_backoff"]
        assert task["conn_id"] == "clickscore_spark"
        # the packaged code and configuration from variables, never a path in the code
        assert task["py_files"] == "{{ var.value.clickscore_home }}/dist/clickscore.zip"
        assert task["application"].startswith("{{ var.value.clickscore_home }}/jobs/")
        args = task["application_args"]
        assert args[-2:] == ["--data-root", "{{ var.value.clickscore_data_root }}"], task_id


def test_the_daily_dag_runs_the_logical_day_and_has_a_deadline_on_scores(parsed_dags):
    dag = parsed_dags["dags"]["clickscore_daily"]
    tasks = dag["tasks"]
    # the landing file: waited for without holding a worker slot, for 12 h at most, looked
    # for every 5 minutes; the sensor's timeout is final
    landing = tasks["wait_for_landing"]
    assert (landing["mode"], landing["timeout_s"], landing["poke_interval_s"],
            landing["retries"]) == ("reschedule", 12 * 3600, 300, 0)
    for task_id in ("ingest", "sessionize", "score", "export"):
        args = tasks[task_id]["application_args"]
        assert args[args.index("--run-date") + 1] == "{{ ds }}", task_id
    assert "--reuse-features" in tasks["score"]["application_args"]
    features = tasks["features"]["application_args"]
    assert features[features.index("--model-version") + 1] == "champion"
    assert dag["deadlines"] == 1
    assert tasks["score"]["execution_timeout_s"] == 4 * 3600
    assert tasks["export"]["execution_timeout_s"] == 3600
    # a failed task stops everything after it: a day's failed ingest runs no sessionize,
    # features, scores or export (the cluster test no longer runs a corrupted input)
    assert {t["trigger_rule"] for t in tasks.values()} == {"all_success"}


def test_the_training_dag_promotes_only_a_better_model_the_one_its_own_run_registered(
        parsed_dags):
    dag = parsed_dags["dags"]["clickscore_train"]
    tasks = dag["tasks"]
    train = tasks["train"]["application_args"]
    assert "--no-auto-promote" in train
    assert "--no-local-mode" in train
    ours = train[train.index("--registered-by") + 1]
    assert "{{ run_id }}" in ours
    assert tasks["promote"]["application_args"][:3] == ["promote", f"registered-by:{ours}",
                                                        "--if-better"]
    evaluate = tasks["evaluate"]["application_args"]
    assert evaluate[evaluate.index("--model-version") + 1] == f"registered-by:{ours}"
    assert {"lookback_s", "windows", "num_processes", "epochs", "tune_trials",
            "tune_timeout_s"} <= set(dag["params"])
    # `tune` in train's place registers its version the same way, for the same evaluate and
    # promote, which run after whichever of the two ran
    tune = tasks["tune"]["application_args"]
    assert tasks["tune"]["application"].endswith("/jobs/tune.py")
    assert tune[tune.index("--registered-by") + 1] == ours and "--no-auto-promote" in tune
    assert tune[tune.index("--trials") + 1] == "{{ params.tune_trials }}"
    assert tasks["evaluate"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["train_or_tune"]["chooses"] == {"0": "train", "3": "tune"}
    assert dag["param_defaults"]["tune_trials"] == 0  # a plain week trains


def test_the_training_dags_cutoffs_are_days_before_its_sunday_or_units_of_unit_s(parsed_dags):
    """E-28, -25, -22 (train), -14 (validation), -7 (test) units before the interval's end
    E, 7-unit labels, the vocabulary from E-28 units less the lookback to E-14: days at
    midnight by default, or `unit_s` seconds (the cluster test's two hours of Taobao)."""
    tasks = parsed_dags["dags"]["clickscore_train"]["tasks"]

    def option(task: str, name: str, rendering: str = "rendered_args") -> str:
        args = tasks[task][rendering]
        return args[args.index(name) + 1]

    # Sunday 2019-10-06 03:00, the default parameters (a 30-day lookback)
    assert option("training_examples", "--cutoffs") == (
        "2019-09-08,2019-09-11,2019-09-14,2019-09-22,2019-09-29")
    assert [option("training_examples", o) for o in ("--validation-from", "--test-from",
                                                      "--horizon", "--lookback")] == [
        "2019-09-22", "2019-09-29", "604800s", "2592000s"]
    assert [option("vocab", o) for o in ("--window-start", "--window-end")] == [
        "2019-08-09", "2019-09-22"]
    # Sunday 2017-11-26 03:00 in 3-minute units, a day's lookback
    minutes = "rendered_in_minutes"
    assert option("training_examples", "--cutoffs", minutes) == (
        "2017-11-26T01:36:00,2017-11-26T01:45:00,2017-11-26T01:54:00,2017-11-26T02:18:00,"
        "2017-11-26T02:39:00")
    assert option("training_examples", "--horizon", minutes) == "1260s"
    assert [option("vocab", o, minutes) for o in ("--window-start", "--window-end")] == [
        "2017-11-25T01:36:00", "2017-11-26T02:18:00"]


@pytest.mark.parametrize("dag_id", ["clickscore_daily", "clickscore_train",
                                    "clickscore_maintain"])
def test_every_submitted_command_line_is_one_the_cli_accepts(parsed_dags, dag_id):
    """What each task hands spark-submit, rendered by Airflow for a run with the default
    parameters (tests/dags/dag_probe.py), parses as its job's command: an option renamed in a
    config fails here, not on the first scheduled run."""
    from clickscore.cli import parse

    dag = parsed_dags["dags"][dag_id]
    for task_id, task in dag["tasks"].items():
        if task["application"] is None:
            continue  # the branch submits nothing
        job = (ROOT / "jobs" / task["application"].rsplit("/", 1)[1]).read_text()
        (command,) = re.findall(r'main\(\["([^"]+)", \*sys\.argv', job)
        argv = [command, *task["rendered_args"]]
        parsed, config, _ = parse(argv)
        assert parsed.name.split()[0] == command, (task_id, parsed.name)
        assert config is not None, task_id
