"""Pure ingest transforms: raw rows -> canonical events, the row rules that say why a row
cannot become one, and the bronze and quarantine rows. A rejected row goes to
quarantine.events with every code it earned; `reason` is the first of them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clickscore.core.contracts import table_schema
from clickscore.core.runs import Run
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.sources import get_adapter
from clickscore.ingest.sources.base import open_quotes, raw

MALFORMED_ROW = "malformed_row"
INVALID_ENCODING = "invalid_encoding"
FIELD_TOO_LONG = "field_too_long"
MISSING_PRICE = "missing_price"
MISSING_TIMESTAMP = "missing_timestamp"
INVALID_TIMESTAMP = "invalid_timestamp"
MISSING_USER_ID = "missing_user_id"
INVALID_USER_ID = "invalid_user_id"
MISSING_ITEM_ID = "missing_item_id"
INVALID_ITEM_ID = "invalid_item_id"
MISSING_EVENT_TYPE = "missing_event_type"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
INVALID_CATEGORY_ID = "invalid_category_id"
INVALID_PRICE = "invalid_price"
NEGATIVE_PRICE = "negative_price"
ABSURD_PRICE = "absurd_price"
TIMESTAMP_OUTSIDE_WINDOW = "timestamp_outside_window"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"

# canonical column -> (code when the raw text is blank, code when it does not parse)
_PARSE_RULES: dict[str, tuple[str | None, str]] = {
    "event_ts": (MISSING_TIMESTAMP, INVALID_TIMESTAMP),
    "user_id": (MISSING_USER_ID, INVALID_USER_ID),
    "item_id": (MISSING_ITEM_ID, INVALID_ITEM_ID),
    "event_type": (MISSING_EVENT_TYPE, UNKNOWN_EVENT_TYPE),
    "category_id": (None, INVALID_CATEGORY_ID),
    "price": (MISSING_PRICE, INVALID_PRICE),  # for a source that has prices
}
# canonical text columns longer than this are no real value (a runaway quote, a paste)
MAX_TEXT_LENGTH = 1000
TEXT_COLUMNS = ("category_code", "brand", "source_session_id")


def is_malformed(value: Column, corrupt: Column) -> Column:
    """A line whose field count does not match its header, or a blank line."""
    return corrupt.isNotNull() | (F.trim(value) == "")


def is_misdecoded(value: Column) -> Column:
    """A line that was not UTF-8: bytes UTF-8 cannot decode (Latin-1's accented letters; the
    text reader keeps the bytes as they are), or NUL characters (a UTF-16 file's lines)."""
    return ~F.is_valid_utf8(value) | value.contains("\u0000")


def with_rejection_reasons(
    df: DataFrame,
    raw_of: Mapping[str, str],
    *,
    window_start: datetime | None,
    window_end: datetime | None,
    max_price: float,
    latest: datetime | None = None,
) -> DataFrame:
    """Add `reasons` (array of codes, empty for a good row) to a canonical-typed frame.
    `latest` is the latest plausible event time (ingestion time plus the clock skew): a
    later event is `timestamp_in_future`, in dated runs and `all` runs alike.

    Expects the raw text columns named in `raw_of`, `value` and `_corrupt` from the reader.
    """
    checks: list[tuple[Column, str]] = []
    for canonical, (missing_code, invalid_code) in _PARSE_RULES.items():
        if canonical not in raw_of:
            continue
        text = raw(raw_of[canonical])
        is_present = text.isNotNull() & (F.trim(text) != "")
        if missing_code:
            checks.append((~is_present, missing_code))
        checks.append((is_present & F.col(canonical).isNull(), invalid_code))
    if "price" in raw_of:
        checks.append((F.col("price") < 0, NEGATIVE_PRICE))
        checks.append((F.col("price") > max_price, ABSURD_PRICE))
    for column in TEXT_COLUMNS:
        if column in df.columns:
            checks.append((F.length(column) > MAX_TEXT_LENGTH, FIELD_TOO_LONG))
    if window_start is not None:
        checks.append((F.col("event_ts") < F.lit(window_start), TIMESTAMP_OUTSIDE_WINDOW))
    if window_end is not None:
        checks.append((F.col("event_ts") >= F.lit(window_end), TIMESTAMP_OUTSIDE_WINDOW))
    if latest is not None:
        checks.append((F.col("event_ts") > F.lit(latest), TIMESTAMP_IN_FUTURE))

    # Only a failing row pays for building its array of codes (`filter` runs interpreted,
    # outside Spark's generated code); a good row costs the conditions alone.
    any_failed = F.coalesce(reduce(lambda a, b: a | b, [cond for cond, _ in checks]),
                            F.lit(True))
    codes = F.array_distinct(
        F.filter(F.array(*[F.when(cond, F.lit(code)) for cond, code in checks]),
                 lambda c: c.isNotNull())
    )
    reasons = (F.when(is_misdecoded(F.col("value")), F.array(F.lit(INVALID_ENCODING)))
               .when(is_malformed(F.col("value"), F.col("_corrupt")),
                     F.array(F.lit(MALFORMED_ROW)))
               .when(any_failed, codes)
               .otherwise(F.array().cast("array<string>")))
    return df.withColumn("reasons", reasons)


OTHER_UNIT = "_other_unit"
# reasons that say a row is not this run's, not that the file is bad
NOT_THIS_RUNS = (TIMESTAMP_OUTSIDE_WINDOW,)
# an epoch value below this is seconds-like where milliseconds are expected (1e11 ms is
# 1973-03-03), and one above it milliseconds-like where seconds are (1e11 s is the year 5138)
EPOCH_UNIT_SPLIT = 100_000_000_000


def with_epoch_unit_check(df: DataFrame, epoch_text: Column, epoch_unit: str) -> DataFrame:
    """Add `_other_unit`: the raw epoch text where it looks like the other unit than
    `epoch_unit` ("s" or "ms"), else null."""
    value = F.abs(F.trim(epoch_text).try_cast("bigint"))
    other = (value < EPOCH_UNIT_SPLIT) if epoch_unit == "ms" else (value >= EPOCH_UNIT_SPLIT)
    return df.withColumn(OTHER_UNIT, F.when(other, F.trim(epoch_text)))


def file_profile(checked_df: DataFrame, quote: str | None = None) -> DataFrame:
    """Per landing file and first reason (null for a good row): its rows, how many hold
    an epoch time that looks like the other unit (`with_epoch_unit_check`; 0 without it),
    with one of them, and how many malformed ones leave a `quote`d field open (a field
    holding a newline split them); one pass over the staged rows, for the per-file checks and
    the quarantine counts."""
    other = (F.col(OTHER_UNIT) if OTHER_UNIT in checked_df.columns
             else F.lit(None).cast("string"))
    reason = F.get("reasons", 0)
    opened = (F.count(F.when((reason == MALFORMED_ROW)
                             & open_quotes(F.col("value"), quote), 1)) if quote else F.lit(0))
    return (checked_df.groupBy("_source_file", reason.alias("reason"))
            .agg(F.count(F.lit(1)).alias("rows"),
                 F.count(other).alias("other_unit"), F.min(other).alias("other_example"),
                 opened.alias("open_quotes")))


BRONZE = "bronze.events"


def checked_events(raw_df: DataFrame, cfg: IngestConfig,
                   ingested_at: datetime | None = None) -> DataFrame:
    """Raw lines (from `read_raw`) typed to canonical events, each with its `reasons`; an
    event later than `ingested_at` plus the config's clock skew is `timestamp_in_future`."""
    adapter = get_adapter(cfg.source)
    window_start, window_end = cfg.accepted_window()
    checked_df = (raw_df
                  .transform(adapter.to_canonical)
                  .transform(with_rejection_reasons, adapter.raw_of,
                             window_start=window_start, window_end=window_end,
                             max_price=cfg.max_price,
                             latest=cfg.latest_event_time(ingested_at) if ingested_at else None))
    if adapter.epoch_unit is not None:
        checked_df = with_epoch_unit_check(checked_df, raw(adapter.raw_of["event_ts"]),
                                           adapter.epoch_unit)
    return checked_df


def staged_rows(checked_df: DataFrame) -> DataFrame:
    """Checked rows as staged: canonical columns, `reasons`, and `is_rejected` to split them;
    only rejected rows keep their raw line (the quarantine needs it, bronze does not)."""
    canonical = [c for c in table_schema(BRONZE).names if c in checked_df.columns]
    extra = [OTHER_UNIT] if OTHER_UNIT in checked_df.columns else []
    return (checked_df.select(*canonical, *extra, "reasons", "value")
            .withColumn("is_rejected", F.size("reasons") > 0)
            .withColumn("value", F.when(F.col("is_rejected"), F.col("value"))))


def bronze_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Good rows in the bronze.events contract."""
    return (checked_df.where(F.size("reasons") == 0)
            .withColumn("event_date", F.to_date("event_ts"))
            .withColumn("_ingested_at", F.lit(ingested_at))
            .withColumn("_ingest_run_date", F.lit(str(run.key)))
            .select(*table_schema(BRONZE).names))


def quarantine_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Rejected rows in the quarantine.events contract."""
    return (checked_df.where(F.size("reasons") > 0)
            .select(
                F.substring(F.sha2(F.concat_ws("\u001f", "_source_file", "value"), 256), 1, 32)
                .alias("quarantine_id"),
                F.lit(run.source).alias("source"),
                "_source_file",
                F.col("value").alias("raw_line"),
                F.get("reasons", 0).alias("reason"),
                "reasons",
                F.lit(str(run.key)).alias("_ingest_run_date"),
                F.lit(run.run_id).alias("_run_id"),
                F.lit(ingested_at).alias("_ingested_at"),
            ))


ITEM_CATEGORIES = "silver.item_categories"


def side_category_rows(typed_df: DataFrame) -> DataFrame:
    """A side table's typed rows (`SideTable.to_rows`) as staged: its file, whether the row is
    usable (both ids and the time parsed, the line split), and the three values."""
    usable = (F.col("_corrupt").isNull() & F.col("item_id").isNotNull()
              & F.col("category_id").isNotNull() & F.col("valid_from").isNotNull())
    return typed_df.select("_source_file", usable.alias("is_usable"), "item_id", "category_id",
                           "valid_from")


def item_category_batch(staged_df: DataFrame, source: str, run_date: str) -> DataFrame:
    """The usable rows as silver.item_categories rows: one per item and time; where the table
    gives an item two categories at one time, the smaller id (deterministic; `conflicts`
    counts the items and times that had more than one)."""
    return (staged_df.where("is_usable")
            .groupBy("item_id", "valid_from")
            .agg(F.min("category_id").alias("category_id"),
                 F.count_distinct("category_id").alias("categories"),
                 F.min("_source_file").alias("_source_file"))
            .select(F.lit(source).alias("source"), "item_id", "category_id", "valid_from",
                    "_source_file", F.lit(run_date).alias("_ingest_run_date"), "categories"))
