"""The Great Expectations project of a data root: suites, validation results, Data Docs.

It is a GX file context in `<data root>/dq/gx`, so every validation is kept and rendered into
Data Docs HTML at `<data root>/dq/gx/uncommitted/data_docs/local_site/index.html`. A data root
that is a URI (s3a://...) keeps its DQ project in `$CLICKSCORE_DQ_DIR` (default
`~/.clickscore/dq`), since GX writes with local file IO.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path
from typing import cast

import great_expectations as gx
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.data_context import FileDataContext
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.datasource.fluent import SparkDatasource

from clickscore.core.config import local_dir

DQ_DIR_ENV = "CLICKSCORE_DQ_DIR"
# `off` keeps every validation result but renders no Data Docs HTML (test sessions that do
# not look at the pages, a cluster that renders them elsewhere); anything else renders them.
DATA_DOCS_ENV = "CLICKSCORE_DATA_DOCS"
# The Data Docs index lists the newest validations only: building it loads each listed
# result, so an unbounded index costs O(validations so far) on every run.
INDEX_LIMIT = 200
DATASOURCE = "clickscore_spark"
BATCH_DEFINITION = "published_batch"


def dq_dir(data_root: str) -> Path:
    """Where the GX project of `data_root` lives."""
    if os.environ.get(DQ_DIR_ENV):
        return Path(os.environ[DQ_DIR_ENV])
    return local_dir(data_root, "dq")


def data_docs_index(data_root: str) -> Path:
    return dq_dir(data_root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


@cache
def gx_context(project_dir: Path) -> FileDataContext:
    """The file context under `project_dir`, created on first use, progress bars off."""
    # GX logs its whole config at INFO; our own log says what was validated
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    project_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    changed = False
    if context.variables.progress_bars != ProgressBarsConfig(globally=False):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        changed = True
    for site in (context.variables.data_docs_sites or {}).values():
        index = site.setdefault("site_index_builder", {"class_name": "DefaultSiteIndexBuilder"})
        if index.get("validation_results_limit") != INDEX_LIMIT:
            index["validation_results_limit"] = INDEX_LIMIT
            changed = True
    if changed:
        context.variables.save()
        context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    return context


def data_docs_enabled() -> bool:
    return os.environ.get(DATA_DOCS_ENV, "on").strip().lower() != "off"


def batch_definition(context: FileDataContext, table: str) -> BatchDefinition:
    """The whole-DataFrame batch definition of `table`'s asset (created on first use)."""
    try:
        datasource = cast(SparkDatasource, context.data_sources.get(DATASOURCE))
    except KeyError:
        # persist=False: GX would otherwise cache every column of the batch in memory,
        # which costs more than the few scans the suites make (see benchmarks/)
        datasource = context.data_sources.add_spark(DATASOURCE, persist=False)
    try:
        asset = datasource.get_asset(table)
    except LookupError:
        asset = datasource.add_dataframe_asset(table)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
