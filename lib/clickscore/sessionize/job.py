"""Sessionize job: bronze.events -> silver.events + silver.sessions.

`--run-date all` rebuilds both tables from all of bronze. A dated run recomputes only the users
whose events changed (events dated that day, or ingested by that day's run, late ones
included), from a point where their sessions are known to start (see `recompute_scope`), and
applies the result as one MERGE per table: updated, new, and no-longer-existing sessions.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunKey
from clickscore.core.contracts import table_schema
from clickscore.core.delta import (
    ensure_table,
    merge_upsert,
    overwrite,
    read_table,
    table_version,
    with_op,
)
from clickscore.core.errors import EmptyInputError
from clickscore.core.faults import pause_point
from clickscore.core.identity import USER
from clickscore.core.runs import RunCounts
from clickscore.core.staging import new_observation, observed
from clickscore.runner import stage_run
from clickscore.sessionize.config import SessionizeConfig
from clickscore.sessionize.transforms import (
    event_columns,
    flag_duplicate_events,
    recompute_scope,
    summarize_sessions,
    with_session_id,
)

log = logging.getLogger(__name__)

BRONZE = "bronze.events"
SILVER_EVENTS = "silver.events"
SILVER_SESSIONS = "silver.sessions"


def sessionized_events(cfg: SessionizeConfig, flagged_df: DataFrame) -> DataFrame:
    """Events flagged by `flag_duplicate_events`, without the duplicates, with sessions."""
    return (flagged_df.where(~F.col("is_duplicate")).drop("is_duplicate")
            .transform(with_session_id, gap=cfg.session_gap, max_length=cfg.max_session_length))


def run_sessionize(spark: SparkSession, cfg: SessionizeConfig) -> RunCounts:
    """Sessionize one run date (or `all`); returns the counts recorded in ops.pipeline_runs.

    Write-audit-publish: events are sessionized once from a pinned version of bronze.events
    into the run's staging area, sessions are summarized from the staged events, both batches
    are validated, and only then are they applied to silver.events and silver.sessions.
    """
    log.debug("sessionize config: %s", cfg)
    run_date = str(cfg.run_date)
    with stage_run(spark, "sessionize", RunKey.of_date(cfg.run_date),
                   data_root=cfg.data_root) as stage:
        ensure_table(spark, BRONZE)
        bronze_version = table_version(spark, BRONZE)
        bronze_df = spark.read.option("versionAsOf", bronze_version).table(BRONZE)
        sessions_now_df = read_table(spark, SILVER_SESSIONS)
        scope_df = None
        if cfg.run_date.is_all:
            input_df = bronze_df
        else:
            day = cfg.run_date.day
            touched_df = bronze_df.where((F.col("event_date") == F.lit(day))
                                         | (F.col("_ingest_run_date") == run_date))
            # Checkpointed: the writes below change silver.sessions, which the scope reads.
            scope_df = recompute_scope(touched_df, sessions_now_df, cfg.session_gap)
            scope_df = scope_df.localCheckpoint(eager=True)
            first = scope_df.agg(F.min("recompute_from")).first()
            since = first[0] if first else None
            since_date = since.date() if since else day
            input_df = (bronze_df.where(F.col("event_date") >= F.lit(since_date))
                        .join(F.broadcast(scope_df), list(USER))
                        .where(F.col("event_ts") >= F.col("recompute_from")))

        # Rows read and duplicates among them are observed as the events stream into the
        # staging area; events written come from Delta's commit metrics, and the suites check
        # the staged batch against rows read minus duplicates.
        read = new_observation("sessionize-input")
        flagged_df = (input_df.select(*event_columns()).transform(flag_duplicate_events)
                      .observe(read, F.count(F.lit(1)).alias("rows"),
                               F.count_if("is_duplicate").alias("duplicates")))
        events_df = stage.stage("silver_events", sessionized_events(cfg, flagged_df))
        counts = observed(read, ["rows", "duplicates"], stage.staging.rows["silver_events"])
        input_rows, duplicate_rows = counts["rows"], counts["duplicates"]
        if input_rows == 0 and not cfg.allow_empty:
            raise EmptyInputError(BRONZE, run_date)
        # Events are held partitioned by user, so sessions summarize without a shuffle.
        sessions_df = stage.stage("silver_sessions",
                                  summarize_sessions(events_df, cfg.bot_events_per_minute))
        with stage.step("validate"):
            # a session per first event: counted from the events, independently of the summary
            session_starts = events_df.where(F.col("session_seq") == 1).count()
        stage.validate(events_df, SILVER_EVENTS,
                       parameters={"expected_rows": input_rows - duplicate_rows},
                       references={SILVER_SESSIONS: sessions_df})
        stage.validate(sessions_df, SILVER_SESSIONS, parameters={
            "expected_rows": session_starts,
            "max_session_seconds": int(cfg.max_session_length.total_seconds())})
        with stage.publish():
            if scope_df is None:
                events_metrics = overwrite(spark, events_df, SILVER_EVENTS, run_date=run_date)
                pause_point("sessionize", "silver-events-published")
                sessions_metrics = overwrite(spark, sessions_df, SILVER_SESSIONS,
                                             run_date=run_date)
            else:
                events_metrics = merge_upsert(
                    spark, with_op(events_df, "upsert"), SILVER_EVENTS,
                    compare=["session_id", "session_seq"],
                    target_filter=f"t.event_date >= DATE'{since_date}'", run_date=run_date)
                pause_point("sessionize", "silver-events-published")
                sessions_metrics = _merge_sessions(spark, sessions_df, sessions_now_df,
                                                   scope_df, since_date, run_date)
        # events written: every row of a rebuild; the source rows of a MERGE (its own
        # numOutputRows also counts unchanged rows copied into rewritten files)
        output_rows = events_metrics.get(
            "numOutputRows" if scope_df is None else "numSourceRows", 0)
        return stage.finish(RunCounts(
            input_rows=input_rows,
            output_rows=output_rows,
            duplicate_rows=duplicate_rows,
            details={
                "mode": "rebuild" if scope_df is None else "incremental",
                "bronze_version": bronze_version,
                "session_gap_s": cfg.session_gap.total_seconds(),
                "max_session_length_s": cfg.max_session_length.total_seconds(),
                "bot_events_per_minute": cfg.bot_events_per_minute,
                "silver_events": events_metrics,
                "silver_sessions": sessions_metrics,
                # the two tables' versions that agree: what a reader pins (see the README)
                "published_versions": {t: table_version(spark, t)
                                       for t in (SILVER_EVENTS, SILVER_SESSIONS)},
            },
        ))


def _merge_sessions(
    spark: SparkSession,
    sessions_df: DataFrame,
    sessions_now_df: DataFrame,
    scope_df: DataFrame,
    since_date: object,
    run_date: str,
) -> dict[str, int]:
    """MERGE recomputed sessions; delete the scope's sessions the recompute no longer has."""
    stale_df = (sessions_now_df.where(F.col("session_date") >= F.lit(since_date))
                .join(F.broadcast(scope_df), list(USER))
                .where(F.col("session_start") >= F.col("recompute_from"))
                .join(sessions_df.select("session_id"), "session_id", "left_anti")
                .select(*table_schema(SILVER_SESSIONS).names))
    changes_df = with_op(sessions_df, "upsert").unionByName(with_op(stale_df, "delete"))
    compare = [c for c in table_schema(SILVER_SESSIONS).names if c != "session_id"]
    return merge_upsert(
        spark, changes_df, SILVER_SESSIONS, compare=compare,
        target_filter=f"t.session_date >= DATE'{since_date}'", run_date=run_date)
