"""The questions the run report answers, as Spark SQL and MLflow lookups returning pandas
frames. A table that does not exist yet answers with no rows."""

from __future__ import annotations

from datetime import date
from typing import cast

import pandas as pd
from pyspark.sql import SparkSession

from clickscore.core.config import end_of_day

# the methods training evaluates on the test split, the model first (training/evaluate.py)
METHODS = ("model", "most_popular", "recently_viewed", "item_knn", "logistic_regression",
           "hist_gradient_boosting")


def _frame(spark: SparkSession, query: str, tables: tuple[str, ...]) -> pd.DataFrame | None:
    if not all(spark.catalog.tableExists(t) for t in tables):
        return None
    return cast(pd.DataFrame, spark.sql(query).toPandas())


def day_keys(day: date) -> tuple[str, str]:
    """The keys of a day's runs (`run_key`): the date, and the cutoff at its end (the
    features the nightly score reads are built as of that instant)."""
    return day.isoformat(), end_of_day(day).isoformat()


def stage_runs(spark: SparkSession, day: date) -> pd.DataFrame | None:
    """Every run (every attempt) of the day, in the order they started."""
    keys = "', '".join(day_keys(day))
    return _frame(spark, f"""
        SELECT job, run_key, status, input_rows, output_rows, quarantined_rows,
               duplicate_rows, round(duration_s, 1) AS seconds, started_at, error
        FROM ops.pipeline_runs WHERE run_key IN ('{keys}') ORDER BY started_at""",
                  ("ops.pipeline_runs",))


def gate_outcomes(spark: SparkSession, day: date) -> pd.DataFrame | None:
    """Per validated batch of the day: checks run and failed by severity, published or not."""
    keys = "', '".join(day_keys(day))
    return _frame(spark, f"""
        SELECT job, table_name, run_id, min(validated_at) AS validated_at,
               count(*) AS checks,
               count_if(NOT success AND severity = 'critical') AS critical_failed,
               count_if(NOT success AND severity = 'warning') AS warnings,
               CASE WHEN bool_and(published) THEN 'published'
                    WHEN bool_or(published IS NULL) THEN 'on demand'
                    ELSE 'refused' END AS outcome
        FROM ops.dq_results WHERE run_date IN ('{keys}')
        GROUP BY job, table_name, run_id ORDER BY validated_at""", ("ops.dq_results",))


def failed_checks(spark: SparkSession, day: date) -> pd.DataFrame | None:
    """The day's failed expectations, critical first."""
    keys = "', '".join(day_keys(day))
    return _frame(spark, f"""
        SELECT table_name, check_name, severity, expectation, column_name, unexpected_count,
               round(unexpected_percent, 3) AS unexpected_percent, observed_value
        FROM ops.dq_results WHERE run_date IN ('{keys}') AND NOT success
        ORDER BY severity, table_name, check_name""", ("ops.dq_results",))


def quarantine_by_reason(spark: SparkSession, day: date) -> pd.DataFrame | None:
    """Rows ingest rejected for the day, per reason (the first rule broken)."""
    return _frame(spark, f"""
        SELECT reason, count(*) AS rows FROM quarantine.events
        WHERE _ingest_run_date = '{day.isoformat()}' GROUP BY reason ORDER BY rows DESC""",
                  ("quarantine.events",))


def score_deciles(spark: SparkSession, day: date) -> pd.DataFrame | None:
    """The day's scores per propensity decile (aggregated in Spark: a day may score millions
    of users), with the model versions that scored them."""
    return _frame(spark, f"""
        SELECT propensity_decile, count(*) AS users,
               avg(purchase_propensity) AS mean_propensity,
               min(purchase_propensity) AS min_propensity,
               array_join(array_sort(collect_set(model_version)), ',') AS model_versions
        FROM gold.user_scores WHERE score_date = DATE'{day.isoformat()}'
        GROUP BY propensity_decile ORDER BY propensity_decile""", ("gold.user_scores",))


def score_histogram(spark: SparkSession, day: date, bins: int = 40) -> pd.DataFrame | None:
    """The day's purchase propensities in `bins` equal bins over their range: `bin_start`,
    `bin_end`, `users` (empty bins left out)."""
    return _frame(spark, f"""
        WITH s AS (SELECT purchase_propensity AS p FROM gold.user_scores
                   WHERE score_date = DATE'{day.isoformat()}'),
             r AS (SELECT min(p) AS lo, greatest(max(p) - min(p), 1e-9) / {bins} AS width
                   FROM s),
             b AS (SELECT least(floor((p - lo) / width), {bins - 1}) AS bin, lo, width
                   FROM s CROSS JOIN r)
        SELECT lo + bin * width AS bin_start, lo + (bin + 1) * width AS bin_end,
               count(*) AS users
        FROM b GROUP BY bin, lo, width ORDER BY bin_start""", ("gold.user_scores",))


def model_metrics(data_root: str, version: str) -> pd.DataFrame:
    """The test-split metrics a registered version logged for itself and every baseline, one
    row per (method, metric): the value and its 95% bootstrap interval (`low`, `high`; NaN
    for a version logged before intervals), from its MLflow run."""
    from clickscore import registry

    found = registry.resolve_version(data_root, version)
    logged = registry.client(data_root).get_run(found.run_id).data.metrics
    rows = []
    for key, value in logged.items():
        if not key.startswith("test_") or key.endswith(("_low", "_high")):
            continue
        rest = key.removeprefix("test_")
        method = next((m for m in METHODS if rest.startswith(m + "_")), None)
        if method is not None:
            rows.append({"method": method, "metric": rest.removeprefix(method + "_"),
                         "value": value, "low": logged.get(f"{key}_low", float("nan")),
                         "high": logged.get(f"{key}_high", float("nan"))})
    frame = pd.DataFrame(rows, columns=["method", "metric", "value", "low", "high"])
    frame["rank"] = frame["method"].map({m: i for i, m in enumerate(METHODS)})
    return frame.sort_values(["metric", "rank"]).drop(columns="rank").reset_index(drop=True)


def learning_history(data_root: str, version: str) -> pd.DataFrame:
    """Per epoch, every metric a registered version's training logged per step."""
    from clickscore import registry

    mlflow_client = registry.client(data_root)
    run_id = registry.resolve_version(data_root, version).run_id
    per_epoch: dict[int, dict[str, float]] = {}
    for key in mlflow_client.get_run(run_id).data.metrics:
        history = mlflow_client.get_metric_history(run_id, key)
        if not any(point.step > 0 for point in history):
            continue  # logged once at step 0, not per epoch (test metrics, the kept metric)
        for point in history:
            per_epoch.setdefault(point.step, {})[key] = point.value
    frame = pd.DataFrame.from_dict(per_epoch, orient="index").sort_index()
    return frame.rename_axis("epoch").reset_index()
