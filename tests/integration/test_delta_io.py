"""Delta writes report their own commit: a write that changes nothing makes no commit, and
its metrics must not be an earlier write's."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from clickscore.core import delta as delta_io
from clickscore.core.contracts import table_schema
from clickscore.core.delta import (
    _latest_commit,
    append,
    merge_insert_new,
    read_table,
    table_version,
)
from clickscore.core.display import run_sql
from clickscore.core.identity import UnscopedTableError
from clickscore.core.sql import SqlConfig
from tests.conftest import utc
from tests.integration.helpers import assert_same_rows

pytestmark = pytest.mark.integration


def test_an_empty_append_and_a_merge_with_nothing_new_report_nothing_written(empty_warehouse):
    spark = empty_warehouse
    schema = table_schema("ml.brand_vocab")
    window = (utc(2019, 10, 1), utc(2019, 10, 2))
    rows = [("v1", "rees46", f"brand{i}", i + 2, 5 - i, *window, 1) for i in range(3)]
    df = spark.createDataFrame(rows, schema.struct)
    assert append(spark, df, "ml.brand_vocab")["numOutputRows"] == 3
    version = table_version(spark, "ml.brand_vocab")
    assert append(spark, df.limit(0), "ml.brand_vocab") == {"numOutputRows": 0}
    again = merge_insert_new(spark, df, "ml.brand_vocab")
    assert (again["numSourceRows"], again["numTargetRowsInserted"]) == (3, 0)
    assert table_version(spark, "ml.brand_vocab") == version
    more = spark.createDataFrame([("v1", "rees46", "brand9", 9, 1, *window, 1)],
                                 schema.struct)
    inserted = merge_insert_new(spark, df.unionByName(more), "ml.brand_vocab")
    assert (inserted["numSourceRows"], inserted["numTargetRowsInserted"]) == (4, 1)
    # read from the Delta log in the driver, as Delta's history(1) reports it (a MERGE's
    # metrics too), and never Delta's history-reading fallback
    latest = DeltaTable.forName(spark, "ml.brand_vocab").history(1).first()
    assert _latest_commit(spark, "ml.brand_vocab", with_metrics=True) == (
        latest.version, latest.operationMetrics)
    assert table_version(spark, "ml.brand_vocab") == latest.version == version + 1
    assert delta_io._log_reads


def test_the_runbooks_restore_through_clickscore_sql_brings_a_version_back(empty_warehouse,
                                                                           capsys):
    """README, runbook: DESCRIBE HISTORY, VERSION AS OF, RESTORE TABLE, as `clickscore sql`
    runs them."""
    spark = empty_warehouse
    schema = table_schema("ml.brand_vocab")
    window = (utc(2019, 10, 1), utc(2019, 10, 2))
    good = spark.createDataFrame([("v1", "rees46", f"brand{i}", i + 2, 5, *window, 1)
                                  for i in range(3)],
                                 schema.struct)
    append(spark, good, "ml.brand_vocab")
    kept = table_version(spark, "ml.brand_vocab")
    append(spark, good.withColumn("vocab_version", F.lit("bad")), "ml.brand_vocab")

    def sql(query: str) -> str:
        run_sql(spark, SqlConfig(query=query, format="json"))
        return capsys.readouterr().out

    history = [json.loads(line) for line in sql("DESCRIBE HISTORY ml.brand_vocab").splitlines()]
    assert [h["version"] for h in history][:2] == [kept + 1, kept]
    assert json.loads(sql(f"SELECT count(*) AS n FROM ml.brand_vocab VERSION AS OF {kept}"))[
        "n"] == 3
    sql(f"RESTORE TABLE ml.brand_vocab TO VERSION AS OF {kept}")
    assert_same_rows(spark.table("ml.brand_vocab"), good)
    assert table_version(spark, "ml.brand_vocab") == kept + 2  # a restore is a new version


def bronze_row(source: str, user_id: int) -> tuple:
    ts = utc(2019, 10, 1, 9)
    return (f"e-{source}-{user_id}", ts, user_id, 7, "view", None, None, None, 1.0, None,
            source, "landing/file.csv", ts, "2019-10-01", ts.date())


def old_table(spark, table: str, rows: list[tuple]) -> None:
    """`table` as a release before ids were scoped by source created it: no `source`."""
    schema = table_schema(table)
    old = replace(schema, columns=tuple(c for c in schema.columns if c.name != "source"))
    spark.sql(old.ddl())
    spark.createDataFrame(rows, old.struct).writeTo(table).append()


def test_a_table_from_before_ids_were_scoped_gets_the_one_source_or_one_clear_line(
        empty_warehouse, monkeypatch):
    """A warehouse of one source: the old rows of a table that had no `source` column take
    it when a newer release first reads the table. A warehouse of two sources cannot tell
    whose user an old row was: the read fails in one line saying to rebuild."""
    spark = empty_warehouse
    monkeypatch.setattr(delta_io, "_upgraded", set())
    append(spark, spark.createDataFrame([bronze_row("rees46", 1), bronze_row("rees46", 2)],
                                        table_schema("bronze.events").struct), "bronze.events")
    at = utc(2019, 10, 2)
    old_table(spark, "gold.user_scores", [
        (user, at.date(), 0.5, 1, [], "3", "model", "model", at, at) for user in (1, 2)])
    scores = read_table(spark, "gold.user_scores")
    assert sorted((r.source, r.user_id) for r in scores.collect()) == [("rees46", 1),
                                                                        ("rees46", 2)]
    assert "source" in spark.table("gold.user_scores").columns

    append(spark, spark.createDataFrame([bronze_row("taobao", 1)],
                                        table_schema("bronze.events").struct), "bronze.events")
    old_table(spark, "ml.item_vocab", [("v1", 7, 2, 3, at, at, 1)])
    with pytest.raises(UnscopedTableError, match=(
            r"ml.item_vocab was written before ids were scoped by source, and bronze.events "
            r"holds 2 sources \(rees46, taobao\).*rebuild it from bronze")):
        read_table(spark, "ml.item_vocab")
