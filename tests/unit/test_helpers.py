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


def test_the_suite_splits_into_units_that_keep_what_they_share_together():
    from tests.conftest import UNITS, test_group

    groups = {nodeid: test_group(nodeid) for nodeid in (
        "tests/cluster/test_cluster.py::test_every_stage",
        "tests/integration/test_cli.py::test_the_demo_runs_every_stage_within_its_line_budget",
        "tests/integration/test_report_and_notebooks.py::test_the_report_shows",
        "tests/integration/test_cli.py::test_help_lists_the_stages_and_bad_arguments_exit_2",
        "tests/integration/test_kills.py::test_a_run_killed",
        "tests/dags/test_dag_integrity.py::test_the_folder_parses",
        "tests/integration/test_scoring.py::test_scores_every_active_user",
        "tests/integration/test_scoring.py::test_real_samples_score_every_user_of_the_day",
        "tests/integration/test_features_real.py::test_taobao_training_examples",
        "tests/integration/test_time_zones.py::test_every_stage",
        "tests/unit/test_helpers.py::test_equal_multisets")}
    assert list(groups.values()) == ["cluster", "cluster", "cluster", "cli", "kills", "dags",
                                     "generated", "real", "real", "time-zones", "in-process"]
    # the more specific prefix wins (the demo test over test_cli.py, the real-sample scoring
    # test over test_scoring.py), and the longest unit is handed out first
    assert UNITS[0][0] == "cluster"
