"""Vocabulary job: `ml.item_vocab`, `ml.category_vocab`, `ml.brand_vocab`, ids -> dense
model indices, and the readers of those tables.

Built together from the non-bot events of one training window (sessions that were bots by
the window's end, decided from the events before it): ids with at least
`min_support` events get indices 2, 3, ... by descending support (ties by source and id; an id
is scoped by its source, `core.identity`); 0 is padding
and 1 is out-of-vocabulary. The three share one `vocab_version`, a digest of the window, the
threshold and the content, so rebuilding from the same inputs gives the same version and adds
nothing, and every table built with a vocabulary records which one.
"""

from __future__ import annotations

import hashlib
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.delta import merge_insert_new, read_table
from clickscore.core.errors import VocabularyError
from clickscore.core.identity import SOURCE
from clickscore.features.config import VocabConfig
from clickscore.features.transforms import (
    OOV,
    human_as_of,
    vocab_rows,
    with_bot_from,
    with_side_categories,
)
from clickscore.sessionize.config import SessionizeConfig

log = logging.getLogger(__name__)

# vocab table -> the id column it indexes
ITEM_VOCAB = "ml.item_vocab"
ITEM_CATEGORIES = "silver.item_categories"  # written by ingest (`--item-categories`)
VOCABS = {ITEM_VOCAB: "item_id", "ml.category_vocab": "category_id",
          "ml.brand_vocab": "brand"}


def non_bot_events(spark: SparkSession) -> DataFrame:
    """silver.events, each with `bot_from` (`with_bot_from`): what is computed for a time `t`
    drops the sessions that were bots before `t` (`human_as_of`), so a burst after a cutoff
    changes nothing computed for it. An event without a category takes its item's from the
    source's side table, where one was ingested (`with_side_categories`)."""
    events_df = read_table(spark, "silver.events")
    if spark.catalog.tableExists(ITEM_CATEGORIES):
        events_df = with_side_categories(events_df, read_table(spark, ITEM_CATEGORIES))
    return with_bot_from(events_df, SessionizeConfig.bot_events_per_minute)


def build_vocab(spark: SparkSession, cfg: VocabConfig) -> str:
    """Build the three vocabularies for `cfg`'s window; returns their `vocab_version`."""
    ts = F.col("event_ts")
    events_df = human_as_of(non_bot_events(spark), cfg.window_end).where(
        (ts >= F.lit(cfg.window_start)) & (ts < F.lit(cfg.window_end)))
    tables = {table: vocab_rows(events_df, column, cfg.min_support).localCheckpoint()
              for table, column in VOCABS.items()}
    digest = hashlib.sha256(f"{cfg.window_start}|{cfg.window_end}|{cfg.min_support}".encode())
    sizes = {}
    for table, column in VOCABS.items():
        size, content = _content_digest(tables[table], column)
        digest.update(f"{size}:{content}".encode())
        sizes[table] = size
    if not sizes["ml.item_vocab"]:
        raise VocabularyError(f"no item has {cfg.min_support}+ non-bot events in silver.events "
                              f"in [{cfg.window_start}, {cfg.window_end})")
    version = "v" + digest.hexdigest()[:12]
    for table, rows_df in tables.items():
        merge_insert_new(spark, rows_df.select(
            F.lit(version).alias("vocab_version"), "*",
            F.lit(cfg.window_start).alias("window_start"),
            F.lit(cfg.window_end).alias("window_end"),
            F.lit(cfg.min_support).cast("bigint").alias("min_support")), table)
    log.info("vocab %s: %s", version, sizes)
    return version


def _content_digest(rows_df: DataFrame, column: str) -> tuple[int, str]:
    """(rows, digest) of a vocabulary's (id, idx, support) rows in one distributed
    aggregation: two independent 64-bit hashes per row, summed in 32-bit halves so the sums
    never overflow. Order-independent, so no task has to gather and sort every row."""
    row_text = F.concat_ws(":", SOURCE, F.col(column).cast("string"), "idx", "support")
    hashes = [F.xxhash64(row_text), F.xxhash64(F.lit("clickscore"), row_text)]
    halves = [part for h in hashes
              for part in (h.bitwiseAND(F.lit(0xFFFFFFFF)),
                           F.shiftrightunsigned(h, 32))]
    row = rows_df.select(F.count(F.lit(1)),
                         *[F.coalesce(F.sum(h), F.lit(0)) for h in halves]).first()
    assert row is not None  # a global aggregate has one row
    return int(row[0]), ".".join(str(v) for v in row[1:])


def latest_vocab_version(spark: SparkSession) -> str:
    """The version built from the latest training window (ties: the larger version id)."""
    row = (read_table(spark, "ml.item_vocab")
           .groupBy("vocab_version").agg(F.max("window_end").alias("end"))
           .orderBy(F.col("end").desc(), F.col("vocab_version").desc()).first())
    if row is None:
        raise VocabularyError("ml.item_vocab is empty (run `clickscore vocab` first)")
    return str(row["vocab_version"])


def vocab(spark: SparkSession, table: str, version: str) -> tuple[DataFrame, int]:
    """(source, id, idx) rows of one vocabulary version and its largest index; fails if the version
    does not exist. A version exists when `ml.item_vocab` has it (every version has items);
    the category and brand vocabularies of a version may be empty, where the window's events
    carry no such field (RetailRocket, Diginetica without their side tables): then every
    event's index is the out-of-vocabulary 1, the largest."""
    rows_df = read_table(spark, table).where(F.col("vocab_version") == version).select(
        SOURCE, VOCABS[table], "idx")
    largest = rows_df.agg(F.max("idx")).first()
    if largest is not None and largest[0] is not None:
        return rows_df, int(largest[0])
    if table != ITEM_VOCAB and not read_table(spark, ITEM_VOCAB).where(
            F.col("vocab_version") == version).isEmpty():
        return rows_df, OOV
    raise VocabularyError(f"{table} has no version {version!r}")
