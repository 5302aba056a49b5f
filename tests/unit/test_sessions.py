"""Session rules on tiny inline frames, with exact expected output."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from clickscore.sessionize.transforms import (
    event_columns,
    flag_duplicate_events,
    recompute_scope,
    summarize_sessions,
    with_session_id,
)
from tests.conftest import utc

GAP = timedelta(minutes=30)
MAX_LEN = timedelta(hours=24)


def events(spark, rows, source="test"):
    """Canonical events of `source` from (event_id, user_id, event_ts, event_type, item_id,
    price, source_session_id) tuples; the other columns get fixed values, category/brand
    null."""
    df = spark.createDataFrame(
        rows,
        "event_id string, user_id bigint, event_ts timestamp, event_type string, "
        "item_id bigint, price double, source_session_id string",
    )
    return df.select(
        "event_id", "event_ts", "user_id", "item_id", "event_type",
        F.lit(None).cast("bigint").alias("category_id"),
        F.lit(None).cast("string").alias("category_code"),
        F.lit(None).cast("string").alias("brand"), "price", "source_session_id",
        F.lit(source).alias("source"), F.to_date("event_ts").alias("event_date"),
    ).select(*event_columns())


def session_numbers(spark, df):
    """(event_id, session number per user (source and id) in time order, session_seq) for
    readable asserts."""
    starts = (df.groupBy("source", "user_id", "session_id")
              .agg(F.min("event_ts").alias("start")))
    numbered = starts.selectExpr(
        "session_id",
        "dense_rank() OVER (PARTITION BY source, user_id ORDER BY start) AS session_no")
    return df.join(numbered, "session_id").select("event_id", "session_no", "session_seq")


def expect_sessions(spark, df, expected):
    assertDataFrameEqual(
        session_numbers(spark, df),
        spark.createDataFrame(expected, "event_id string, session_no int, session_seq int"),
    )


def test_gap_exactly_at_timeout_starts_a_new_session_and_one_second_less_does_not(spark):
    t0 = utc(2019, 10, 1, 10, 0, 0)
    df = events(spark, [
        ("a", 1, t0, "view", 10, 1.0, "s"),
        ("b", 1, t0 + GAP - timedelta(seconds=1), "view", 11, 1.0, "s"),   # 29:59 -> same
        ("c", 1, t0 + GAP - timedelta(seconds=1) + GAP, "view", 12, 1.0, "s"),  # exactly 30:00
        ("d", 1, t0 + 3 * GAP + timedelta(seconds=1), "view", 13, 1.0, "s"),  # 30:01 later
    ])
    out = with_session_id(df, GAP, MAX_LEN)
    expect_sessions(spark, out, [("a", 1, 1), ("b", 1, 2), ("c", 2, 1), ("d", 3, 1)])


def test_unordered_input_is_ordered_by_time_then_event_id(spark):
    t0 = utc(2019, 10, 1, 10, 0, 0)
    df = events(spark, [
        ("z", 1, t0 + timedelta(minutes=5), "view", 1, None, None),
        ("y", 1, t0, "view", 2, None, None),
        ("x", 1, t0, "cart", 2, None, None),        # same instant: event_id breaks the tie
        ("w", 1, t0 + timedelta(hours=2), "view", 3, None, None),
    ]).repartition(3)
    out = with_session_id(df, GAP, MAX_LEN)
    expect_sessions(spark, out, [("x", 1, 1), ("y", 1, 2), ("z", 1, 3), ("w", 2, 1)])


def test_session_crossing_midnight_stays_one_session(spark):
    df = events(spark, [
        ("a", 7, utc(2019, 10, 1, 23, 50), "view", 1, 5.0, None),
        ("b", 7, utc(2019, 10, 2, 0, 10), "purchase", 1, 5.0, None),
    ])
    out = with_session_id(df, GAP, MAX_LEN)
    expect_sessions(spark, out, [("a", 1, 1), ("b", 1, 2)])
    sessions = summarize_sessions(out, bot_events_per_minute=100)
    row = sessions.select("session_start", "session_end", "duration_s", "session_date",
                          "n_purchases", "revenue", "is_converted").first()
    assert row.asDict() == {
        "session_start": utc(2019, 10, 1, 23, 50).replace(tzinfo=None),
        "session_end": utc(2019, 10, 2, 0, 10).replace(tzinfo=None),
        "duration_s": 1200, "session_date": utc(2019, 10, 1).date(),
        "n_purchases": 1, "revenue": 5.0, "is_converted": True,
    }


def test_continuous_activity_is_cut_at_max_length_from_its_first_event(spark):
    t0 = utc(2019, 10, 1, 0, 0)
    step = timedelta(minutes=20)
    rows = [(f"e{i:03d}", 1, t0 + i * step, "view", i, None, None) for i in range(10)]
    df = events(spark, rows)  # 10 events 20 min apart: 3 h of unbroken activity
    out = with_session_id(df, GAP, max_length=timedelta(hours=1))
    # cuts at +1h, +2h, +3h after the first event: events at 0,20,40 | 60,80,100 | 120.. | 180
    expect_sessions(spark, out, [
        ("e000", 1, 1), ("e001", 1, 2), ("e002", 1, 3),
        ("e003", 2, 1), ("e004", 2, 2), ("e005", 2, 3),
        ("e006", 3, 1), ("e007", 3, 2), ("e008", 3, 3),
        ("e009", 4, 1),
    ])
    starts = out.select("activity_start").distinct().collect()
    assert [r.activity_start for r in starts] == [t0.replace(tzinfo=None)]


def test_two_users_sharing_a_source_session_id_get_separate_sessions(spark):
    t0 = utc(2019, 10, 1, 12, 0)
    df = events(spark, [
        ("a", 1, t0, "view", 1, None, "shared"),
        ("b", 2, t0 + timedelta(minutes=1), "view", 1, None, "shared"),
    ])
    out = with_session_id(df, GAP, MAX_LEN)
    rows = out.select("user_id", "session_id", "source_session_id").collect()
    assert len({r.session_id for r in rows}) == 2
    assert {r.source_session_id for r in rows} == {"shared"}


def test_the_same_user_id_in_two_sources_is_two_users_with_their_own_sessions(spark):
    """Events of RetailRocket's visitor 1 between Taobao's user 1's would continue that user's
    session if users were ids alone; scoped by source, each source's user 1 has one session
    of its own two events."""
    t0 = utc(2019, 10, 1, 12, 0)
    df = events(spark, [("a", 1, t0, "view", 1, None, None),
                        ("b", 1, t0 + timedelta(minutes=50), "view", 1, None, None)],
                source="taobao").unionByName(events(spark, [
                    ("c", 1, t0 + timedelta(minutes=25), "view", 1, None, None),
                    ("d", 1, t0 + timedelta(minutes=45), "view", 1, None, None)],
                    source="retailrocket"))
    expect_sessions(spark, with_session_id(df, GAP, MAX_LEN),
                    [("a", 1, 1), ("b", 2, 1), ("c", 1, 1), ("d", 1, 2)])
    summary = summarize_sessions(with_session_id(df, GAP, MAX_LEN), 100)
    assert sorted((r.source, r.user_id, r.n_events) for r in summary.collect()) == [
        ("retailrocket", 1, 2), ("taobao", 1, 1), ("taobao", 1, 1)]


def test_session_id_is_a_function_of_source_user_and_start_only(spark):
    t0 = utc(2019, 10, 1, 12, 0)
    one = with_session_id(events(spark, [("a", 1, t0, "view", 1, None, None)]), GAP, MAX_LEN)
    two = with_session_id(events(spark, [
        ("a", 1, t0, "view", 1, None, None),
        ("b", 1, t0 + timedelta(minutes=3), "view", 2, None, None),
    ]), GAP, MAX_LEN)
    assert one.first().session_id == two.where("event_id = 'a'").first().session_id
    assert one.first().session_id != with_session_id(
        events(spark, [("a", 2, t0, "view", 1, None, None)]), GAP, MAX_LEN).first().session_id
    assert one.first().session_id != with_session_id(
        events(spark, [("a", 1, t0, "view", 1, None, None)], source="other"), GAP, MAX_LEN
    ).first().session_id


def test_every_repeat_of_an_event_id_but_the_first_is_flagged_and_nulls_survive(spark):
    t0 = utc(2019, 10, 1, 12, 0)
    df = events(spark, [
        ("a", 1, t0, "view", 1, None, None),
        ("a", 1, t0, "view", 1, None, None),
        ("a", 1, t0, "view", 1, None, None),
        ("b", 1, t0 + timedelta(seconds=1), "view", 2, None, None),
        ("c", 2, t0, "view", 2, 3.5, "s"),  # another user at the same time: not a repeat
    ])
    out = flag_duplicate_events(df).select("event_id", "user_id", "price", "is_duplicate")
    assertDataFrameEqual(out, spark.createDataFrame(
        [("a", 1, None, False), ("a", 1, None, True), ("a", 1, None, True),
         ("b", 1, None, False), ("c", 2, 3.5, False)],
        "event_id string, user_id bigint, price double, is_duplicate boolean"))


def test_summary_counts_types_items_revenue_and_flags_bursts_as_bots(spark):
    t0 = utc(2019, 10, 1, 12, 0, 0)
    burst = [(f"x{i:03d}", 9, t0 + timedelta(milliseconds=500 * i), "view", i % 3, None, None)
             for i in range(101)]  # 101 events inside one clock minute
    normal = [
        ("n1", 5, t0, "view", 1, 10.0, None),
        ("n2", 5, t0 + timedelta(minutes=1), "cart", 1, 10.0, None),
        ("n3", 5, t0 + timedelta(minutes=2), "remove_from_cart", 1, 10.0, None),
        ("n4", 5, t0 + timedelta(minutes=3), "favorite", 2, 20.0, None),
        ("n5", 5, t0 + timedelta(minutes=4), "purchase", 2, 20.0, None),
        ("n6", 5, t0 + timedelta(minutes=5), "purchase", 3, None, None),
    ]
    out = summarize_sessions(with_session_id(events(spark, burst + normal), GAP, MAX_LEN),
                             bot_events_per_minute=100)
    got = {r.user_id: r for r in out.collect()}
    assert (got[5].n_events, got[5].n_views, got[5].n_carts, got[5].n_removes,
            got[5].n_favorites, got[5].n_purchases, got[5].distinct_items) == (6, 1, 1, 1, 1, 2, 3)
    assert (got[5].revenue, got[5].is_converted, got[5].is_bot, got[5].duration_s) == (
        20.0, True, False, 300)
    assert (got[9].n_events, got[9].peak_events_per_minute, got[9].is_bot) == (101, 101, True)
    assert got[9].revenue == 0.0 and not got[9].is_converted


def test_recompute_scope_anchors_at_the_activity_a_late_event_continues(spark):
    sessions = spark.createDataFrame(
        [
            ("t", 1, utc(2019, 10, 1, 9, 0), utc(2019, 10, 1, 9, 40), utc(2019, 10, 1, 9, 0)),
            ("t", 2, utc(2019, 10, 1, 9, 0), utc(2019, 10, 1, 9, 10), utc(2019, 10, 1, 9, 0)),
            ("t", 3, utc(2019, 10, 2, 8, 0), utc(2019, 10, 2, 9, 0), utc(2019, 10, 1, 8, 30)),
        ],
        "source string, user_id bigint, session_start timestamp, session_end timestamp, "
        "activity_start timestamp",
    )
    touched = spark.createDataFrame(
        [
            ("t", 1, utc(2019, 10, 1, 10, 0)),   # 20 min after user 1's session: continues it
            ("t", 2, utc(2019, 10, 1, 9, 40)),   # exactly 30 min after user 2's: a new session
            ("t", 3, utc(2019, 10, 2, 8, 30)),   # inside a session cut from earlier activity
            ("t", 4, utc(2019, 10, 3, 1, 0)),    # a new user
            ("r", 1, utc(2019, 10, 1, 9, 50)),   # another source's user 1: continues nothing
        ],
        "source string, user_id bigint, event_ts timestamp",
    )
    assertDataFrameEqual(
        recompute_scope(touched, sessions, GAP),
        spark.createDataFrame(
            [("t", 1, utc(2019, 10, 1, 9, 0)), ("t", 2, utc(2019, 10, 1, 9, 40)),
             ("t", 3, utc(2019, 10, 1, 8, 30)), ("t", 4, utc(2019, 10, 3, 1, 0)),
             ("r", 1, utc(2019, 10, 1, 9, 50))],
            "source string, user_id bigint, recompute_from timestamp"),
    )
