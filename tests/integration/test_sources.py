"""A new source is one adapter module plus one layout file: Diginetica (semicolons, anonymous
sessions) end to end, and the file formats a layout can declare (JSON Lines, Parquet) read
into the same raw records as delimited text."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
from pyspark.sql import functions as F

from clickscore.core.contracts import FileFormat, SourceLayout, source_layout
from clickscore.core.errors import SchemaDriftError
from clickscore.ingest.reader import list_files, read_raw
from tests.integration.helpers import ingest, sessionize

pytestmark = pytest.mark.integration

DIGINETICA = [
    "sessionId;userId;itemId;timeframe;eventdate",
    "1;NA;81766;526309;2016-05-09",
    "1;NA;31331;1031018;2016-05-09",
    "2;;32118;243569;2016-05-09",
    "3;278;9654;0;2016-05-10",
    "3;278;33043;1200000;2016-05-10",
    "x;NA;100;5;2016-05-10",
    "4;NA;;10;2016-05-10",
    "5;NA;200;abc;2016-05-10",
    "6;NA;300;10",
]


def test_diginetica_views_anonymous_sessions_and_bad_rows_end_to_end(empty_warehouse,
                                                                       data_root, tmp_path):
    spark = empty_warehouse
    path = tmp_path / "train-item-views.csv"
    path.write_text("\n".join(DIGINETICA) + "\n")
    counts = ingest(spark, data_root, "diginetica", path, "all")
    assert counts.as_dict() == {"input_rows": 9, "output_rows": 5, "quarantined_rows": 4,
                                "duplicate_rows": 0}
    bronze = {tuple(r) for r in spark.table("bronze.events").select(
        "user_id", "item_id", "event_ts", "event_type", "source_session_id", "category_id",
        "price", "source").collect()}
    # anonymous sessions (NA or empty) are users of their own: -sessionId
    assert bronze == {
        (-1, 81766, datetime(2016, 5, 9, 0, 8, 46, 309000), "view", "1", None, None,
         "diginetica"),
        (-1, 31331, datetime(2016, 5, 9, 0, 17, 11, 18000), "view", "1", None, None,
         "diginetica"),
        (-2, 32118, datetime(2016, 5, 9, 0, 4, 3, 569000), "view", "2", None, None,
         "diginetica"),
        (278, 9654, datetime(2016, 5, 10), "view", "3", None, None, "diginetica"),
        (278, 33043, datetime(2016, 5, 10, 0, 20), "view", "3", None, None, "diginetica"),
    }
    quarantine = {r.raw_line: list(r.reasons) for r in spark.table("quarantine.events").collect()}
    assert quarantine == {"x;NA;100;5;2016-05-10": ["invalid_user_id"],
                          "4;NA;;10;2016-05-10": ["missing_item_id"],
                          "5;NA;200;abc;2016-05-10": ["invalid_timestamp"],
                          "6;NA;300;10": ["malformed_row"]}
    run = sessionize(spark, data_root, "all")
    assert run.as_dict() == {"input_rows": 5, "output_rows": 5, "quarantined_rows": 0,
                             "duplicate_rows": 0}
    sessions = {(r.user_id, r.n_events) for r in spark.table("silver.sessions").collect()}
    assert sessions == {(-1, 2), (-2, 1), (278, 2)}
    # re-ingesting the file adds nothing
    again = ingest(spark, data_root, "diginetica", path, "all")
    assert (again.output_rows, spark.table("bronze.events").count()) == (5, 5)


TAOBAO_ROWS = [
    {"user_id": "1", "item_id": "2268318", "category_id": "2520377", "behavior_type": "pv",
     "timestamp": "1511544070"},
    {"user_id": "2", "item_id": "3", "category_id": "4", "behavior_type": "buy",
     "timestamp": "1511572885"},
    {"user_id": "u3", "item_id": "5", "category_id": "6", "behavior_type": "cart",
     "timestamp": "1511572885"},
]


def layout_as(kind: str) -> SourceLayout:
    taobao = source_layout("taobao")
    return SourceLayout(source="taobao", format=FileFormat(kind=kind), columns=taobao.columns)


def raw_records(spark, layout: SourceLayout, path) -> set[tuple]:
    df = read_raw(spark, layout, list_files(spark, str(path)))
    return {tuple(r) for r in df.select(
        *[f"raw_{c}" for c in layout.names], F.col("_corrupt").isNotNull()).collect()}


def test_json_lines_and_parquet_give_the_records_delimited_text_gives(spark, tmp_path):
    csv_path = tmp_path / "events.csv"
    csv_path.write_text("".join(",".join(r.values()) + "\n" for r in TAOBAO_ROWS))
    expected = {(*r.values(), False) for r in TAOBAO_ROWS}
    assert raw_records(spark, source_layout("taobao"), csv_path) == expected

    jsonl = tmp_path / "events.jsonl"
    # numbers stay their text; key order does not matter; a broken line is kept as corrupt
    lines = [json.dumps({**r, "user_id": int(r["user_id"])} if r["user_id"].isdigit() else r)
             for r in reversed(TAOBAO_ROWS)]
    jsonl.write_text("\n".join([*lines, '{"user_id": 9, "item_id":']) + "\n")
    got = raw_records(spark, layout_as("jsonl"), jsonl)
    assert got - {r for r in got if r[-1]} == expected
    assert len([r for r in got if r[-1]]) == 1

    parquet = tmp_path / "events.parquet"
    frame = pd.DataFrame(TAOBAO_ROWS)
    frame["timestamp"] = frame["timestamp"].astype("int64")
    frame.to_parquet(parquet, index=False)
    assert raw_records(spark, layout_as("parquet"), parquet) == expected
    raw_values = {r.value for r in read_raw(spark, layout_as("parquet"),
                                            [str(parquet)]).collect()}
    assert '{"user_id":"1","item_id":"2268318","category_id":"2520377","behavior_type":"pv",' \
           '"timestamp":1511544070}' in raw_values

    frame.drop(columns=["behavior_type"]).to_parquet(tmp_path / "lost.parquet", index=False)
    with pytest.raises(SchemaDriftError, match=r"missing columns \['behavior_type'\]"):
        read_raw(spark, layout_as("parquet"), [str(tmp_path / "lost.parquet")])
