"""`clickscore report --run-date D`: one self-contained HTML page about a day, for the
operator who opens it in the morning: every stage run (attempts included) with its row
counts, the data-quality gates and failed checks, quarantine by reason, the model that
scored and its metrics next to the baselines, and the distribution of the day's scores.
Plots are inline PNGs and the style is in the page: it opens offline, from a mail or a
bucket, with no CDN."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from pyspark.sql import SparkSession

from clickscore.core.config import local_dir
from clickscore.core.errors import ClickscoreError
from clickscore.report import plots, queries
from clickscore.report.config import ReportConfig

log = logging.getLogger(__name__)

MODEL_METRICS = ("recall_at_20", "ndcg_at_20", "recall_all_at_20", "roc_auc", "pr_auc",
                 "log_loss", "ece")


class ReportError(ClickscoreError):
    """Nothing to report on: no run is recorded for the date."""


@dataclass
class Section:
    """A titled part of the page: a sentence, tables (HTML) and plots (data URIs)."""

    title: str
    summary: str = ""
    tables: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, data URI)


def report_path(cfg: ReportConfig) -> Path:
    if cfg.output:
        return Path(cfg.output)
    return local_dir(cfg.data_root, "reports") / f"report-{cfg.run_date.isoformat()}.html"


def run_report(spark: SparkSession, cfg: ReportConfig) -> str:
    """Write the page; returns its path (printed by the command)."""
    runs = queries.stage_runs(spark, cfg.run_date)
    if runs is None or runs.empty:
        raise ReportError(f"no run is recorded for {cfg.run_date} in ops.pipeline_runs "
                          f"under {cfg.data_root} (nothing to report)")
    held: list[str] = []  # "next_item by item_knn": heads a baseline holds
    sections = [_runs_section(runs), _gates_section(spark, cfg), _quarantine_section(spark, cfg),
                *_model_and_scores_sections(spark, cfg, held)]
    page = _environment().get_template("report.html.j2").render(
        run_date=cfg.run_date.isoformat(), data_root=cfg.data_root, sections=sections,
        baseline_heads=held,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        failed=int((runs["status"] != "succeeded").sum()))
    path = report_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    log.debug("report for %s: %d runs, %d sections, %s", cfg.run_date, len(runs),
             len(sections), path)
    return str(path)


def _environment() -> Environment:
    return Environment(loader=PackageLoader("clickscore.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]))


def _html(frame: pd.DataFrame) -> str:
    return str(frame.to_html(index=False, na_rep="", classes="data", border=0,
                             float_format=lambda v: f"{v:,.4g}"))


def _runs_section(runs: pd.DataFrame) -> Section:
    statuses = runs["status"].value_counts().to_dict()
    summary = ", ".join(f"{n} {status}" for status, n in statuses.items())
    shown = runs.assign(error=runs["error"].fillna("").str.slice(0, 160))
    return Section("Stage runs", f"{len(runs)} runs: {summary}.", [_html(shown)])


def _gates_section(spark: SparkSession, cfg: ReportConfig) -> Section:
    gates = queries.gate_outcomes(spark, cfg.run_date)
    if gates is None or gates.empty:
        return Section("Data-quality gates", "No batch was validated for this date.")
    refused = int((gates["outcome"] == "refused").sum())
    section = Section("Data-quality gates", (
        f"{len(gates)} batches validated, {int(gates['checks'].sum())} checks: "
        f"{refused} refused, {int(gates['critical_failed'].sum())} critical failures, "
        f"{int(gates['warnings'].sum())} warnings."), [_html(gates.drop(columns="run_id"))])
    failed = queries.failed_checks(spark, cfg.run_date)
    if failed is not None and not failed.empty:
        section.tables.append(_html(failed))
    return section


def _quarantine_section(spark: SparkSession, cfg: ReportConfig) -> Section:
    reasons = queries.quarantine_by_reason(spark, cfg.run_date)
    if reasons is None or reasons.empty:
        return Section("Quarantine", "No row was quarantined for this date.")
    return Section("Quarantine", f"{int(reasons['rows'].sum()):,} rows quarantined.",
                   [_html(reasons)])


def _model_and_scores_sections(spark: SparkSession, cfg: ReportConfig,
                               held: list[str]) -> list[Section]:
    """The model's metrics next to the baselines', which scorer served each head (`held`
    gets the heads a baseline holds, for the page's badge), and the day's scores."""
    deciles = queries.score_deciles(spark, cfg.run_date)
    if deciles is None or deciles.empty:
        return [Section("Scores", "No user was scored for this date.")]
    versions = sorted({v for vs in deciles.pop("model_versions") for v in vs.split(",")})
    model = Section("Model", f"Scored by version {', '.join(versions)} of the registered "
                             "model; its test-split metrics next to the baselines', each "
                             "with its 95% bootstrap interval over test users.")
    for version in versions:
        metrics = queries.model_metrics(cfg.data_root, version)
        if metrics.empty:
            model.summary += f" (version {version} logged no test metrics)"
            continue
        from clickscore import registry

        heads = registry.heads(cfg.data_root, version)
        model.summary += " " + "; ".join(
            f"version {version}'s {head.replace('_', ' ')} head is served by {scorer}"
            + ("" if scorer == "model" else
               " (a baseline: the sequence model did not beat it on validation)")
            for head, scorer in heads.items()) + "."
        held += [f"{head} by {scorer}" for head, scorer in heads.items() if scorer != "model"]
        wide = metrics.pivot(index="method", columns="metric", values="value")
        wide = wide.reindex(index=[m for m in queries.METHODS if m in wide.index],
                            columns=[m for m in MODEL_METRICS if m in wide.columns])
        wide.columns.name = None
        # each cell the value and its 95% bootstrap interval over test users
        cells = metrics.assign(cell=[
            f"{v:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo == lo and hi == hi else "")
            for v, lo, hi in zip(metrics["value"], metrics["low"], metrics["high"],
                                 strict=True)])
        shown = cells.pivot(index="method", columns="metric", values="cell").reindex(
            index=wide.index, columns=wide.columns)
        shown.columns.name = None
        model.tables.append(_html(shown.reset_index()))
        for metric in ("recall_all_at_20", "roc_auc"):
            if metric in wide.columns:
                one = wide[metric].dropna().rename("value").reset_index()
                model.images.append((f"{metric}, model and baselines",
                                     plots.png_data_uri(plots.metrics_by_method(one, metric))))
    histogram = queries.score_histogram(spark, cfg.run_date)
    assert histogram is not None  # the table exists: the deciles came from it
    scores = Section("Scores", (
        f"{int(deciles['users'].sum()):,} users scored; propensity from "
        f"{deciles['min_propensity'].min():.4f} to {histogram['bin_end'].max():.4f}, "
        f"{deciles['mean_propensity'].iloc[0]:.4f} on average in the top decile."),
        [_html(deciles)],
        [("distribution of purchase propensity",
          plots.png_data_uri(plots.score_distribution(histogram)))])
    return [model, scores]

