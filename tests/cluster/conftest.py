"""A real Spark standalone cluster on 127.0.0.1 for the cluster and Airflow tests: a master and
two workers started from the installed PySpark (`spark-class`), each worker with one core and a
`gpu` resource advertised by a discovery script; stopped by process id at the end. And
`submit`, spark-submit of a stage's job with the packaged code (`make dist`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

from tests.conftest import TEST_SPARK_CONF
from tests.dags.conftest import AIRFLOW_PYTHON, airflow_env

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SPARK_HOME = Path(pyspark.__file__).parent
PY_FILES = ROOT / "dist" / "clickscore.zip"
# the jar files setup resolved from Maven Central (Delta, PostgreSQL's driver): --jars
# instead of --packages spares each submit Ivy's resolution
JARS = ",".join(j for j in (Path(sys.prefix) / "clickscore-spark-jars.txt").read_text().split()
                if j) if (Path(sys.prefix) / "clickscore-spark-jars.txt").exists() else ""
FAKE_GPU = Path(__file__).with_name("fake_gpu_discovery.sh")
GPU_CONF = {"spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    master_url: str
    ui_port: int
    processes: list[subprocess.Popen]
    logs: Path

    def alive_workers(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return int(json.load(r).get("aliveworkers", 0))


def _spark_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(extra or {})}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    assert PY_FILES.exists(), f"{PY_FILES} is missing: run `make dist`"
    assert JARS, "the Delta jars are not recorded: run `make setup`"
    logs = tmp_path_factory.mktemp("spark-cluster")
    port, ui_port = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    processes = []

    def start(name: str, args: list[str], env: dict[str, str]) -> None:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        processes.append(subprocess.Popen([spark_class, *args], stdout=out,
                                          stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))

    start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(ui_port)], _spark_env())
    url = f"spark://127.0.0.1:{port}"
    worker_opts = ("-Dspark.worker.resource.gpu.amount=1 "
                   f"-Dspark.worker.resource.gpu.discoveryScript={FAKE_GPU}")
    for n in (1, 2):
        start(f"worker{n}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                             "--cores", "1", "--memory", "3g",
                             "--webui-port", str(free_port()),
                             "--work-dir", str(logs / f"work{n}"), url],
              _spark_env({"SPARK_WORKER_OPTS": worker_opts}))
    running = Cluster(url, ui_port, processes, logs)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if running.alive_workers() == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the standalone cluster did not come up: "
                                   + (logs / "master.log").read_text()[-2000:])
            time.sleep(1)
        yield running
    finally:
        for process in processes:  # by process id: the JVM and anything it started
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def submit(cluster: Cluster, job: str, args: list[str], data_root: Path, *,
           conf: dict[str, str] | None = None, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """spark-submit jobs/<job>.py to the cluster with the packaged code."""
    settings = {"spark.executor.memory": "1g", "spark.driver.memory": "1g",
                "spark.sql.shuffle.partitions": "4", **TEST_SPARK_CONF, **(conf or {})}
    command = [str(VENV_BIN / "spark-submit"), "--master", cluster.master_url,
               "--py-files", str(PY_FILES), "--jars", JARS,
               *[a for k, v in settings.items() for a in ("--conf", f"{k}={v}")],
               str(ROOT / "jobs" / f"{job}.py"), *args, "--data-root", str(data_root)]
    done = subprocess.run(command, capture_output=True, text=True, env=_spark_env(env),
                          cwd=data_root.parent, timeout=900, check=False)
    if check:
        assert done.returncode == 0, (job, done.stdout[-3000:], done.stderr[-5000:])
    return done


def airflow_submitting(home: Path, spark_connection: str, data_root: Path, start_date: str,
                       spark_conf: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of an Airflow process whose DAG tasks spark-submit this checkout's
    packaged code (`make dist`) with the jar files setup recorded (no Ivy resolution per task)
    to `spark_connection` (the `clickscore_spark` connection: a master URL, or JSON), on
    `data_root`, with no retries; the stages' properties file (the suite's Spark settings and
    `spark_conf`) is written into the Airflow home. `extra`: more variables."""
    assert PY_FILES.exists(), f"{PY_FILES} is missing: run `make dist`"
    home.mkdir(parents=True, exist_ok=True)
    properties = home / "spark-stages.conf"
    properties.write_text("".join(f"{k} {v}\n" for k, v in {**TEST_SPARK_CONF,
                                                            **spark_conf}.items()))
    return airflow_env(home, **{
        "PATH": f"{VENV_BIN}:{AIRFLOW_PYTHON.parent}:/usr/bin:/bin",
        "AIRFLOW_CONN_CLICKSCORE_SPARK": spark_connection,
        "AIRFLOW_VAR_CLICKSCORE_DATA_ROOT": str(data_root),
        "AIRFLOW_VAR_CLICKSCORE_HOME": str(ROOT),
        "AIRFLOW_VAR_CLICKSCORE_PACKAGES": "",
        "AIRFLOW_VAR_CLICKSCORE_JARS": JARS,
        "AIRFLOW_VAR_CLICKSCORE_PYTHON": str(VENV_BIN / "python"),
        "AIRFLOW_VAR_CLICKSCORE_PROPERTIES": str(properties),
        "CLICKSCORE_DAG_RETRIES": "0",
        "CLICKSCORE_START_DATE": start_date,  # no task is created for a run before it
        **extra,
    })
