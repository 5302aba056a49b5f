"""Custom Great Expectations expectations for the checks GX has no expectation for."""

from __future__ import annotations

from typing import Any

from great_expectations.expectations.expectation import (
    BatchExpectation,
    ColumnAggregateExpectation,
)
from great_expectations.validator.metric_configuration import MetricConfiguration


class ExpectColumnValueSharesToMatchReference(ColumnAggregateExpectation):
    """Expect each value's share of the rows to be within `max_abs_diff` of a reference share.

    Used for mix drift: the reference is the mean share over the trailing runs. A value absent
    from either side counts as share 0 there. Without a reference (no history yet) the
    expectation passes and only records the observed shares, which become history.
    """

    reference_shares: dict[str, float] | None = None
    max_abs_diff: float = 0.1

    metric_dependencies = ("column.value_counts",)
    success_keys = ("reference_shares", "max_abs_diff")
    args_keys = ("column", "reference_shares", "max_abs_diff")

    def get_validation_dependencies(self, execution_engine=None, runtime_configuration=None):
        dependencies = super().get_validation_dependencies(execution_engine,
                                                           runtime_configuration)
        # column.value_counts needs its sort/collate arguments, which this expectation
        # does not take from the user.
        dependencies.set_metric_configuration("column.value_counts", MetricConfiguration(
            "column.value_counts",
            metric_domain_kwargs=self.configuration.get_domain_kwargs(),
            metric_value_kwargs={"sort": "value", "collate": None},
        ))
        return dependencies

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        counts = metrics["column.value_counts"]
        total = float(counts.sum())
        shares = {str(k): round(float(v) / total, 6) for k, v in counts.items()} if total else {}
        reference = self.reference_shares
        if not reference:
            return {"success": True, "result": {"observed_value": shares}}
        differences = {
            key: round(shares.get(key, 0.0) - reference.get(key, 0.0), 6)
            for key in sorted(set(shares) | set(reference))
        }
        worst = max((abs(d) for d in differences.values()), default=0.0)
        result: dict[str, Any] = {
            "observed_value": shares,
            "details": {"reference_shares": reference, "difference": differences,
                        "max_abs_difference": worst},
        }
        return {"success": worst <= self.max_abs_diff, "result": result}


class ExpectTableRowCountWithPriorToBeBetween(BatchExpectation):
    """Expect the batch's rows plus `prior_rows` to be between `min_value` and `max_value`.

    Used for a day's volume when a day arrives in several files: `prior_rows` is what the
    earlier runs of the same date and source published, so the check sees the day's total
    (a 10-row late file after a full day is no 99% drop). The observed value is that total,
    and becomes the day's history. A bound left None is open.
    """

    prior_rows: int = 0
    min_value: int | None = None
    max_value: int | None = None

    metric_dependencies = ("table.row_count",)
    success_keys = ("prior_rows", "min_value", "max_value")
    args_keys = ("min_value", "max_value")

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        batch = int(metrics["table.row_count"])
        total = batch + int(self.prior_rows)
        success = ((self.min_value is None or total >= self.min_value)
                   and (self.max_value is None or total <= self.max_value))
        return {"success": success, "result": {
            "observed_value": total,
            "details": {"batch_rows": batch, "prior_rows": int(self.prior_rows)}}}
