"""Source adapters + row rules on tiny files: typed values and exact quarantine reasons."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest

from clickscore.core.config import RunDate
from clickscore.core.errors import (
    InputNotFoundError,
    ResourceExhaustedError,
    SchemaDriftError,
    UnreadableInputError,
    input_error,
)
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.reader import changed_files, list_files, listed_files, read_raw
from clickscore.ingest.sources import get_adapter
from clickscore.ingest.transforms import checked_events
from tests.conftest import utc

REES46_HEADER = ("event_time,event_type,product_id,category_id,category_code,brand,price,"
                 "user_id,user_session")


def write(path, lines, *, gz=False):
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def checked(spark, tmp_path, source, path, run_date="2019-10-01", ingested_at=None, **kw):
    cfg = IngestConfig(source=source, input_path=str(path), run_date=RunDate.parse(run_date),
                       data_root=str(tmp_path), **kw)
    raw_df = read_raw(spark, get_adapter(source).layout, list_files(spark, str(path)))
    df = checked_events(raw_df, cfg, ingested_at)
    return {r.value: r for r in df.collect()}


def test_rees46_rows_are_typed_and_each_bad_row_gets_its_reason(spark, tmp_path):
    good = "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s1"
    rows = {
        good: [],
        "2019-10-01 23:59:59 UTC,purchase,3900821,2053013552326770905,appliances.water_heater,"
        "aqua,33.20,554748717,s2": [],
        "2019-13-01 00:00:00 UTC,view,1,2,,,1.0,5,s": ["invalid_timestamp"],
        ",view,1,2,,,1.0,5,s": ["missing_timestamp"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,1.0,,s": ["missing_user_id"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,1.0,u5,s": ["invalid_user_id"],
        "2019-10-01 00:00:01 UTC,view,,2,,,1.0,5,s": ["missing_item_id"],
        "2019-10-01 00:00:01 UTC,click,1,2,,,1.0,5,s": ["unknown_event_type"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,-0.01,5,s": ["negative_price"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,2000000,5,s": ["absurd_price"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,NaN,5,s": ["invalid_price"],
        "2019-10-01 00:00:01 UTC,view,1,cat,,,1.0,5,s": ["invalid_category_id"],
        "2019-10-01 00:00:01 UTC,view,-1,2,,,1.0,5,s": ["invalid_item_id"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,1.0,-5,s": ["invalid_user_id"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,,5,s": ["missing_price"],
        "2019-10-01T00:00:01Z,view,1,2,,,1.0,5,s": [],
        "2019-10-01T02:00:01.5+02:00,view,1,2,,,1.0,5,s": [],
        "2019-10-01 00:00:01,view,1,2,,,1.0,5,s": ["invalid_timestamp"],
        "2019-10-01 00:00:01 UTC,view,1,2,," + "b" * 1_001 + ",1.0,5,s": ["field_too_long"],
        "2019-10-01 00:00:01 UTC,view,1,2,,\u0000,1.0,5,s": ["invalid_encoding"],
        "2019-09-27 23:59:59 UTC,view,1,2,,,1.0,5,s": ["timestamp_outside_window"],
        "2019-10-02 01:00:00 UTC,view,1,2,,,1.0,5,s": ["timestamp_outside_window"],
        "2019-10-01 00:00:01 UTC,view,1,2": ["malformed_row"],
        "2019-10-01 00:00:01 UTC,view,1,2,,,1.0,5,s,extra": ["malformed_row"],
        "garbage,click,,,,,-1,,": ["invalid_timestamp", "missing_user_id", "missing_item_id",
                                   "unknown_event_type", "negative_price"],
        "": ["malformed_row"],
    }
    path = write(tmp_path / "r.csv.gz", [REES46_HEADER, *rows], gz=True)
    got = checked(spark, tmp_path, "rees46", path)
    assert {value: list(row.reasons) for value, row in got.items()} == rows
    first = got[good]
    assert (first.event_ts, first.user_id, first.item_id, first.event_type, first.category_id,
            first.category_code, first.brand, first.price, first.source_session_id,
            first.source) == (datetime(2019, 10, 1), 541312140, 44600062, "view",
                              2103807459595387724, None, "shiseido", 35.79, "s1", "rees46")
    assert got["2019-10-01T02:00:01.5+02:00,view,1,2,,,1.0,5,s"].event_ts == datetime(
        2019, 10, 1, 0, 0, 1, 500000)
    # MD5 of the source name and every raw field joined by U+001F, a missing field as U+2400,
    # worked out by hand from the two lines above (the second has no missing field)
    assert first.event_id == "b0def25ad0d1073de92eddd46bccee15"
    second = ("2019-10-01 23:59:59 UTC,purchase,3900821,2053013552326770905,"
              "appliances.water_heater,aqua,33.20,554748717,s2")
    assert got[second].event_id == "60fa8998f82a2098295cf12c36f416d7"
    # ...and the same line read again (another run, another file name) keeps its id
    again = write(tmp_path / "again.csv", [REES46_HEADER, good])
    assert checked(spark, tmp_path, "rees46", again)[good].event_id == first.event_id
    # ...and so does a re-export that writes its numbers otherwise (the layout's `number`
    # columns are hashed in one form); a different number is a different event
    reexport = {
        good.replace(",44600062,", ",044600062,").replace(",35.79,", ",35.790,"):
            first.event_id,
        second.replace(",33.20,", ",33.2,").replace(",554748717,", ", 554748717,"):
            got[second].event_id,
        good.replace(",35.79,", ",35.791,"): None,
        good.replace(",541312140,", ",541312141,"): None,
    }
    ids = {value: row.event_id for value, row in checked(spark, tmp_path, "rees46", write(
        tmp_path / "reexport.csv", [REES46_HEADER, *reexport])).items()}
    assert {value: ids[value] for value, same in reexport.items() if same} == {
        value: same for value, same in reexport.items() if same}
    assert len(set(ids.values()) | {first.event_id, got[second].event_id}) == 4


def test_a_quoted_field_holding_newlines_is_one_record_and_a_stray_quote_changes_nothing(
        spark, tmp_path):
    """Read line by line, a record whose quoted brand holds newlines is two or three malformed
    lines; read with quoted newlines joined, it is one record. A stray quote character in an
    unquoted field (`12" screen`) opens no record: joined lines that do not parse whole,
    every newline inside a quoted field, stay lines of their own."""
    event = "2019-10-01 00:00:{:02d} UTC,view,1,2,,{},1.0,5,s"
    lines = [event.format(1, '"two\nlines"'), event.format(2, "plain"),
             event.format(3, '"three\nshort\nlines"'), event.format(4, '12" screen'),
             event.format(5, "after"), event.format(6, '"say ""hi"""')]
    path = write(tmp_path / "quoted.csv", [REES46_HEADER, *lines])
    layout = get_adapter("rees46").layout
    by_line = read_raw(spark, layout, list_files(spark, str(path)))
    assert by_line.count() == 9 and by_line.where("_corrupt IS NOT NULL").count() == 5
    joined = read_raw(spark, layout, list_files(spark, str(path)), quoted_newlines=True)
    assert sorted((r.value, r.raw_brand, r._corrupt) for r in joined.collect()) == sorted(
        (line, brand, None) for line, brand in zip(lines, [
            "two\nlines", "plain", "three\nshort\nlines", '12" screen', "after", 'say "hi"'],
            strict=True))


def test_events_after_the_ingestion_time_plus_the_skew_are_in_the_future_in_any_run(
        spark, tmp_path):
    rows = {
        "2019-10-01 12:00:00 UTC,view,1,2,,,1.0,5,s": [],  # ingested at 12:00
        "2019-10-01 12:30:00 UTC,view,1,2,,,1.0,5,s": [],  # within the 1 h skew
        "2019-10-01 13:00:00 UTC,view,1,2,,,1.0,5,s": [],
        "2019-10-01 13:00:01 UTC,view,1,2,,,1.0,5,s": ["timestamp_in_future"],
        "2031-01-01 00:00:00 UTC,view,1,2,,,1.0,5,s": ["timestamp_in_future"],
    }
    path = write(tmp_path / "future.csv", [REES46_HEADER, *rows])
    now = datetime(2019, 10, 1, 12, tzinfo=UTC)
    got = checked(spark, tmp_path, "rees46", path, run_date="all", ingested_at=now)
    assert {value: list(row.reasons) for value, row in got.items()} == rows
    # a dated run: also outside its window, the window's reason first
    got = checked(spark, tmp_path, "rees46", path, ingested_at=now,
                  future_skew=timedelta(minutes=30))
    assert list(got["2019-10-01 13:00:00 UTC,view,1,2,,,1.0,5,s"].reasons) == [
        "timestamp_in_future"]
    assert list(got["2031-01-01 00:00:00 UTC,view,1,2,,,1.0,5,s"].reasons) == [
        "timestamp_outside_window", "timestamp_in_future"]


def test_taobao_maps_behaviours_and_unix_seconds(spark, tmp_path):
    rows = {
        "1,2268318,2520377,pv,1511544070": ("view", datetime(2017, 11, 24, 17, 21, 10), []),
        "1,2333346,2520771,fav,1511561733": ("favorite", datetime(2017, 11, 24, 22, 15, 33), []),
        "2,3,4,buy,1511572885": ("purchase", datetime(2017, 11, 25, 1, 21, 25), []),
        "2,3,4,cart,1511572885": ("cart", datetime(2017, 11, 25, 1, 21, 25), []),
        "2,3,4,like,1511572885": (None, datetime(2017, 11, 25, 1, 21, 25),
                                  ["unknown_event_type"]),
        "2,3,4,pv,99999999999999999": ("view", None, ["invalid_timestamp"]),
        "2,3,4": (None, None, ["malformed_row"]),
    }
    path = write(tmp_path / "t.csv", rows)
    got = checked(spark, tmp_path, "taobao", path, run_date="all")
    assert {v: (r.event_type, r.event_ts, list(r.reasons)) for v, r in got.items()} == rows
    assert {r.price for r in got.values()} == {None}


def test_retailrocket_maps_events_and_unix_millis(spark, tmp_path):
    rows = {
        "1433221332117,257597,view,355908,": ("view", datetime(2015, 6, 2, 5, 2, 12, 117000), []),
        "1433224214164,992329,addtocart,248676,": ("cart", datetime(2015, 6, 2, 5, 50, 14, 164000),
                                                   []),
        "1433222276276,599528,transaction,356475,4000": (
            "purchase", datetime(2015, 6, 2, 5, 17, 56, 276000), []),
    }
    path = write(tmp_path / "events.csv",
                 ["timestamp,visitorid,event,itemid,transactionid", *rows])
    got = checked(spark, tmp_path, "retailrocket", path, run_date="all")
    assert {v: (r.event_type, r.event_ts, list(r.reasons)) for v, r in got.items()} == rows


def test_columns_in_another_order_are_read_by_name(spark, tmp_path):
    header = "user_id,event_time,event_type,product_id,category_id,price,user_session"
    path = write(tmp_path / "reordered.csv", [header, "5,2019-10-01 08:00:00 UTC,cart,7,8,9.5,s"])
    (row,) = checked(spark, tmp_path, "rees46", path).values()
    assert (row.user_id, row.item_id, row.event_type, row.price, row.brand, list(row.reasons)) == (
        5, 7, "cart", 9.5, None, [])


def test_a_missing_required_column_fails_naming_the_file_and_column(spark, tmp_path):
    header = "event_time,event_type,product_id,category_id,category_code,brand,user_id"
    path = write(tmp_path / "no_price.csv", [header, "2019-10-01 00:00:00 UTC,view,1,2,,,5"])
    with pytest.raises(SchemaDriftError) as err:
        checked(spark, tmp_path, "rees46", path)
    assert err.value.missing == ["price"]
    assert "no_price.csv" in str(err.value) and "price" in str(err.value)


def test_a_headerless_file_with_too_few_fields_fails(spark, tmp_path):
    path = write(tmp_path / "short.csv", ["1,2,3,pv"])
    with pytest.raises(SchemaDriftError, match="short.csv.*timestamp"):
        checked(spark, tmp_path, "taobao", path, run_date="all")


def test_missing_and_unreadable_inputs_are_clear_errors(spark, tmp_path):
    with pytest.raises(InputNotFoundError, match="nothing-here"):
        list_files(spark, str(tmp_path / "nothing-here*.csv"))
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 this is not gzip")
    with pytest.raises(UnreadableInputError, match="broken.csv.gz"):
        checked(spark, tmp_path, "rees46", broken)


def test_a_utf8_byte_order_mark_is_read_and_a_zero_byte_gzip_holds_no_rows(spark, tmp_path):
    line = "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,5,s1"
    marked = tmp_path / "bom.csv"  # Excel's "CSV UTF-8" starts with EF BB BF
    marked.write_bytes(b"\xef\xbb\xbf" + f"{REES46_HEADER}\n{line}\n".encode())
    got = checked(spark, tmp_path, "rees46", marked)
    assert list(got) == [line] and list(got[line].reasons) == []
    # a 0-byte .gz holds no rows (logged as an empty input file): the stage then fails with
    # EmptyInputError unless --allow-empty (tests/integration/test_bad_inputs.py)
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(b"")
    assert checked(spark, tmp_path, "rees46", empty) == {}


def test_files_are_signed_when_listed_and_a_grown_or_deleted_one_is_named(spark, tmp_path):
    for name in ("a.csv", "b.csv", "c.csv", "_SUCCESS"):
        (tmp_path / name).write_text("x\n")
    listed = listed_files(spark, str(tmp_path))
    assert [p.rsplit("/", 1)[-1] for p in listed] == ["a.csv", "b.csv", "c.csv"]
    assert list(listed) == list_files(spark, str(tmp_path))
    assert changed_files(spark, listed) == {}
    with open(tmp_path / "a.csv", "a") as grown:
        grown.write("y\n")
    (tmp_path / "c.csv").unlink()
    changed = {p.rsplit("/", 1)[-1]: says for p, says in changed_files(spark, listed).items()}
    assert changed == {"a.csv": "2 bytes when listed, 4 bytes now",
                       "c.csv": "2 bytes when listed, gone now"}


def test_a_jvm_that_ran_out_of_memory_or_disk_is_not_blamed_on_the_file():
    trace = ("An error occurred while calling o466.count.\n: org.apache.spark.SparkException: "
             "Job aborted\nCaused by: {}\n\tat java.base/java.io.FileOutputStream.write")
    for cause, error, says in (
            ("java.lang.OutOfMemoryError: Java heap space", ResourceExhaustedError,
             "reading in.csv ran out of memory (java.lang.OutOfMemoryError: Java heap space)"),
            ("java.io.IOException: No space left on device", ResourceExhaustedError,
             "ran out of disk space"),
            ("java.io.EOFException: Unexpected end of input stream", UnreadableInputError,
             "cannot read input file 'in.csv': java.io.EOFException: Unexpected end of input "
             "stream")):
        error_found = input_error("in.csv", Exception(trace.format(cause)))
        assert type(error_found) is error and says in str(error_found)


def test_dated_window_accepts_lateness_and_a_little_future_skew(tmp_path):
    cfg = IngestConfig(source="rees46", input_path="x", run_date=RunDate.parse("2019-10-05"),
                       data_root=str(tmp_path), lateness_days=2)
    assert cfg.accepted_window() == (utc(2019, 10, 3), utc(2019, 10, 6, 1))
    everything = IngestConfig(source="rees46", input_path="x", run_date=RunDate.parse("all"),
                              data_root=str(tmp_path))
    assert everything.accepted_window() == (None, None)
