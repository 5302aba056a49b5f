"""REES46 multi-category store: `event_time,event_type,product_id,category_id,category_code,
brand,price,user_id,user_session`, times like `2019-10-01 00:00:00 UTC`."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import source_layout
from clickscore.ingest.sources.base import (
    SourceAdapter,
    as_double,
    as_id,
    blank_to_null,
    event_id,
    mapped,
    raw,
)

NAME = "rees46"
EVENT_TYPES = {
    "view": "view",
    "cart": "cart",
    "remove_from_cart": "remove_from_cart",
    "purchase": "purchase",
}


# a time with its zone: ` UTC` (or another zone name), `Z`, or an offset (`+02:00`, `-0500`)
ZONED = (r"(?i)^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
         r"\s*(Z|[+-]\d{2}:?\d{2}|[a-z][a-z_/+-]*)$")


def event_time(text: Column) -> Column:
    """`2019-10-01 00:00:04 UTC` -> timestamp. Times in exactly that shape take a cast (it
    reads the zone; a fifth of the cost of a pattern with a zone name). Other times that name
    their zone parse too: ISO 8601 (`2019-10-01T00:00:04Z`, `...+02:00`, fractional seconds)
    by the same cast, other zone names by the pattern. A time without a zone is ambiguous and
    stays null (an invalid timestamp), as does anything else."""
    trimmed = F.trim(text)
    is_utc = (F.length(trimmed) == 23) & trimmed.endswith(" UTC")
    return (F.when(is_utc, trimmed.try_cast("timestamp"))
            .when(trimmed.rlike(ZONED), F.coalesce(
                trimmed.try_cast("timestamp"),
                F.try_to_timestamp(trimmed, F.lit("yyyy-MM-dd HH:mm:ss z")))))


def to_canonical(raw_df: DataFrame) -> DataFrame:
    """Type the REES46 raw columns into the canonical event."""
    return raw_df.select(
        "*",
        event_id(source_layout(NAME)).alias("event_id"),
        event_time(raw("event_time")).alias("event_ts"),
        as_id(raw("user_id")).alias("user_id"),
        as_id(raw("product_id")).alias("item_id"),
        mapped(raw("event_type"), EVENT_TYPES).alias("event_type"),
        as_id(raw("category_id")).alias("category_id"),
        blank_to_null(raw("category_code")).alias("category_code"),
        blank_to_null(raw("brand")).alias("brand"),
        as_double(raw("price")).alias("price"),
        blank_to_null(raw("user_session")).alias("source_session_id"),
        F.lit(NAME).alias("source"),
    )


ADAPTER = SourceAdapter(
    name=NAME,
    to_canonical=to_canonical,
    raw_of={
        "event_ts": "event_time",
        "user_id": "user_id",
        "item_id": "product_id",
        "event_type": "event_type",
        "category_id": "category_id",
        "price": "price",
    },
)
