"""Write-audit-publish: validate a staged batch with its table's suite, publish only if no
critical check failed, and keep every result in ops.dq_results."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import great_expectations as gx
from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import FileDataContext
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
)
from great_expectations.expectations.expectation import Expectation
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunDate
from clickscore.core.errors import DataQualityError
from clickscore.dq.context import (
    batch_definition,
    data_docs_enabled,
    data_docs_index,
    dq_dir,
    gx_context,
)
from clickscore.dq.docs_assets import localize_pages
from clickscore.dq.results import (
    SAMPLE_SIZE,
    BatchValidation,
    CheckResult,
    record_results,
    trailing_observations,
)
from clickscore.dq.suites import Planned, SuiteSpec, plan_check, suite_spec

log = logging.getLogger(__name__)


def validate_batch(
    spark: SparkSession,
    batch_df: DataFrame,
    *,
    table: str,
    run_id: str,
    job: str,
    run_date: RunDate,
    data_root: str,
    parameters: Mapping[str, Any] | None = None,
    references: Mapping[str, DataFrame] | None = None,
    segment: str | None = None,
    empty_allowed: bool = False,
) -> BatchValidation:
    """Run `table`'s suite on `batch_df` (the rows about to be published) and return the
    results; nothing is recorded or raised here (see `publishing`).

    `references` maps a referenced table to the rows it will hold for this batch's keys
    (the staged batch of that table); a referenced table not given is read as published.
    `segment`: what trailing checks compare with (`trailing_observations`). An empty batch
    the run allows (`empty_allowed`, `--allow-empty`) skips the trailing checks, saying so.
    """
    spec = suite_spec(table)
    started = time.perf_counter()
    batch_rows = batch_df.count()
    history = trailing_observations(
        spark, table, {c.name: c.trailing.runs for c in spec.checks if c.trailing is not None},
        is_all=run_date.is_all, segment=segment, run_date=str(run_date))
    planned = [
        Planned(check, None, "an empty batch the run allows (--allow-empty)")
        if empty_allowed and batch_rows == 0 and check.trailing is not None else
        plan_check(check, parameters or {}, history.get(check.name, []),
                   None if run_date.is_all else run_date.start() + timedelta(days=1))
        for check in spec.checks
    ]
    skipped = tuple(f"{p.check.name}: {p.skipped_because}" for p in planned
                    if p.expectation is None)
    for reason in skipped:
        log.info("%s check not evaluated: %s", table, reason)
    validated_df = _with_references(spark, batch_df, spec, references or {})
    results, stored = _run_suite(spark, validated_df, spec, planned, data_root,
                                 run_name=f"{job}-{run_date}-{run_id}")
    validation = BatchValidation(
        run_id=run_id, job=job, table=table, run_date=str(run_date), batch_rows=batch_rows,
        results=tuple(results), skipped=skipped, validated_at=datetime.now(UTC),
        stored_results=tuple(stored), segment=segment)
    log.debug("validated %s batch of %d rows for %s in %.1fs: %d checks, %d critical "
             "failure(s), %d warning(s)", table, batch_rows, run_date,
             time.perf_counter() - started, len(results), len(validation.critical_failures),
             len(validation.warnings))
    for warning in validation.warnings:
        log.warning("%s %s: %s", table, run_date, warning.describe())
    return validation


@contextmanager
def publishing(
    spark: SparkSession, validations: Sequence[BatchValidation], data_root: str
) -> Iterator[None]:
    """Guard a publish: raise `DataQualityError` before it if any critical check failed,
    and record every result in ops.dq_results, marked published or not, either way; then
    render the run's Data Docs pages, once for all its batches."""
    published = False
    try:
        failures = [(v.table, r) for v in validations for r in v.critical_failures]
        if failures:
            run_date = validations[0].run_date
            raise DataQualityError(run_date, [(t, r.check, r.describe()) for t, r in failures])
        yield
        published = True
    finally:
        record_results(spark, validations, published)
        render_data_docs(data_root, validations)


def render_data_docs(data_root: str, validations: Sequence[BatchValidation]) -> None:
    """Build the Data Docs pages of these validations and the index (the newest
    `context.INDEX_LIMIT` validations), pointing them at local copies of their front-end
    files; nothing when `$CLICKSCORE_DATA_DOCS` is `off`."""
    stored = [key for v in validations for key in v.stored_results]
    if not stored or not data_docs_enabled():
        return
    started = time.time()
    try:
        context = gx_context(dq_dir(data_root))
        context.build_data_docs(resource_identifiers=stored)
        localize_pages(data_docs_index(data_root).parent, since=started - 1)
    except Exception as exc:  # the pages are a view: the results are stored and recorded
        log.warning("Data Docs were not rendered (%s: %s); the validation results are kept "
                    "in ops.dq_results and the GX store", type(exc).__name__, exc)
        return
    log.debug("Data Docs: %d validation page(s) and the index in %.1fs", len(stored),
              time.time() - started)


def _with_references(
    spark: SparkSession, batch_df: DataFrame, spec: SuiteSpec, references: Mapping[str, DataFrame]
) -> DataFrame:
    """Add the suite's derived columns, and left-join each referenced key in, as its `alias`
    column (null where it is missing)."""
    for column in spec.derived:
        batch_df = batch_df.withColumn(column.name, F.expr(column.sql))
    for ref in spec.references:
        target_df = references.get(ref.table)
        if target_df is None:
            target_df = spark.read.table(ref.table)
        keys_df = target_df.select(F.col(ref.key).alias(ref.alias)).distinct()
        batch_df = batch_df.join(keys_df, F.col(ref.column) == F.col(ref.alias), "left")
    return batch_df


def _run_suite(
    spark: SparkSession,
    batch_df: DataFrame,
    spec: SuiteSpec,
    planned: Sequence[Planned],
    data_root: str,
    *,
    run_name: str,
) -> tuple[list[CheckResult], list[Any]]:
    """Validate through GX checkpoints, so results are stored (and rendered in Data Docs by
    `render_data_docs`); the results and the stored results' keys.

    Two passes: every check counts its unexpected rows without sampling them (sampling
    costs a full extra scan per check even when nothing is found), then the checks that
    failed run again to sample their unexpected values.
    """
    context = gx_context(dq_dir(data_root))
    expectations = [p.expectation for p in planned if p.expectation is not None]
    results, stored = _checkpoint(context, spec.table, expectations, batch_df, run_name,
                                  {"result_format": "BASIC", "partial_unexpected_count": 0})
    failed = {r.expectation_config.meta["check"] for r in results
              if not r.success and r.expectation_config is not None
              and (r.result or {}).get("unexpected_count")}
    if failed:
        sampled, stored_samples = _checkpoint(
            context, f"{spec.table}.unexpected_samples",
            [e for e in expectations if e.meta and e.meta["check"] in failed], batch_df,
            run_name, {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE})
        stored += stored_samples
        by_check = {r.expectation_config.meta["check"]: r for r in sampled
                    if r.expectation_config is not None}
        results = [by_check.get(_name(r), r) for r in results]
    return [_check_result(r) for r in results], stored


def _checkpoint(
    context: FileDataContext,
    name: str,
    expectations: Sequence[Expectation],
    batch_df: DataFrame,
    run_name: str,
    result_format: dict[str, Any],
) -> tuple[list[ExpectationValidationResult], list[Any]]:
    """Run one checkpoint (no actions: the pages are built once per run); its results and
    the keys of the stored result and its suite."""
    # given whole to the constructor: `add_expectation` compares each new expectation with
    # every one already added (serializing both), O(n^2) per validation; the suite's checks
    # are distinct by construction (each names its check in `meta`)
    suite = context.suites.add_or_update(gx.ExpectationSuite(
        name=name, expectations=[expectation.copy() for expectation in expectations]))
    table = name.split(".unexpected_samples")[0]
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(
        name=name, data=batch_definition(context, table), suite=suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[definition], actions=[],
        result_format=result_format))
    outcome = checkpoint.run(batch_parameters={"dataframe": batch_df},
                             run_id=RunIdentifier(run_name=run_name))
    ((key, suite_result),) = outcome.run_results.items()
    return list(suite_result.results), [key, ExpectationSuiteIdentifier(name=name)]


def _name(result: ExpectationValidationResult) -> str:
    config = result.expectation_config
    return str(config.meta["check"]) if config is not None and config.meta else ""


def _check_result(result: ExpectationValidationResult) -> CheckResult:
    config = result.expectation_config
    assert config is not None
    kwargs = config.kwargs
    details = result.result or {}
    exception = (result.exception_info or {}).get("exception_message") if (
        result.exception_info or {}).get("raised_exception") else None
    bounds = ", ".join(f"{k}={kwargs[k]}" for k in ("min_value", "max_value", "value",
                                                    "value_set", "reference_shares",
                                                    "max_abs_diff")
                       if kwargs.get(k) is not None)
    return CheckResult(
        check=config.meta.get("check", config.type) if config.meta else config.type,
        expectation=config.type,
        column=kwargs.get("column") or _pair(kwargs),
        severity=str(getattr(config.severity, "value", config.severity)),
        success=bool(result.success),
        observed_value=details.get("observed_value"),
        element_count=details.get("element_count"),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        unexpected_sample=tuple(details.get("partial_unexpected_list") or ())[:SAMPLE_SIZE],
        exception=exception,
        bounds=bounds,
    )


def _pair(kwargs: Mapping[str, Any]) -> str | None:
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return None
