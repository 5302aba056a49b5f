"""The one place a SparkSession is made.

Locally it starts Spark with Delta, a Hive metastore (embedded Derby) and a warehouse under the
data root, so tables resolve by name (`silver.sessions`) from any later process. Under
`spark-submit` it adds only what the submitter did not set: `--master`, `--packages`,
`--conf` and a cluster's own metastore always win.

Every clock is UTC, whatever the machine's: Spark's session time zone, the JVM's, the Python
workers', and this driver process's own (`use_utc_clock`). PySpark converts timestamps to and
from naive Python datetimes in the *process's* local time zone, not the session's, so on a
machine set to Asia/Shanghai a collected `max(event_ts)` came back eight hours off and the
run window, the data-quality bounds and sessionize's recompute date moved with it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from clickscore.core.config import local_dir
from clickscore.core.errors import CatalogBusyError
from clickscore.core.files import private_files
from clickscore.core.logs import SPARK_LOG_LEVEL_ENV

log = logging.getLogger(__name__)

# Written by setup (`python -m clickscore.core.spark --fetch-jars`) into the environment.
JARS_RECORD = Path(sys.prefix) / "clickscore-spark-jars.txt"
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")
# Written by setup (`python -m clickscore.core.spark --class-archive`) into the environment: a
# class-data archive of the classes a Spark driver loads, which later JVMs map instead of
# parsing and verifying them again (`class_archive_options`).
CLASS_ARCHIVE = Path(sys.prefix) / "clickscore-spark.jsa"
CLASS_ARCHIVE_ENV = "CLICKSCORE_CLASS_ARCHIVE"  # "off": start without it

DATABASES = ("bronze", "silver", "gold", "quarantine", "ops", "ml")
# The warehouse export's JDBC driver (Maven Central), fetched by setup with the Delta jars.
JDBC_PACKAGES = ("org.postgresql:postgresql:42.7.14",)

# How long a process waits for a data root whose embedded catalog another process holds.
CATALOG_WAIT_ENV = "CLICKSCORE_CATALOG_WAIT_S"
CATALOG_WAIT_DEFAULT_S = 300.0
DERBY_URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"  # the metastore's JDBC URL
METASTORE_URL_ENV = "CLICKSCORE_METASTORE_URL"
METASTORE_PASSWORD_KEY = "javax.jdo.option.ConnectionPassword"
_held: dict[str, object] = {}  # data root -> its open lock file, held for the process's life

# Static settings: they take effect only when the JVM / SparkContext starts.
_LAUNCH_KEYS = ("spark.master", "spark.jars.packages", "spark.driver.memory",
                "spark.driver.extraJavaOptions", "spark.driver.extraClassPath")


def local_defaults(data_root: str, *, ui: bool = False) -> dict[str, str]:
    """Settings for a single-machine run; each applies only where nobody set it already."""
    cores = os.cpu_count() or 2
    is_local_root = "://" not in data_root
    conf = {
        "spark.master": os.environ.get("CLICKSCORE_SPARK_MASTER", "local[*]"),
        "spark.driver.memory": os.environ.get("CLICKSCORE_DRIVER_MEMORY", "4g"),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": f"{data_root}/warehouse",
        "spark.sql.shuffle.partitions": str(max(4, 2 * cores)),
        "spark.sql.adaptive.enabled": "true",
        # Delta rebuilds table state with 50 tasks by default: far too many for small tables.
        "spark.databricks.delta.snapshotPartitions": str(max(2, cores)),
        # Spark keeps 100 compiled expression classes by default; a stage run's queries (its
        # own, Delta's log replay and commits, GX's metrics, the run record) need more, so a
        # process running several stages recompiled the same classes with Janino and the JIT
        # compiled them again (9,984 classes unloaded in one scoring test; 2,000 entries: 139,
        # and about 0.75x the JVM's CPU; benchmarks/README.md). A static setting: set at launch.
        "spark.sql.codegen.cache.maxEntries": "2000",
        "spark.ui.enabled": "true" if ui else "false",
        "spark.ui.showConsoleProgress": "false",
        # executors' Python workers convert timestamps in their process's time zone too
        "spark.executorEnv.TZ": "UTC",
        # Hadoop's local file system sets each file's mode itself, from its own umask
        "spark.hadoop.fs.permissions.umask-mode": f"{private_files():03o}",
    }
    java_options = [f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}",
                    "-Duser.timezone=UTC", *class_archive_options()]
    shared = os.environ.get(METASTORE_URL_ENV)
    if shared:
        conf.update(shared_metastore(shared))
    else:  # the embedded catalog: in the data root, or a URI root's local folder
        home = data_root if is_local_root else str(local_dir(data_root))
        conf[DERBY_URL_KEY] = f"jdbc:derby:;databaseName={home}/metastore_db;create=true"
        # quoted: a data root may hold spaces
        java_options.insert(0, f"\"-Dderby.system.home={home}\"")
    conf["spark.driver.extraJavaOptions"] = " ".join(java_options)
    return conf


def class_archive_options() -> list[str]:
    """JVM options that start a JVM from setup's class-data archive (AppCDS), when there is
    one. The JVM checks the archive against its own build and class path and ignores one
    that does not match (another JDK, other jars); quietly, so a stale archive costs the
    start-up time it would have saved and prints nothing."""
    if os.environ.get(CLASS_ARCHIVE_ENV) == "off" or not CLASS_ARCHIVE.exists():
        return []
    return [f"-XX:SharedArchiveFile={CLASS_ARCHIVE}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]


def shared_metastore(url: str) -> dict[str, str]:
    """Settings for a Hive metastore in PostgreSQL (`$CLICKSCORE_METASTORE_URL`, a
    `jdbc:postgresql://` URL) that many processes use at once: jobs and analysts' queries on
    one data root. Credentials come from `$CLICKSCORE_METASTORE_USER` and
    `$CLICKSCORE_METASTORE_PASSWORD` (or a file named by `$CLICKSCORE_METASTORE_PASSWORD_FILE`),
    never from the command line. The metastore's tables are created on first use. The
    password is not among these settings: Spark confs reach the JVM's command line (which
    every local user can list) and any session's `spark.conf`; `get_spark` hands it to the
    session's Hadoop configuration once the JVM is up (`metastore_password`)."""
    if not url.startswith("jdbc:postgresql://"):
        raise ValueError(f"{METASTORE_URL_ENV} must be a jdbc:postgresql:// URL, got {url!r}")
    hadoop = "spark.hadoop."
    # the metastore client finds its JDBC driver through java.sql.DriverManager, which sees
    # the JVM's class path only, not the jars Spark adds (under spark-submit:
    # --driver-class-path)
    driver_jars = [urlparse(j).path for j in recorded_jars() or []
                   if Path(j).name.startswith("org.postgresql_postgresql-")]
    return {
        **({"spark.driver.extraClassPath": ":".join(driver_jars)} if driver_jars else {}),
        DERBY_URL_KEY: url,
        f"{hadoop}javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        f"{hadoop}javax.jdo.option.ConnectionUserName":
            os.environ.get("CLICKSCORE_METASTORE_USER", "clickscore"),
        # the metastore's tables and columns are created on first use; not its foreign keys:
        # DataNucleus adds them on a second connection and waits forever for a lock its own
        # first connection holds (measured: a CREATE TABLE hung 10 minutes in
        # TableImpl.createForeignKeys)
        f"{hadoop}datanucleus.schema.autoCreateTables": "true",
        f"{hadoop}datanucleus.schema.autoCreateColumns": "true",
        f"{hadoop}datanucleus.schema.autoCreateConstraints": "false",
        f"{hadoop}hive.metastore.schema.verification": "false",
    }


def metastore_password() -> str:
    """The shared metastore's password: `$CLICKSCORE_METASTORE_PASSWORD`, or the file named by
    `$CLICKSCORE_METASTORE_PASSWORD_FILE`."""
    password_file = os.environ.get("CLICKSCORE_METASTORE_PASSWORD_FILE")
    if password_file:
        return Path(password_file).read_text().strip()
    return os.environ.get("CLICKSCORE_METASTORE_PASSWORD", "")


def recorded_jars() -> list[str] | None:
    """The Delta jars setup resolved (`--fetch-jars`), when every one is still there: a local
    session then loads them directly instead of running Ivy's resolution (which prints its
    report and costs seconds on every start)."""
    if not JARS_RECORD.exists():
        return None
    jars = [j for j in JARS_RECORD.read_text().split() if j]
    paths = [Path(j.removeprefix("file:")) for j in jars]
    # a record from before a package was added lacks its jar: resolve again
    wanted = [f"{group}_{artifact}-{version}.jar"
              for group, artifact, version in (p.split(":") for p in JDBC_PACKAGES)]
    complete = all(any(p.name == name for p in paths) for name in wanted)
    return jars if jars and complete and all(p.is_file() for p in paths) else None


def use_utc_clock() -> None:
    """Make this process's local time zone UTC (`TZ=UTC`, then `time.tzset`), so the naive
    datetimes PySpark hands over (`collect`, `first`) and takes (literals, `createDataFrame`)
    mean UTC, as Spark's session time zone does; a JVM or Python worker started from this
    process inherits it. Called before any session is made; idempotent."""
    if os.environ.get("TZ") != "UTC":
        log.debug("driver time zone %s -> UTC", os.environ.get("TZ") or time.tzname[0])
        os.environ["TZ"] = "UTC"
        time.tzset()


def hold_data_root(data_root: str, wait_s: float | None = None) -> None:
    """Take the data root for this process, waiting while another holds it.

    The embedded Derby catalog admits one process at a time; a second one used to print
    thousands of lines of Derby stack traces and fail. So a local run first takes an
    exclusive lock on `<data root>/.clickscore.lock` (released by the OS when the process
    ends, however it ends), printing one line that says which data root is busy and who holds
    it, and raises `CatalogBusyError` after `wait_s` (default `$CLICKSCORE_CATALOG_WAIT_S`,
    300 s). A shared metastore (see the README) needs none of this.
    """
    root = str(Path(data_root).resolve())
    if root in _held:
        return
    wait_s = float(os.environ.get(CATALOG_WAIT_ENV, CATALOG_WAIT_DEFAULT_S)
                   if wait_s is None else wait_s)
    Path(root).mkdir(parents=True, exist_ok=True)
    descriptor = os.open(Path(root) / ".clickscore.lock", os.O_RDWR | os.O_CREAT, 0o660)
    lock = open(descriptor, "a+")  # noqa: SIM115 - held until exit
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            if time.monotonic() >= deadline:
                lock.close()
                raise CatalogBusyError(root, holder, wait_s) from None
            if not said:
                print(f"clickscore: data root {root} is busy ({holder}); waiting up to "
                      f"{wait_s:.0f} s", file=sys.stderr, flush=True)
                said = True
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}: {command_name()}"[:300])
    lock.flush()
    _held[root] = lock


def command_name() -> str:
    """This process's program and command (`clickscore sessionize`, `ingest.py`), without its
    arguments: what a busy data root says about its holder (an argument may be a secret)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    program = {"cli.py": "clickscore", "__main__.py": "clickscore", "-c": "python",
               "": "python"}.get(program, program)
    words = [program]
    if len(sys.argv) > 1 and sys.argv[1].replace("-", "").isalpha() \
            and not sys.argv[1].startswith("-"):
        words.append(sys.argv[1])
    return " ".join(words)


def holds_data_root() -> bool:
    """Whether this process holds a data root (and so is the only one using its catalog)."""
    return bool(_held)


def is_submitted() -> bool:
    """True when this Python driver was started by spark-submit (its JVM is already up)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(
    data_root: str,
    app_name: str = "clickscore",
    *,
    ui: bool = False,
    conf: Mapping[str, str] | None = None,
    resolve_jars: bool = False,
) -> SparkSession:
    """A SparkSession with Delta and a persistent catalog; see the module docstring.
    `resolve_jars` resolves the Delta jars with Ivy even when setup recorded them."""
    use_utc_clock()
    wanted = {**local_defaults(data_root, ui=ui), **(conf or {})}
    builder = SparkSession.builder.appName(app_name)
    if is_submitted():
        SparkContext._ensure_initialized()  # connects to spark-submit's JVM, launches nothing
        given = SparkConf()  # what spark-submit was told (--master, --conf, --packages)
        wanted = {
            k: v for k, v in wanted.items() if not given.contains(k) and k not in _LAUNCH_KEYS
        }
        for key, value in wanted.items():
            builder = builder.config(key, value)
    else:
        # A local driver binds to loopback (and Spark stops warning that the host name
        # resolves to it); a cluster sets its own.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers (scoring's mapInArrow) run this interpreter, which has clickscore
        # installed, not whatever `python3` is first on the PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        for key, value in wanted.items():
            builder = builder.config(key, value)
        jars = None if resolve_jars else recorded_jars()
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
        else:
            from delta import configure_spark_with_delta_pip

            builder = configure_spark_with_delta_pip(builder,
                                                     extra_packages=list(JDBC_PACKAGES))
    if wanted.get(DERBY_URL_KEY, "").startswith("jdbc:derby:"):
        # before Derby boots: the embedded catalog admits one process
        hold_data_root(str(local_dir(data_root)))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get(SPARK_LOG_LEVEL_ENV, "WARN"))
    if os.environ.get(METASTORE_URL_ENV):
        # before the catalog's first use (the CREATE DATABASE below) makes the metastore
        # client, which reads the shared state's Hadoop configuration; never a Spark conf
        jsession = spark._jsparkSession  # type: ignore[attr-defined]
        jsession.sharedState().hadoopConf().set(METASTORE_PASSWORD_KEY, metastore_password())
    for database in DATABASES:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    log.debug("spark %s master=%s submitted=%s shuffle.partitions=%s warehouse=%s code=%s",
             spark.version, spark.sparkContext.master, is_submitted(),
             spark.conf.get("spark.sql.shuffle.partitions"),
             spark.conf.get("spark.sql.warehouse.dir"), Path(__file__).parents[1])
    return spark


def _fetch_jars() -> None:
    """Start (and stop) a local session once so Ivy caches the Delta jars and the JDBC
    driver from Maven Central, and record the resolved jar files for later local sessions
    (`recorded_jars`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        spark = get_spark(root, app_name="clickscore-setup", resolve_jars=True)
        jars = spark.sparkContext.getConf().get("spark.jars", "")
        spark.stop()
    JARS_RECORD.write_text("\n".join(j for j in jars.split(",") if j) + "\n")
    log.info("Delta jars cached and recorded in %s; spark %s ready", JARS_RECORD,
             spark.version)


def _dump_class_archive() -> None:
    """Write `CLASS_ARCHIVE`: a local session does what every stage does (Delta writes,
    reads, a merge, the table's history, the catalog), then `jcmd VM.cds dynamic_dump` saves
    the classes its JVM loaded from the JDK and Spark's jars (the Delta jars come through
    Spark's own class loader, which JDK 17 does not archive). Skipped, saying why, where the
    JDK has no `jcmd`: the archive only saves start-up time."""
    import shutil
    import subprocess
    import tempfile

    home = os.environ.get("JAVA_HOME")  # the JVM Spark starts: $JAVA_HOME's, else the PATH's
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    jcmd = Path(os.path.realpath(java)).with_name("jcmd") if java else None
    if jcmd is None or not jcmd.exists():
        log.warning("no jcmd beside %s: no class-data archive (JVMs start without one)", java)
        return
    CLASS_ARCHIVE.unlink(missing_ok=True)  # this JVM must load its classes, not map them
    os.environ["SPARK_SUBMIT_OPTS"] = " ".join(
        [os.environ.get("SPARK_SUBMIT_OPTS", ""), "-XX:+RecordDynamicDumpInfo"]).strip()
    with tempfile.TemporaryDirectory() as root:
        spark = get_spark(root, app_name="clickscore-setup", conf={"spark.master": "local[1]"})
        table = "ops.class_archive_probe"
        spark.range(100).selectExpr("id", "id % 7 AS k", "current_timestamp() AS ts") \
            .write.format("delta").mode("overwrite").saveAsTable(table)
        spark.sql(f"MERGE INTO {table} t USING (SELECT 1L AS id, 3L AS k) s ON t.id = s.id "
                  "WHEN MATCHED THEN UPDATE SET t.k = s.k")
        spark.sql(f"SELECT k, count(*) AS n FROM {table} GROUP BY k ORDER BY k").collect()
        spark.sql(f"DESCRIBE HISTORY {table}").collect()
        spark.catalog.listTables("ops")
        pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()  # type: ignore[union-attr]
        done = subprocess.run([str(jcmd), str(pid), "VM.cds", "dynamic_dump",
                               str(CLASS_ARCHIVE)], capture_output=True, text=True, check=False)
        spark.stop()
    if done.returncode or not CLASS_ARCHIVE.exists():
        log.warning("no class-data archive: %s", (done.stdout + done.stderr)[-500:])
        return
    log.info("class-data archive written: %s (%.0f MB)", CLASS_ARCHIVE,
             CLASS_ARCHIVE.stat().st_size / 1e6)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    commands = {"--fetch-jars": _fetch_jars, "--class-archive": _dump_class_archive}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m clickscore.core.spark --fetch-jars | --class-archive")
    commands[sys.argv[1]]()
