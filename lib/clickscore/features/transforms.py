"""Pure feature transforms: vocabulary ranking, and point-in-time user features and labels
over (coded) silver events.

Features for a cutoff `t` read only events with `event_ts < t` (and within the lookback);
labels read only `[t, t + horizon)`. Every transform takes one cutoff or several and keys its
rows by (`cutoff`, `source`, `user_id`), a user being a source's user id
(`core.identity`): the examples of several cutoffs are one pass over the events
(each event once per cutoff whose window holds it), not a union of one plan per cutoff.
What the columns mean, and the sequence length, buckets and codes, are the feature contract
`schemas/features/user_features.yaml`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from clickscore.core.identity import CATEGORY, ITEM, SOURCE, USER
from clickscore.features.contract import FeatureContract

PAD, OOV, FIRST = 0, 1, 2  # vocabulary indices: padding, out-of-vocabulary, the first id


def vocab_rows(events_df: DataFrame, id_column: str, min_support: int) -> DataFrame:
    """(source, id, idx, support) for each source's ids with at least `min_support` events
    (an id is scoped by its source, `core.identity`): indices FIRST, FIRST+1, ... by
    descending support, ties by source and id, one index space across the sources.

    Ranked after aggregating and without a global window (which would pull every id into one
    partition): an id's index is FIRST + the ids with more support + its rank by id among the
    ids with the same support. The first term comes from the small table of support levels.
    """
    support_df = (events_df.where(F.col(id_column).isNotNull())
                  .groupBy(SOURCE, id_column).agg(F.count(F.lit(1)).alias("support"))
                  .where(F.col("support") >= min_support))
    levels_df = support_df.groupBy("support").agg(F.count(F.lit(1)).alias("ids"))
    above_df = (levels_df.alias("level")
                .join(levels_df.alias("higher"), F.col("higher.support") > F.col("level.support"),
                      "left")
                .groupBy(F.col("level.support").alias("support"))
                .agg(F.coalesce(F.sum("higher.ids"), F.lit(0)).alias("ids_above")))
    by_id = Window.partitionBy("support").orderBy(F.col(SOURCE), F.col(id_column))
    return (support_df.join(F.broadcast(above_df), "support")
            .withColumn("idx", (F.lit(FIRST) + F.col("ids_above")
                                + F.row_number().over(by_id) - 1).cast("int"))
            .select(SOURCE, id_column, "idx", "support"))


def with_side_categories(events_df: DataFrame, categories_df: DataFrame) -> DataFrame:
    """Events whose `category_id` is null take their item's category from a source's side
    table (silver.item_categories rows: source, item_id, category_id, valid_from): the row in
    effect at the event's time, that is the item's latest row at or before it, or its first
    row for an event before every row. An event's own category wins. Each event matches at
    most one row (the rows of an item become consecutive intervals), so no event is repeated
    or lost, and the join needs no window over the events."""
    by_item = Window.partitionBy("source", "item_id").orderBy("valid_from")
    intervals_df = categories_df.select(
        F.col("source").alias("side_source"), F.col("item_id").alias("side_item_id"),
        F.col("category_id").alias("side_category_id"),
        F.when(F.row_number().over(by_item) > 1, F.col("valid_from")).alias("side_from"),
        F.lead("valid_from").over(by_item).alias("side_until"))
    ts = F.col("event_ts")
    matches = ((F.col("source") == F.col("side_source"))
               & (F.col("item_id") == F.col("side_item_id")) & F.col("category_id").isNull()
               & (F.col("side_from").isNull() | (ts >= F.col("side_from")))
               & (F.col("side_until").isNull() | (ts < F.col("side_until"))))
    return (events_df.join(intervals_df, matches, "left")
            .withColumn("category_id", F.coalesce("category_id", "side_category_id"))
            .drop(*intervals_df.columns))


def bucket(value: Column, edges: Sequence[float], *, missing: int = 1) -> Column:
    """`missing` for null, else 1 + the number of edges <= value (so >= 2 from edge 0)."""
    above = sum((F.when(value >= F.lit(e), 1).otherwise(0) for e in edges), F.lit(1))
    return F.when(value.isNull(), F.lit(missing)).otherwise(above).cast("int")


def with_codes(
    events_df: DataFrame, item_vocab_df: DataFrame, category_vocab_df: DataFrame,
    contract: FeatureContract,
) -> DataFrame:
    """Events with `item_idx`, `category_idx`, `event_type_idx` and `price_bucket`.

    Ids missing from the vocabulary, and null categories, get the OOV index 1. The
    vocabularies are keyed by (source, id): an id of one source never takes another's index.
    """
    types = F.array(*[F.lit(t) for t in contract.event_types])
    return (events_df
            .join(F.broadcast(item_vocab_df.withColumnRenamed("idx", "item_idx")),
                  list(ITEM), "left")
            .join(F.broadcast(category_vocab_df.withColumnRenamed("idx", "category_idx")),
                  list(CATEGORY), "left")
            .withColumn("item_idx", F.coalesce("item_idx", F.lit(OOV)).cast("int"))
            .withColumn("category_idx", F.coalesce("category_idx", F.lit(OOV)).cast("int"))
            .withColumn("event_type_idx", F.array_position(types, F.col("event_type"))
                        .cast("int"))
            .withColumn("price_bucket", bucket(F.col("price"), contract.price_edges)))


def with_bot_from(events_df: DataFrame, bot_events_per_minute: int) -> DataFrame:
    """Add `bot_from` to silver events: when the event's session became a bot session (the
    time of the event that took one of its user's clock minutes past `bot_events_per_minute`
    events, the count sessionize's `is_bot` uses), null for a session that never did. As of a
    time `t` a session is a bot when `bot_from < t`: decided from the events before `t` only,
    where silver.sessions' `is_bot` looks at the whole session, later events included."""
    in_minute = Window.partitionBy(*USER, F.date_trunc("minute", "event_ts")).orderBy(
        "event_ts", "event_id")
    tipping = F.when(F.row_number().over(in_minute) == bot_events_per_minute + 1,
                     F.col("event_ts"))
    return (events_df.withColumn("_tipping", tipping)
            .withColumn("bot_from", F.min("_tipping").over(Window.partitionBy("session_id")))
            .drop("_tipping"))


def human_as_of(events_df: DataFrame, t: datetime | Column) -> DataFrame:
    """Events of the sessions that were not bots before `t` (a time, or a column such as
    `cutoff`); every event when the frame has no `bot_from` (a hand-built one)."""
    if "bot_from" not in events_df.columns:
        return events_df
    at = t if isinstance(t, Column) else F.lit(t)
    return events_df.where(F.col("bot_from").isNull() | (F.col("bot_from") >= at))


def _cutoffs(cutoffs: datetime | Sequence[datetime]) -> list[datetime]:
    return [cutoffs] if isinstance(cutoffs, datetime) else sorted(set(cutoffs))


def _per_cutoff(events_df: DataFrame, cutoffs: list[datetime], before: timedelta,
                after: timedelta) -> DataFrame:
    """Each event once per cutoff `c` with `c - before <= event_ts < c + after`, with that
    cutoff in `cutoff`. A literal bound on the whole span comes first, so the scan skips what
    no cutoff reads."""
    spanned = events_df.where((F.col("event_ts") >= F.lit(cutoffs[0] - before))
                              & (F.col("event_ts") < F.lit(cutoffs[-1] + after)))
    if len(cutoffs) == 1:
        return spanned.withColumn("cutoff", F.lit(cutoffs[0]))
    windows = F.array(*[F.struct(F.lit(c).alias("cutoff"), F.lit(c - before).alias("lo"),
                                 F.lit(c + after).alias("hi")) for c in cutoffs])
    return (spanned.withColumn("_window", F.explode(windows))
            .where((F.col("event_ts") >= F.col("_window.lo"))
                   & (F.col("event_ts") < F.col("_window.hi")))
            .withColumn("cutoff", F.col("_window.cutoff")).drop("_window"))


def history(events_df: DataFrame, cutoffs: datetime | Sequence[datetime],
            lookback: timedelta) -> DataFrame:
    """Events in `[cutoff - lookback, cutoff)` of sessions that were no bots before the
    cutoff, for each cutoff (column `cutoff`): all that features may read."""
    return human_as_of(_per_cutoff(events_df, _cutoffs(cutoffs), lookback, timedelta(0)),
                       F.col("cutoff"))


def future(events_df: DataFrame, cutoffs: datetime | Sequence[datetime],
           horizon: timedelta) -> DataFrame:
    """Events in `[cutoff, cutoff + horizon)` of sessions that never became bots (labels may
    know the future), for each cutoff (column `cutoff`): all that labels may read."""
    if "bot_from" in events_df.columns:
        events_df = events_df.where(F.col("bot_from").isNull())
    return _per_cutoff(events_df, _cutoffs(cutoffs), timedelta(0), horizon)


def _left_padded(events: Column, field: str, length: int) -> Column:
    values = F.transform(events, lambda e: e[field])
    return F.concat(F.array_repeat(F.lit(0), F.lit(length) - F.size(values)), values)


def sequence_features(history_df: DataFrame, contract: FeatureContract) -> DataFrame:
    """Per cutoff and user: the last L events as left-padded int arrays, and `seq_length`.

    The time-gap bucket of an event is that of the gap since the user's previous event in
    the lookback (1 for the first one).
    """
    length = contract.sequence_length
    by_time = Window.partitionBy("cutoff", *USER).orderBy("event_ts", "event_id")
    gap_s = (F.unix_micros("event_ts") - F.lag(F.unix_micros("event_ts")).over(by_time)) / 1e6
    events = F.sort_array(F.collect_list(F.struct(
        "event_ts", "event_id", "item_idx", "event_type_idx", "category_idx", "time_gap_bucket",
        "price_bucket")))
    last = F.expr(f"slice(events, greatest(size(events) - {length} + 1, 1), {length})")
    return (history_df
            .withColumn("time_gap_bucket", bucket(gap_s, contract.time_gap_edges_s))
            .groupBy("cutoff", *USER).agg(events.alias("events"))
            .withColumn("events", last)
            .select(
                "cutoff", *USER,
                F.size("events").cast("int").alias("seq_length"),
                _left_padded(F.col("events"), "item_idx", length).alias("item_seq"),
                _left_padded(F.col("events"), "event_type_idx", length).alias("event_type_seq"),
                _left_padded(F.col("events"), "category_idx", length).alias("category_seq"),
                _left_padded(F.col("events"), "time_gap_bucket", length).alias("time_gap_seq"),
                _left_padded(F.col("events"), "price_bucket", length).alias("price_seq"),
            ))


def aggregate_features(
    history_df: DataFrame, lookback: timedelta, windows: Sequence[tuple[str, timedelta]],
) -> DataFrame:
    """Per cutoff and user: recency, frequency and revenue over `windows`, conversion, cart
    abandonment, top-category share and distinct items, all float32 and never null."""
    t = F.col("cutoff")
    lookback_s = F.lit(lookback.total_seconds())
    is_type = {k: F.col("event_type") == k for k in ("cart", "purchase")}

    def since(last: Column) -> Column:
        return F.coalesce((F.unix_micros(t) - F.unix_micros(last)) / 1e6, lookback_s)

    def within(window: timedelta) -> Column:
        micros = window // timedelta(microseconds=1)
        return F.unix_micros("event_ts") >= F.unix_micros(t) - F.lit(micros)

    keys = ["cutoff", *USER]
    per_user_df = history_df.groupBy(*keys).agg(
        since(F.max("event_ts")).alias("s_since_last_event"),
        since(F.max(F.when(is_type["cart"], F.col("event_ts")))).alias("s_since_last_cart"),
        since(F.max(F.when(is_type["purchase"], F.col("event_ts")))).alias(
            "s_since_last_purchase"),
        F.array(*[F.count(F.when(within(w), 1)) for _, w in windows]).alias("n_events_w"),
        F.array(*[F.count_distinct(F.when(within(w), F.col("session_id"))) for _, w in windows]
                ).alias("n_sessions_w"),
        F.array(*[F.coalesce(F.sum(F.when(within(w) & is_type["purchase"], F.col("price"))),
                             F.lit(0.0)) for _, w in windows]).alias("revenue_w"),
        (F.count_distinct(F.when(is_type["purchase"], F.col("session_id")))
         / F.count_distinct("session_id")).alias("conversion_rate"),
        F.count_distinct("item_id").alias("distinct_items"),
    )
    # carted items never purchased at or after their first cart (before the cutoff)
    per_item_df = (history_df.groupBy(*keys, "item_id").agg(
        F.min(F.when(is_type["cart"], F.col("event_ts"))).alias("first_cart"),
        F.max(F.when(is_type["purchase"], F.col("event_ts"))).alias("last_purchase"))
        .where(F.col("first_cart").isNotNull())
        .groupBy(*keys).agg(
            (F.count(F.when(F.col("last_purchase").isNull()
                            | (F.col("last_purchase") < F.col("first_cart")), 1))
             / F.count(F.lit(1))).alias("cart_abandonment")))
    per_category_df = (history_df.where(F.col("category_id").isNotNull())
                       .groupBy(*keys, "category_id").count()
                       .groupBy(*keys).agg(
                           (F.max("count") / F.sum("count")).alias("top_category_share")))
    floats = ["s_since_last_event", "s_since_last_cart", "s_since_last_purchase",
              "conversion_rate", "cart_abandonment", "top_category_share", "distinct_items"]
    return (per_user_df
            .join(per_item_df, keys, "left")
            .join(per_category_df, keys, "left")
            .select(*keys,
                    F.array(*[F.lit(label) for label, _ in windows]).alias("windows"),
                    *[F.col(c).cast("array<float>").alias(c)
                      for c in ("n_events_w", "n_sessions_w", "revenue_w")],
                    *[F.coalesce(F.col(c), F.lit(0.0)).cast("float").alias(c) for c in floats]))


def user_features(
    coded_df: DataFrame, cutoffs: datetime | Sequence[datetime], lookback: timedelta,
    windows: Sequence[tuple[str, timedelta]], contract: FeatureContract, vocab_version: str,
) -> DataFrame:
    """One row per cutoff and user with events in `[cutoff - lookback, cutoff)`:
    gold.user_features."""
    history_df = history(coded_df, cutoffs, lookback)
    sequences_df = sequence_features(history_df, contract)
    aggregates_df = aggregate_features(history_df, lookback, windows)
    keys = ["cutoff", *USER]
    return (sequences_df.join(aggregates_df, keys)
            .select(*USER, *[c for c in sequences_df.columns if c not in keys],
                    *[c for c in aggregates_df.columns if c not in keys], "cutoff")
            .withColumn("cutoff_date", F.to_date("cutoff"))
            .withColumn("vocab_version", F.lit(vocab_version))
            .withColumn("feature_version", F.lit(contract.version)))


def labels(
    coded_df: DataFrame, cutoffs: datetime | Sequence[datetime], horizon: timedelta,
    contract: FeatureContract
) -> DataFrame:
    """Per cutoff and user with events in `[cutoff, cutoff + horizon)`:
    `purchased_within_horizon` and `next_items` (the first K item indices, right-padded with
    0) with `next_items_len`."""
    k = contract.next_items
    items = F.transform(F.sort_array(F.collect_list(F.struct("event_ts", "event_id",
                                                             "item_idx"))),
                        lambda e: e["item_idx"])
    return (future(coded_df, cutoffs, horizon).groupBy("cutoff", *USER).agg(
        F.max(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).cast("int")
        .alias("purchased_within_horizon"),
        F.slice(items, 1, k).alias("next_items"))
        .select("cutoff", *USER, "purchased_within_horizon",
                F.size("next_items").cast("int").alias("next_items_len"),
                F.concat("next_items", F.array_repeat(F.lit(0), F.lit(k) - F.size("next_items")))
                .alias("next_items")))


def with_labels(features_df: DataFrame, labels_df: DataFrame,
                contract: FeatureContract) -> DataFrame:
    """Features with their labels (users without future events: 0 and empty), and
    `target_seq`: position i of item_seq predicts the item at i + 1, the last position the
    first next item; padding positions have no target (0)."""
    k, length = contract.next_items, contract.sequence_length
    no_items = F.array_repeat(F.lit(0), k)
    target = F.expr(f"transform(item_seq, (x, i) -> IF(x = 0, 0, "
                    f"IF(i < {length - 1}, item_seq[i + 1], next_items[0])))")
    keys = ["cutoff", *USER]
    return (features_df.join(labels_df, keys, "left")
            .select(*features_df.columns, *[c for c in labels_df.columns if c not in keys])
            .withColumn("purchased_within_horizon",
                        F.coalesce("purchased_within_horizon", F.lit(0)).cast("int"))
            .withColumn("next_items_len", F.coalesce("next_items_len", F.lit(0)).cast("int"))
            .withColumn("next_items", F.coalesce(F.col("next_items"), no_items))
            .withColumn("target_seq", target))
