"""RetailRocket and Diginetica all the way to scores and the warehouse export, from files
written here in their public layouts: RetailRocket's events (views, carts, transactions) and
its `item_properties` side table, Diginetica's views, purchases (`train-purchases.csv`) and
`product-categories.csv`. First without the side tables: no event carries a category, and
the vocabulary, training set, model, scores and export still build (every category the
unknown index). Then the side tables give each item its category, RetailRocket's as of each
event's time, and a vocabulary of the period holds them.

The two sources number their users, items and categories over the same ranges (Diginetica's
logged-in users 1-20 are RetailRocket's visitors 1-20 by id, half of their items and all of
their category ids are shared): a user, an item and a category are each their own source's
(`core.identity`), so scores, exports and vocabularies keep them apart, and a user is
recommended only their own source's items."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from pyspark.sql import functions as F

from clickscore.core.config import parse_windows
from clickscore.export.config import PASSWORD_ENV, USER_ENV
from clickscore.export.credentials import jdbc_properties
from clickscore.features.config import TrainingExamplesConfig, VocabConfig
from clickscore.features.job import run_training_examples
from clickscore.features.vocab_job import build_vocab, non_bot_events, vocab
from clickscore.scoring.config import ScoreConfig
from clickscore.scoring.job import USER_SCORES, run_score
from clickscore.training.config import TrainConfig
from clickscore.training.job import run_train
from tests.integration import postgres as pg
from tests.integration.helpers import assert_same_rows, ingest, sessionize

pytestmark = pytest.mark.integration

START = datetime(2015, 6, 1, tzinfo=UTC)  # two days, both sources
LAST_DAY = date(2015, 6, 2)
# RetailRocket's item 1000 moves from category 100 to 109 at noon of the second day
MOVED_ITEM, MOVED_AT = 1000, START + timedelta(hours=36)
CUTOFFS = tuple(START + timedelta(hours=h) for h in (14, 20, 30, 38))
RR_ITEMS, DG_ITEMS = range(1000, 1040), range(1020, 1060)  # ids 1020-1039 in both sources


def dg_category(item: int) -> int:
    """Diginetica's categories 100-106: ids RetailRocket's categories 100-104 also have."""
    return 100 + item % 7


def sessions(rng: np.random.Generator, users: int, items: range):
    """(user, session number, [(seconds from START, item, event), ...]) of a shop where
    users come back to a few favourite items: 2-4 sessions per user over two days, 3-8 views
    each, now and then a cart and a purchase of the last item viewed."""
    for user in range(users):
        favourites = rng.choice(items, size=4, replace=False)
        for number, day_hour in enumerate(sorted(rng.choice(np.arange(2, 46), size=int(
                rng.integers(2, 5)), replace=False))):
            at = int(day_hour) * 3600 + int(rng.integers(0, 1800))
            events = []
            for _ in range(int(rng.integers(3, 9))):
                item = int(rng.choice(favourites) if rng.random() < 0.6 else rng.choice(items))
                events.append((at, item, "view"))
                at += int(rng.integers(20, 200))
            if rng.random() < 0.4:
                events += [(at, events[-1][1], "cart"), (at + 60, events[-1][1], "purchase")]
            yield user, number, events


def retailrocket_files(tmp_path, rng):
    events = ["timestamp,visitorid,event,itemid,transactionid"]
    codes = {"view": "view", "cart": "addtocart", "purchase": "transaction"}
    for user, _, rows in sessions(rng, 70, RR_ITEMS):
        for at, item, kind in rows:
            millis = int((START + timedelta(seconds=at)).timestamp() * 1000)
            events.append(f"{millis},{user + 1},{codes[kind]},{item},"
                          + (f"{user * 100 + at}" if kind == "purchase" else ""))
    (tmp_path / "events.csv").write_text("\n".join(events) + "\n")
    first_snapshot = int((START - timedelta(days=1)).timestamp() * 1000)
    properties = ["timestamp,itemid,property,value"]
    for item in RR_ITEMS:
        properties += [f"{first_snapshot},{item},categoryid,{100 + item % 5}",
                       f"{first_snapshot},{item},available,1",
                       f"{first_snapshot},{item},888,n12.000 424566"]
    properties += [f"{int(MOVED_AT.timestamp() * 1000)},{MOVED_ITEM},categoryid,109",
                   f"{first_snapshot},not-an-id,categoryid,101"]  # unusable: counted
    (tmp_path / "item_properties_part1.csv").write_text("\n".join(properties) + "\n")
    return tmp_path / "events.csv", tmp_path / "item_properties_part1.csv"


def diginetica_files(tmp_path, rng):
    views = ["sessionId;userId;itemId;timeframe;eventdate"]
    purchases = ["sessionId;userId;timeframe;eventdate;ordernumber;itemId"]
    for session_id, (user, _, rows) in enumerate(sessions(rng, 50, DG_ITEMS), 1):
        # users 0-19 are logged in (ids 1-20, as RetailRocket's first visitors), the others
        # anonymous: each session a user of its own (-sessionId)
        user_text = str(1 + user) if user < 20 else "NA"
        day = (START + timedelta(seconds=rows[0][0])).date()
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for at, item, kind in rows:
            millis = int((START + timedelta(seconds=at) - midnight).total_seconds() * 1000)
            if kind == "view":
                views.append(f"{session_id};{user_text};{item};{millis};{day}")
            elif kind == "purchase":
                purchases.append(f"{session_id};{user_text};{millis};{day};{session_id};{item}")
    (tmp_path / "train-item-views.csv").write_text("\n".join(views) + "\n")
    (tmp_path / "train-purchases.csv").write_text("\n".join(purchases) + "\n")
    categories = ["itemId;categoryId"] + [f"{item};{dg_category(item)}" for item in DG_ITEMS]
    (tmp_path / "product-categories.csv").write_text("\n".join(categories) + "\n")
    return (tmp_path / "train-item-views.csv", tmp_path / "train-purchases.csv",
            tmp_path / "product-categories.csv", len(purchases) - 1)


def test_retailrocket_and_diginetica_reach_scores_and_the_export_and_take_their_side_tables(
        empty_warehouse, data_root, postgres, tmp_path, monkeypatch):
    spark = empty_warehouse
    rng = np.random.default_rng(5)
    rr_events, rr_properties = retailrocket_files(tmp_path, rng)
    dg_views, dg_purchases, dg_categories, n_purchases = diginetica_files(tmp_path, rng)

    # both sources without their side tables: no event has a category, price or brand
    ingest(spark, data_root, "retailrocket", rr_events, "all")
    ingest(spark, data_root, "diginetica", dg_views, "all")
    # the purchases: a small file beside the views, its volume compared with its own source's
    bought = ingest(spark, data_root, "diginetica_purchases", dg_purchases, "all")
    assert bought.output_rows == n_purchases > 10 and bought.quarantined_rows == 0
    sessionize(spark, data_root, "all")
    # the purchases joined their sessions' views: one source, one session each
    purchase_sessions = spark.sql("""
        SELECT count(DISTINCT p.session_id) FROM silver.events p JOIN silver.events v
          ON p.session_id = v.session_id AND v.event_type = 'view'
        WHERE p.source = 'diginetica' AND p.event_type = 'purchase'""").first()[0]
    assert purchase_sessions == spark.sql(
        "SELECT count(DISTINCT session_id) FROM silver.events WHERE source = 'diginetica' "
        "AND event_type = 'purchase'").first()[0] > 5

    # training set, model, scores and export, every category the unknown index
    built = run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=CUTOFFS, validation_from=CUTOFFS[-2], test_from=CUTOFFS[-1],
        data_root=data_root, horizon=timedelta(hours=6), lookback=timedelta(hours=12),
        windows=parse_windows("1h,6h")))
    assert built.details["vocab_sizes"]["category"] == 1
    seen = spark.table("gold.training_examples").select(F.explode("category_seq").alias("c"))
    assert {r.c for r in seen.distinct().collect()} == {0, 1}  # padding and unknown
    trained = run_train(spark, TrainConfig.of(
        data_root=data_root, epochs=1, max_steps_per_epoch=3, batch_size=64, d_model=16,
        n_layers=1, auto_promote=False))
    monkeypatch.setenv(USER_ENV, pg.USER)
    monkeypatch.setenv(PASSWORD_ENV, pg.PASSWORD)
    scored = run_score(spark, ScoreConfig(
        run_date=LAST_DAY, data_root=data_root, model_version=trained.details["model_version"],
        export_jdbc_url=postgres.url))
    active = spark.sql("""
        SELECT DISTINCT source, user_id FROM silver.events
        WHERE event_ts >= TIMESTAMP '2015-06-02 12:00:00'
          AND event_ts < TIMESTAMP '2015-06-03 00:00:00'""")
    assert {r.source for r in active.select("source").distinct().collect()} == {
        "retailrocket", "diginetica"}
    published = spark.table(USER_SCORES).where(F.col("score_date") == LAST_DAY)
    assert_same_rows(published.select("source", "user_id"), active, "scored users")
    assert scored.output_rows == published.count()
    # one id, two people: the ids both sources scored are each two rows with their own scores
    both = published.groupBy("user_id").agg(F.count_distinct("source").alias("n")).where(
        "n = 2").count()
    assert both > 0 and published.count() == active.select("user_id").distinct().count() + both
    # each user's top items are their own source's: none of the ids only the other one has
    recommended = (published.select("source", F.explode("top_items.item_id").alias("item"))
                   .groupBy("source").agg(F.min("item").alias("lo"), F.max("item").alias("hi")))
    ranges = {r.source: (r.lo, r.hi) for r in recommended.collect()}
    assert RR_ITEMS.start <= ranges["retailrocket"][0] <= ranges["retailrocket"][1] < \
        RR_ITEMS.stop and DG_ITEMS.start <= ranges["diginetica"][0], ranges
    assert ranges["diginetica"][1] >= RR_ITEMS.stop, ranges  # Diginetica's own ids reached
    exported = spark.read.jdbc(postgres.url, "user_scores",
                               properties=jdbc_properties(postgres.url)).where(
        F.col("score_date") == LAST_DAY)
    assert_same_rows(exported.select("source", "user_id"), published.select("source", "user_id"),
                     "exported")

    # the side tables, each beside its events again (already stored: nothing added)
    again = ingest(spark, data_root, "retailrocket", rr_events, "all",
                   item_categories=str(rr_properties))
    assert again.details["bronze_rows_inserted"] == 0
    assert again.details["item_categories"] | {"files": None} == {
        "files": None, "category_rows": 42, "unusable_rows": 1, "stored_rows": 41,
        "conflicting": 0, "inserted": 41, "updated": 0}
    views = ingest(spark, data_root, "diginetica", dg_views, "all",
                   item_categories=str(dg_categories))
    assert views.details["item_categories"]["stored_rows"] == 40
    # each event's category: its source's side table as of its time (item 1000: 100, then
    # 109 from noon of the second day)
    coded = non_bot_events(spark)
    assert coded.where(F.col("category_id").isNull()).isEmpty()
    moved = coded.where((F.col("item_id") == MOVED_ITEM)
                        & (F.col("source") == "retailrocket")).select(
        (F.col("event_ts") >= F.lit(MOVED_AT)).alias("after"), "category_id").distinct()
    assert sorted(tuple(r) for r in moved.collect()) == [(False, 100), (True, 109)]
    dg_coded = coded.where("source = 'diginetica'")
    assert_same_rows(
        dg_coded.select("item_id", "category_id").distinct(),
        spark.createDataFrame([(i, dg_category(i)) for i in DG_ITEMS],
                              "item_id bigint, category_id bigint").join(
            dg_coded.select("item_id").distinct(), "item_id"), "diginetica categories")
    # a vocabulary of the training period now has their categories: RetailRocket's 100-104
    # and Diginetica's 100-106, twelve categories of two sources after the unknown index 1
    # (109 starts after the period)
    version = build_vocab(spark, VocabConfig(window_start=CUTOFFS[0] - timedelta(hours=12),
                                             window_end=CUTOFFS[-2], data_root=data_root))
    assert vocab(spark, "ml.category_vocab", version)[1] == 1 + 5 + 7
