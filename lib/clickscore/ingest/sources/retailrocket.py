"""RetailRocket events: `timestamp,visitorid,event,itemid,transactionid`, unix milliseconds,
events view/addtocart/transaction; no price or category. The category comes from the
`item_properties` side table (`--item-categories`), when given."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import source_layout
from clickscore.ingest.sources.base import (
    SideTable,
    SourceAdapter,
    absent,
    as_id,
    event_id,
    from_epoch_millis,
    mapped,
    raw,
)

NAME = "retailrocket"
EVENT_TYPES = {"view": "view", "addtocart": "cart", "transaction": "purchase"}


def to_canonical(raw_df: DataFrame) -> DataFrame:
    """Type the RetailRocket raw columns into the canonical event."""
    return raw_df.select(
        "*",
        event_id(source_layout(NAME)).alias("event_id"),
        from_epoch_millis(raw("timestamp")).alias("event_ts"),
        as_id(raw("visitorid")).alias("user_id"),
        as_id(raw("itemid")).alias("item_id"),
        mapped(raw("event"), EVENT_TYPES).alias("event_type"),
        *absent("category_id", "category_code", "brand", "price", "source_session_id"),
        F.lit(NAME).alias("source"),
    )


def item_categories(raw_df: DataFrame) -> DataFrame:
    """`item_properties_part*.csv` (`timestamp,itemid,property,value`): the `categoryid`
    rows, each in effect from its snapshot's time (unix milliseconds) on (a line that does not
    split is kept, to be counted)."""
    return raw_df.where((F.trim(raw("property")) == "categoryid")
                        | F.col("_corrupt").isNotNull()).select(
        "*", as_id(raw("itemid")).alias("item_id"), as_id(raw("value")).alias("category_id"),
        from_epoch_millis(raw("timestamp")).alias("valid_from"))


ADAPTER = SourceAdapter(
    name=NAME,
    epoch_unit="ms",
    to_canonical=to_canonical,
    raw_of={
        "event_ts": "timestamp",
        "user_id": "visitorid",
        "item_id": "itemid",
        "event_type": "event",
    },
    item_categories=SideTable("retailrocket_item_properties", item_categories),
)
