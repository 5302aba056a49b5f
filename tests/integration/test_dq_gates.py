"""Write-audit-publish on real data: clean batches publish with every result kept; corrupted
batches are refused naming the failed checks, and the published tables stay as they were;
warnings publish and are recorded; `dq run` validates on demand; Data Docs render."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

import clickscore.sessionize.job as sessionize_module
from clickscore.audit.config import DqRunConfig
from clickscore.audit.job import run_dq
from clickscore.audit.report import print_dq_report
from clickscore.core.config import RunDate
from clickscore.core.contracts import table_schema
from clickscore.core.delta import append, ensure_table, read_table, table_version
from clickscore.core.errors import DataQualityError
from clickscore.dq.context import data_docs_index
from clickscore.dq.results import RESULTS_TABLE, trailing_observations
from tests.integration.helpers import (
    ARTIFACTS,
    assert_same_rows,
    ingest,
    render_in_chromium,
    sessionize,
    snapshot,
)

pytestmark = pytest.mark.integration

def dq_rows(spark, **where):
    df = read_table(spark, RESULTS_TABLE)
    for column, value in where.items():
        df = df.where(F.col(column) == value)
    return df.collect()


def seed_history(spark, table: str, check: str, observed: list, segment: str | None = None):
    """Published results of earlier dated runs, as ops.dq_results would hold them (ingest's
    of one source: `segment="source=<source>"`)."""
    start = datetime(2019, 9, 20, tzinfo=UTC)
    rows = [{"run_id": f"seed-{i}", "job": "ingest", "table_name": table,
             "run_date": f"2019-09-{20 + i}", "check_name": check,
             "expectation": "seeded", "column_name": None, "severity": "critical",
             "success": True, "observed_value": json.dumps(value), "element_count": None,
             "unexpected_count": None, "unexpected_percent": None, "unexpected_sample": None,
             "exception": None, "batch_rows": None, "published": True,
             "validated_at": start + timedelta(days=i), "segment": segment}
            for i, value in enumerate(observed)]
    append(spark, spark.createDataFrame(rows, table_schema(RESULTS_TABLE).struct), RESULTS_TABLE)


def test_clean_real_batches_pass_every_critical_check(spark, taobao_all, data_root,
                                                      rees46_file):
    # the Taobao sample's runs come with its state (built once in the session, their
    # results in ops.dq_results); REES46 joins it, and sessionize rebuilds both
    spark.catalog.clearCache()  # what other tests cached: this test checks its own runs
    ingest(spark, data_root, "rees46", rees46_file, "all")
    sessionize(spark, data_root, "all")

    rows = dq_rows(spark)
    runs = {(r.table_name, r.run_id) for r in rows}
    assert sorted(t for t, _ in runs) == ["bronze.events"] * 2 + ["silver.events"] * 2 + [
        "silver.sessions"] * 2
    failed_critical = [(r.table_name, r.check_name, r.observed_value, r.unexpected_count)
                       for r in rows if r.severity == "critical" and not r.success]
    assert failed_critical == []
    assert all(r.published for r in rows)
    by_check = {(r.table_name, r.check_name, r.run_date): r for r in rows}
    # the keys, reconciliation and referential integrity were evaluated, not skipped
    for table, check in [("bronze.events", "rows_reconcile_with_run"),
                         ("silver.events", "event_id_unique"),
                         ("silver.events", "session_exists_in_silver_sessions"),
                         ("silver.sessions", "session_id_unique"),
                         ("silver.sessions", "duration_within_max")]:
        assert (table, check, "all") in by_check
    # every staged batch was released
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_a_corrupted_sessionize_batch_is_refused_and_silver_is_unchanged(
        spark, rees46_all, data_root, monkeypatch):
    versions = {t: table_version(spark, t) for t in ("silver.events", "silver.sessions")}
    before = {t: snapshot(spark, t) for t in versions}
    lost_session = read_table(spark, "silver.sessions").agg(F.min("session_id")).first()[0]

    sessionized = sessionize_module.sessionized_events
    summarize = sessionize_module.summarize_sessions

    def corrupted_events(cfg, input_df):
        events_df = sessionized(cfg, input_df)
        # duplicates forced past dedup, and negative prices
        return (events_df.unionByName(events_df.where(F.col("session_seq") == 1).limit(3))
                .withColumn("price", F.when(F.col("session_seq") == 2, F.lit(-1.0))
                            .otherwise(F.col("price"))))

    def sessions_missing_one(events_df, bot_events_per_minute):
        return summarize(events_df, bot_events_per_minute).where(
            F.col("session_id") != lost_session)

    monkeypatch.setattr(sessionize_module, "sessionized_events", corrupted_events)
    monkeypatch.setattr(sessionize_module, "summarize_sessions", sessions_missing_one)
    with pytest.raises(DataQualityError) as raised:
        sessionize(spark, data_root, "all")

    error = raised.value
    assert {("silver.events", "event_id_unique"), ("silver.events", "price_non_negative"),
            ("silver.events", "session_exists_in_silver_sessions"),
            ("silver.events", "rows_reconcile_with_run")} <= error.checks
    message = str(error)
    assert "silver.events" in message and "run date all" in message
    assert "price_non_negative (expect_column_values_to_be_between on price): " in message
    assert "e.g. [-1.0" in message
    # the events whose session is missing are sampled as (their session id, no session)
    assert (f"session_exists_in_silver_sessions (expect_column_pair_values_to_be_equal on "
            f"session_id,session_id_in_sessions): 4 of 17432 rows unexpected, "
            f"e.g. [('{lost_session}', None)") in message

    for table, version in versions.items():
        assert table_version(spark, table) == version
        assert_same_rows(read_table(spark, table), before[table])
    rejected = dq_rows(spark, table_name="silver.events", check_name="event_id_unique",
                       published=False)
    assert len(rejected) == 1 and rejected[0].unexpected_count == 6
    assert len(json.loads(rejected[0].unexpected_sample)) == 6
    status = spark.sql("SELECT status FROM ops.pipeline_runs WHERE job = 'sessionize' "
                       "ORDER BY started_at DESC LIMIT 1").first()[0]
    assert status == "failed"


def test_a_90_percent_volume_drop_is_refused_and_bronze_is_unchanged(
        empty_warehouse, data_root, rees46_file, tmp_path):
    spark = empty_warehouse
    for table in ("bronze.events", "quarantine.events"):
        ensure_table(spark, table)
    versions = {t: table_version(spark, t) for t in ("bronze.events", "quarantine.events")}
    # the last seven published batches held ten times what this file holds
    seed_history(spark, "bronze.events", "volume_vs_trailing_mean", [174_340] * 7,
                 segment="source=rees46")
    # another source's batches, ten times smaller still, are not what REES46 is held to
    seed_history(spark, "bronze.events", "volume_vs_trailing_mean", [1_743] * 7,
                 segment="source=taobao")

    with pytest.raises(DataQualityError) as raised:
        ingest(spark, data_root, "rees46", rees46_file, "2019-10-01")

    assert raised.value.checks == {("bronze.events", "volume_vs_trailing_mean")}
    assert ("volume_vs_trailing_mean (expect_table_row_count_with_prior_to_be_between): "
            "observed 17434 (expected min_value=87170)") in str(raised.value)
    for table, version in versions.items():
        assert table_version(spark, table) == version
        assert read_table(spark, table).isEmpty()

    # an empty day the run allows is no volume drop: its run-over-run checks are skipped
    header_only = tmp_path / "empty.csv"
    header_only.write_text("event_time,event_type,product_id,category_id,category_code,"
                           "brand,price,user_id,user_session\n")
    allowed = ingest(spark, data_root, "rees46", header_only, "2019-10-02", allow_empty=True)
    assert (allowed.input_rows, allowed.output_rows) == (0, 0)


def test_a_day_in_two_files_is_one_days_volume_and_a_busy_day_only_warns(
        empty_warehouse, data_root, rees46_file, tmp_path):
    spark = empty_warehouse
    # REES46's usual day held half of what this sample's day holds
    seed_history(spark, "bronze.events", "volume_vs_trailing_mean", [8_717] * 7,
                 segment="source=rees46")
    seed_history(spark, "bronze.events", "volume_surge_vs_trailing_mean", [8_717] * 7,
                 segment="source=rees46")
    with gzip.open(rees46_file, "rt") as f:
        header, *lines = f.readlines()
    first, late = tmp_path / "day-part-1.csv", tmp_path / "day-part-2-late.csv"
    first.write_text(header + "".join(lines[:17_000]))
    late.write_text(header + "".join(lines[17_000:]))

    # 17,000 rows, twice the usual day: published, with a warning
    counts = ingest(spark, data_root, "rees46", first, "2019-10-01")
    assert counts.output_rows == 17_000
    assert counts.details["dq_warnings"] == ["volume_surge_vs_trailing_mean"]
    # a late file of 434 rows: on its own a 95% drop; with the day's first file, the day
    late_counts = ingest(spark, data_root, "rees46", late, "2019-10-01")
    assert late_counts.output_rows == 434
    assert read_table(spark, "bronze.events").count() == 17_434
    volume = {(r.check_name, r.batch_rows): (json.loads(r.observed_value), r.success)
              for r in dq_rows(spark, table_name="bronze.events", run_date="2019-10-01")
              if r.check_name.startswith("volume")}
    assert volume == {("volume_vs_trailing_mean", 17_000): (17_000, True),
                      ("volume_surge_vs_trailing_mean", 17_000): (17_000, False),
                      ("volume_vs_trailing_mean", 434): (17_434, True),
                      ("volume_surge_vs_trailing_mean", 434): (17_434, False)}
    # the next day compares with one observation of 2019-10-01, its total
    assert trailing_observations(spark, "bronze.events", {"volume_vs_trailing_mean": 7},
                                 is_all=False, segment="source=rees46",
                                 run_date="2019-10-02") == {
        "volume_vs_trailing_mean": [17_434] + [8_717] * 6}


def test_a_warning_only_deviation_publishes_and_is_recorded(empty_warehouse, data_root,
                                                            rees46_file):
    spark = empty_warehouse
    usual_mix = {"view": 0.6, "cart": 0.3, "purchase": 0.1}
    seed_history(spark, "bronze.events", "event_type_mix_vs_trailing_mean", [usual_mix] * 3,
                 segment="source=rees46")

    counts = ingest(spark, data_root, "rees46", rees46_file, "2019-10-01")

    assert read_table(spark, "bronze.events").count() == counts.output_rows == 17_434
    assert counts.details["dq_warnings"] == ["event_type_mix_vs_trailing_mean"]
    (warning,) = [r for r in dq_rows(spark, table_name="bronze.events", run_date="2019-10-01")
                  if not r.success]
    assert (warning.check_name, warning.severity, warning.published) == (
        "event_type_mix_vs_trailing_mean", "warning", True)
    assert json.loads(warning.observed_value) == {
        "cart": pytest.approx(0.009464), "purchase": pytest.approx(0.012275),
        "view": pytest.approx(0.978261)}


def test_dq_run_validates_a_published_partition_and_data_docs_list_the_suites(
        spark, rees46_day, data_root, monkeypatch):
    monkeypatch.setenv("CLICKSCORE_DATA_DOCS", "on")
    cfg = DqRunConfig(table="silver.sessions", run_date=RunDate.parse("2019-10-01"),
                      data_root=data_root)
    validation = run_dq(spark, cfg)
    assert validation.critical_failures == [] and validation.batch_rows == 4_518
    assert "silver.sessions: rows_reconcile_with_run: parameter 'expected_rows' not " \
           "available for this run" in [f"{cfg.table}: {s}" for s in validation.skipped]

    spark.sql("UPDATE silver.sessions SET revenue = -1.0 WHERE n_purchases > 0")
    with pytest.raises(DataQualityError) as raised:
        run_dq(spark, cfg)
    assert raised.value.checks == {("silver.sessions", "revenue_non_negative")}
    on_demand = sorted(dq_rows(spark, job="dq_run", check_name="revenue_non_negative"),
                       key=lambda r: r.validated_at)
    assert [r.success for r in on_demand] == [True, False]
    assert all(r.published is None for r in on_demand)

    out = io.StringIO()
    print_dq_report(spark, data_root, run_date="2019-10-01", out=out)
    report = out.getvalue()
    assert "on demand" in report and "published" in report
    assert "revenue_non_negative" in report
    assert f"Data Docs: {data_docs_index(data_root)}" in report

    # the state's runs rendered no pages (the suite keeps Data Docs off): these runs do
    for table in ("bronze.events", "silver.events"):
        run_dq(spark, DqRunConfig(table=table, run_date=RunDate.parse("2019-10-01"),
                                  data_root=data_root))
    dom, screenshot = render_in_chromium(data_docs_index(data_root), ARTIFACTS,
                                         "data_docs_index.png")
    # rows that bootstrap-table rendered (from the local copies of its scripts), not the
    # page source: a page whose scripts did not load lists nothing
    suites_panel = dom[dom.index('id="Expectation-Suites"'):]
    listed = set(re.findall(r'data-href="expectations/[^"]+"[^>]*><td[^>]*>([^<]+)</td>',
                            suites_panel))
    assert {"bronze.events", "silver.events", "silver.sessions"} <= listed
    assert "Showing 1 to" in suites_panel
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000
