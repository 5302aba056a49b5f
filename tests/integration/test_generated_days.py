"""Daily runs over generated data with late events: incremental sessionize gives exactly
what a full rebuild gives, and every count agrees with the generator's manifest."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import BOT_USER_ID, generate
from tests.integration.helpers import assert_same_rows, ingest, run_rows, sessionize, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    out = tmp_path_factory.mktemp("landing")
    manifest = generate(GenerateConfig(output_dir=str(out), days=3, users=600, items=800,
                                       seed=7, late_share=0.02))
    return out, manifest


def test_generator_is_deterministic_for_a_seed(landing, tmp_path):
    out, manifest = landing
    again = generate(GenerateConfig(output_dir=str(tmp_path), days=3, users=600, items=800,
                                    seed=7, late_share=0.02))
    for name in manifest["files"]:
        assert (tmp_path / name).read_bytes() != b""
        import gzip
        assert gzip.decompress((tmp_path / name).read_bytes()) == gzip.decompress(
            (out / name).read_bytes())
    assert json.loads((tmp_path / "_manifest.json").read_text())["total_rows"] == \
        manifest["total_rows"] == again["total_rows"]
    assert manifest["late_events"] > 0 and manifest["planted_transitions"] > 0


def test_incremental_days_equal_a_rebuild_and_match_the_manifest(empty_warehouse, data_root,
                                                                  landing):
    spark = empty_warehouse
    out, manifest = landing
    start = date(2019, 10, 1)
    for offset, name in enumerate(manifest["files"]):
        day = (start + timedelta(days=offset)).isoformat()
        ingest(spark, data_root, "rees46", out / name, day)
        sessionize(spark, data_root, day)

    quarantine = {r.reason: r["count"] for r in
                  spark.table("quarantine.events").groupBy("reason").count().collect()}
    assert quarantine == {k: v for k, v in manifest["dirty_rows"].items() if v}
    assert spark.table("bronze.events").count() == (
        manifest["clean_events"] + manifest["duplicate_rows"])
    late = spark.table("bronze.events").where(
        F.col("event_date") < F.to_date("_ingest_run_date")).count()
    assert late == manifest["late_clean_rows"] <= manifest["late_events"] + manifest[
        "duplicate_rows"]
    # the bot burst is flagged; nobody else is
    bots = spark.table("silver.sessions").where("is_bot").select("user_id").distinct().collect()
    assert [r.user_id for r in bots] == [BOT_USER_ID]

    incremental = {t: snapshot(spark, t) for t in ("silver.events", "silver.sessions")}
    assert incremental["silver.events"].count() == manifest["distinct_events"]
    overlapping = spark.sql("""
        SELECT a.session_id FROM silver.sessions a JOIN silver.sessions b
          ON a.user_id = b.user_id AND a.session_id < b.session_id
         AND a.session_start <= b.session_end AND b.session_start <= a.session_end""")
    assert overlapping.count() == 0
    rebuild = sessionize(spark, data_root, "all")
    for table, rows in incremental.items():
        assert_same_rows(rows, spark.table(table), f"incremental {table} differs from rebuild")
    # every run's figures are real counts: duplicates observed, events written from Delta
    assert (rebuild.input_rows, rebuild.output_rows, rebuild.duplicate_rows) == (
        manifest["clean_events"] + manifest["duplicate_rows"], manifest["distinct_events"],
        manifest["clean_events"] + manifest["duplicate_rows"] - manifest["distinct_events"])
    # each day's ingest read exactly its file's lines, quarantined exactly its dirty rows
    days = [(start + timedelta(days=i)).isoformat() for i in range(len(manifest["files"]))]
    assert run_rows(spark, "ingest") == [
        (day, "succeeded", f["rows"], f["rows"] - f["dirty_rows"], f["dirty_rows"], 0)
        for day, f in zip(days, (manifest["per_file"][n] for n in manifest["files"]),
                          strict=True)]
    assert sum(f["rows"] for f in manifest["per_file"].values()) == manifest["total_rows"]
    runs = run_rows(spark, "sessionize")
    assert [r[1] for r in runs] == ["succeeded"] * 4
    for _, _, rows_in, rows_out, _, duplicates in runs:
        assert duplicates >= 0 and 0 < rows_out <= rows_in
    first_day = runs[0]  # nothing before it: every bronze row of the day was read
    assert first_day[2] == spark.table("bronze.events").where(
        "_ingest_run_date = '2019-10-01'").count()
