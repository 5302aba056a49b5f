"""Ingest job: landing files of one source -> bronze.events, rejected rows ->
quarantine.events, and the source's item -> category side table, when given, ->
silver.item_categories. All are published only after each batch passes its suite.

Idempotent: both writes insert only rows whose keys are new, so re-ingesting a file adds
nothing. Exact duplicate rows are kept in bronze; sessionize removes and counts them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunKey
from clickscore.core.delta import append, has_rows_where, merge_insert_new, merge_upsert, with_op
from clickscore.core.errors import (
    BadInputFileError,
    ClickscoreError,
    EmptyInputError,
    input_error,
)
from clickscore.core.faults import pause_point
from clickscore.core.runs import RunCounts, published_rows
from clickscore.core.staging import new_observation, observed
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.reader import changed_files, list_files, listed_files, read_raw
from clickscore.ingest.sources import get_adapter, source_names
from clickscore.ingest.transforms import (
    BRONZE,
    ITEM_CATEGORIES,
    NOT_THIS_RUNS,
    bronze_rows,
    checked_events,
    file_profile,
    item_category_batch,
    quarantine_rows,
    side_category_rows,
    staged_rows,
)
from clickscore.runner import StageRun, stage_run

log = logging.getLogger(__name__)

QUARANTINE = "quarantine.events"


def run_ingest(spark: SparkSession, cfg: IngestConfig) -> RunCounts:
    """Ingest `cfg.input_path`; returns the reconciled counts recorded in ops.pipeline_runs.

    Write-audit-publish: the input is parsed once into the run's staging area (accepted and
    rejected rows side by side), the bronze batch is validated with its suite, and only then
    are both outputs written to bronze.events and quarantine.events. Rows in are the lines
    the reader produced, observed independently of both outputs, so reconciliation catches a
    row that neither accounts for.
    """
    log.debug("ingest config: %s", cfg)
    with stage_run(spark, "ingest", RunKey.of_date(cfg.run_date), data_root=cfg.data_root,
                   source=cfg.source, what=cfg.input_path) as stage:
        run = stage.run
        listed = listed_files(spark, cfg.input_path)  # checked again before publishing
        files = list(listed)
        log.debug("ingest %s: %d file(s) from %s", cfg.run_date, len(files), cfg.input_path)
        ingested_at = datetime.now(UTC)
        quote = get_adapter(cfg.source).layout.format.quote
        checked_df, input_rows = _staged(spark, stage, cfg, files, ingested_at)
        with stage.step("stage"):
            profile = file_profile(checked_df, quote).collect()
        opened = sorted({row["_source_file"] for row in profile if row["open_quotes"]})
        if opened:  # a quoted field held a newline: read again, its lines joined in records
            log.info("quoted fields span lines in %s: reading the files again, joining them",
                     opened)
            checked_df.unpersist()
            checked_df, input_rows = _staged(spark, stage, cfg, files, ingested_at,
                                             quoted_newlines=True)
            with stage.step("stage"):
                profile = file_profile(checked_df, quote).collect()
        if input_rows == 0 and not cfg.allow_empty:
            raise EmptyInputError(cfg.input_path, str(cfg.run_date))
        bronze_df = bronze_rows(checked_df.where(~F.col("is_rejected")), run, ingested_at)
        quarantine_df = quarantine_rows(checked_df.where(F.col("is_rejected")), run,
                                        ingested_at)
        check_files(profile, cfg)
        by_reason: dict[str, int] = Counter()
        for row in profile:
            if row["reason"] is not None:
                by_reason[row["reason"]] += row["rows"]
        quarantined = sum(by_reason.values())
        window_start, window_end = cfg.accepted_window()
        stage.validate(bronze_df, BRONZE, parameters={
            "expected_rows": input_rows - quarantined, "max_price": cfg.max_price,
            "sources": list(source_names()),
            "window_start": window_start, "window_end": window_end,
            "latest_event_ts": cfg.latest_event_time(ingested_at),
            # the volume checks see the day's total: a second or late file of a date adds
            # to what the earlier files of that date and source published
            "prior_rows": 0 if cfg.run_date.is_all else published_rows(
                spark, "ingest", run.key, cfg.source)},
            # each source's volume is compared with its own days: a new source starts
            # with no history, a small one is not held to a large one's
            segment=f"source={cfg.source}", empty_allowed=cfg.allow_empty)
        side = _item_categories(spark, stage, cfg) if cfg.item_categories else None
        changed = changed_files(spark, listed)
        if changed:  # a landing zone still writing it, or a file replaced meanwhile
            raise BadInputFileError(next(iter(changed)), (
                "changed while it was read: "
                + "; ".join(f"{path} ({sizes})" for path, sizes in changed.items())
                + "; rerun when the landing zone has finished writing it"))
        with stage.publish():
            # Files never seen before cannot collide with stored keys: a plain append writes
            # exactly what the insert-only MERGE would, without joining against the table.
            # Compared in the form the tables hold: Spark's `_metadata.file_path`, which is
            # URL-encoded (`a%20b`), unlike the listed names (`a b`).
            stored = sorted({row["_source_file"] for row in profile})
            is_new = not (has_rows_where(spark, BRONZE, "_source_file", stored)
                          or has_rows_where(spark, QUARANTINE, "_source_file", stored))
            write = append if is_new else merge_insert_new
            bronze_metrics = write(spark, bronze_df, BRONZE, run_date=str(cfg.run_date))
            pause_point("ingest", "bronze-published")
            quarantine_metrics = write(spark, quarantine_df, QUARANTINE,
                                       run_date=str(cfg.run_date))
            if side is not None:
                batch_df, side_details = side
                side_metrics = merge_upsert(spark, with_op(batch_df, "upsert"),
                                            ITEM_CATEGORIES, compare=["category_id"],
                                            run_date=str(cfg.run_date))
                side_details |= {"inserted": side_metrics.get("numTargetRowsInserted", 0),
                                 "updated": side_metrics.get("numTargetRowsUpdated", 0)}
        return stage.finish(RunCounts(
            input_rows=input_rows,
            output_rows=_source_rows(bronze_metrics),
            quarantined_rows=_source_rows(quarantine_metrics),
            details={
                "files": files,
                "accepted_window": [window_start, window_end],
                "latest_event_ts": cfg.latest_event_time(ingested_at),
                "quarantine_reasons": by_reason,
                "write": "append" if is_new else "merge",
                "bronze_rows_inserted": _inserted(bronze_metrics),
                "quarantine_rows_inserted": _inserted(quarantine_metrics),
                **({"item_categories": side[1]} if side is not None else {}),
            },
        ))


def _staged(spark: SparkSession, stage: StageRun, cfg: IngestConfig, files: list[str],
            ingested_at: datetime, *, quoted_newlines: bool = False) -> tuple[DataFrame, int]:
    """The files' checked rows, staged, and the records read. Records in are observed as
    they stream past the parser (a line, or lines joined where a quoted field holds a
    newline); rows out and quarantined are counted from what is written, so a record lost on
    the way shows."""
    records = new_observation("ingest-lines")
    raw_df = (read_raw(spark, get_adapter(cfg.source).layout, files,
                       quoted_newlines=quoted_newlines)
              .observe(records, F.count(F.lit(1)).alias("rows")))
    name = "checked-joined" if quoted_newlines else "checked"
    try:  # a full read of the files: a truncated or corrupt one fails here
        checked_df = stage.stage(name, staged_rows(checked_events(raw_df, cfg, ingested_at)))
    except Py4JJavaError as exc:
        raise input_error(cfg.input_path, exc) from exc
    return checked_df, observed(records, ["rows"], stage.staging.rows[name])["rows"]


def check_files(profile: list[Row], cfg: IngestConfig) -> None:
    """Fail the run, naming the file, when a file's times look like the other epoch unit than
    its source's (most of its rows), or when more than `cfg.max_quarantine_share` of its rows
    were quarantined for what they hold (rows outside the run's window are not the file's
    fault): a changed export format, an extra column in a headerless file. `profile`: rows of
    `transforms.file_profile`."""
    unit = get_adapter(cfg.source).epoch_unit
    files: dict[str, list[Row]] = defaultdict(list)
    for row in profile:
        files[row["_source_file"]].append(row)
    for path, rows in sorted(files.items()):
        total = sum(r["rows"] for r in rows)
        other = sum(r["other_unit"] for r in rows)
        if unit is not None and other * 2 > total:
            example = next(r["other_example"] for r in rows if r["other_example"])
            looks, expected = (("seconds", "milliseconds") if unit == "ms"
                               else ("milliseconds", "seconds"))
            raise BadInputFileError(path, (
                f"{other:,} of its {total:,} times look like epoch {looks} (e.g. {example}); "
                f"the {cfg.source} layout expects epoch {expected}"))
        bad = sorted(((r["rows"], r["reason"]) for r in rows
                      if r["reason"] is not None and r["reason"] not in NOT_THIS_RUNS),
                     reverse=True)
        rejected = sum(n for n, _ in bad)
        if total and rejected / total > cfg.max_quarantine_share:
            top = ", ".join(f"{reason} {n:,}" for n, reason in bad[:3])
            raise BadInputFileError(path, (
                f"{rejected / total:.0%} of its {total:,} rows were quarantined ({top}), "
                f"above --max-quarantine-share {cfg.max_quarantine_share:g}"))


def _item_categories(spark: SparkSession, stage: StageRun, cfg: IngestConfig
                     ) -> tuple[DataFrame, dict[str, object]]:
    """The side table's batch for silver.item_categories, staged and validated, and what
    became of its rows: read, usable (the rest: a line that does not split, an id or time
    that does not parse; logged and counted, not stored), stored (one per item and time),
    conflicting (items given two categories at one time; the smaller id is kept)."""
    side = get_adapter(cfg.source).item_categories
    if side is None:
        raise ClickscoreError(f"source {cfg.source} has no item-category side table "
                              f"(--item-categories is for diginetica and retailrocket)")
    assert cfg.item_categories is not None
    files = list_files(spark, cfg.item_categories)
    try:
        staged_df = stage.stage("item_categories_read", side_category_rows(
            side.to_rows(read_raw(spark, side.layout, files))))
    except Py4JJavaError as exc:
        raise input_error(cfg.item_categories, exc) from exc
    batch_df = stage.stage("item_categories", item_category_batch(
        staged_df, cfg.source, str(cfg.run_date)))
    # what the rows read hold, counted independently of the batch, in one pass
    read = staged_df.agg(
        F.count(F.lit(1)).alias("rows"), F.count_if(~F.col("is_usable")).alias("unusable"),
        F.count_distinct(F.when(F.col("is_usable"), F.struct("item_id", "valid_from")))
        .alias("keys")).first()
    assert read is not None  # a global aggregate has one row
    details: dict[str, object] = {
        "files": files, "category_rows": read["rows"], "unusable_rows": read["unusable"],
        "stored_rows": stage.staging.rows["item_categories"],
        "conflicting": batch_df.where(F.col("categories") > 1).count()}
    if read["unusable"]:
        log.warning("ingest %s: %s of %s category rows of %s are unusable (a line that does "
                    "not split, an id or time that does not parse) and are not stored",
                    cfg.run_date, read["unusable"], read["rows"], cfg.item_categories)
    rows_df = batch_df.drop("categories")
    stage.validate(rows_df, ITEM_CATEGORIES, parameters={"expected_rows": read["keys"]},
                   segment=f"source={cfg.source}")
    return rows_df, details


def _source_rows(metrics: dict[str, int]) -> int:
    """Rows the write was given (all of them, whether new or already stored)."""
    return metrics.get("numSourceRows", metrics.get("numOutputRows", 0))


def _inserted(metrics: dict[str, int]) -> int:
    return metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0))
