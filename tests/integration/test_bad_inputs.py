"""Bad inputs, each with its quarantine reason or its one-line failure: a copy of the real
REES46 file with injected defects (quarantine with the right reasons, duplicates counted), a
lost column, a truncated gzip, an empty input; and the kinds a real landing zone adds (ISO 8601
times, times without a zone, negative and overflowing ids, blank prices, oversized text, Latin-1
lines, UTF-16 files, a file mostly malformed, epoch seconds for milliseconds, a file written
while it is read, Diginetica's snake_case headers, an analyst's failing query). The README's
table "What each bad input gets" lists them."""

from __future__ import annotations

import gzip
from datetime import datetime

import pytest

import clickscore.ingest.job as ingest_job
from clickscore.core.errors import (
    BadInputFileError,
    EmptyInputError,
    SchemaDriftError,
    UnreadableInputError,
)
from tests.integration.helpers import ingest, invoke_cli, run_rows, sessionize

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


# (line, what becomes of it): a quarantine reason, or the event time it is stored with
MORE_KINDS = {
    "2019-10-01T00:02:00Z,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        datetime(2019, 10, 1, 0, 2),                      # ISO 8601 with Z
    "2019-10-01T02:03:00+02:00,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        datetime(2019, 10, 1, 0, 3),                      # an offset
    "2019-10-01 00:04:00.250 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        datetime(2019, 10, 1, 0, 4, 0, 250000),           # fractional seconds
    "2019-10-01 00:05:00,view,44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        "invalid_timestamp",                              # no zone: ambiguous
    "2019-10-01 00:06:00 UTC,view,-44600062,2103807459595387724,,shiseido,35.79,541312140,x":
        "invalid_item_id",                                # a negative id
    "2019-10-01 00:07:00 UTC,view,44600062,2103807459595387724,,shiseido,,541312140,x":
        "missing_price",                                  # REES46 always has a price
    "2019-10-01 00:08:00 UTC,view,44600062,2103807459595387724,,"
    + "s" * 5_000 + ",35.79,541312140,x": "field_too_long",
}
LATIN_1 = "2019-10-01 00:09:00 UTC,view,44600062,2103807459595387724,,caf\xe9,35.79,541312140,x"
# a quoted field holding a newline: one record over two lines
QUOTED = ('2019-10-01 00:10:00 UTC,view,44600062,2103807459595387724,,"two\nlines",35.79,'
          '541312140,x')


def test_more_bad_input_kinds_get_a_reason_or_fail_the_file_in_one_line(
        empty_warehouse, data_root, rees46_file, tmp_path, monkeypatch):
    spark = empty_warehouse
    header, *rows = real_lines(rees46_file)
    # REES46: times in ISO 8601 are read; the rest get their reasons; a Latin-1 line is
    # `invalid_encoding` (its byte 0xE9 is no UTF-8)
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes("\n".join([header, *rows[:10], QUOTED, *rows[10:20], *MORE_KINDS])
                      .encode() + b"\n" + LATIN_1.encode("latin-1") + b"\n")
    counts = ingest(spark, data_root, "rees46", mixed, "2019-10-01")
    assert counts.as_dict() == {"input_rows": 29, "output_rows": 24, "quarantined_rows": 5,
                                "duplicate_rows": 0}
    assert [r.brand for r in spark.table("bronze.events").where(
        "event_ts = TIMESTAMP '2019-10-01 00:10:00'").collect()] == ["two\nlines"]
    reasons = {r.raw_line.split(",")[0]: r.reason
               for r in spark.table("quarantine.events").collect()}
    assert reasons == {line.split(",")[0]: got for line, got in MORE_KINDS.items()
                       if isinstance(got, str)} | {"2019-10-01 00:09:00 UTC": "invalid_encoding"}
    stored = {r.event_ts for r in spark.table("bronze.events").where(
        "event_ts < TIMESTAMP '2019-10-01 00:05:00'").collect()}
    assert {t for t in MORE_KINDS.values() if isinstance(t, datetime)} <= stored

    def fails(path, source: str, match: str, **kw) -> None:
        versions = spark.sql("DESCRIBE HISTORY bronze.events").count()
        with pytest.raises(BadInputFileError, match=match) as raised:
            ingest(spark, data_root, source, path, "all", **kw)
        assert path.name in str(raised.value) and "nothing was published" in str(raised.value)
        assert spark.sql("DESCRIBE HISTORY bronze.events").count() == versions

    # a headerless-style format change: 9 rows in 10 with an extra field
    extra = tmp_path / "extra-field.csv"
    extra.write_text("\n".join([header, *[r + ",extra" if i % 10 else r
                                         for i, r in enumerate(rows[:200])]]) + "\n")
    fails(extra, "rees46", r"90% of its 200 rows were quarantined \(malformed_row 180\), "
                           r"above --max-quarantine-share 0.5")
    # a UTF-16 export
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("\n".join([header, *rows[:5]]).encode("utf-16"))
    fails(utf16, "rees46", "first line is not UTF-8 text")
    # RetailRocket's times in seconds where its layout has milliseconds
    seconds = tmp_path / "events-in-seconds.csv"
    seconds.write_text("timestamp,visitorid,event,itemid,transactionid\n" + "".join(
        f"{1433221332 + n},{n},view,{n % 7},\n" for n in range(30)))
    fails(seconds, "retailrocket", r"30 of its 30 times look like epoch seconds \(e.g. "
                                   r"1433221332\); the retailrocket layout expects epoch "
                                   r"milliseconds")

    # a file still being written (or replaced) while the run reads it
    growing = tmp_path / "growing.csv"
    growing.write_text("\n".join([header, *rows[:50]]) + "\n")
    check = ingest_job.check_files

    def then_appended(profile, cfg):
        check(profile, cfg)
        with open(growing, "a") as out:
            out.write(rows[50] + "\n")

    monkeypatch.setattr(ingest_job, "check_files", then_appended)
    fails(growing, "rees46", r"changed while it was read: .*growing.csv \(.* bytes when "
                             r"listed, .* bytes now\)")
    monkeypatch.undo()

    # Diginetica as widely copied (snake_case headers), with values that overflow a bigint or
    # are negative: quarantined, the run succeeds
    digi = tmp_path / "train-item-views.csv"
    digi.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                    "1;NA;81766;526309;2016-05-09\n2;;32118;243569;2016-05-09\n"
                    "3;278;9654;0;2016-05-10\n4;NA;100;99999999999999999;2016-05-10\n"
                    "9223372036854775808;NA;100;5;2016-05-10\n6;NA;-300;10;2016-05-10\n")
    got = ingest(spark, data_root, "diginetica", digi, "all", max_quarantine_share=0.9)
    assert (got.output_rows, got.quarantined_rows) == (3, 3)
    assert {r.raw_line: r.reason for r in spark.table("quarantine.events")
            .where("source = 'diginetica'").collect()} == {
        "4;NA;100;99999999999999999;2016-05-10": "invalid_timestamp",
        "9223372036854775808;NA;100;5;2016-05-10": "invalid_user_id",
        "6;NA;-300;10;2016-05-10": "invalid_item_id"}

    # an analyst's query that fails in Spark: one line with its error class, exit 1
    for query, condition in (("SELECT 9223372036854775807 + max(user_id) FROM bronze.events",
                              "ARITHMETIC_OVERFLOW"),
                             ("SELECT * FROM silver.nowhere", "TABLE_OR_VIEW_NOT_FOUND"),
                             ("SELEC 1", "PARSE_SYNTAX_ERROR")):
        result = invoke_cli("sql", query, data_root=data_root)
        assert result.exit_code == 1, result
        assert result.error is not None and result.error.startswith(
            f"sql failed: [{condition}]"), result
        assert "\n" not in result.error and "Traceback" not in result.error
