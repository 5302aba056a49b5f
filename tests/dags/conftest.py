"""The Airflow environment (`make airflow`) the DAG tests run Airflow from, and what the tests
that run a DAG through Airflow share (`dags_test`, `task_states`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "airflow_dags"
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for an Airflow process: its own home (SQLite metadata database), the
    project's DAG folder, no example DAGs."""
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **extra}


@pytest.fixture(scope="session")
def parsed_dags(tmp_path_factory) -> dict:
    """The probe's account of the DAG folder, parsed once by Airflow's own DagBag."""
    assert AIRFLOW_PYTHON.exists(), f"{AIRFLOW_PYTHON} is missing: run `make airflow`"
    out = tmp_path_factory.mktemp("dag-probe") / "dags.json"
    done = subprocess.run(
        [str(AIRFLOW_PYTHON), str(Path(__file__).with_name("dag_probe.py")), str(DAGS),
         str(out)], env=airflow_env(out.parent / "home"), capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def airflow_cli(home: Path, env: dict[str, str], *argv: str,
                timeout: int = 600) -> subprocess.CompletedProcess:
    """`airflow ARGV` with this environment, in the Airflow home (made if missing); its exit
    code, out and err."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(AIRFLOW_PYTHON.parent / "airflow"), *argv], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=home)


def dags_test(home: Path, env: dict[str, str], dag_id: str, logical_date: str,
              skip: str | None = None, conf: dict | None = None,
              timeout: int = 1800) -> subprocess.CompletedProcess:
    """`airflow dags test DAG_ID LOGICAL_DATE`: one run of the DAG in this process, its tasks
    one after another. `skip`: a regex of tasks Airflow marks succeeded without running them
    (--mark-success-pattern); `conf`: the run's parameters (-c)."""
    done = airflow_cli(home, env, "dags", "test", dag_id, logical_date,
                       *(["--mark-success-pattern", skip] if skip else []),
                       *(["-c", json.dumps(conf)] if conf else []), timeout=timeout)
    # kept beside the Airflow home: a task's log lines (when each started and ended) for a
    # run that passed too
    log = home / f"dags-test-{dag_id}-{logical_date[:10]}-{len(list(home.glob('dags-test-*')))}"
    log.with_suffix(".log").write_text(done.stdout + done.stderr)
    return done


def task_states(home: Path, env: dict[str, str], dag_id: str) -> tuple[str, dict[str, str]]:
    """The DAG's latest run: its run id and its tasks' states, from Airflow's metadata
    database."""
    done = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                 (sys.argv[2],)).fetchone()[0]
print(json.dumps([run, dict(db.execute("SELECT task_id, state FROM task_instance "
                                       "WHERE dag_id = ? AND run_id = ?",
                                       (sys.argv[2], run)))]))
""", str(home / "airflow.db"), dag_id], env=env, capture_output=True, text=True, check=True)
    run_id, states = json.loads(done.stdout)
    return run_id, states
