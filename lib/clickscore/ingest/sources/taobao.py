"""Taobao UserBehavior: no header, `user_id,item_id,category_id,behavior_type,timestamp`,
behaviours pv/cart/fav/buy, unix seconds; no price, brand or source session."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import source_layout
from clickscore.ingest.sources.base import (
    SourceAdapter,
    absent,
    as_id,
    event_id,
    from_epoch_seconds,
    mapped,
    raw,
)

NAME = "taobao"
EVENT_TYPES = {"pv": "view", "cart": "cart", "fav": "favorite", "buy": "purchase"}


def to_canonical(raw_df: DataFrame) -> DataFrame:
    """Type the Taobao raw columns into the canonical event."""
    return raw_df.select(
        "*",
        event_id(source_layout(NAME)).alias("event_id"),
        from_epoch_seconds(raw("timestamp")).alias("event_ts"),
        as_id(raw("user_id")).alias("user_id"),
        as_id(raw("item_id")).alias("item_id"),
        mapped(raw("behavior_type"), EVENT_TYPES).alias("event_type"),
        as_id(raw("category_id")).alias("category_id"),
        *absent("category_code", "brand", "price", "source_session_id"),
        F.lit(NAME).alias("source"),
    )


ADAPTER = SourceAdapter(
    name=NAME,
    epoch_unit="s",
    to_canonical=to_canonical,
    raw_of={
        "event_ts": "timestamp",
        "user_id": "user_id",
        "item_id": "item_id",
        "event_type": "behavior_type",
        "category_id": "category_id",
    },
)
