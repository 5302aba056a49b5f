"""Pure session transforms: deduplicate events, assign sessions, summarize them.

The session rule: a user's events ordered by (event_ts, event_id) start a new session when
the gap to the previous event is at least `gap`, or when continuous activity (no such gap)
reaches `max_length` since it started: activity is cut every `max_length` after its first
event, so no session lasts `max_length` or longer. A user is a source's user id
(`core.identity.USER`): two sources' users with one id are two users.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from clickscore.core.contracts import table_schema
from clickscore.core.identity import USER

_ONE_MICRO = timedelta(microseconds=1)



def event_columns() -> list[str]:
    """The event columns sessionize reads from bronze: silver.events' without the session."""
    return [c for c in table_schema("silver.events").names
            if c not in ("session_id", "session_seq")]


def micros(delta: timedelta) -> int:
    return delta // _ONE_MICRO


def _user_order() -> tuple[WindowSpec, WindowSpec]:
    """Each user's events in time order (ties by event_id), and its running frame."""
    by_user = Window.partitionBy(*USER).orderBy("event_ts", "event_id")
    return by_user, by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)


def flag_duplicate_events(events_df: DataFrame) -> DataFrame:
    """Add `is_duplicate`: true on every row but the first of those sharing an event_id
    (rows sharing an id are exact duplicates of one source row).

    Rows sharing an id share user and time (the id hashes every field), so in the per-user
    time order that sessionization sorts by anyway they are neighbours: no extra shuffle.
    """
    by_user, _ = _user_order()
    is_repeat = F.lag("event_id").over(by_user) == F.col("event_id")
    return events_df.withColumn("is_duplicate", F.coalesce(is_repeat, F.lit(False)))


def with_session_id(events_df: DataFrame, gap: timedelta, max_length: timedelta) -> DataFrame:
    """Add `session_id`, `session_seq` (1-based), `activity_start` and `minute_count` (the
    user's events so far in the event's clock minute) to deduplicated events."""
    by_user, so_far = _user_order()
    ts_us = F.unix_micros("event_ts")
    prev_us = F.lag(ts_us).over(by_user)

    bursts_df = events_df.select(
        "*",
        F.row_number().over(by_user).alias("_rn"),
        (prev_us.isNull() | (ts_us - prev_us >= micros(gap))).alias("_is_new_burst"),
        ts_us.alias("_ts_us"),
        F.date_trunc("minute", "event_ts").alias("_minute"),
    ).withColumn(
        "_activity_start_us", F.max(F.when(F.col("_is_new_burst"), F.col("_ts_us"))).over(so_far)
    ).withColumn(
        "_cut", F.expr(f"(_ts_us - _activity_start_us) div {micros(max_length)}")
    )
    is_new_session = F.col("_is_new_burst") | (F.col("_cut") != F.lag("_cut").over(by_user))
    is_new_minute = F.coalesce(F.col("_minute") != F.lag("_minute").over(by_user), F.lit(True))
    starts_df = (bursts_df
                 .withColumn("_is_new_session", is_new_session)
                 .withColumn("_is_new_minute", is_new_minute)
                 .select(
                     "*",
                     F.max(F.when(F.col("_is_new_session"), F.col("_ts_us"))).over(so_far)
                     .alias("_session_start_us"),
                     F.max(F.when(F.col("_is_new_session"), F.col("_rn"))).over(so_far)
                     .alias("_start_rn"),
                     F.max(F.when(F.col("_is_new_minute"), F.col("_rn"))).over(so_far)
                     .alias("_minute_rn"),
                 ))
    return starts_df.select(
        *events_df.columns,
        F.substring(F.sha2(F.concat_ws("|", *USER, "_session_start_us"), 256), 1, 32)
        .alias("session_id"),
        (F.col("_rn") - F.col("_start_rn") + 1).cast("int").alias("session_seq"),
        F.timestamp_micros("_activity_start_us").alias("activity_start"),
        (F.col("_rn") - F.col("_minute_rn") + 1).alias("minute_count"),
    )


def _count_of(event_type: str) -> F.Column:
    return F.count(F.when(F.col("event_type") == event_type, 1))


def summarize_sessions(session_events_df: DataFrame, bot_events_per_minute: int) -> DataFrame:
    """One row per session in the silver.sessions contract.

    `is_bot` marks a session in which the user made more than `bot_events_per_minute` events
    within one clock minute (from `minute_count`, the running count `with_session_id` adds).
    """
    sessions_df = session_events_df.groupBy(*USER, "session_id", "activity_start").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count(F.lit(1)).alias("n_events"),
        _count_of("view").alias("n_views"),
        _count_of("cart").alias("n_carts"),
        _count_of("remove_from_cart").alias("n_removes"),
        _count_of("favorite").alias("n_favorites"),
        _count_of("purchase").alias("n_purchases"),
        F.size(F.collect_set("item_id")).cast("bigint").alias("distinct_items"),
        F.coalesce(F.sum(F.when(F.col("event_type") == "purchase", F.col("price"))),
                   F.lit(0.0)).alias("revenue"),
        F.max("minute_count").alias("peak_events_per_minute"),
    )
    return (sessions_df
            .withColumn("duration_s",
                        F.unix_seconds("session_end") - F.unix_seconds("session_start"))
            .withColumn("is_converted", F.col("n_purchases") > 0)
            .withColumn("is_bot", F.col("peak_events_per_minute") > bot_events_per_minute)
            .withColumn("session_date", F.to_date("session_start"))
            .select(*table_schema("silver.sessions").names))


def recompute_scope(
    touched_df: DataFrame, sessions_df: DataFrame, gap: timedelta
) -> DataFrame:
    """Per affected user, the instant from which their sessions must be recomputed.

    `touched_df` holds the events that changed (new or late); a user's recompute starts at
    their earliest touched event, or earlier, at the start of the activity of an existing
    session that the event continues (it ends less than `gap` before it, or after it).
    Recomputing from there gives the same sessions as recomputing the user's whole history.
    """
    first_touch_df = touched_df.groupBy(*USER).agg(F.min("event_ts").alias("_t0"))
    continued_df = (
        sessions_df.select(*USER, "session_start", "session_end", "activity_start")
        .join(first_touch_df, list(USER))
        .where((F.col("session_start") < F.col("_t0"))
               & (F.unix_micros("session_end") > F.unix_micros("_t0") - micros(gap)))
        .groupBy(*USER)
        .agg(F.min("activity_start").alias("_anchor"))
    )
    return first_touch_df.join(continued_df, list(USER), "left").select(
        *USER, F.coalesce("_anchor", "_t0").alias("recompute_from")
    )
