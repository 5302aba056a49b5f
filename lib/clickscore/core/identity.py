"""Who a user, an item and a category are: every id is scoped by the source it came from.

The sources number their users, items and categories independently, so Taobao's user 1 and
RetailRocket's visitor 1 are two people, and item 7 of one source is not item 7 of another.
Every stage keys a user by (`source`, `user_id`), an item by (`source`, `item_id`) and a
category by (`source`, `category_id`): sessions are windowed, features and labels built,
vocabularies indexed, scores and exports keyed that way, and a user is recommended only items
of their own source. Nothing links ids across sources; a source's own id is kept as it came
(Diginetica's anonymous users are `-sessionId` within Diginetica, which cannot meet another
source's ids).

Tables written before ids were scoped get their `source` column when a newer release first
touches them (`core.delta.ensure_columns`): filled with the one source `bronze.events`
holds. A warehouse that already mixed several sources merged their users; it cannot be split
after the fact, and the migration stops with one line saying to rebuild from bronze.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore.core.errors import ClickscoreError

log = logging.getLogger(__name__)

SOURCE = "source"
USER = (SOURCE, "user_id")  # a user's key in every table and window
ITEM = (SOURCE, "item_id")
CATEGORY = (SOURCE, "category_id")
BRONZE = "bronze.events"  # the first table to hold `source`: where a migration reads it


class UnscopedTableError(ClickscoreError):
    """A table written before ids were scoped by source, in a warehouse of several sources."""

    def __init__(self, table: str, sources: list[str]) -> None:
        super().__init__(
            f"{table} was written before ids were scoped by source, and {BRONZE} holds "
            f"{len(sources)} sources ({', '.join(sources)}): its users cannot be told apart "
            f"any more; rebuild it from bronze (clickscore sessionize --date all, then vocab, "
            f"features, training-examples, train and score)")
        self.table = table


def backfill_source(spark: SparkSession, table: str) -> None:
    """Fill the `source` column just added to `table` (its old rows hold NULL) with the one
    source of `bronze.events`; an empty table needs nothing."""
    unscoped = spark.table(table).where(F.col(SOURCE).isNull())
    if unscoped.isEmpty():
        return
    source = only_source(spark, table)
    log.info("%s: scoping its rows by source %r, the only one in %s", table, source, BRONZE)
    spark.sql(f"UPDATE {table} SET {SOURCE} = '{source}' WHERE {SOURCE} IS NULL")


def only_source(spark: SparkSession, table: str) -> str:
    """The one source of `bronze.events`, which the unscoped rows of `table` (a Delta table
    or the export's warehouse table) came from; fails in one line when there are several."""
    sources = ([str(r[0]) for r in spark.table(BRONZE).select(SOURCE).distinct().collect()]
               if spark.catalog.tableExists(BRONZE) else [])
    if len(sources) != 1:
        raise UnscopedTableError(table, sorted(sources))
    return sources[0]
