"""One Spark session per test process: local[2], UI off, UTC, Delta, Hive catalog in a
temporary data root, few shuffle partitions; stopped at the end.

`make test` runs two test processes (pytest-xdist, `-n 2 --dist loadgroup`; a third does not
help: with two the 2-core machine was 97% busy through a rehearsal, and with `-n 3` each unit
took 1.5-1.7x longer, measured 2026-12-07) that take units
of tests (`UNITS`: the cluster and Airflow with the demo and what reads its warehouse, the
generated model, the real samples, ...) longest first, each the next when it runs short. Plain
`pytest` runs everything in one process, as before."""

from __future__ import annotations

import json
import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from clickscore.core.spark import DATABASES, class_archive_options, get_spark

# The suite renders Data Docs only in the tests that look at them (they set it back on);
# processes the tests start inherit it.
os.environ["CLICKSCORE_DATA_DOCS"] = "off"

# The suite's batches are tiny: compiling Spark's whole-stage generated code (Janino, and the
# class lookups it makes through the whole class path; code generation was a third of the JVM's
# samples) costs more than it saves (benchmarks/bench_codegen.py). The test session runs without
# it, and so does every Spark driver the tests start (PySpark adds $PYSPARK_SUBMIT_ARGS to the
# JVM it launches; the cluster tests pass the same setting to spark-submit). Interpreting the
# projections too (`spark.sql.codegen.factoryMode=NO_CODEGEN`) saves a little more but breaks
# `spark.catalog.listTables` (EXPRESSION_DECODING_FAILED), so they stay compiled.
#
# Every JVM the tests start (a CLI command's process, the demo's, the notebooks' kernels', the
# kill and time-zone processes, spark-submit's drivers, the standalone cluster's daemons and
# executors) runs with the JIT's C1 compiler only. On batches this small the C2 compiler
# thread is such a JVM's busiest (75 of 202 CPU-s of a 2-minute run) and its code rarely pays
# back: C1 alone cut an ingest and a sessionize in two fresh CLI processes from 165 to 109
# CPU-s (benchmarks/bench_jit.py) and the demo from 270 to 205 CPU-s; in a rehearsal of the
# suite the demo went 281 -> 257 s, the notebooks 74 -> 45 s, the shared-metastore test
# 231 -> 120 s, the time zones 251 -> 185 s. This session's own JVM keeps the default (C1
# then C2): it runs for half an hour, and with C1 only the real samples' tests in it ran
# 20-60% slower (Taobao scoring 145 -> 173 s, REES46 features 81 -> 129 s) while the first
# generated-model test ran faster (328 -> 263 s) (benchmarks/README.md, "C1 in the JVMs the
# tests start").
#
# They also start from setup's class-data archive (`clickscore.core.spark.CLASS_ARCHIVE`),
# which a local session's driver gets from `local_defaults`; spark-submit's drivers and the
# cluster's JVMs get it here.
#
# With C1 only the JVM reserves 48 MB for compiled code (240 MB with C2): a sessionize filled
# it in 24 s ("CodeCache is full. Compiler has been disabled"), and one in five such runs
# then died ("Out of space in CodeCache for method handle intrinsic"); an earlier trial of the
# demo with C1 only and those 48 MB ran slower than with C2 (266 s against 217). They get the
# 240 MB a default JVM has.
TEST_JVM_OPTIONS = " ".join(["-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m",
                             *class_archive_options()])
# spark-submit adds $SPARK_SUBMIT_OPTS to the driver JVM it launches (PySpark's too: every
# process the tests start inherits it from here; the `spark` fixture starts this session's
# JVM without it), and spark-class $SPARK_DAEMON_JAVA_OPTS to a standalone master's or
# worker's
TEST_JVM_ENV = {"SPARK_SUBMIT_OPTS": TEST_JVM_OPTIONS,
                "SPARK_DAEMON_JAVA_OPTS": TEST_JVM_OPTIONS}
for _name, _value in TEST_JVM_ENV.items():
    os.environ.setdefault(_name, _value)
TEST_SPARK_CONF = {"spark.sql.codegen.wholeStage": "false",
                   # executors exist on the cluster only (a local executor is the driver)
                   "spark.executor.extraJavaOptions": TEST_JVM_OPTIONS}
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", " ".join(  # PySpark splits it as a shell would
    f"--conf {shlex.quote(f'{k}={v}')}" for k, v in TEST_SPARK_CONF.items()) + " pyspark-shell")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REES46_FILE = SHARED_DATA / "rees46_multicategory_2019oct_head" / "2019-Oct_head17434.csv.gz"
TAOBAO_FILE = SHARED_DATA / "taobao_userbehavior_subset" / "UserBehavior_subset110300.csv.gz"


# Units of work for `--dist loadgroup`, in the order the two workers take them: longest first
# (worker-seconds in the rehearsal of 2026-12-08 on this machine: the cluster with both DAGs,
# the demo and its readers 1,248, generated 872, real 624, days 349, kills 233, time zones
# 215, cli 170, dags 79; the unit tests, `in-process`, 101, go last; a unit running beside the
# cluster test takes up to half again as long: real took 392 s beside the generated unit in
# the rehearsal before), each worker taking the next when it runs short. A worker takes its
# next unit while it runs the last test of the one before, so a short unit placed after a
# long one-test unit waits behind it: with the (since merged) weekly unit after kills, the
# time-zone test queued behind it on one worker while the other ran out of work 350 s before
# the end. Each unit runs whole on one worker, so what its
# tests share (a session-wide warehouse state, the demo's warehouse, a cluster) is built once;
# tests of different units share nothing but the Spark session, and each starts from a
# warehouse of its own (`empty_warehouse` or a restored state). A test belongs to the unit of
# its longest matching prefix. With two fixed halves (one Spark-bound, one subprocess-bound)
# one worker ended 700+ s before the other.
UNITS = (
    # the cluster, then the demo's warehouse (the demo itself, its report page and the
    # notebooks read from it) in the same worker: the report test failed (in 7 s, cause not
    # yet read) when the demo ran in a worker after the generated-model unit, and passed in
    # every run where it followed the cluster test
    ("cluster", ("tests/cluster/", "tests/integration/test_cli.py::test_the_demo_runs",
                 "tests/integration/test_report_and_notebooks.py")),
    # the generated training examples and the model trained on them
    ("generated", ("tests/integration/test_scoring.py",
                   "tests/integration/test_training.py")),
    ("days", ("tests/integration/test_bad_inputs.py", "tests/integration/test_delta_io.py",
              "tests/integration/test_generated_days.py", "tests/integration/test_sources.py",
              "tests/integration/test_sources_to_scores.py",
              "tests/integration/test_staging.py")),
    # the real samples' states (rees46_day, rees46_all, taobao_all)
    ("real", ("tests/integration/test_dq_gates.py", "tests/integration/test_features_real.py",
              "tests/integration/test_real_data.py", "tests/integration/test_invoke.py",
              "tests/integration/test_scoring.py::test_real_samples")),
    ("kills", ("tests/integration/test_kills.py",)),
    ("time-zones", ("tests/integration/test_time_zones.py",)),
    ("cli", ("tests/integration/test_cli.py",)),
    ("dags", ("tests/dags/",)),
)
IN_PROCESS = "in-process"  # everything else: the unit tests, in the session's Spark
RANK = {name: n for n, (name, _) in enumerate(UNITS)}  # IN_PROCESS ranks last


def test_group(nodeid: str) -> str:
    """The unit `nodeid` belongs to: that of its longest matching prefix in `UNITS`, else
    `IN_PROCESS`."""
    matches = [(len(prefix), name) for name, prefixes in UNITS for prefix in prefixes
               if nodeid.startswith(prefix)]
    return max(matches)[1] if matches else IN_PROCESS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its group (shown by `pytest -m` and in reports)."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(test_group(item.nodeid)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadgroup` with the units above, handed out in their order. xdist's own
    loadgroup reads the group from a suffix its workers add to node ids, which pytest 9 no
    longer reports (measured: both workers built every state and ran the demo twice); this
    scheduler reads the group from the node id's path instead, and orders the queue (xdist
    orders it by test count, which would leave the cluster test for last)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Units(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

        def _assign_work_unit(self, node: object) -> None:
            queued = sorted(self.workqueue.items(), key=lambda unit: RANK.get(unit[0], len(RANK)))
            self.workqueue.clear()
            self.workqueue.update(queued)
            super()._assign_work_unit(node)

    return Units(config, log)


TIMELINE_ENV = "CLICKSCORE_TEST_TIMELINE"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """With $CLICKSCORE_TEST_TIMELINE set to a file, each test's start, end and worker are
    appended to it as a JSON line (setup, call and teardown together): which tests ran beside
    which, to find a suite's critical path (`make test` on two workers)."""
    path = os.environ.get(TIMELINE_ENV)
    started = time.time()
    try:
        return (yield)
    finally:
        if path:
            record = {"test": item.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER", "-"),
                      "start": round(started, 2), "end": round(time.time(), 2)}
            with open(path, "a") as timeline:
                timeline.write(json.dumps(record) + "\n")


def utc(*args: int) -> datetime:
    """A UTC datetime: utc(2019, 10, 1, 23, 59)."""
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("clickscore-data-root"))


@pytest.fixture(scope="session")
def spark(data_root: str) -> SparkSession:
    # this session's JVM with the JIT's default tiers (see TEST_JVM_OPTIONS), unless someone
    # set $SPARK_SUBMIT_OPTS of their own
    ours = os.environ.get("SPARK_SUBMIT_OPTS") == TEST_JVM_OPTIONS
    if ours:
        del os.environ["SPARK_SUBMIT_OPTS"]
    try:
        session = _test_session(data_root)
    finally:
        if ours:
            os.environ["SPARK_SUBMIT_OPTS"] = TEST_JVM_OPTIONS
    yield session
    session.stop()


def _test_session(data_root: str) -> SparkSession:
    return get_spark(
        data_root,
        app_name="clickscore-tests",
        # tuned for tiny data, as Delta's own test base is (python/delta/testing/utils.py)
        conf={
            "spark.master": "local[2]",
            "spark.driver.memory": "3g",
            # one shuffle partition per core and no adaptive re-planning: on the suite's
            # batches this halves the Spark jobs of a stage run (85 -> 45.5 per generated
            # ingest or sessionize) for a small gain in time (14.2 -> 13.1 s), see
            # benchmarks/bench_stage_overhead.py. The processes the tests start (the CLI,
            # the demo, spark-submit on the cluster) keep the production settings, so
            # adaptive execution stays under test there.
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.adaptive.enabled": "false",
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
            "spark.ui.enabled": "false",
            **TEST_SPARK_CONF,
        },
    )


def drop_all_tables(spark: SparkSession) -> None:
    for database in DATABASES:
        for table in spark.catalog.listTables(database):
            kind = "VIEW" if table.tableType == "VIEW" else "TABLE"
            spark.sql(f"DROP {kind} IF EXISTS {database}.{table.name}")


@pytest.fixture
def empty_warehouse(spark: SparkSession) -> SparkSession:
    """Drop every clickscore table so the test starts from an empty warehouse."""
    drop_all_tables(spark)
    return spark


@pytest.fixture(scope="session")
def rees46_file() -> Path:
    if not REES46_FILE.exists():
        pytest.fail(f"real data missing: {REES46_FILE} (../shared/data must sit beside the repo)")
    return REES46_FILE


@pytest.fixture(scope="session")
def taobao_file() -> Path:
    if not TAOBAO_FILE.exists():
        pytest.fail(f"real data missing: {TAOBAO_FILE} (../shared/data must sit beside the repo)")
    return TAOBAO_FILE
