"""`clickscore maintain`: the data root stays the size of what it must keep.

Left alone, every run adds files: Delta keeps each replaced file for time travel, small
batches leave small files, GX keeps every validation result and its Data Docs page, training
keeps checkpoints, killed runs leave Petastorm caches, and every trained model stays
registered. One run (weekly: the clickscore_maintain DAG, Saturdays) does, in order:

1. **Compaction where it pays**: `OPTIMIZE` a table with at least `--compact-min-files` files
   averaging under `--compact-file-mb` (Delta's own bin-packing; readers are not disturbed).
2. **Retention**: each table's `delta.deletedFileRetentionDuration` and
   `delta.logRetentionDuration` become `--retention` (30 days by default), then `VACUUM`
   removes the files no version inside it needs: time travel, `score --reproduce` and the
   runbook's rollbacks keep working for runs within the retention.
3. **Pruning** what is older than the retention: GX validation results and their Data Docs
   pages, the checkpoints of training runs that finished (their model is registered) or were
   abandoned, and Petastorm caches older than a day (a live run deletes its own when it ends;
   older ones are a killed run's). Model versions beyond the newest `--keep-versions` that no
   alias names and no score of the retention used are deleted with their files.

The run is recorded in ops.pipeline_runs (its details: files before and after per table, what
was pruned). It changes no row of any table.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore import registry
from clickscore.core.config import RunDate, RunKey, is_uri, local_dir
from clickscore.core.contracts import table_schema
from clickscore.core.errors import ClickscoreError
from clickscore.core.paths import schemas_dir
from clickscore.core.runs import RunCounts
from clickscore.dq.context import data_docs_enabled, dq_dir, gx_context
from clickscore.maintain.config import MaintainConfig
from clickscore.runner import stage_run
from clickscore.training.runs import RECORD, runs

log = logging.getLogger(__name__)


class MaintainError(ClickscoreError):
    """A maintenance asked for something that is not there."""


CACHE_AGE = timedelta(days=1)  # a Petastorm cache older than this belongs to no live run


def tables(spark: SparkSession, only: str | None = None) -> list[str]:
    """The contract tables that exist in this data root's catalog (those of `only`, a
    comma-separated list, when given; a name that is no table is refused in one line)."""
    names = [table_schema(p.stem).table for p in sorted((schemas_dir() / "tables").glob(
        "*.yaml"))]
    if only:
        wanted = [t.strip() for t in only.split(",") if t.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise MaintainError(f"maintain --tables: no such table {', '.join(unknown)} "
                                f"(the tables: {', '.join(names)})")
        names = [t for t in names if t in wanted]
    return [t for t in names if spark.catalog.tableExists(t)]


def _detail(spark: SparkSession, table: str) -> Any:
    return spark.sql(f"DESCRIBE DETAIL {table}").first()


def maintain_table(spark: SparkSession, table: str, cfg: MaintainConfig) -> dict[str, Any]:
    """Compact (where it pays), set the retention, VACUUM; the table's file counts."""
    before = _detail(spark, table)
    on_disk = _files_on_disk(str(before.location))
    files = int(before.numFiles)
    compacted = files >= cfg.compact_min_files and (
        int(before.sizeInBytes) / max(files, 1) < cfg.compact_file_mb * 1024 * 1024)
    if compacted:
        spark.sql(f"OPTIMIZE {table}")
    hours = int(cfg.retention.total_seconds() // 3600)
    interval = f"interval {hours} hours"
    properties = before.properties or {}
    if (properties.get("delta.deletedFileRetentionDuration") != interval
            or properties.get("delta.logRetentionDuration") != interval):
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ("
                  f"'delta.deletedFileRetentionDuration' = '{interval}', "
                  f"'delta.logRetentionDuration' = '{interval}')")
    spark.sql(f"VACUUM {table} RETAIN {hours} HOURS")
    return {"files": files, "compacted": compacted,
            "files_after": int(_detail(spark, table).numFiles) if compacted else files,
            "data_files_on_disk": on_disk,
            "data_files_on_disk_after": _files_on_disk(str(before.location))}


def _files_on_disk(location: str) -> int | None:
    """Data files under a local table's folder (every version's; None on a remote store)."""
    if is_uri(location) and not location.startswith("file:"):
        return None
    folder = Path(location.removeprefix("file:"))
    return sum(1 for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts)


def _older_than(path: Path, age: timedelta) -> bool:
    return time.time() - path.stat().st_mtime > age.total_seconds()


def prune_files(folder: Path, age: timedelta, pattern: str = "*") -> int:
    """Delete the files under `folder` matching `pattern` older than `age`, then the folders
    left empty; how many files went."""
    if not folder.is_dir():
        return 0
    removed = 0
    for path in sorted(folder.rglob(pattern)):
        if path.is_file() and _older_than(path, age):
            path.unlink()
            removed += 1
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    return removed


def prune_validations(data_root: str, retention: timedelta) -> dict[str, int]:
    """GX validation results and their Data Docs pages older than the retention (ops.dq_results
    keeps every outcome); the Data Docs index is rebuilt from what remains."""
    gx_root = dq_dir(data_root) / "gx" / "uncommitted"
    results = prune_files(gx_root / "validations", retention, "*.json")
    pages = prune_files(gx_root / "data_docs" / "local_site" / "validations", retention,
                        "*.html")
    if (results or pages) and data_docs_enabled():
        gx_context(dq_dir(data_root) / "gx").build_data_docs()
    return {"validation_results": results, "data_docs_pages": pages}


def prune_training(data_root: str, retention: timedelta) -> dict[str, int]:
    """Checkpoint folders of training runs that finished or were left unfinished longer than
    the retention ago; Petastorm caches older than a day."""
    gone = 0
    for run in runs(data_root):
        if _older_than(run.folder / RECORD, retention):
            shutil.rmtree(run.folder, ignore_errors=True)
            gone += 1
    caches = 0
    cache = local_dir(data_root, "training", "petastorm-cache")
    if cache.is_dir():
        for entry in cache.iterdir():
            if _older_than(entry, CACHE_AGE):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                caches += 1
    return {"training_runs": gone, "petastorm_caches": caches}


def used_versions(spark: SparkSession, cfg: MaintainConfig) -> set[str]:
    """The model versions gold.user_scores used within the retention (`--reproduce` of those
    runs loads them again)."""
    if not spark.catalog.tableExists("gold.user_scores"):
        return set()
    since = cfg.run_date - cfg.retention
    return {r.model_version for r in spark.table("gold.user_scores")
            .where(F.col("score_date") >= F.lit(since)).select("model_version")
            .distinct().collect()}


def prune_models(data_root: str, keep: int, used: set[str]) -> list[str]:
    """Delete the model versions beyond the newest `keep` that no alias names and that are
    not `used`, with their files; the versions deleted, oldest last."""
    client = registry.client(data_root)
    versions = sorted(client.search_model_versions(f"name = '{registry.MODEL_NAME}'"),
                      key=lambda v: int(v.version), reverse=True)
    named = {str(v) for v in registry.aliases(data_root).values()}
    deleted = []
    for version in versions[keep:]:
        number = str(version.version)
        if number in named or number in used:
            continue
        files = registry.own_artifacts(data_root, version.source)
        client.delete_model_version(registry.MODEL_NAME, number)
        if files.startswith("file:"):
            shutil.rmtree(Path(unquote(urlparse(files).path)), ignore_errors=True)
        deleted.append(number)
    return deleted


def run_maintain(spark: SparkSession, cfg: MaintainConfig) -> RunCounts:
    with stage_run(spark, "maintain", RunKey.of_date(RunDate(cfg.run_date)),
                   data_root=cfg.data_root,
                   what=f"retention {cfg.retention}") as stage:
        details: dict[str, Any] = {"retention_hours": cfg.retention.total_seconds() / 3600}
        with stage.step("tables"):
            details["tables"] = {t: maintain_table(spark, t, cfg)
                                 for t in tables(spark, cfg.tables)}
        with stage.step("prune"):
            details.update(prune_validations(cfg.data_root, cfg.retention))
            details.update(prune_training(cfg.data_root, cfg.retention))
            details["model_versions_deleted"] = prune_models(
                cfg.data_root, cfg.keep_versions, used_versions(spark, cfg))
        for table, figures in details["tables"].items():
            log.info("maintain %s: %s -> %s files%s", table, figures["files"],
                     figures["files_after"], " (compacted)" if figures["compacted"] else "")
        return stage.finish(RunCounts(details=details))
