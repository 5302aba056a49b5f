"""The comparison helper the integration tests use fails with the differing rows side by side,
and passes on equal multisets in any order."""

from __future__ import annotations

import pytest

from tests.integration.helpers import assert_same_rows


def test_equal_multisets_in_another_order_pass_and_a_difference_shows_both_rows(spark):
    a = spark.createDataFrame([(1, "view", 2.5), (2, "cart", None), (2, "cart", None)],
                              "user_id INT, event_type STRING, price DOUBLE")
    assert_same_rows(a, a.orderBy("price").union(a.limit(0)))

    b = spark.createDataFrame([(1, "view", 2.5), (2, "cart", None), (2, "purchase", None)],
                              "user_id INT, event_type STRING, price DOUBLE")
    with pytest.raises(AssertionError) as failed:
        assert_same_rows(a, b, "silver.events")
    assert str(failed.value).splitlines() == [
        "silver.events: 1 row(s) only in actual, 1 only in expected (first 10 of each, side by "
        "side)",
        "  actual:   user_id=2, event_type='cart', price=None",
        "  expected: user_id=2, event_type='purchase', price=None"]


def test_a_duplicate_row_and_other_columns_are_differences(spark):
    a = spark.createDataFrame([(1,), (1,)], "n INT")
    with pytest.raises(AssertionError, match="1 row\\(s\\) only in actual, 0 only in expected"):
        assert_same_rows(a, a.distinct())
    with pytest.raises(AssertionError, match="columns differ"):
        assert_same_rows(a, a.withColumnRenamed("n", "m"))
