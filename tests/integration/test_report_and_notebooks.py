"""What analysts and operators open: `clickscore report` (one self-contained HTML page per
day, checked in headless Chromium) and the notebooks (run top to bottom by nbclient), both on
the warehouse the demo left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import nbformat
import pytest

from clickscore import registry
from clickscore.report.config import ReportConfig
from clickscore.report.job import ReportError, run_report
from tests.integration.helpers import ARTIFACTS, render_in_chromium

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = "2019-10-03"  # the demo's last day: ingested, sessionized, featurized and scored
# the plots each notebook shows (a query with no rows fails its cell instead)
PLOTS = {"01_sessions_and_funnel": 4, "02_model_report": 8, "03_score_table_guide": 2,
         "04_data_quality": 5}


def delta(spark, root: Path, table: str):
    database, name = table.split(".")
    return spark.read.format("delta").load(f"{root}/warehouse/{database}.db/{name}")


def test_the_report_shows_a_days_runs_gates_model_and_scores_offline(spark, demo):
    """The page `clickscore demo` ends with (its last step runs `report` for the last day);
    `report` on a warehouse of this session is tested below."""
    root, ran = demo
    assert ran.returncode == 0, ran.stderr[-3000:]
    page = root / "reports" / f"report-{DAY}.html"
    assert f"Run report of {DAY}: {page}" in ran.stdout
    html = page.read_text()
    # self-contained: no script, stylesheet, image or font fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html

    dom, screenshot = render_in_chromium(page, ARTIFACTS, "run_report.png", size="1280,2400")
    assert 'id="verdict">every run succeeded' in dom
    # every run of the day is a row: ingest, sessionize, features (as of the day's end), score
    runs = delta(spark, root, "ops.pipeline_runs").where(
        f"run_key IN ('{DAY}', '2019-10-04T00:00:00+00:00')").collect()
    assert sorted(r.job for r in runs) == ["features", "ingest", "score", "sessionize"]
    section = dom[dom.index('id="stage-runs"'):dom.index('id="data-quality-gates"')]
    assert f"{len(runs)} runs: {len(runs)} succeeded." in section
    assert len(re.findall(r"<tr>\s*<td>(ingest|sessionize|features|score)</td>", section)) == 4
    ingest = next(r for r in runs if r.job == "ingest")
    assert f"<td>{ingest.output_rows:,}</td>" in section or \
        f"<td>{ingest.output_rows}</td>" in section
    # gates: the batches validated that day, each published
    checks = delta(spark, root, "ops.dq_results").where(f"run_date = '{DAY}'")
    gates = dom[dom.index('id="data-quality-gates"'):dom.index('id="quarantine"')]
    assert f"{checks.select('run_id', 'table_name').distinct().count()} batches validated, " \
           f"{checks.count()} checks: 0 refused" in gates
    # quarantine by reason, as in the table
    quarantined = delta(spark, root, "quarantine.events").where(f"_ingest_run_date = '{DAY}'")
    reasons = {r.reason: r["count"] for r in quarantined.groupBy("reason").count().collect()}
    part = dom[dom.index('id="quarantine"'):dom.index('id="model"')]
    assert f"{sum(reasons.values()):,} rows quarantined." in part
    assert all(f"<td>{reason}</td>" in part for reason in reasons)
    # the model that scored, next to its baselines, and the day's score distribution
    scored = delta(spark, root, "gold.user_scores").where(f"score_date = '{DAY}'")
    model = dom[dom.index('id="model"'):dom.index('id="scores"')]
    assert "Scored by version 1 of the registered model" in model
    for method in ("model", "most_popular", "item_knn", "logistic_regression"):
        assert f"<td>{method}</td>" in model, method
    # each figure with its interval, and which scorer served each head: where a baseline
    # does, the page's badge says so
    assert re.search(r"<td>0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]</td>", model)
    heads = registry.heads(str(root), "1")
    for head, scorer in heads.items():
        assert f"next item head is served by {scorer}" in model if head == "next_item" else \
            f"propensity head is served by {scorer}" in model
    held = [f"{h} by {s}" for h, s in heads.items() if s != "model"]
    if held:
        badge = dom[dom.index('id="baseline-heads"'):]
        assert f"a baseline holds the {', '.join(held)} head(s)" in " ".join(badge.split())
    else:
        assert 'id="baseline-heads"' not in dom
    assert f"{scored.count():,} users scored" in dom[dom.index('id="scores"'):]
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', dom)
    assert images == ["recall_all_at_20, model and baselines", "roc_auc, model and baselines",
                      "distribution of purchase propensity"]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000


def test_a_report_on_a_day_without_runs_is_a_clear_error(spark, data_root, tmp_path):
    with pytest.raises(ReportError, match="no run is recorded for 1999-01-01"):
        run_report(spark, ReportConfig(run_date=date(1999, 1, 1), data_root=data_root,
                                       output=str(tmp_path / "r.html")))
    assert not (tmp_path / "r.html").exists()


def test_every_notebook_runs_top_to_bottom_on_the_demo_warehouse(demo):
    root, ran = demo
    assert ran.returncode == 0, ran.stderr[-3000:]
    done = subprocess.run([sys.executable, "notebooks/run.py", "--data-root", str(root)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for name, plots in PLOTS.items():
        executed = nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
        outputs = [o for cell in executed.cells if cell.cell_type == "code"
                   for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        pngs = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == plots, (name, len(pngs))
        assert all(len(png) > 5_000 for png in pngs), name  # base64 of a drawn chart
        assert f"{name}.ipynb: {plots} plots in " in done.stdout


def test_the_notebooks_in_git_carry_no_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code), \
            f"{path.name}: run `python notebooks/run.py --strip`"
