"""Typed config and the table contracts (no Spark job needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from clickscore.core.config import RunDate, RunKey, parse_duration, resolve_data_root
from clickscore.core.contracts import source_layout, table_schema
from clickscore.core.errors import SchemaDriftError
from clickscore.core.runs import RunCounts
from clickscore.ingest.config import IngestConfig
from clickscore.sessionize.config import SessionizeConfig


def test_run_date_parses_dates_and_all_and_rejects_anything_else():
    assert RunDate.parse("2019-10-01").day == date(2019, 10, 1)
    assert RunDate.parse("all").is_all and str(RunDate.parse("all")) == "all"
    with pytest.raises(ValueError, match="YYYY-MM-DD or 'all'"):
        RunDate.parse("yesterday")


def test_a_run_key_says_what_the_run_worked_on_and_reads_back_from_its_text():
    at = datetime(2019, 10, 4, tzinfo=UTC)
    keys = {RunKey.of_date(RunDate.parse("2019-10-03")): ("date", "2019-10-03"),
            RunKey.of_date(RunDate.parse("all")): ("all", "all"),
            RunKey.at(at): ("instant", "2019-10-04T00:00:00+00:00"),
            RunKey.span(at - timedelta(hours=6), at):
                ("span", "2019-10-03T18:00:00+00:00..2019-10-04T00:00:00+00:00"),
            RunKey.version("gold.training_examples", 3): ("version",
                                                          "gold.training_examples@v3")}
    for key, (kind, text) in keys.items():
        assert (key.kind, str(key)) == (kind, text)
        assert RunKey.parse(text) == key
    assert RunKey.parse("2019-10-03").run_date == RunDate.parse("2019-10-03")
    assert RunKey.parse("all").run_date == RunDate(None)
    assert RunKey.at(at).run_date is None
    with pytest.raises(ValueError, match="not a run key"):
        RunKey.parse("yesterday")


def test_durations_in_units_that_fit_the_data():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("24h") == timedelta(days=1)
    assert parse_duration("1.5d") == timedelta(hours=36)
    with pytest.raises(ValueError, match="30m"):
        parse_duration("thirty minutes")


def test_configs_validate_on_construction(tmp_path):
    with pytest.raises(ValueError, match="source must be one of"):
        IngestConfig(source="csv", input_path="x", run_date=RunDate.parse("all"),
                     data_root=str(tmp_path))
    with pytest.raises(ValueError, match="max_session_length must be at least session_gap"):
        SessionizeConfig(run_date=RunDate.parse("all"), data_root=str(tmp_path),
                         session_gap=timedelta(hours=2), max_session_length=timedelta(hours=1))
    with pytest.raises(ValueError, match="session_gap must be positive"):
        SessionizeConfig(run_date=RunDate.parse("all"), data_root=str(tmp_path),
                         session_gap=timedelta(0))


def test_data_root_comes_from_argument_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKSCORE_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "arg")) == str(tmp_path / "arg")
    assert resolve_data_root() == str(tmp_path / "env")
    assert resolve_data_root("s3a://bucket/root/") == "s3a://bucket/root"
    monkeypatch.delenv("CLICKSCORE_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == str(tmp_path / ".clickscore")


def test_a_file_uri_root_is_its_path_and_a_remote_root_keeps_its_local_parts_in_one_place(
        monkeypatch, tmp_path):
    """`file:///lake` is `/lake` from any working directory (one catalog, one registry, one
    lock); an s3a:// root's catalog, lock, MLflow store, checkpoints, reports and GX project
    live under $CLICKSCORE_LOCAL_DIR, or the command fails in one line."""
    from clickscore import registry
    from clickscore.core import spark as core_spark
    from clickscore.core.config import local_dir
    from clickscore.core.errors import DataRootError
    from clickscore.dq.context import dq_dir

    lake = tmp_path / "my lake"
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        for uri in (lake.as_uri(), f"file:{lake}", f"file://localhost{lake}"):
            assert resolve_data_root(uri) == str(lake), uri
    with pytest.raises(ValueError, match="a file: data root names a local path"):
        resolve_data_root("file://otherhost/lake")
    monkeypatch.delenv(registry.MLFLOW_URI_ENV, raising=False)
    monkeypatch.delenv("CLICKSCORE_METASTORE_URL", raising=False)
    monkeypatch.delenv("CLICKSCORE_DQ_DIR", raising=False)
    assert registry.tracking_uri(str(lake)) == f"sqlite:///{lake}/mlflow/mlflow.db"

    remote = "s3a://bucket/lake"
    monkeypatch.delenv("CLICKSCORE_LOCAL_DIR", raising=False)
    with pytest.raises(DataRootError, match=r"^data root s3a://bucket/lake is a URI, and mlflow "
                       r"needs a local folder: set \$CLICKSCORE_LOCAL_DIR to one that every "
                       r"process of this deployment shares"):
        registry.tracking_uri(remote)
    with pytest.raises(DataRootError, match="the embedded catalog and its lock needs"):
        core_spark.local_defaults(remote)
    shared = tmp_path / "mount"
    monkeypatch.setenv("CLICKSCORE_LOCAL_DIR", str(shared))
    assert registry.tracking_uri(remote) == f"sqlite:///{shared}/mlflow/mlflow.db"
    assert core_spark.local_defaults(remote)[core_spark.DERBY_URL_KEY] == (
        f"jdbc:derby:;databaseName={shared}/metastore_db;create=true")
    assert core_spark.local_defaults(remote)["spark.sql.warehouse.dir"] == f"{remote}/warehouse"
    assert dq_dir(remote) == shared / "dq"
    assert local_dir(remote, "reports") == shared / "reports"


def test_a_copied_data_root_reads_its_own_model_files(monkeypatch, tmp_path):
    """MLflow's SQLite store records absolute artifact URIs: a data root copied elsewhere (a
    backup restored, a move) reads the files of its own copy, not the original's."""
    import shutil

    import mlflow

    from clickscore import registry

    monkeypatch.delenv(registry.MLFLOW_URI_ENV, raising=False)
    original, copy = tmp_path / "original", tmp_path / "restored"
    registry.client(str(original))
    with mlflow.start_run() as run:
        mlflow.log_text("the original's", "bundle/weights.txt")
    source = f"{run.info.artifact_uri}/bundle"
    assert source.startswith((original / "mlflow" / "artifacts").as_uri())
    shutil.copytree(original, copy)
    (original / "mlflow" / "artifacts").rename(tmp_path / "gone")  # the original is gone
    mine = registry.own_artifacts(str(copy), source)
    assert mine.startswith((copy / "mlflow" / "artifacts").as_uri())
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=mine))
    assert (folder / "weights.txt").read_text() == "the original's"
    # a tracking server's URIs are its own
    monkeypatch.setenv(registry.MLFLOW_URI_ENV, "http://mlflow.example:5000")
    assert registry.own_artifacts(str(copy), source) == source


def test_table_ddl_comes_from_the_contract():
    ddl = table_schema("bronze.events").ddl()
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS bronze.events (")
    assert "`event_id` STRING NOT NULL COMMENT 'MD5 of the source row\\'s fields'" in ddl
    # every column carries its description (the README's table reference shows the same)
    assert "`price` DOUBLE COMMENT 'unit price in the source" in ddl
    assert ddl.count("COMMENT '") == len(table_schema("bronze.events").columns) + 1  # + table
    assert "PARTITIONED BY (event_date)" in ddl and "USING DELTA" in ddl
    assert ("'delta.dataSkippingStatsColumns' = 'event_ts,user_id,_source_file,"
            "_ingest_run_date'") in ddl
    assert source_layout("rees46").required == [
        "event_time", "event_type", "product_id", "category_id", "price", "user_id"]


def test_contract_check_names_missing_unexpected_and_mistyped_columns(spark):
    df = spark.createDataFrame([("x", "1")], "session_id string, user_id string")
    with pytest.raises(SchemaDriftError) as err:
        table_schema("silver.sessions").check(df.withColumnRenamed("session_id", "sid"),
                                              run_date="2019-10-01")
    assert "session_id" in err.value.missing and err.value.unexpected == ["sid"]
    assert "user_id: expected bigint, found string" in err.value.mismatched
    assert "run date 2019-10-01" in str(err.value)


def test_reconciliation_needs_real_counts_that_add_up():
    assert RunCounts(10, 7, 2, 1).reconciles()
    assert not RunCounts(10, 7, 2, 0).reconciles()
    assert not RunCounts(10, 24, 0, -14).reconciles()  # adds up, but -14 is not a count


def test_the_py_files_zip_carries_the_package_and_its_contracts(tmp_path):
    """What spark-submit ships with --py-files (`make dist`): imported from the zip, the
    package finds its contracts inside it (extracted once), equal to the repository's."""
    zipped = Path(__file__).resolve().parents[2] / "dist" / "clickscore.zip"
    assert zipped.exists(), f"{zipped} is missing: run `make dist`"
    probe = ("import json, clickscore\n"
             "from clickscore.core.paths import schemas_dir\n"
             "from clickscore.core.contracts import table_schema\n"
             "print(json.dumps([clickscore.__file__, str(schemas_dir()),\n"
             "                  repr(table_schema('silver.sessions'))]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(zipped), "TMPDIR": str(tmp_path)},
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    module, schemas, sessions = json.loads(done.stdout)
    assert module == f"{zipped}/clickscore/__init__.py"
    assert Path(schemas).parent == tmp_path and (Path(schemas) / "features").is_dir()
    assert sessions == repr(table_schema("silver.sessions"))


def test_a_running_row_is_abandoned_only_when_its_process_is_known_gone(monkeypatch):
    import os
    import socket
    import subprocess

    from clickscore.core import runs, spark

    here = socket.gethostname()
    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid of this host that no longer runs
    monkeypatch.setattr(spark, "_held", {})  # a shared metastore: other processes may run
    assert runs._gone(here, ended.pid)
    assert not runs._gone(here, os.getppid())  # alive
    assert not runs._gone(here, os.getpid())  # this process (a nested run)
    assert not runs._gone("another-host", ended.pid)  # cannot tell from here
    monkeypatch.setattr(spark, "_held", {"/root": object()})  # this process holds the root
    assert runs._gone("another-host", ended.pid) and runs._gone(here, os.getppid())
    assert not runs._gone(here, os.getpid())


def test_every_column_comment_fits_the_metastore():
    """The Hive metastore keeps a column's comment in VARCHAR(256) (Derby and PostgreSQL
    alike): a longer one fails the table's creation with a truncation error deep in the
    metastore's retries."""
    tables = sorted(p.name.removesuffix(".yaml") for p in
                    (Path(__file__).resolve().parents[2] / "schemas" / "tables").glob("*.yaml"))
    assert "gold.user_scores" in tables
    too_long = [f"{t}.{c.name}: {len(c.comment)}" for t in tables
                for c in table_schema(t).columns if len(c.comment.encode()) > 256]
    assert not too_long, too_long


def test_spark_jvms_start_from_the_class_archive_and_a_stale_one_is_ignored_silently(
        tmp_path, monkeypatch):
    """`local_defaults` gives the driver setup's class-data archive where there is one; a JVM
    given an archive that is not one (another JDK's, or damaged) starts all the same and says
    nothing, so no command's output changes; `CLICKSCORE_CLASS_ARCHIVE=off` leaves it out."""
    from clickscore.core import spark as core_spark

    archive = tmp_path / "clickscore-spark.jsa"
    monkeypatch.setattr(core_spark, "CLASS_ARCHIVE", archive)
    assert core_spark.class_archive_options() == []
    archive.write_bytes(os.urandom(64 * 1024))
    options = core_spark.class_archive_options()
    assert options[0] == f"-XX:SharedArchiveFile={archive}"
    driver = core_spark.local_defaults(str(tmp_path))["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in driver
    plain = subprocess.run(["java", "-version"], capture_output=True, text=True, check=True)
    stale = subprocess.run(["java", *options, "-version"], capture_output=True, text=True,
                           check=False)
    assert stale.returncode == 0, stale.stderr
    assert stale.stdout == "" and len(stale.stderr.splitlines()) == len(
        plain.stderr.splitlines()), stale.stderr
    monkeypatch.setenv(core_spark.CLASS_ARCHIVE_ENV, "off")
    assert core_spark.class_archive_options() == []
    assert "SharedArchiveFile" not in core_spark.local_defaults(str(tmp_path))[
        "spark.driver.extraJavaOptions"]


def test_a_run_writes_for_owner_and_group_and_no_secret_reaches_confs_or_the_lock(
        tmp_path, monkeypatch):
    """Files a process creates follow $CLICKSCORE_UMASK (007 by default), and so do Spark's
    (Hadoop's umask); the shared metastore's password is no Spark conf (they reach the JVM's
    command line); a busy data root names its holder's command, not its arguments."""
    from clickscore.core import files
    from clickscore.core import spark as core_spark

    before = os.umask(0o022)
    try:
        assert core_spark.local_defaults(str(tmp_path))[
            "spark.hadoop.fs.permissions.umask-mode"] == "007"
        (tmp_path / "default").write_text("x")
        monkeypatch.setenv(files.UMASK_ENV, "027")
        assert core_spark.local_defaults(str(tmp_path))[
            "spark.hadoop.fs.permissions.umask-mode"] == "027"
        (tmp_path / "group-reads").write_text("x")
        (tmp_path / "folder").mkdir()
        assert [oct((tmp_path / n).stat().st_mode & 0o777)
                for n in ("default", "group-reads", "folder")] == ["0o660", "0o640", "0o750"]
        monkeypatch.setenv(files.UMASK_ENV, "u=rwx")
        with pytest.raises(ValueError, match="must be an octal umask such as 007"):
            files.private_files()
    finally:
        os.umask(before)

    monkeypatch.setenv("CLICKSCORE_METASTORE_PASSWORD", "s3cret")
    settings = core_spark.shared_metastore("jdbc:postgresql://db:5432/metastore")
    assert "s3cret" not in str(settings) and core_spark.metastore_password() == "s3cret"
    secret_file = tmp_path / "metastore-password"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("CLICKSCORE_METASTORE_PASSWORD_FILE", str(secret_file))
    assert core_spark.metastore_password() == "from-a-file"

    for argv, name in ((["/venv/bin/clickscore", "export", "--jdbc-url", "jdbc:x"],
                        "clickscore export"),
                       (["/repo/lib/clickscore/cli.py", "sessionize", "--run-date", "d"],
                        "clickscore sessionize"),
                       (["jobs/ingest.py", "--input", "/landing/x"], "ingest.py"),
                       (["-c", "/secret/root"], "python")):
        monkeypatch.setattr(sys, "argv", argv)
        assert core_spark.command_name() == name
