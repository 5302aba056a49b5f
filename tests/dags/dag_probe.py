"""Run by the DAG tests under the Airflow environment's Python (not pytest's):

    python dag_probe.py DAG_FOLDER OUT.json

parses the DAG folder once and writes, as JSON, what each DAG is made of, how long each file
took, and every file a DAG file opened while it was parsed (it should open none)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

folder = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(folder))  # as Airflow's own processes do
opened: list[str] = []
parsing = False
allowed = {str(folder / ".airflowignore")}
system = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def audit(event: str, args: tuple) -> None:
    if parsing and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if (path.startswith(system) or path in allowed
                or (path.startswith(str(folder)) and path.endswith((".py", ".pyc")))
                or "__pycache__" in path):
            return
        opened.append(path)


from airflow.dag_processing.dagbag import DagBag  # noqa: E402

sys.addaudithook(audit)
parsing = True
started = time.perf_counter()
bag = DagBag(dag_folder=str(folder))
seconds = time.perf_counter() - started
parsing = False


class Connections:
    """`conn` for rendering: every connection is a PostgreSQL on 127.0.0.1."""

    def __getattr__(self, name: str) -> object:
        return SimpleNamespace(host="127.0.0.1", port=5432, schema="warehouse",
                               login="clickscore", password="not-a-secret")


class Variables:
    """`var.value` for rendering: a variable with a default in the template gets it, any
    other one a path."""

    def __getattr__(self, name: str) -> str:
        return f"/srv/{name}"

    def get(self, name: str, default: str | None = None) -> str:
        return default if default is not None else f"/srv/{name}"


def rendered(task, dag, end: tuple[int, ...] = (2019, 10, 6, 3),
             **params: object) -> list[str] | None:
    """The task's spark-submit arguments as Airflow renders them for a run at `end` (by
    default the start of a week, Sunday 2019-10-06 03:00 UTC) with the DAG's default
    parameters updated by `params`, but for three tuning trials where the DAG has that
    parameter (`tune` runs only when trials are asked for)."""
    if not hasattr(task, "application_args"):
        return None
    from datetime import UTC, datetime

    from airflow.sdk.execution_time import macros

    end = datetime(*end, tzinfo=UTC)
    context = {"ds": end.date().isoformat(), "data_interval_start": end,
               "data_interval_end": end, "logical_date": end, "macros": macros,
               "params": {**dag.params.dump(),
                          **({"tune_trials": 3} if "tune_trials" in dag.params else {}),
                          **params},
               "var": {"value": Variables()}, "conn": Connections(), "dag": dag,
               "run_id": "scheduled__2019-10-06T03:00:00+00:00"}
    return [str(task.render_template(a, context)) for a in task.application_args]


def describe(dag) -> dict:
    return {
        "tasks": {t.task_id: {
            "downstream": sorted(t.downstream_task_ids), "operator": type(t).__name__,
            "retries": t.retries, "retry_exponential_backoff": bool(t.retry_exponential_backoff),
            "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
            "application": getattr(t, "application", None),
            "application_args": list(getattr(t, "application_args", None) or []),
            "conn_id": getattr(t, "_conn_id", None), "py_files": getattr(t, "py_files", None),
            "rendered_args": rendered(t, dag),
            # the training DAG's geometry in 3-minute units at the Taobao sample's Sunday
            "rendered_in_minutes": rendered(t, dag, (2017, 11, 26, 3), unit_s=180,
                                            lookback_s=86400)
            if "unit_s" in dag.params else None,
            # a branch's choice for a run asking for no trials and for three
            "chooses": {str(n): t.python_callable(params={**dag.params.dump(),
                                                          "tune_trials": n})
                        for n in (0, 3)} if type(t).__name__ == "BranchPythonOperator"
            else None,
            "execution_timeout_s": t.execution_timeout.total_seconds()
            if t.execution_timeout else None,
            "on_failure": [getattr(c, "__name__", type(c).__name__)
                           for c in (t.on_failure_callback if isinstance(
                               t.on_failure_callback, list) else [t.on_failure_callback])
                           if c is not None],
            # a sensor's way of waiting
            "mode": getattr(t, "mode", None),
            "timeout_s": float(t.timeout) if hasattr(t, "poke_interval") else None,
            "poke_interval_s": float(t.poke_interval) if hasattr(t, "poke_interval")
            else None} for t in dag.tasks},
        "schedule": getattr(dag.timetable, "_expression", None) or str(dag.timetable),
        "timetable": type(dag.timetable).__name__,
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "tags": sorted(dag.tags), "deadlines": len(dag.deadline or []),
        "params": sorted(dag.params.keys()), "param_defaults": dag.params.dump(),
    }


Path(sys.argv[2]).write_text(json.dumps({
    "import_errors": bag.import_errors,
    "files_s": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
    "total_s": seconds, "opened": opened,
    "spark_imported": any(m.split(".")[0] == "pyspark" for m in sys.modules),
    "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()},
}, indent=1))
