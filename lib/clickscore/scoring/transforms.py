"""Pure Spark transforms of the scoring stage: DataFrame in, DataFrame out, no IO."""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from clickscore.core.identity import USER
from clickscore.features.transforms import history

DECILES = 10
_PARTITION = "_partition"


def purchased_items(coded_events_df: DataFrame, cutoff: datetime, lookback: timedelta,
                    first_item: int) -> DataFrame:
    """(source, user_id, exclude_idx): the distinct in-vocabulary item indices each user purchased
    in `[cutoff - lookback, cutoff)`, for users with at least one."""
    return (history(coded_events_df, cutoff, lookback)
            .where((F.col("event_type") == "purchase") & (F.col("item_idx") >= first_item))
            .groupBy(*USER)
            .agg(F.array_sort(F.collect_set(F.col("item_idx").cast("int"))).alias(
                "exclude_idx")))


def with_exclusions(features_df: DataFrame, exclusions_df: DataFrame) -> DataFrame:
    """Every feature row with its `exclude_idx` (empty when the user purchased nothing)."""
    return (features_df.join(exclusions_df, list(USER), "left")
            .withColumn("exclude_idx", F.coalesce("exclude_idx", F.array().cast("array<int>"))))


def partition_sizes(ordered_df: DataFrame) -> dict[int, int]:
    """Rows per partition of a frame already sorted: one small row per partition."""
    return {r[0]: r[1] for r in ordered_df.groupBy(F.spark_partition_id()).count().collect()}


def sorted_by_propensity(scored_df: DataFrame) -> DataFrame:
    """Highest propensity first, ties by user: a total order, so ranks are exact and the
    same on every run (a user is (source, user_id)). Range-partitioned by Spark's sort, never
    gathered in one task."""
    return scored_df.orderBy(F.col("purchase_propensity").desc(),
                             *[F.col(c).asc() for c in USER])


def with_deciles(ordered_df: DataFrame, sizes: dict[int, int]) -> DataFrame:
    """`propensity_decile` (1 = the highest tenth) for a frame from `sorted_by_propensity`
    whose partition sizes are `sizes`: a row's global rank is the rows of the partitions
    before its own plus its rank inside its partition, so no window spans the whole table.
    Deciles hold `n / 10` rows each, give or take one."""
    total = sum(sizes.values())
    offsets, running = {}, 0
    for partition in sorted(sizes):
        offsets[partition] = running
        running += sizes[partition]
    offset = F.element_at(F.create_map(*[x for p, o in offsets.items()
                                         for x in (F.lit(p), F.lit(o))]), F.col(_PARTITION)
                          ) if offsets else F.lit(0)
    in_partition = Window.partitionBy(_PARTITION).orderBy(
        F.col("purchase_propensity").desc(), *[F.col(c).asc() for c in USER])
    rank = offset + F.row_number().over(in_partition)  # 1-based
    return (ordered_df.withColumn(_PARTITION, F.spark_partition_id())
            .withColumn("propensity_decile",
                        (F.floor((rank - 1) * DECILES / F.lit(max(total, 1))) + 1).cast("int"))
            .drop(_PARTITION))
