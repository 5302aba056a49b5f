"""Diginetica / CIKM Cup 2016 `train-purchases.csv`: `sessionId;userId;timeframe;eventdate;
ordernumber;itemId`, the purchases of the sessions whose views `diginetica` reads.

Each row is a purchase event typed exactly as a view of the same session would be (time from
`eventdate` + `timeframe`, an anonymous session's user `-sessionId`), with `source`
`diginetica`: the views and purchases of one dataset are one source, so a session's purchases
join its views in sessions, features and labels. Ingest it as its own run
(`--source diginetica_purchases`); its event ids differ from the views' (another layout).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import source_layout
from clickscore.ingest.sources import diginetica
from clickscore.ingest.sources.base import SourceAdapter, event_id

NAME = "diginetica_purchases"


def to_canonical(raw_df: DataFrame) -> DataFrame:
    """Type the purchase rows as the views are typed, with event type `purchase`."""
    typed_df = diginetica.to_canonical(raw_df)
    return typed_df.withColumns({
        "event_id": event_id(source_layout(NAME)),
        "event_type": F.lit("purchase"),
    })


ADAPTER = SourceAdapter(
    name=NAME,
    to_canonical=to_canonical,
    raw_of=diginetica.ADAPTER.raw_of,
    item_categories=diginetica.ADAPTER.item_categories,
)
