"""`clickscore export`: one score date of gold.user_scores into a relational warehouse.

Spark's JDBC writer copies the date's rows, and its top items as a child table (one row per
user, date and rank, so SQL users join instead of parsing arrays), into two staging tables of
this run. Then one transaction on the warehouse deletes the date's rows from the published
tables and inserts the staged ones: a reader sees the old date or the new one, never a mix,
and a failed run leaves the published tables as they were. The staging tables are dropped
either way. Every connection has limits: to connect, per statement (the warehouse cancels a
statement that runs or waits for a lock longer) and per socket read, so an export never hangs
on a warehouse that stopped answering; a breach fails in one line. Credentials come from the
environment (`credentials`), never from the command line, and are never logged or recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunDate, RunKey
from clickscore.core.delta import read_table, table_version
from clickscore.core.errors import ClickscoreError
from clickscore.core.identity import SOURCE, USER, only_source
from clickscore.core.runs import RunCounts
from clickscore.export.config import ExportConfig
from clickscore.export.credentials import jdbc_properties
from clickscore.runner import stage_run

log = logging.getLogger(__name__)

USER_SCORES = "gold.user_scores"
SCORE_COLUMNS = {  # column -> warehouse type
    "source": "TEXT", "user_id": "BIGINT", "score_date": "DATE",
    "purchase_propensity": "DOUBLE PRECISION",
    "propensity_decile": "INTEGER", "model_version": "TEXT", "next_item_scorer": "TEXT",
    "propensity_scorer": "TEXT", "feature_as_of": "TIMESTAMP", "scored_at": "TIMESTAMP"}
# added after the first release: a warehouse table from before gets them (NULL for old rows)
ADDED_COLUMNS = ("next_item_scorer", "propensity_scorer")
ITEM_COLUMNS = {"score_date": "DATE", "source": "TEXT", "user_id": "BIGINT", "rank": "INTEGER",
                "item_id": "BIGINT", "score": "REAL"}


class ExportError(ClickscoreError):
    """The warehouse refused the export; its tables are as they were."""


def ddl(table: str, columns: dict[str, str], keys: tuple[str, ...]) -> str:
    body = ", ".join(f"{name} {kind} NOT NULL" for name, kind in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({', '.join(keys)}))"


def item_rows(scores_df: DataFrame) -> DataFrame:
    """One row per user, date and top item; rank 1 = the best."""
    return scores_df.select("score_date", *USER, F.posexplode("top_items").alias(
        "position", "item")).select(
        "score_date", *USER, (F.col("position") + 1).alias("rank"),
        F.col("item.item_id").alias("item_id"), F.col("item.score").alias("score"))


def connection_limits(cfg: ExportConfig) -> dict[str, str]:
    """PostgreSQL's JDBC properties for the config's timeouts (seconds, and milliseconds for
    the server's `statement_timeout`, set for every session the export opens)."""
    return {"connectTimeout": str(cfg.connect_timeout_s),
            "socketTimeout": str(cfg.socket_timeout_s),
            "options": f"-c statement_timeout={cfg.statement_timeout_s * 1000}"}


def reason(exc: BaseException) -> str:
    """The first line of what the JDBC driver said (a Py4J error's own first line only
    names the Java call)."""
    java = getattr(exc, "java_exception", None)
    text = str(java.getMessage()) if java is not None else str(exc)
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "statement timeout" in line:
        line += " (--statement-timeout-s; another session may hold a lock on the table)"
    return line[:400]


def run_export(spark: SparkSession, cfg: ExportConfig) -> RunCounts:
    properties = {**jdbc_properties(cfg.jdbc_url), **connection_limits(cfg)}
    day = cfg.run_date.isoformat()
    with stage_run(spark, "export", RunKey.of_date(RunDate(cfg.run_date)),
                   data_root=cfg.data_root,
                   what=f"to {cfg.table} at {cfg.jdbc_url.split('?')[0]}") as stage:
        read_table(spark, USER_SCORES)
        version = table_version(spark, USER_SCORES)
        scores_df = (spark.read.option("versionAsOf", version).table(USER_SCORES)
                     .where(F.col("score_date") == F.lit(cfg.run_date)))
        scores_df = stage.stage("scores", scores_df)
        users = stage.staging.rows["scores"]
        if users == 0:
            raise ExportError(f"{USER_SCORES} has no rows for score date {day}; run "
                              f"`clickscore score --run-date {day}` first")
        items_df = item_rows(scores_df)
        suffix = uuid.uuid4().hex[:12]
        staged = {cfg.table: f"{cfg.table}_stage_{suffix}",
                  cfg.items_table: f"{cfg.items_table}_stage_{suffix}"}
        try:
            with stage.step("copy"):
                for df, table in ((scores_df.select(*SCORE_COLUMNS), staged[cfg.table]),
                                  (items_df, staged[cfg.items_table])):
                    try:
                        df.write.jdbc(cfg.jdbc_url, table, mode="overwrite",
                                      properties=properties)
                    except Exception as exc:  # Py4J's, carrying the driver's
                        raise ExportError(f"copying {day} to the warehouse failed: "
                                          f"{reason(exc)}; its tables are unchanged") from exc
            with stage.step("swap"):
                inserted = _swap(spark, cfg, properties, staged, day,
                                 lambda table: only_source(spark, table))
        finally:
            _drop(spark, cfg.jdbc_url, properties, staged.values())
        log.debug("export %s: %s", day, inserted)
        return stage.finish(RunCounts(input_rows=users, output_rows=inserted["scores"],
                                      details={"user_scores_version": version,
                                               "table": cfg.table,
                                               "items_table": cfg.items_table,
                                               "item_rows": inserted["items"],
                                               "url": cfg.jdbc_url.split("?")[0]}))


def _connection(spark: SparkSession, url: str, properties: dict[str, str]) -> Any:
    """A JDBC connection from the driver's JVM, through the driver class Spark loaded (from
    `spark.jars` or `--packages`: Spark's class loader, which `DriverManager` does not see)."""
    jvm, gateway = spark.sparkContext._jvm, spark.sparkContext._gateway
    assert jvm is not None and gateway is not None
    props = jvm.java.util.Properties()
    for key, value in properties.items():
        props.setProperty(key, value)
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    driver = (jvm.java.lang.Class.forName(properties["driver"], True, loader)
              .getDeclaredConstructor(gateway.new_array(jvm.java.lang.Class, 0))
              .newInstance(gateway.new_array(jvm.java.lang.Object, 0)))
    return driver.connect(url, props)


def _swap(spark: SparkSession, cfg: ExportConfig, properties: dict[str, str],
          staged: dict[str, str], day: str, old_source: Callable[[str], str]
          ) -> dict[str, int]:
    """Replace the date's rows by the staged ones in one transaction; rows inserted."""
    try:
        connection = _connection(spark, cfg.jdbc_url, properties)
    except Exception as exc:
        raise ExportError(f"cannot connect to the warehouse at {cfg.jdbc_url.split('?')[0]}: "
                          f"{reason(exc)}") from exc
    try:
        return _replace(connection, cfg, staged, day, old_source)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"the warehouse refused the export of {day} to {cfg.table}: "
                          f"{reason(exc)}; its tables are unchanged") from exc
    finally:
        connection.close()


def _replace(connection: Any, cfg: ExportConfig, staged: dict[str, str], day: str,
             old_source: Callable[[str], str]) -> dict[str, int]:
    """`_swap`'s statements on an open connection."""
    statement = connection.createStatement()
    keys = {cfg.table: ("score_date", *USER), cfg.items_table: ("score_date", *USER, "rank")}
    statement.execute(ddl(cfg.table, SCORE_COLUMNS, keys[cfg.table]))
    statement.execute(ddl(cfg.items_table, ITEM_COLUMNS, keys[cfg.items_table]))
    for column in ADDED_COLUMNS:
        statement.execute(f"ALTER TABLE {cfg.table} ADD COLUMN IF NOT EXISTS {column} "
                          f"{SCORE_COLUMNS[column]}")
    for table, table_keys in keys.items():
        _scope_by_source(connection, table, table_keys, old_source)
    connection.setAutoCommit(False)
    try:
        inserted = {}
        for name, table, columns in (("items", cfg.items_table, ITEM_COLUMNS),
                                     ("scores", cfg.table, SCORE_COLUMNS)):
            names = ", ".join(columns)
            statement.executeUpdate(f"DELETE FROM {table} WHERE score_date = DATE '{day}'")
            inserted[name] = int(statement.executeUpdate(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged[table]}"))
        connection.commit()
    except Exception:
        connection.rollback()
        raise
    return inserted


def _scope_by_source(connection: Any, table: str, keys: tuple[str, ...],
                     old_source: Callable[[str], str]) -> None:
    """A warehouse table exported before users were scoped by source (`core.identity`) gets
    its `source` column, filled for its old rows with `old_source(table)` (the one source
    they can have come from), and the primary key that includes it, in one transaction."""
    statement = connection.createStatement()
    try:
        statement.executeQuery(f"SELECT {SOURCE} FROM {table} WHERE false").close()
        return  # scoped already (or created just now)
    except Exception:  # noqa: BLE001 -- the JDBC driver's own exception: no such column
        pass
    log.info("%s: adding the source column and making it part of the primary key", table)
    connection.setAutoCommit(False)
    try:
        statement.execute(f"ALTER TABLE {table} ADD COLUMN {SOURCE} TEXT")
        result = statement.executeQuery(f"SELECT count(*) FROM {table}")
        result.next()
        if result.getLong(1):
            source = old_source(table).replace("'", "''")
            statement.executeUpdate(f"UPDATE {table} SET {SOURCE} = '{source}'")
        statement.execute(f"ALTER TABLE {table} ALTER COLUMN {SOURCE} SET NOT NULL")
        result = statement.executeQuery(
            f"SELECT conname FROM pg_constraint WHERE conrelid = '{table}'::regclass "
            "AND contype = 'p'")
        if result.next():
            statement.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{result.getString(1)}"')
        statement.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(keys)})")
        connection.commit()
    except Exception:
        connection.rollback()
        raise
    finally:
        connection.setAutoCommit(True)


def _drop(spark: SparkSession, url: str, properties: dict[str, str], tables: Any) -> None:
    try:
        connection = _connection(spark, url, properties)
    except Exception:  # the warehouse is gone: nothing was staged there either
        return
    try:
        statement = connection.createStatement()
        for table in tables:
            statement.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        connection.close()
