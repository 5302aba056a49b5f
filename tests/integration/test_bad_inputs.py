"""A copy of the real REES46 file with injected defects: quarantine with the right reasons,
duplicates counted, and a clear failure (recorded in ops.pipeline_runs) for a lost column."""

from __future__ import annotations

import gzip

import pytest

from clickscore.core.errors import EmptyInputError, SchemaDriftError, UnreadableInputError
from tests.integration.helpers import ingest, run_rows, sessionize

pytestmark = pytest.mark.integration

INJECTED = {
    "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79": "malformed_row",
    "2019-10-01 00:61:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        "invalid_timestamp",
    "2019-10-01 00:01:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,,x":
        "missing_user_id",
    "2019-10-01 00:01:00 UTC,hover,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        "unknown_event_type",
    "2019-10-01 00:01:00 UTC,view,44600062,2103807459595387724,,shiseido,-3.00,541312140,x":
        "negative_price",
    "2019-10-01 00:01:00 UTC,view,44600062,2103807459595387724,,shiseido,99999999,541312140,x":
        "absurd_price",
    "2019-12-25 00:01:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        "timestamp_outside_window",
}


def real_lines(rees46_file) -> list[str]:
    with gzip.open(rees46_file, "rt") as fh:
        return fh.read().splitlines()


def test_injected_defects_are_quarantined_with_reasons_and_duplicates_counted(
        empty_warehouse, data_root, rees46_file, tmp_path):
    spark = empty_warehouse
    header, *rows = real_lines(rees46_file)
    duplicated = rows[100:110]
    # a folder and a name Spark records URL-encoded (`_metadata.file_path`): `%20`, `%25`
    dirty = tmp_path / "landing 100%" / "dirty day.csv.gz"
    dirty.parent.mkdir()
    with gzip.open(dirty, "wt") as fh:
        fh.write("\n".join([header, *rows[:5_000], *INJECTED, *duplicated, *rows[5_000:]]) + "\n")

    counts = ingest(spark, data_root, "rees46", dirty, "2019-10-01")
    assert counts.as_dict() == {"input_rows": 17_434 + 7 + 10, "output_rows": 17_434 + 10,
                                "quarantined_rows": 7, "duplicate_rows": 0}
    quarantined = {r.raw_line: r.reason for r in spark.table("quarantine.events").collect()}
    assert quarantined == INJECTED
    run = sessionize(spark, data_root, "2019-10-01")
    assert (run.input_rows, run.duplicate_rows, run.output_rows) == (17_444, 15, 17_429)

    # the same file again: nothing new anywhere (its encoded name matched), the same counts
    ingest(spark, data_root, "rees46", dirty, "2019-10-01")
    assert spark.table("quarantine.events").count() == 7
    assert spark.table("bronze.events").count() == 17_444
    assert run_rows(spark, "ingest") == [("2019-10-01", "succeeded", 17_451, 17_444, 7, 0)] * 2


def test_a_copy_missing_a_column_fails_naming_file_and_column_and_is_recorded(
        empty_warehouse, data_root, rees46_file, tmp_path):
    spark = empty_warehouse
    header, *rows = real_lines(rees46_file)
    drop = header.split(",").index("price")
    cut = tmp_path / "no-price.csv"
    cut.write_text("\n".join(",".join(f for i, f in enumerate(line.split(",")) if i != drop)
                             for line in [header, *rows[:50]]) + "\n")
    with pytest.raises(SchemaDriftError) as err:
        ingest(spark, data_root, "rees46", cut, "2019-10-01")
    assert err.value.missing == ["price"] and "no-price.csv" in str(err.value)
    assert not spark.catalog.tableExists("bronze.events")  # nothing was published
    failed = spark.table("ops.pipeline_runs").where("status = 'failed'").first()
    assert failed.job == "ingest" and "SchemaDriftError" in failed.error


def test_a_truncated_gzip_fails_naming_the_file_and_the_cause_and_is_recorded(
        empty_warehouse, data_root, rees46_file, tmp_path):
    spark = empty_warehouse
    cut = tmp_path / "cut-short.csv.gz"  # a transfer cut short: the stream ends early
    whole = rees46_file.read_bytes()
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UnreadableInputError, match="cut-short.csv.gz.*end of input stream"):
        ingest(spark, data_root, "rees46", cut, "2019-10-01")
    assert not spark.catalog.tableExists("bronze.events")  # nothing was published
    failed = spark.table("ops.pipeline_runs").where("status = 'failed'").first()
    assert failed.job == "ingest" and "UnreadableInputError" in failed.error
    assert "end of input stream" in failed.error  # the cause, not py4j's call id


def test_empty_input_is_an_error_unless_allowed(empty_warehouse, data_root, tmp_path):
    spark = empty_warehouse
    only_header = tmp_path / "empty.csv"
    only_header.write_text("event_time,event_type,product_id,category_id,category_code,brand,"
                           "price,user_id,user_session\n")
    with pytest.raises(EmptyInputError, match="--allow-empty"):
        ingest(spark, data_root, "rees46", only_header, "2019-10-01")
    counts = ingest(spark, data_root, "rees46", only_header, "2019-10-01", allow_empty=True)
    assert counts.as_dict() == dict.fromkeys(
        ["input_rows", "output_rows", "quarantined_rows", "duplicate_rows"], 0)
    with pytest.raises(EmptyInputError):
        sessionize(spark, data_root, "2019-10-01")
    assert sessionize(spark, data_root, "2019-10-01", allow_empty=True).input_rows == 0
    statuses = [r.status for r in spark.table("ops.pipeline_runs").orderBy("started_at")
                .select("status").collect()]
    assert statuses == ["failed", "succeeded", "failed", "succeeded"]
    assert spark.table("silver.sessions").count() == 0
