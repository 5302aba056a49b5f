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

from clickscore.core.errors import CatalogBusyError
from clickscore.core.logs import SPARK_LOG_LEVEL_ENV

log = logging.getLogger(__name__)

# Written by setup (`python -m clickscore.core.spark --fetch-jars`) into the environment.
JARS_RECORD = Path(sys.prefix) / "clickscore-spark-jars.txt"
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")

DATABASES = ("bronze", "silver", "gold", "quarantine", "ops", "ml")
# The warehouse export's JDBC driver (Maven Central), fetched by setup with the Delta jars.
JDBC_PACKAGES = ("org.postgresql:postgresql:42.7.14",)

# How long a process waits for a data root whose embedded catalog another process holds.
CATALOG_WAIT_ENV = "CLICKSCORE_CATALOG_WAIT_S"
CATALOG_WAIT_DEFAULT_S = 300.0
DERBY_URL_KEY = "spark.hadoop.javax.jdo.option.ConnectionURL"  # the metastore's JDBC URL
METASTORE_URL_ENV = "CLICKSCORE_METASTORE_URL"
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
        "spark.ui.enabled": "true" if ui else "false",
        "spark.ui.showConsoleProgress": "false",
        # executors' Python workers convert timestamps in their process's time zone too
        "spark.executorEnv.TZ": "UTC",
    }
    java_options = [f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}",
                    "-Duser.timezone=UTC"]
    shared = os.environ.get(METASTORE_URL_ENV)
    if shared:
        conf.update(shared_metastore(shared))
    elif is_local_root:
        conf[DERBY_URL_KEY] = (
            f"jdbc:derby:;databaseName={data_root}/metastore_db;create=true"
        )
        # quoted: a data root may hold spaces
        java_options.insert(0, f"\"-Dderby.system.home={data_root}\"")
    conf["spark.driver.extraJavaOptions"] = " ".join(java_options)
    return conf


def shared_metastore(url: str) -> dict[str, str]:
    """Settings for a Hive metastore in PostgreSQL (`$CLICKSCORE_METASTORE_URL`, a
    `jdbc:postgresql://` URL) that many processes use at once: jobs and analysts' queries on
    one data root. Credentials come from `$CLICKSCORE_METASTORE_USER` and
    `$CLICKSCORE_METASTORE_PASSWORD` (or a file named by `$CLICKSCORE_METASTORE_PASSWORD_FILE`),
    never from the command line. The metastore's tables are created on first use."""
    if not url.startswith("jdbc:postgresql://"):
        raise ValueError(f"{METASTORE_URL_ENV} must be a jdbc:postgresql:// URL, got {url!r}")
    password = os.environ.get("CLICKSCORE_METASTORE_PASSWORD", "")
    password_file = os.environ.get("CLICKSCORE_METASTORE_PASSWORD_FILE")
    if password_file:
        password = Path(password_file).read_text().strip()
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
        f"{hadoop}javax.jdo.option.ConnectionPassword": password,
        # the metastore's tables and columns are created on first use; not its foreign keys:
        # DataNucleus adds them on a second connection and waits forever for a lock its own
        # first connection holds (measured: a CREATE TABLE hung 10 minutes in
        # TableImpl.createForeignKeys)
        f"{hadoop}datanucleus.schema.autoCreateTables": "true",
        f"{hadoop}datanucleus.schema.autoCreateColumns": "true",
        f"{hadoop}datanucleus.schema.autoCreateConstraints": "false",
        f"{hadoop}hive.metastore.schema.verification": "false",
    }


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
    lock = open(Path(root) / ".clickscore.lock", "a+")  # noqa: SIM115 - held until exit
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
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}: "
               f"{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}"[:300])
    lock.flush()
    _held[root] = lock


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
        hold_data_root(data_root)  # before Derby boots: the embedded catalog admits one process
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get(SPARK_LOG_LEVEL_ENV, "WARN"))
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


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:] != ["--fetch-jars"]:
        sys.exit("usage: python -m clickscore.core.spark --fetch-jars")
    _fetch_jars()
