"""Suite files load and fit their tables; checks resolve parameters, trailing bounds and
freshness for a run; the custom mix-drift expectation passes and fails as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import great_expectations as gx
import pytest

from clickscore.core.contracts import table_schema
from clickscore.core.paths import suite_tables
from clickscore.dq.expectations import (
    ExpectColumnValueSharesToMatchReference,
    ExpectTableRowCountWithPriorToBeBetween,
)
from clickscore.dq.suites import Check, Trailing, plan_check, suite_spec


def test_every_suite_loads_and_names_only_columns_its_table_has():
    assert {"bronze.events", "silver.events", "silver.sessions"} <= set(suite_tables())
    for table in suite_tables():
        spec = suite_spec(table)
        assert spec.table == table
        columns = (set(table_schema(table).names) | {r.alias for r in spec.references}
                   | {d.name for d in spec.derived})
        for check in spec.checks:
            named = [check.kwargs.get(k) for k in ("column", "column_A", "column_B")]
            named += list(check.kwargs.get("column_list", []))
            assert {c for c in named if c} <= columns, (table, check.name)
        assert {c.severity for c in spec.checks} <= {"critical", "warning"}
        # every suite covers keys, reconciliation and volume
        kinds = {c.expectation for c in spec.checks}
        assert "expect_column_values_to_not_be_null" in kinds
        assert {"rows_reconcile_with_run", "volume_vs_trailing_mean"} <= {
            c.name for c in spec.checks}


def test_a_suite_that_extends_another_has_its_checks_then_its_own():
    base = [c.name for c in suite_spec("gold.user_features").checks]
    examples = [c.name for c in suite_spec("gold.training_examples").checks]
    assert examples[:len(base)] == base
    assert {"purchase_label_is_binary", "target_seq_has_length_L"} <= set(examples[len(base):])
    assert {d.name for d in suite_spec("gold.user_features").derived} < {
        d.name for d in suite_spec("gold.training_examples").derived}


def test_unknown_severity_or_expectation_fails_on_load(tmp_path, monkeypatch):
    from clickscore.dq import suites

    bad = tmp_path / "expectations"
    bad.mkdir()
    (bad / "x.t.yaml").write_text(
        "suite: x.t\nchecks:\n  - {name: a, severity: fatal, expectation: "
        "expect_column_values_to_not_be_null, kwargs: {column: c}}\n")
    monkeypatch.setattr(suites, "schemas_dir", lambda: tmp_path)
    suites.suite_spec.cache_clear()
    with pytest.raises(ValueError, match="severity 'fatal'"):
        suites.suite_spec("x.t")
    (bad / "x.t.yaml").write_text(
        "suite: x.t\nchecks:\n  - {name: a, expectation: expect_rows_to_be_nice}\n")
    suites.suite_spec.cache_clear()
    with pytest.raises(ValueError, match="unknown expectation 'expect_rows_to_be_nice'"):
        suites.suite_spec("x.t")
    suites.suite_spec.cache_clear()


def test_parameters_are_filled_and_a_missing_one_skips_the_check():
    check = suite_spec("bronze.events").check("event_ts_in_run_window")
    start = datetime(2019, 10, 1, tzinfo=UTC)
    planned = plan_check(check, {"window_start": start, "window_end": start + timedelta(days=1)},
                         [], None)
    assert planned.expectation is not None
    kwargs = planned.expectation.configuration.kwargs
    # naive UTC, as Spark returns timestamps
    assert kwargs["min_value"] == datetime(2019, 10, 1)
    assert kwargs["max_value"] == datetime(2019, 10, 2)
    assert planned.expectation.meta["check"] == "event_ts_in_run_window"
    skipped = plan_check(check, {"window_end": start}, [], None)
    assert skipped.expectation is None
    assert "window_start" in skipped.skipped_because


def test_trailing_volume_band_comes_from_the_mean_of_history():
    check = Check(name="volume", severity="critical",
                  expectation="expect_table_row_count_to_be_between",
                  trailing=Trailing(runs=7, min_runs=3, band=0.5))
    planned = plan_check(check, {}, [1000, 1200, 800], None)
    assert planned.expectation is not None
    kwargs = planned.expectation.configuration.kwargs
    assert (kwargs["min_value"], kwargs["max_value"]) == (500, 1500)
    # too little history: observe only
    observe = plan_check(check, {}, [1000, 1200], None).expectation
    assert observe is not None
    assert (observe.configuration.kwargs["min_value"],
            observe.configuration.kwargs.get("max_value")) == (0, None)


def test_a_one_sided_volume_check_keeps_only_its_bound():
    history = [1000, 1200, 800]
    for side, bounds in (("below", (500, None)), ("above", (None, 1500))):
        check = Check(name="volume", severity="critical",
                      expectation="expect_table_row_count_with_prior_to_be_between",
                      kwargs={"prior_rows": {"$PARAMETER": "prior_rows"}},
                      trailing=Trailing(runs=7, min_runs=3, band=0.5, side=side))
        planned = plan_check(check, {"prior_rows": 40}, history, None)
        assert planned.expectation is not None
        kwargs = planned.expectation.configuration.kwargs
        assert (kwargs.get("min_value"), kwargs.get("max_value"), kwargs["prior_rows"]) == (
            *bounds, 40)
    with pytest.raises(ValueError, match="trailing side 'left'"):
        Trailing(side="left")
    # the shipped suites: a drop is critical, a surge a warning, both on the day's total
    bronze = suite_spec("bronze.events")
    assert [(c.severity, c.trailing.side if c.trailing else None, c.expectation)
            for c in (bronze.check("volume_vs_trailing_mean"),
                      bronze.check("volume_surge_vs_trailing_mean"))] == [
        ("critical", "below", "expect_table_row_count_with_prior_to_be_between"),
        ("warning", "above", "expect_table_row_count_with_prior_to_be_between")]


@pytest.mark.parametrize(("prior", "bounds", "success"), [
    (0, (10, None), False),       # 6 rows alone are a drop
    (994, (10, None), True),      # after a day's earlier 994 rows: a total of 1,000
    (994, (None, 999), False),    # and that total is what a surge bound sees
])
def test_row_count_with_prior_sees_the_days_total(spark, prior, bounds, success):
    df = spark.createDataFrame([(n,) for n in range(6)], "n int")
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_spark("s").add_dataframe_asset("a")
             .add_batch_definition_whole_dataframe("b").get_batch(
                 batch_parameters={"dataframe": df}))
    result = batch.validate(ExpectTableRowCountWithPriorToBeBetween(
        prior_rows=prior, min_value=bounds[0], max_value=bounds[1]))
    assert result.success is success
    assert result.result["observed_value"] == 6 + prior
    assert result.result["details"] == {"batch_rows": 6, "prior_rows": prior}


def test_trailing_mix_reference_is_the_mean_share_per_value():
    check = suite_spec("bronze.events").check("event_type_mix_vs_trailing_mean")
    history = [{"view": 0.9, "cart": 0.1}, {"view": 0.8, "cart": 0.1, "purchase": 0.1},
               {"view": 0.7, "cart": 0.3}]
    planned = plan_check(check, {}, history, None)
    assert planned.expectation is not None
    assert planned.expectation.configuration.kwargs["reference_shares"] == {
        "cart": pytest.approx(0.166667), "purchase": pytest.approx(0.033333),
        "view": pytest.approx(0.8)}


def test_freshness_floor_is_the_end_of_the_run_date_minus_the_lag_and_dated_only():
    check = suite_spec("bronze.events").check("freshness")
    end = datetime(2019, 10, 2, tzinfo=UTC)
    planned = plan_check(check, {}, [], end)
    assert planned.expectation is not None
    assert planned.expectation.configuration.kwargs["min_value"] == datetime(2019, 10, 1)
    assert plan_check(check, {}, [], None).expectation is None


@pytest.mark.parametrize(("reference", "success"), [
    (None, True),                                   # no history yet: observe only
    ({"view": 0.70, "cart": 0.25, "purchase": 0.05}, True),   # within 0.1 everywhere
    ({"view": 0.95, "cart": 0.05}, False),          # view 0.75 vs 0.95
])
def test_value_share_expectation(spark, reference, success):
    df = spark.createDataFrame([("view",)] * 15 + [("cart",)] * 4 + [("purchase",)], "et string")
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_spark("s").add_dataframe_asset("a")
             .add_batch_definition_whole_dataframe("b").get_batch(
                 batch_parameters={"dataframe": df}))
    result = batch.validate(ExpectColumnValueSharesToMatchReference(
        column="et", reference_shares=reference, max_abs_diff=0.1))
    assert result.success is success
    assert result.result["observed_value"] == {"view": 0.75, "cart": 0.2, "purchase": 0.05}
    if reference and not success:
        assert result.result["details"]["difference"]["view"] == pytest.approx(-0.2)
