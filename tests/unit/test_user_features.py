"""Point-in-time features and labels on a hand-built history, with exact expected rows
(L = 4 and K = 3 here, so padding and truncation both show)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from clickscore.core.config import parse_windows
from clickscore.features.config import TrainingExamplesConfig
from clickscore.features.contract import feature_contract
from clickscore.features.transforms import (
    labels,
    user_features,
    vocab_rows,
    with_bot_from,
    with_codes,
    with_labels,
    with_side_categories,
)
from tests.conftest import utc

T = utc(2019, 10, 2)
US = timedelta(microseconds=1)
LOOKBACK = timedelta(days=3)
WINDOWS = parse_windows("30m,1d")
CONTRACT = replace(feature_contract(), sequence_length=4, next_items=3)
SEQUENCES = ["item_seq", "event_type_seq", "category_seq", "time_gap_seq", "price_seq"]

# (event_id, user_id, event_ts, event_type, item_id, category_id, price, session_id)
HISTORY = [
    ("e1", 1, T - timedelta(days=2), "view", 100, 10, 3.0, "s1"),
    ("e2", 1, T - timedelta(days=2) + timedelta(seconds=30), "view", 200, 20, 12.0, "s1"),
    ("e3", 1, T - timedelta(hours=1), "cart", 200, 10, 12.0, "s2"),
    ("e4", 1, T - timedelta(minutes=30), "purchase", 300, None, 60.0, "s2"),
    ("e5", 1, T - US, "view", 100, 10, None, "s2"),
    ("u2", 2, T - timedelta(minutes=10), "view", 200, None, 5.0, "s3"),
    ("old", 3, T - timedelta(days=5), "view", 100, 10, 3.0, "s4"),      # before the lookback
]
FUTURE = [
    ("f1", 1, T, "purchase", 200, 10, 12.0, "s5"),                      # exactly at the cutoff
    ("f2", 1, T + timedelta(hours=1), "view", 100, 10, 3.0, "s5"),
    ("f3", 4, T + timedelta(minutes=5), "view", 100, 10, 3.0, "s6"),   # a new user
]


def events(spark, rows, source="taobao"):
    """Events of one source (a user is (source, user_id))."""
    return spark.createDataFrame(rows, "event_id string, user_id bigint, event_ts timestamp, "
                                       "event_type string, item_id bigint, category_id bigint, "
                                       "price double, session_id string").withColumn(
        "source", F.lit(source))


def vocabs(spark):
    """The item and category vocabularies of the hand-built history's source."""
    return (spark.createDataFrame([("taobao", 100, 2), ("taobao", 200, 3)],
                                  "source string, item_id bigint, idx int"),
            spark.createDataFrame([("taobao", 10, 2)],
                                  "source string, category_id bigint, idx int"))


def coded(spark, rows):
    item_vocab, category_vocab = vocabs(spark)
    return with_codes(events(spark, rows), item_vocab, category_vocab, CONTRACT)


def features(spark, rows):
    return user_features(coded(spark, rows), T, LOOKBACK, WINDOWS, CONTRACT, "vtest")


def test_sequences_are_the_last_L_events_left_padded_with_buckets(spark):
    got = features(spark, HISTORY + FUTURE).select("user_id", "seq_length", *SEQUENCES)
    expected = spark.createDataFrame([
        # e2..e5 (e1 truncated at L = 4); e2's category 20 and e4's item 300 are OOV (1), e4's
        # category is null (1); gaps 30 s, ~2 d, 30 min, 30 min - 1 us; e5 has no price (1)
        (1, 4, [3, 3, 1, 2], [1, 2, 5, 1], [1, 2, 1, 2], [3, 8, 6, 5], [4, 4, 6, 1]),
        (2, 1, [0, 0, 0, 3], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 3]),
    ], "user_id bigint, seq_length int, item_seq array<int>, event_type_seq array<int>, "
       "category_seq array<int>, time_gap_seq array<int>, price_seq array<int>")
    assertDataFrameEqual(got, expected)


def test_aggregates_over_windows_and_the_lookback(spark):
    got = features(spark, HISTORY + FUTURE).drop(*SEQUENCES, "seq_length", "cutoff_date")
    lookback_s = LOOKBACK.total_seconds()
    expected = spark.createDataFrame([
        # windows 30m (e4, e5) and 1d (e3, e4, e5); the cart of 200 is not followed by a
        # purchase before the cutoff (f1 is at it), so it counts as abandoned
        (1, ["30m", "1d"], [2.0, 3.0], [1.0, 1.0], [60.0, 60.0], 1e-6, 3600.0, 1800.0, 0.5, 1.0,
         0.75, 3.0, T, "vtest", 1),
        (2, ["30m", "1d"], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], 600.0, lookback_s, lookback_s,
         0.0, 0.0, 0.0, 1.0, T, "vtest", 1),
    ], "user_id bigint, windows array<string>, n_events_w array<float>, "
       "n_sessions_w array<float>, revenue_w array<float>, s_since_last_event float, "
       "s_since_last_cart float, s_since_last_purchase float, conversion_rate float, "
       "cart_abandonment float, top_category_share float, distinct_items float, "
       "cutoff timestamp, vocab_version string, feature_version int")
    assertDataFrameEqual(got.select(*expected.columns), expected)


def test_labels_read_only_the_horizon_and_targets_shift_the_sequence(spark):
    coded_df = coded(spark, HISTORY + FUTURE)
    examples_df = with_labels(features(spark, HISTORY + FUTURE),
                              labels(coded_df, T, timedelta(hours=2), CONTRACT), CONTRACT)
    got = examples_df.select("user_id", "purchased_within_horizon", "next_items",
                             "next_items_len", "target_seq")
    expected = spark.createDataFrame([
        (1, 1, [3, 2, 0], 2, [3, 1, 2, 3]),
        (2, 0, [0, 0, 0], 0, [0, 0, 0, 0]),
    ], "user_id bigint, purchased_within_horizon int, next_items array<int>, "
       "next_items_len int, target_seq array<int>")
    assertDataFrameEqual(got, expected)
    # a horizon that ends before f2 sees only f1
    short = labels(coded_df, T, timedelta(minutes=30), CONTRACT).where("user_id = 1")
    assert short.select("next_items", "next_items_len").first() == ([3, 0, 0], 1)


def test_an_event_at_or_after_the_cutoff_changes_no_feature_but_can_change_the_label(spark):
    at_cutoff = [("x", 2, T, "purchase", 100, 10, 3.0, "s9")]
    assertDataFrameEqual(features(spark, HISTORY + at_cutoff), features(spark, HISTORY))
    before = labels(coded(spark, HISTORY), T, timedelta(hours=2), CONTRACT)
    after = labels(coded(spark, HISTORY + at_cutoff), T, timedelta(hours=2), CONTRACT)
    assert before.where("user_id = 2").isEmpty()
    assert after.where("user_id = 2").select("purchased_within_horizon").first()[0] == 1


def test_an_event_one_microsecond_before_the_cutoff_changes_the_features(spark):
    just_before = [("x", 2, T - US, "cart", 100, 10, 3.0, "s3")]
    base = features(spark, HISTORY).where("user_id = 2")
    moved = features(spark, HISTORY + just_before).where("user_id = 2")
    assert base.select("seq_length", "s_since_last_cart").first() == (1, LOOKBACK.total_seconds())
    assert moved.select("seq_length", "item_seq", "s_since_last_cart").first() == (
        2, [0, 0, 3, 2], pytest.approx(1e-6))


def test_a_bot_burst_after_the_cutoff_changes_nothing_computed_for_it(spark):
    """Bots are decided point in time: user 2's session s3 turns into a bot session (4 events
    in one clock minute, over a threshold of 3) only after the cutoff."""
    item_vocab, category_vocab = vocabs(spark)

    def bot_aware(rows):
        return with_codes(with_bot_from(events(spark, rows), 3), item_vocab, category_vocab,
                          CONTRACT)

    def of_bot_aware(rows):
        return user_features(bot_aware(rows), T, LOOKBACK, WINDOWS, CONTRACT, "v1")

    burst = [(f"b{i}", 2, T + timedelta(seconds=i), "view", 100, 10, 3.0, "s3")
             for i in range(1, 5)]
    assertDataFrameEqual(of_bot_aware(HISTORY + burst), of_bot_aware(HISTORY))
    assert of_bot_aware(HISTORY + burst).where("user_id = 2").count() == 1
    tipping = bot_aware(HISTORY + burst).where("session_id = 's3'").select("bot_from")
    assert {r.bot_from for r in tipping.collect()} == {(T + timedelta(seconds=4)).replace(
        tzinfo=None)}
    # labels may know the future: the whole session is a bot there
    assert labels(bot_aware(HISTORY + burst), T, timedelta(hours=2),
                  CONTRACT).where("user_id = 2").isEmpty()
    # the same burst a minute earlier, before the cutoff: the session is gone as of it
    earlier = [(e, u, ts - timedelta(minutes=1), *rest) for e, u, ts, *rest in burst]
    assert of_bot_aware(HISTORY + earlier).where("user_id = 2").isEmpty()
    assert of_bot_aware(HISTORY + earlier).where("user_id = 1").count() == 1


def test_vocab_orders_by_support_then_id_from_index_2_above_min_support(spark):
    df = events(spark, [(f"e{i}", 1, T, "view", item, None, 1.0, "s")
                        for i, item in enumerate([7, 7, 5, 5, 9, 3, 3, 3])])
    got = vocab_rows(df, "item_id", min_support=2).select("item_id", "idx", "support")
    expected = spark.createDataFrame([(3, 2, 3), (5, 3, 2), (7, 4, 2)],
                                     "item_id bigint, idx int, support bigint")
    assertDataFrameEqual(got, expected)


def test_two_sources_with_the_same_ids_are_two_users_and_two_catalogues(spark):
    """A user is (source, user_id) and an item (source, item_id): RetailRocket's visitor 1
    viewing its item 100 is not Taobao's user 1, and does not take Taobao's index of item
    100 (it is out of vocabulary: the vocabularies hold only Taobao's)."""
    other = events(spark, [("r1", 1, T - timedelta(hours=2), "view", 100, 10, 3.0, "r-s1")],
                   source="retailrocket")
    item_vocab, category_vocab = vocabs(spark)
    both = with_codes(events(spark, HISTORY).unionByName(other), item_vocab, category_vocab,
                      CONTRACT)
    got = user_features(both, T, LOOKBACK, WINDOWS, CONTRACT, "vtest").select(
        "source", "user_id", "seq_length", "item_seq", "category_seq")
    expected = spark.createDataFrame([
        ("taobao", 1, 4, [3, 3, 1, 2], [1, 2, 1, 2]),
        ("taobao", 2, 1, [0, 0, 0, 3], [0, 0, 0, 1]),
        ("retailrocket", 1, 1, [0, 0, 0, 1], [0, 0, 0, 1]),
    ], "source string, user_id bigint, seq_length int, item_seq array<int>, "
       "category_seq array<int>")
    assertDataFrameEqual(got, expected)
    # one index space: the same id in two sources gets two indices. Support 3: Taobao's 100
    # and 200; support 1: RetailRocket's 100, then Taobao's 300 (ties by source, then id)
    ranked = vocab_rows(both, "item_id", min_support=1).select("source", "item_id", "idx")
    assertDataFrameEqual(ranked, spark.createDataFrame(
        [("taobao", 100, 2), ("taobao", 200, 3), ("retailrocket", 100, 4), ("taobao", 300, 5)],
        "source string, item_id bigint, idx int"))


def test_vocab_ranks_many_support_levels_without_moving_every_id_to_one_partition(spark):
    # ids 0..59: id k has support 1 + k % 7, so seven levels with ties broken by id
    rows = [(i * 100 + j, k) for k in range(60) for j in range(1 + k % 7) for i in [k]]
    df = (spark.createDataFrame(rows, "n bigint, item_id bigint")
          .withColumn("source", F.lit("taobao")).repartition(4))
    ranked = vocab_rows(df, "item_id", min_support=1)
    plan = ranked._jdf.queryExecution().executedPlan().toString()
    assert "SinglePartition" not in plan, plan
    expected = sorted(range(60), key=lambda k: (-(1 + k % 7), k))
    got = {r.item_id: r.idx for r in ranked.collect()}
    assert [got[k] for k in expected] == list(range(2, 62))


def test_the_vocab_digest_ignores_row_order_and_sees_any_changed_row(spark):
    from clickscore.features.vocab_job import _content_digest

    rows = [("taobao", k, k + 2, 100 - k) for k in range(50)]
    schema = "source string, item_id bigint, idx int, support bigint"
    digest = _content_digest(spark.createDataFrame(rows, schema).repartition(3), "item_id")
    shuffled = spark.createDataFrame(list(reversed(rows)), schema).coalesce(1)
    assert _content_digest(shuffled, "item_id") == digest
    assert digest[0] == 50
    changed = [*rows[:-1], ("taobao", 49, 52, 52)]  # one support differs
    assert _content_digest(spark.createDataFrame(changed, schema), "item_id") != digest
    swapped = [("taobao", 0, 3, 100), ("taobao", 1, 2, 99), *rows[2:]]  # two trade places
    elsewhere = [("retailrocket", *rows[0][1:]), *rows[1:]]  # one id of another source
    assert _content_digest(spark.createDataFrame(elsewhere, schema), "item_id") != digest
    assert _content_digest(spark.createDataFrame(swapped, schema), "item_id") != digest


def test_a_cutoff_whose_labels_cross_a_split_boundary_is_refused():
    common = {"validation_from": utc(2019, 10, 8), "test_from": utc(2019, 10, 15),
              "data_root": "/tmp/x", "horizon": timedelta(days=7)}
    cfg = TrainingExamplesConfig(cutoffs=(utc(2019, 10, 1), utc(2019, 10, 8),
                                          utc(2019, 10, 15)), **common)
    assert [cfg.split_of(c) for c in cfg.cutoffs] == ["train", "validation", "test"]
    with pytest.raises(ValueError, match="crosses a split boundary"):
        TrainingExamplesConfig(cutoffs=(utc(2019, 10, 2),), **common)


def test_the_feature_contract_check_accepts_built_rows_and_names_what_differs(spark):
    from clickscore.core.errors import FeatureContractError
    from clickscore.features.contract import check_feature_frame

    built = features(spark, HISTORY)
    check_feature_frame(built, CONTRACT)
    with pytest.raises(FeatureContractError, match="item_seq: arrays must have length 4"):
        check_feature_frame(built.withColumn("item_seq", F.slice("item_seq", 1, 3)), CONTRACT)
    with pytest.raises(FeatureContractError, match="feature_version: expected 1, found"):
        check_feature_frame(built.withColumn("feature_version", F.lit(2)), CONTRACT)
    with pytest.raises(FeatureContractError, match="revenue_w: expected array<float>, found "
                                                   "array<double>"):
        check_feature_frame(built.withColumn("revenue_w", F.col("revenue_w")
                                             .cast("array<double>")), CONTRACT)
    with pytest.raises(FeatureContractError, match="target_seq: expected array<int>, found "
                                                   "nothing"):
        check_feature_frame(built, CONTRACT, with_labels=True)


def test_several_cutoffs_in_one_pass_give_each_cutoffs_rows_as_if_built_alone(spark):
    """One pass over the events for several cutoffs (how training examples are built) gives,
    per cutoff, exactly the rows of that cutoff built alone: an event read by two cutoffs'
    windows counts in both, the bot rule is decided per cutoff (user 2's session s3 turns
    into a bot between the two cutoffs), and labels stay within each cutoff's horizon."""
    item_vocab, category_vocab = vocabs(spark)
    burst = [(f"b{i}", 2, T + timedelta(minutes=5, seconds=i), "view", 100, 10, 3.0, "s3")
             for i in range(1, 5)]
    coded_df = with_codes(with_bot_from(events(spark, HISTORY + FUTURE + burst), 3),
                          item_vocab, category_vocab, CONTRACT)
    cutoffs = [T - timedelta(hours=2), T, T + timedelta(hours=2)]
    horizon = timedelta(hours=1)

    def examples(at):
        return with_labels(user_features(coded_df, at, LOOKBACK, WINDOWS, CONTRACT, "v1"),
                           labels(coded_df, at, horizon, CONTRACT), CONTRACT)

    together = examples(cutoffs).cache()
    alone = [examples(cutoff) for cutoff in cutoffs]
    assert all(frame.columns == together.columns for frame in alone)
    assertDataFrameEqual(together, alone[0].unionByName(alone[1]).unionByName(alone[2]))
    per_cutoff = {(r.cutoff, r.user_id) for r in together.select("cutoff", "user_id").collect()}
    # user 2 is a human as of T (the burst comes 5 minutes after it), a bot as of T + 2 h;
    # user 1's events before T - 2 h count at all three cutoffs
    naive = [c.replace(tzinfo=None) for c in cutoffs]
    assert (naive[1], 2) in per_cutoff and (naive[2], 2) not in per_cutoff
    assert {(c, 1) for c in naive} <= per_cutoff


def test_an_event_without_a_category_takes_its_items_from_the_side_table_as_of_its_time(spark):
    """`with_side_categories`: the item's row in effect at the event (its latest at or before
    it, its first for an event before every row); the event's own category wins; another
    source's rows and an unknown item change nothing; no event repeated or lost."""
    events = spark.createDataFrame([
        ("a", "rr", 1, T - timedelta(days=3), None),   # before every row of item 1: its first
        ("b", "rr", 1, T - timedelta(hours=1), None),  # row of T - 2d
        ("c", "rr", 1, T, None),                       # row of T (at its time)
        ("d", "rr", 1, T + timedelta(days=1), 7),      # its own category wins
        ("e", "rr", 2, T, None),                       # no row for item 2
        ("f", "dg", 1, T, None),                       # item 1 of another source: its row
    ], "event_id string, source string, item_id bigint, event_ts timestamp, category_id bigint")
    side = spark.createDataFrame([
        ("rr", 1, 10, T - timedelta(days=2)), ("rr", 1, 11, T),
        ("dg", 1, 20, utc(1970, 1, 1)),
    ], "source string, item_id bigint, category_id bigint, valid_from timestamp")
    got = with_side_categories(events, side)
    assert got.columns == events.columns
    assertDataFrameEqual(got.select("event_id", "category_id"), spark.createDataFrame(
        [("a", 10), ("b", 10), ("c", 11), ("d", 7), ("e", None), ("f", 20)],
        "event_id string, category_id bigint"))
