"""Delta writes report their own commit: a write that changes nothing makes no commit, and
its metrics must not be an earlier write's."""

from __future__ import annotations

import pytest

from clickscore.core.contracts import table_schema
from clickscore.core.delta import append, merge_insert_new, table_version
from tests.conftest import utc

pytestmark = pytest.mark.integration


def test_an_empty_append_and_a_merge_with_nothing_new_report_nothing_written(empty_warehouse):
    spark = empty_warehouse
    schema = table_schema("ml.brand_vocab")
    window = (utc(2019, 10, 1), utc(2019, 10, 2))
    rows = [("v1", f"brand{i}", i + 2, 5 - i, *window, 1) for i in range(3)]
    df = spark.createDataFrame(rows, schema.struct)
    assert append(spark, df, "ml.brand_vocab")["numOutputRows"] == 3
    version = table_version(spark, "ml.brand_vocab")
    assert append(spark, df.limit(0), "ml.brand_vocab") == {"numOutputRows": 0}
    again = merge_insert_new(spark, df, "ml.brand_vocab")
    assert (again["numSourceRows"], again["numTargetRowsInserted"]) == (3, 0)
    assert table_version(spark, "ml.brand_vocab") == version
    more = spark.createDataFrame([("v1", "brand9", 9, 1, *window, 1)], schema.struct)
    inserted = merge_insert_new(spark, df.unionByName(more), "ml.brand_vocab")
    assert (inserted["numSourceRows"], inserted["numTargetRowsInserted"]) == (4, 1)
