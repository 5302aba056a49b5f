"""Ingest + sessionize on the real samples in ../shared/data: reconciliation, idempotence,
and session counts against an independent DuckDB implementation of the same rule."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest
from pyspark.sql import functions as F

from tests.integration.helpers import assert_same_rows, ingest, run_rows, sessionize, snapshot

pytestmark = pytest.mark.integration

TABLES = ("bronze.events", "quarantine.events", "silver.events", "silver.sessions")


def test_rees46_reconciles_and_a_second_run_changes_nothing(spark, rees46_day, data_root,
                                                             rees46_file):
    first_ingest = rees46_day["ingest"]
    assert first_ingest.as_dict() == {"input_rows": 17_434, "output_rows": 17_434,
                                      "quarantined_rows": 0, "duplicate_rows": 0}
    first_sessionize = rees46_day["sessionize"]
    # The sample holds 5 exact duplicate rows (data README).
    assert first_sessionize.as_dict() == {"input_rows": 17_434, "output_rows": 17_429,
                                          "quarantined_rows": 0, "duplicate_rows": 5}
    assert spark.table("bronze.events").count() == 17_434
    assert spark.table("silver.events").count() == 17_429
    assert spark.table("silver.events").select("user_id").distinct().count() == 4_504
    sessions = spark.table("silver.sessions")
    # Distinct rows per type (DuckDB: SELECT DISTINCT * ...): one duplicate is a cart.
    assert tuple(sessions.agg(F.sum("n_events"), F.sum("n_views"), F.sum("n_carts"),
                              F.sum("n_purchases")).first()) == (17_429, 17_051, 164, 214)

    before = {t: snapshot(spark, t) for t in TABLES}
    ingest(spark, data_root, "rees46", rees46_file, "2019-10-01")
    sessionize(spark, data_root, "2019-10-01")
    for table, old in before.items():
        assert_same_rows(old, spark.table(table), f"{table} changed on the second run")
    assert run_rows(spark, "ingest") == [
        ("2019-10-01", "succeeded", 17_434, 17_434, 0, 0)] * 2
    assert run_rows(spark, "sessionize") == [
        ("2019-10-01", "succeeded", 17_434, 17_429, 0, 5)] * 2


def test_rees46_event_mix_and_the_shared_source_session(spark, rees46_all):
    mix = {r.event_type: r["count"] for r in
           spark.table("bronze.events").groupBy("event_type").count().collect()}
    assert mix == {"view": 17_055, "cart": 165, "purchase": 214}
    nulls = spark.table("bronze.events").agg(
        F.count(F.when(F.col("category_code").isNull(), 1)),
        F.count(F.when(F.col("brand").isNull(), 1))).first()
    assert tuple(nulls) == (5_746, 2_477)
    # One user_session value is shared by two users: it must not merge them.
    shared = (spark.table("silver.events").groupBy("source_session_id")
              .agg(F.countDistinct("user_id").alias("users"),
                   F.countDistinct("session_id").alias("sessions"))
              .where("users > 1").collect())
    assert len(shared) == 1 and shared[0].sessions >= 2
    leaked = (spark.table("silver.events").groupBy("session_id")
              .agg(F.countDistinct("user_id").alias("users")).where("users > 1").count())
    assert leaked == 0


def taobao_sessions_in_duckdb(path, gap_s: int = 1800, max_len_s: int = 86_400) -> int:
    """The session rule written independently in SQL: dedup exact rows, split on gap >= 30 min,
    cut unbroken activity every 24 h from its first event."""
    query = f"""
    WITH e AS (
        SELECT DISTINCT * FROM read_csv('{path}', header = false, columns = {{
            'user_id': 'BIGINT', 'item_id': 'BIGINT', 'category_id': 'BIGINT',
            'behavior': 'VARCHAR', 'ts': 'BIGINT'}})
    ), g AS (
        SELECT user_id, ts, ts - lag(ts) OVER (PARTITION BY user_id ORDER BY ts) AS gap FROM e
    ), b AS (
        SELECT user_id, ts, sum(CASE WHEN gap IS NULL OR gap >= {gap_s} THEN 1 ELSE 0 END)
            OVER (PARTITION BY user_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS burst FROM g
    ), c AS (
        SELECT user_id, burst,
               (ts - min(ts) OVER (PARTITION BY user_id, burst)) // {max_len_s} AS cut FROM b
    )
    SELECT count(*) FROM (SELECT DISTINCT user_id, burst, cut FROM c)
    """
    return duckdb.sql(query).fetchall()[0][0]


def test_taobao_sessions_match_an_independent_duckdb_implementation(spark, taobao_all,
                                                                    data_root, taobao_file):
    counts = taobao_all["ingest"]
    assert (counts.input_rows, counts.quarantined_rows) == (110_300, 0)
    run = taobao_all["sessionize"]
    assert run.input_rows == run.output_rows + run.duplicate_rows
    assert spark.table("silver.events").count() == run.output_rows
    sessions = spark.table("silver.sessions")
    assert sessions.count() == taobao_sessions_in_duckdb(taobao_file)
    assert sessions.select("user_id").distinct().count() == 66_454
    mix = {r.event_type: r["count"] for r in
           spark.table("bronze.events").groupBy("event_type").count().collect()}
    assert mix == {"view": 98_361, "cart": 6_063, "favorite": 3_383, "purchase": 2_493}
    # a tighter rule gives more sessions, and DuckDB agrees on that count too
    sessionize(spark, data_root, "all", session_gap=timedelta(minutes=5))
    assert spark.table("silver.sessions").count() == taobao_sessions_in_duckdb(
        taobao_file, gap_s=300)
