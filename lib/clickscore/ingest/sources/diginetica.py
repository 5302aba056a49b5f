"""Diginetica / CIKM Cup 2016 `train-item-views.csv`: `sessionId;userId;itemId;timeframe;
eventdate`, semicolon-separated, every row an item view.

Time: `eventdate` is the session's day and `timeframe` the milliseconds since the session
began, so an event's time is midnight UTC of `eventdate` plus `timeframe` (the dataset gives
no time zone or time of day; its order within a session is what it carries).

Anonymous sessions (`userId` NA or empty, most of the dataset) are each their own user, with
`user_id = -sessionId`: negative, so they never collide with a logged-in user's (positive)
id, and stable, so re-ingesting gives the same id. Nothing links two anonymous sessions, so
treating them as one user would invent history; treating each as a user keeps every
sequence the data really has. `source_session_id` keeps `sessionId` either way.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import source_layout
from clickscore.ingest.sources.base import (
    SideTable,
    SourceAdapter,
    absent,
    always,
    as_id,
    as_long,
    event_id,
    raw,
)

NAME = "diginetica"
ANONYMOUS = ("", "NA")
MAX_TIMEFRAME_MS = 100 * 365 * 86_400_000  # a session of a century is no session


def to_canonical(raw_df: DataFrame) -> DataFrame:
    """Type the Diginetica raw columns into the canonical event."""
    session = as_id(raw("sessionId"))
    user_text = F.trim(F.coalesce(raw("userId"), F.lit("")))
    is_anonymous = user_text.isin(*ANONYMOUS)
    day = F.to_date(F.trim(raw("eventdate")), "yyyy-MM-dd")
    millis = as_long(raw("timeframe"))
    return raw_df.select(
        "*",
        event_id(source_layout(NAME)).alias("event_id"),
        # bounded: an overflowing timeframe is an invalid time, not a failed run (ANSI)
        F.when((millis >= 0) & (millis < MAX_TIMEFRAME_MS), F.timestamp_millis(
            F.unix_millis(F.to_timestamp(day)) + millis)).alias("event_ts"),
        F.when(is_anonymous, -session).otherwise(as_id(user_text)).alias("user_id"),
        as_id(raw("itemId")).alias("item_id"),
        F.lit("view").alias("event_type"),
        *absent("category_id", "category_code", "brand", "price"),
        F.when(session.isNotNull(), session.cast("string")).alias("source_session_id"),
        F.lit(NAME).alias("source"),
    )


def item_categories(raw_df: DataFrame) -> DataFrame:
    """`product-categories.csv` (`itemId;categoryId`): one category per item, for all time."""
    return raw_df.select("*", as_id(raw("itemId")).alias("item_id"),
                         as_id(raw("categoryId")).alias("category_id"),
                         always().alias("valid_from"))


ADAPTER = SourceAdapter(
    name=NAME,
    to_canonical=to_canonical,
    raw_of={
        "event_ts": "eventdate",
        # an anonymous session's user is its session, so a blank or bad sessionId is what
        # leaves a row without a user
        "user_id": "sessionId",
        "item_id": "itemId",
    },
    item_categories=SideTable("diginetica_item_categories", item_categories),
)
