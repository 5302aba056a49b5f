"""Custom Great Expectations expectations for the checks GX has no expectation for."""

from __future__ import annotations

from typing import Any

from great_expectations.expectations.expectation import ColumnAggregateExpectation
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
