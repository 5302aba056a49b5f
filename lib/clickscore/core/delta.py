"""Delta IO at the edge: create tables from their contracts, read, and the write patterns the
stages use (insert-only MERGE, upsert-with-tombstones MERGE, full overwrite)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.contracts import TableSchema, table_schema
from clickscore.core.identity import SOURCE, backfill_source

log = logging.getLogger(__name__)

OP_COLUMN = "_op"  # in a MERGE source: 'upsert' or 'delete'


def ensure_table(spark: SparkSession, table: str) -> TableSchema:
    """Create `table` from its contract if it does not exist; return the contract."""
    schema = table_schema(table)
    spark.sql(schema.ddl())
    return schema


_upgraded: set[str] = set()  # tables whose columns were checked against their contract


def ensure_columns(spark: SparkSession, table: str) -> TableSchema:
    """`ensure_table`, and a table created before its contract gained columns gets them
    (`ALTER TABLE ADD COLUMNS`, nullable: its old rows hold NULL), once per process: the
    write paths call it, so a newer release writes into an older warehouse."""
    schema = ensure_table(spark, table)
    if table not in _upgraded:
        have = set(spark.table(table).columns)
        missing = [c for c in schema.columns if c.name not in have]
        if missing:
            log.info("%s: adding columns %s from its contract", table,
                     ", ".join(c.name for c in missing))
            spark.sql(f"ALTER TABLE {table} ADD COLUMNS (" + ", ".join(
                f"`{c.name}` {c.type}" for c in missing) + ")")
            if SOURCE in {c.name for c in missing}:
                backfill_source(spark, table)
        _upgraded.add(table)
    return schema


def read_table(spark: SparkSession, table: str) -> DataFrame:
    """The current version of a published table, created empty if it does not exist yet, with
    the columns its contract gained since it was created (`ensure_columns`)."""
    ensure_columns(spark, table)
    return spark.read.table(table)


def table_version(spark: SparkSession, table: str) -> int:
    """The table's latest Delta version."""
    return _latest_commit(spark, table, with_metrics=False)[0]


def _latest_commit(spark: SparkSession, table: str, *,
                   with_metrics: bool) -> tuple[int, dict[str, str]]:
    """The table's latest version and (if asked) the operation metrics Delta recorded for it.

    Read from the Delta log in the driver: the table's snapshot, and the one commit file,
    through Delta's own classes (`DeltaLog.update`, `DeltaHistoryManager.getCommitInfoOpt`).
    `DeltaTable.history(1)` gives the same but runs a Spark job over the commit files each
    time (0.15-0.3 s; the stage runs ask several times per run). Where those classes are not
    reachable (another Delta release), it falls back to `history(1)` for the rest of the
    process."""
    global _log_reads
    if _log_reads:
        try:
            delta_log = DeltaTable.forName(spark, table)._jdt.deltaLog()
            snapshot = delta_log.update(False, getattr(delta_log, "update$default$2")(),
                                        getattr(delta_log, "update$default$3")())
            version = int(snapshot.version())
            if not with_metrics:
                return version, {}
            jvm = spark.sparkContext._jvm
            assert jvm is not None
            commit = jvm.org.apache.spark.sql.delta.DeltaHistoryManager.getCommitInfoOpt(
                delta_log.store(), jvm.org.apache.spark.sql.delta.util.FileNames
                .unsafeDeltaFile(delta_log.logPath(), version), delta_log.newDeltaHadoopConf())
            found = commit.get().operationMetrics() if commit.isDefined() else None
            return version, (dict(jvm.scala.jdk.javaapi.CollectionConverters.asJava(found.get()))
                             if found is not None and found.isDefined() else {})
        except Py4JError as exc:
            log.debug("Delta log classes not reachable (%s); reading history(1)", exc)
            _log_reads = False
    row = DeltaTable.forName(spark, table).history(1).select(
        "version", "operationMetrics").first()  # one read of the log for both
    if row is None:
        raise RuntimeError(f"{table} has no Delta history")
    return int(row[0]), dict(row[1] or {})


_log_reads = True  # False once Delta's log classes were found unreachable in this process


def _own_metrics(spark: SparkSession, table: str, before: int,
                 source_df: DataFrame | None = None) -> dict[str, int]:
    """The metrics of the write that just ran (those Delta recorded for the table's latest
    commit, when it is newer than `before`). A write that changes nothing (an empty
    append, a MERGE with nothing to insert) makes no commit, and the latest commit is then an
    earlier write's: report that nothing was written, with, for a MERGE, the rows it was given
    (its source is staged, so counting is cheap)."""
    version, metrics = _latest_commit(spark, table, with_metrics=True)
    if version != before:
        return {k: int(v) for k, v in metrics.items() if v is not None and v.isdigit()}
    nothing = {"numOutputRows": 0}
    if source_df is not None:
        nothing |= {"numSourceRows": source_df.count(), "numTargetRowsInserted": 0,
                    "numTargetRowsUpdated": 0, "numTargetRowsDeleted": 0}
    return nothing


def _conformed(
    df: DataFrame, schema: TableSchema, run_date: str | None, keep: tuple[str, ...] = ()
) -> DataFrame:
    out = schema.conform(df, keep)
    schema.check(out.drop(*keep), run_date)
    return out


def merge_insert_new(
    spark: SparkSession, df: DataFrame, table: str, *, run_date: str | None = None
) -> dict[str, int]:
    """Insert the rows of `df` whose contract keys are not in `table` yet (idempotent append).

    Rows that repeat each other inside `df` are all inserted; a second run inserts nothing.
    """
    schema = ensure_columns(spark, table)
    source_df = _conformed(df, schema, run_date)
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in schema.keys)
    before = table_version(spark, table)
    (DeltaTable.forName(spark, table).alias("t")
     .merge(source_df.alias("s"), condition)
     .whenNotMatchedInsertAll()
     .execute())
    return _own_metrics(spark, table, before, source_df)


def merge_upsert(
    spark: SparkSession,
    df: DataFrame,
    table: str,
    *,
    compare: Sequence[str],
    target_filter: str | None = None,
    run_date: str | None = None,
) -> dict[str, int]:
    """Apply a change set keyed by the contract's keys.

    `df` carries the table's columns plus `_op`: 'upsert' rows update the target where one of
    `compare` differs (so an unchanged row is not rewritten) or insert it; 'delete' rows
    remove the target row with that key. `target_filter` (SQL on `t.`) limits the target
    rows the MERGE reads, for partition pruning.
    """
    schema = ensure_columns(spark, table)
    source_df = _conformed(df, schema, run_date, keep=(OP_COLUMN,))
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in schema.keys)
    if target_filter:
        condition = f"({target_filter}) AND {condition}"
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compare)
    columns: dict[str, Any] = {c: f"s.`{c}`" for c in schema.names}
    before = table_version(spark, table)
    (DeltaTable.forName(spark, table).alias("t")
     .merge(source_df.alias("s"), condition)
     .whenMatchedDelete(condition=f"s.{OP_COLUMN} = 'delete'")
     .whenMatchedUpdate(condition=f"s.{OP_COLUMN} = 'upsert' AND ({changed})", set=columns)
     .whenNotMatchedInsert(condition=f"s.{OP_COLUMN} = 'upsert'", values=columns)
     .execute())
    return _own_metrics(spark, table, before, source_df)


def overwrite(
    spark: SparkSession, df: DataFrame, table: str, *, run_date: str | None = None
) -> dict[str, int]:
    """Replace the whole table's content in one commit (a full rebuild)."""
    return replace_where(spark, df, table, F.lit(True), run_date=run_date)


def replace_where(
    spark: SparkSession, df: DataFrame, table: str, condition: Column, *,
    run_date: str | None = None,
) -> dict[str, int]:
    """Replace the rows matching `condition` with `df` in one commit (Delta replaceWhere);
    every row of `df` must match it."""
    schema = ensure_columns(spark, table)
    before = table_version(spark, table)
    _conformed(df, schema, run_date).writeTo(table).overwrite(condition)
    return _own_metrics(spark, table, before)


def append(
    spark: SparkSession, df: DataFrame, table: str, *, run_date: str | None = None
) -> dict[str, int]:
    """Append rows in one commit."""
    schema = ensure_columns(spark, table)
    before = table_version(spark, table)
    _conformed(df, schema, run_date).writeTo(table).append()
    return _own_metrics(spark, table, before)


def has_rows_where(spark: SparkSession, table: str, column: str, values: Sequence[str]) -> bool:
    """Whether any row has `column` in `values` (cheap: Delta skips files by column stats)."""
    return not read_table(spark, table).where(F.col(column).isin(list(values))).isEmpty()


def with_op(df: DataFrame, op: str) -> DataFrame:
    """Tag a change set's rows as 'upsert' or 'delete' for `merge_upsert`."""
    return df.withColumn(OP_COLUMN, F.lit(op))
