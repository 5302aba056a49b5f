"""Expectation suites as data: `schemas/expectations/<table>.yaml` -> GX expectations.

A check is one GX expectation with a name and a severity. Its kwargs may hold
`{$PARAMETER: name}` values that the run supplies (its window, its reconciled row count);
a check whose parameter the run cannot supply (no window on an `all` run) is not evaluated.
Two kinds of checks take their bounds from history or the calendar instead:

- `trailing: {runs, min_runs, band, side}`: a row-count check gets `mean * (1 -/+ band)` of
  the last `runs` published observations, one per date (`dq.results.trailing_observations`);
  `side: below` keeps only the lower bound (a drop), `side: above` only the upper (a surge),
  so a drop can be critical while a busy day only warns. A value-share check gets their mean
  shares as reference. Until `min_runs` observations exist the check only observes (it passes
  and records its value).
- `freshness: {max_lag}`: the newest value must be at least `end of run date - max_lag`;
  dated runs only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import great_expectations as gx
import yaml
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metadata_types import FailureSeverity

from clickscore.core.config import parse_duration
from clickscore.core.paths import schemas_dir
from clickscore.dq import expectations as custom

SEVERITIES = ("critical", "warning")
PARAMETER = "$PARAMETER"


SIDES = ("both", "below", "above")
ROW_COUNT_EXPECTATIONS = ("expect_table_row_count_to_be_between",
                          "expect_table_row_count_with_prior_to_be_between")


@dataclass(frozen=True)
class Trailing:
    runs: int = 7
    min_runs: int = 3
    band: float | None = None
    side: str = "both"

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"trailing side {self.side!r}: expected one of {SIDES}")


@dataclass(frozen=True)
class Check:
    """One named expectation of a suite."""

    name: str
    severity: str
    expectation: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    trailing: Trailing | None = None
    freshness_max_lag: timedelta | None = None
    notes: str = ""

    @property
    def expectation_class(self) -> type[Expectation]:
        class_name = "".join(part.capitalize() for part in self.expectation.split("_"))
        found = getattr(custom, class_name, None) or getattr(gx.expectations, class_name, None)
        if found is None:
            raise ValueError(f"check {self.name!r}: unknown expectation {self.expectation!r}")
        return found

    def parameters(self) -> set[str]:
        return {v[PARAMETER] for v in self.kwargs.values()
                if isinstance(v, Mapping) and PARAMETER in v}


@dataclass(frozen=True)
class Reference:
    """A foreign key: `column` must exist as `key` in `table`; joined in as `alias`."""

    column: str
    table: str
    key: str
    alias: str


@dataclass(frozen=True)
class Derived:
    """A column computed on the batch before validation (a Spark SQL expression), for checks
    on values GX cannot reach directly, such as array lengths."""

    name: str
    sql: str


@dataclass(frozen=True)
class SuiteSpec:
    table: str
    checks: tuple[Check, ...]
    references: tuple[Reference, ...] = ()
    derived: tuple[Derived, ...] = ()

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"{self.table} has no check {name!r}")


@cache
def suite_spec(table: str) -> SuiteSpec:
    """The declared suite for `table` (validated: names unique, severities and types known)."""
    path = schemas_dir() / "expectations" / f"{table}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no expectation suite for {table} at {path}")
    raw = yaml.safe_load(path.read_text())
    # `extends: <table>`: that suite's checks, references and derived columns, then these
    base = suite_spec(raw["extends"]) if "extends" in raw else SuiteSpec(raw["suite"], ())
    checks = base.checks + tuple(_check(item, path.name) for item in raw["checks"])
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise ValueError(f"{path.name}: check names must be unique, got {names}")
    references = base.references + tuple(Reference(**item)
                                         for item in raw.get("references", []))
    derived = base.derived + tuple(Derived(**item) for item in raw.get("derived", []))
    return SuiteSpec(table=raw["suite"], checks=checks, references=references, derived=derived)


def _check(item: Mapping[str, Any], where: str) -> Check:
    severity = item.get("severity", "critical")
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: check {item.get('name')!r} has severity {severity!r}, "
                         f"expected one of {SEVERITIES}")
    freshness = item.get("freshness")
    check = Check(
        name=item["name"],
        severity=severity,
        expectation=item["expectation"],
        kwargs=dict(item.get("kwargs", {})),
        trailing=Trailing(**item["trailing"]) if "trailing" in item else None,
        freshness_max_lag=parse_duration(freshness["max_lag"]) if freshness else None,
        notes=item.get("notes", ""),
    )
    check.expectation_class  # noqa: B018 - fail on load, not at the first run, if unknown
    return check


@dataclass(frozen=True)
class Planned:
    """A check resolved for one run: the GX expectation, or why it is not evaluated."""

    check: Check
    expectation: Expectation | None
    skipped_because: str = ""


def plan_check(
    check: Check,
    parameters: Mapping[str, Any],
    history: Sequence[Any],
    run_day_end: datetime | None,
) -> Planned:
    """Resolve `check` for a run: fill parameters, trailing bounds and freshness floor.

    `history` holds the check's observed values of the last published batches, newest first;
    `run_day_end` is the end of the run's date (None for an `all` run).
    """
    kwargs: dict[str, Any] = {}
    for key, value in check.kwargs.items():
        if isinstance(value, Mapping) and PARAMETER in value:
            value = parameters.get(value[PARAMETER])
            if value is None:
                return Planned(check, None, f"parameter {check.kwargs[key][PARAMETER]!r} "
                                            "not available for this run")
        kwargs[key] = _naive_utc(value)
    meta: dict[str, Any] = {"check": check.name, "notes": check.notes}
    if check.trailing is not None:
        meta["trailing_runs"] = len(history)
        kwargs.update(_trailing_kwargs(check, history))
    if check.freshness_max_lag is not None:
        if run_day_end is None:
            return Planned(check, None, "freshness applies to dated runs only")
        kwargs["min_value"] = _naive_utc(run_day_end - check.freshness_max_lag)
    expectation = check.expectation_class(**kwargs, severity=FailureSeverity(check.severity),
                                          meta=meta)
    return Planned(check, expectation)


def _trailing_kwargs(check: Check, history: Sequence[Any]) -> dict[str, Any]:
    assert check.trailing is not None
    enough = len(history) >= check.trailing.min_runs
    if check.expectation in ROW_COUNT_EXPECTATIONS:
        if not enough:
            return {"min_value": 0, "max_value": None}
        band = check.trailing.band if check.trailing.band is not None else 0.5
        mean = sum(float(v) for v in history) / len(history)
        side = check.trailing.side
        return {"min_value": math.floor(mean * (1 - band)) if side != "above" else None,
                "max_value": math.ceil(mean * (1 + band)) if side != "below" else None}
    if check.expectation == "expect_column_value_shares_to_match_reference":
        if not enough:
            return {"reference_shares": None}
        keys = sorted({k for shares in history for k in shares})
        return {"reference_shares": {
            k: round(sum(float(s.get(k, 0.0)) for s in history) / len(history), 6)
            for k in keys}}
    raise ValueError(f"check {check.name!r}: `trailing` is not supported for "
                     f"{check.expectation}")


def _naive_utc(value: Any) -> Any:
    """Datetimes as naive UTC: Spark hands timestamps back naive in the session's UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


