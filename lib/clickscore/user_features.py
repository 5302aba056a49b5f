"""Point-in-time user features and labels: pure transforms over (coded) silver events.

Features for a cutoff `t` read only events with `event_ts < t` (and within the lookback);
labels read only `[t, t + horizon)`. What the columns mean, and the sequence length, buckets
and codes, are the feature contract `schemas/features/user_features.yaml`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from clickscore.errors import FeatureContractError
from clickscore.schemas import schemas_dir
from clickscore.vocab import OOV


@dataclass(frozen=True)
class FeatureContract:
    version: int
    sequence_length: int
    next_items: int
    event_types: tuple[str, ...]
    time_gap_edges_s: tuple[float, ...]
    price_edges: tuple[float, ...]
    sequences: tuple[str, ...]
    window_arrays: tuple[str, ...]
    scalars: tuple[str, ...]
    labels: tuple[str, ...]


@cache
def feature_contract() -> FeatureContract:
    raw: dict[str, Any] = yaml.safe_load(
        (schemas_dir() / "features" / "user_features.yaml").read_text())
    return FeatureContract(
        version=int(raw["version"]), sequence_length=int(raw["sequence_length"]),
        next_items=int(raw["next_items"]), event_types=tuple(raw["event_types"]),
        time_gap_edges_s=tuple(float(e) for e in raw["time_gap_edges_s"]),
        price_edges=tuple(float(e) for e in raw["price_edges"]),
        sequences=tuple(raw["sequences"]), window_arrays=tuple(raw["window_arrays"]),
        scalars=tuple(raw["scalars"]), labels=tuple(raw["labels"]))


def check_feature_frame(df: DataFrame, contract: FeatureContract, *,
                        with_labels: bool = False) -> None:
    """Refuse a frame that does not match the feature contract: training and scoring call
    this before reading, so a model never meets features of another shape or version.

    Checks the columns and their types, the contract version, and (on one row) the array
    lengths; raises `FeatureContractError` naming what differs.
    """
    expected: dict[str, str] = {c: "array<int>" for c in contract.sequences}
    expected |= {c: "array<float>" for c in contract.window_arrays}
    expected |= {c: "float" for c in contract.scalars if c != "seq_length"}
    expected |= {"seq_length": "int", "feature_version": "int", "vocab_version": "string"}
    if with_labels:
        expected |= {"purchased_within_horizon": "int", "next_items": "array<int>",
                     "next_items_len": "int", "target_seq": "array<int>"}
    found = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = [f"{name}: expected {kind}, found {found.get(name, 'nothing')}"
                for name, kind in expected.items() if found.get(name) != kind]
    if not problems:
        lengths = {c: contract.sequence_length for c in contract.sequences}
        if with_labels:
            lengths |= {"next_items": contract.next_items,
                        "target_seq": contract.sequence_length}
        # one scan: the versions present and, per array column, the largest length error
        found_row = df.select(
            F.collect_set("feature_version").alias("_versions"),
            *[F.max(F.abs(F.size(c) - n)).alias(c) for c, n in lengths.items()]).first()
        versions = set(found_row["_versions"]) if found_row else set()
        if versions - {contract.version}:
            problems.append(f"feature_version: expected {contract.version}, found "
                            f"{sorted(versions)}")
        problems += [f"{c}: arrays must have length {lengths[c]}"
                     for c in lengths if found_row and found_row[c]]
    if problems:
        raise FeatureContractError(contract.version, problems)


def bucket(value: Column, edges: Sequence[float], *, missing: int = 1) -> Column:
    """`missing` for null, else 1 + the number of edges <= value (so >= 2 from edge 0)."""
    above = sum((F.when(value >= F.lit(e), 1).otherwise(0) for e in edges), F.lit(1))
    return F.when(value.isNull(), F.lit(missing)).otherwise(above).cast("int")


def with_codes(
    events_df: DataFrame, item_vocab_df: DataFrame, category_vocab_df: DataFrame,
    contract: FeatureContract,
) -> DataFrame:
    """Events with `item_idx`, `category_idx`, `event_type_idx` and `price_bucket`.

    Ids missing from the vocabulary, and null categories, get the OOV index 1.
    """
    types = F.array(*[F.lit(t) for t in contract.event_types])
    return (events_df
            .join(F.broadcast(item_vocab_df.withColumnRenamed("idx", "item_idx")), "item_id",
                  "left")
            .join(F.broadcast(category_vocab_df.withColumnRenamed("idx", "category_idx")),
                  "category_id", "left")
            .withColumn("item_idx", F.coalesce("item_idx", F.lit(OOV)).cast("int"))
            .withColumn("category_idx", F.coalesce("category_idx", F.lit(OOV)).cast("int"))
            .withColumn("event_type_idx", F.array_position(types, F.col("event_type"))
                        .cast("int"))
            .withColumn("price_bucket", bucket(F.col("price"), contract.price_edges)))


def history(events_df: DataFrame, cutoff: datetime, lookback: timedelta) -> DataFrame:
    """Events in `[cutoff - lookback, cutoff)`: all that features may read."""
    return events_df.where((F.col("event_ts") >= F.lit(cutoff - lookback))
                           & (F.col("event_ts") < F.lit(cutoff)))


def future(events_df: DataFrame, cutoff: datetime, horizon: timedelta) -> DataFrame:
    """Events in `[cutoff, cutoff + horizon)`: all that labels may read."""
    return events_df.where((F.col("event_ts") >= F.lit(cutoff))
                           & (F.col("event_ts") < F.lit(cutoff + horizon)))


def _left_padded(events: Column, field: str, length: int) -> Column:
    values = F.transform(events, lambda e: e[field])
    return F.concat(F.array_repeat(F.lit(0), F.lit(length) - F.size(values)), values)


def sequence_features(history_df: DataFrame, contract: FeatureContract) -> DataFrame:
    """Per user: the last L events as left-padded int arrays, and `seq_length`.

    The time-gap bucket of an event is that of the gap since the user's previous event in
    the lookback (1 for the first one).
    """
    length = contract.sequence_length
    by_time = Window.partitionBy("user_id").orderBy("event_ts", "event_id")
    gap_s = (F.unix_micros("event_ts") - F.lag(F.unix_micros("event_ts")).over(by_time)) / 1e6
    events = F.sort_array(F.collect_list(F.struct(
        "event_ts", "event_id", "item_idx", "event_type_idx", "category_idx", "time_gap_bucket",
        "price_bucket")))
    last = F.expr(f"slice(events, greatest(size(events) - {length} + 1, 1), {length})")
    return (history_df
            .withColumn("time_gap_bucket", bucket(gap_s, contract.time_gap_edges_s))
            .groupBy("user_id").agg(events.alias("events"))
            .withColumn("events", last)
            .select(
                "user_id",
                F.size("events").cast("int").alias("seq_length"),
                _left_padded(F.col("events"), "item_idx", length).alias("item_seq"),
                _left_padded(F.col("events"), "event_type_idx", length).alias("event_type_seq"),
                _left_padded(F.col("events"), "category_idx", length).alias("category_seq"),
                _left_padded(F.col("events"), "time_gap_bucket", length).alias("time_gap_seq"),
                _left_padded(F.col("events"), "price_bucket", length).alias("price_seq"),
            ))


def aggregate_features(
    history_df: DataFrame, cutoff: datetime, lookback: timedelta,
    windows: Sequence[tuple[str, timedelta]],
) -> DataFrame:
    """Per user: recency, frequency and revenue over `windows`, conversion, cart abandonment,
    top-category share and distinct items, all float32 and never null."""
    t = F.lit(cutoff)
    lookback_s = F.lit(lookback.total_seconds())
    is_type = {k: F.col("event_type") == k for k in ("cart", "purchase")}

    def since(last: Column) -> Column:
        return F.coalesce((F.unix_micros(t) - F.unix_micros(last)) / 1e6, lookback_s)

    def within(window: timedelta) -> Column:
        return F.col("event_ts") >= F.lit(cutoff - window)

    per_user_df = history_df.groupBy("user_id").agg(
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
    per_item_df = (history_df.groupBy("user_id", "item_id").agg(
        F.min(F.when(is_type["cart"], F.col("event_ts"))).alias("first_cart"),
        F.max(F.when(is_type["purchase"], F.col("event_ts"))).alias("last_purchase"))
        .where(F.col("first_cart").isNotNull())
        .groupBy("user_id").agg(
            (F.count(F.when(F.col("last_purchase").isNull()
                            | (F.col("last_purchase") < F.col("first_cart")), 1))
             / F.count(F.lit(1))).alias("cart_abandonment")))
    per_category_df = (history_df.where(F.col("category_id").isNotNull())
                       .groupBy("user_id", "category_id").count()
                       .groupBy("user_id").agg(
                           (F.max("count") / F.sum("count")).alias("top_category_share")))
    floats = ["s_since_last_event", "s_since_last_cart", "s_since_last_purchase",
              "conversion_rate", "cart_abandonment", "top_category_share", "distinct_items"]
    return (per_user_df
            .join(per_item_df, "user_id", "left")
            .join(per_category_df, "user_id", "left")
            .select("user_id",
                    F.array(*[F.lit(label) for label, _ in windows]).alias("windows"),
                    *[F.col(c).cast("array<float>").alias(c)
                      for c in ("n_events_w", "n_sessions_w", "revenue_w")],
                    *[F.coalesce(F.col(c), F.lit(0.0)).cast("float").alias(c) for c in floats]))


def user_features(
    coded_df: DataFrame, cutoff: datetime, lookback: timedelta,
    windows: Sequence[tuple[str, timedelta]], contract: FeatureContract, vocab_version: str,
) -> DataFrame:
    """One row per user with events in `[cutoff - lookback, cutoff)`: gold.user_features."""
    history_df = history(coded_df, cutoff, lookback)
    return (sequence_features(history_df, contract)
            .join(aggregate_features(history_df, cutoff, lookback, windows), "user_id")
            .withColumn("cutoff", F.lit(cutoff))
            .withColumn("cutoff_date", F.to_date(F.lit(cutoff)))
            .withColumn("vocab_version", F.lit(vocab_version))
            .withColumn("feature_version", F.lit(contract.version)))


def labels(
    coded_df: DataFrame, cutoff: datetime, horizon: timedelta, contract: FeatureContract
) -> DataFrame:
    """Per user with events in `[cutoff, cutoff + horizon)`: `purchased_within_horizon` and
    `next_items` (the first K item indices, right-padded with 0) with `next_items_len`."""
    k = contract.next_items
    items = F.transform(F.sort_array(F.collect_list(F.struct("event_ts", "event_id",
                                                             "item_idx"))),
                        lambda e: e["item_idx"])
    return (future(coded_df, cutoff, horizon).groupBy("user_id").agg(
        F.max(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).cast("int")
        .alias("purchased_within_horizon"),
        F.slice(items, 1, k).alias("next_items"))
        .select("user_id", "purchased_within_horizon",
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
    return (features_df.join(labels_df, "user_id", "left")
            .withColumn("purchased_within_horizon",
                        F.coalesce("purchased_within_horizon", F.lit(0)).cast("int"))
            .withColumn("next_items_len", F.coalesce("next_items_len", F.lit(0)).cast("int"))
            .withColumn("next_items", F.coalesce(F.col("next_items"), no_items))
            .withColumn("target_seq", target))
