"""Ingest: landing files of one source -> bronze.events, rejected rows -> quarantine.events.

Idempotent: both writes insert only rows whose keys are new, so re-ingesting a file adds
nothing. Exact duplicate rows are kept in bronze; sessionize removes and counts them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.config import IngestConfig
from clickscore.errors import EmptyInputError
from clickscore.landing import list_files, read_raw
from clickscore.row_rules import with_rejection_reasons
from clickscore.runs import Run, RunCounts, tracked_run
from clickscore.schemas import table_schema
from clickscore.sources import CANONICAL_COLUMNS, get_adapter
from clickscore.tables import merge_insert_new

log = logging.getLogger(__name__)

BRONZE = "bronze.events"
QUARANTINE = "quarantine.events"


def checked_events(spark: SparkSession, cfg: IngestConfig, files: list[str]) -> DataFrame:
    """Raw lines typed to canonical events, each with its `reasons` (empty when good)."""
    adapter = get_adapter(cfg.source)
    window_start, window_end = cfg.accepted_window()
    return (read_raw(spark, adapter.layout, files)
            .transform(adapter.to_canonical)
            .transform(with_rejection_reasons, adapter.raw_of, window_start=window_start,
                       window_end=window_end, max_price=cfg.max_price))


def bronze_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Good rows in the bronze.events contract."""
    return (checked_df.where(F.size("reasons") == 0)
            .withColumn("event_date", F.to_date("event_ts"))
            .withColumn("_ingested_at", F.lit(ingested_at))
            .withColumn("_ingest_run_date", F.lit(run.run_date))
            .select(*table_schema(BRONZE).names))


def quarantine_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Rejected rows in the quarantine.events contract."""
    return (checked_df.where(F.size("reasons") > 0)
            .select(
                F.substring(F.sha2(F.concat_ws("\u001f", "_source_file", "value"), 256), 1, 32)
                .alias("quarantine_id"),
                F.lit(run.source).alias("source"),
                "_source_file",
                F.col("value").alias("raw_line"),
                F.get("reasons", 0).alias("reason"),
                "reasons",
                F.lit(run.run_date).alias("_ingest_run_date"),
                F.lit(run.run_id).alias("_run_id"),
                F.lit(ingested_at).alias("_ingested_at"),
            ))


def run_ingest(spark: SparkSession, cfg: IngestConfig) -> RunCounts:
    """Ingest `cfg.input_path`; returns the reconciled counts recorded in ops.pipeline_runs."""
    log.info("ingest config: %s", cfg)
    with tracked_run(spark, "ingest", str(cfg.run_date), source=cfg.source) as run:
        files = list_files(spark, cfg.input_path)
        log.info("ingest %d file(s) from %s", len(files), cfg.input_path)
        ingested_at = datetime.now(UTC)
        checked_df = (checked_events(spark, cfg, files)
                      # cache only what the writes need; the raw line only for rejected rows
                      .withColumn("value", F.when(F.size("reasons") > 0, F.col("value")))
                      .select(*CANONICAL_COLUMNS, "_source_file", "value", "reasons")
                      .persist(StorageLevel.MEMORY_AND_DISK))
        # The MERGE sources are cached and deterministic: no need for Delta to copy them again.
        spark.conf.set("spark.databricks.delta.merge.materializeSource", "none")
        try:
            by_reason = {
                row["reason"]: row["count"]
                for row in checked_df.groupBy(F.get("reasons", 0).alias("reason"))
                .count().collect()
            }
            input_rows = sum(by_reason.values())
            good_rows = by_reason.pop(None, 0)
            if input_rows == 0 and not cfg.allow_empty:
                raise EmptyInputError(cfg.input_path, str(cfg.run_date))
            bronze_metrics = merge_insert_new(
                spark, bronze_rows(checked_df, run, ingested_at), BRONZE,
                run_date=run.run_date)
            quarantine_metrics = merge_insert_new(
                spark, quarantine_rows(checked_df, run, ingested_at), QUARANTINE,
                run_date=run.run_date)
        finally:
            spark.conf.unset("spark.databricks.delta.merge.materializeSource")
            checked_df.unpersist()
        window_start, window_end = cfg.accepted_window()
        run.counts = RunCounts(
            input_rows=input_rows,
            output_rows=good_rows,
            quarantined_rows=input_rows - good_rows,
            details={
                "files": files,
                "accepted_window": [window_start, window_end],
                "quarantine_reasons": by_reason,
                "bronze_rows_inserted": bronze_metrics.get("numTargetRowsInserted", 0),
                "quarantine_rows_inserted": quarantine_metrics.get("numTargetRowsInserted", 0),
            },
        )
    return run.counts
