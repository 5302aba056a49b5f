"""Features, labels and vocabularies on the real samples: user and example counts agree with
an independent SQL count, no nulls, indices inside the vocabulary, and a rebuild from the
same inputs gives identical tables."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from clickscore.core.config import parse_windows
from clickscore.core.delta import read_table, table_version
from clickscore.core.errors import DataQualityError
from clickscore.features import job as features_job
from clickscore.features.config import FeaturesConfig
from clickscore.features.job import run_features
from tests.conftest import utc
from tests.integration.conftest import real_examples_config
from tests.integration.helpers import assert_same_rows, snapshot

pytestmark = pytest.mark.integration

L = 50
TS = "%Y-%m-%d %H:%M:%S"


def active_users_sql(spark, start, end) -> int:
    """Users with a non-bot event in [start, end), counted in plain SQL."""
    return spark.sql(f"""
        SELECT count(DISTINCT e.user_id) FROM silver.events e
        JOIN silver.sessions s ON e.session_id = s.session_id
        WHERE NOT s.is_bot AND e.event_ts >= TIMESTAMP'{start:{TS}}'
          AND e.event_ts < TIMESTAMP'{end:{TS}}'""").first()[0]


def assert_petastorm_ready(df, vocab_version: str) -> None:
    """No nulls anywhere, int arrays of their contract lengths, indices inside the vocab."""
    nulls = df.select([F.sum(F.col(c).isNull().cast("int")).alias(c) for c in df.columns])
    assert all(v == 0 for v in nulls.first().asDict().values())
    sizes = df.select(*[F.min(F.size(c)).alias(f"min_{c}") for c in (
        "item_seq", "event_type_seq", "category_seq", "time_gap_seq", "price_seq")],
        *[F.max(F.size(c)).alias(f"max_{c}") for c in ("item_seq", "price_seq")]).first()
    assert set(sizes) == {L}
    spark = df.sparkSession
    vocab_max = read_table(spark, "ml.item_vocab").where(
        F.col("vocab_version") == vocab_version).agg(F.max("idx")).first()[0]
    ranges = df.agg(F.min(F.array_min("item_seq")), F.max(F.array_max("item_seq")),
                    F.max(F.array_max("event_type_seq")), F.max("seq_length")).first()
    assert ranges[0] >= 0 and ranges[1] <= vocab_max
    assert ranges[2] <= 5 and ranges[3] <= L
    assert df.schema["item_seq"].dataType.simpleString() == "array<int>"
    assert df.schema["n_events_w"].dataType.simpleString() == "array<float>"


def test_taobao_training_examples_count_and_split(
        spark, taobao_examples, data_root):
    # the build on the whole sample (the fixture's, shared with the scoring test)
    cfg = real_examples_config("taobao", data_root)
    cutoffs, lookback, horizon = cfg.cutoffs, cfg.lookback, cfg.horizon
    counts = taobao_examples["examples"]

    examples_df = read_table(spark, "gold.training_examples")
    version = counts.details["vocab_version"]
    per_cutoff = {r["cutoff"]: r["count"] for r in examples_df.groupBy("cutoff").count()
                  .collect()}
    expected = {c.replace(tzinfo=None): active_users_sql(spark, c - lookback, c)
                for c in cutoffs}
    assert per_cutoff == expected and min(expected.values()) > 1_000
    assert counts.output_rows == sum(expected.values())
    assert {r["split"]: r["cutoff"] for r in examples_df.select("split", "cutoff")
            .distinct().collect()} == {"train": cutoffs[0].replace(tzinfo=None),
                                       "validation": cutoffs[1].replace(tzinfo=None),
                                       "test": cutoffs[2].replace(tzinfo=None)}
    # labels: purchasers counted independently
    for cutoff in cutoffs:
        buyers = spark.sql(f"""
            SELECT count(DISTINCT user_id) FROM silver.events
            WHERE event_type = 'purchase' AND event_ts >= TIMESTAMP'{cutoff:{TS}}'
              AND event_ts < TIMESTAMP'{cutoff + horizon:{TS}}'
              AND user_id IN (SELECT user_id FROM gold.training_examples
                              WHERE cutoff = TIMESTAMP'{cutoff:{TS}}')""").first()[0]
        labelled = examples_df.where((F.col("cutoff") == F.lit(cutoff))
                                     & (F.col("purchased_within_horizon") == 1)).count()
        assert labelled == buyers
    assert_petastorm_ready(examples_df, version)
    # the vocabulary was built from the training period only: [first cutoff - lookback, val)
    window = read_table(spark, "ml.item_vocab").where(F.col("vocab_version") == version).agg(
        F.min("window_start"), F.max("window_end")).first()
    assert tuple(window) == (utc(2017, 11, 26, 1, 0).replace(tzinfo=None),
                             utc(2017, 11, 26, 2, 10).replace(tzinfo=None))
    # a rebuild of the same cutoffs gives the same vocabulary version and rows: tested on
    # generated data (test_training.py, the rebuild in place; CI time)


def test_rees46_features_in_minutes_count_users_rebuild_identically_and_are_gated(
        spark, rees46_examples, data_root, monkeypatch):
    # the sample spans 2019-10-01 00:00-02:50 UTC; its training examples (and vocabulary)
    # come with the fixture
    cutoff = utc(2019, 10, 1, 2, 30)
    cfg = FeaturesConfig(as_of=cutoff, data_root=data_root, lookback=timedelta(minutes=60),
                         windows=parse_windows("10m,30m,60m"))

    counts = run_features(spark, cfg)

    features_df = read_table(spark, "gold.user_features")
    users = active_users_sql(spark, cutoff - timedelta(minutes=60), cutoff)
    assert features_df.count() == counts.output_rows == users > 300
    assert [r[0] for r in features_df.select("cutoff").distinct().collect()] == [
        cutoff.replace(tzinfo=None)]
    assert_petastorm_ready(features_df, counts.details["vocab_version"])
    assert features_df.select("windows").distinct().first()[0] == ["10m", "30m", "60m"]
    # no feature reads the cutoff or later: the newest event a user was seen with is older
    newest = features_df.agg(F.min("s_since_last_event")).first()[0]
    assert newest > 0

    before = snapshot(spark, "gold.user_features")
    assert run_features(spark, cfg).output_rows == counts.output_rows
    assert_same_rows(read_table(spark, "gold.user_features"), before)

    # a corrupted batch: short sequences, an index past the vocabulary, a duplicated user
    build = features_job.user_features

    def corrupted(*args, **kwargs):
        features_df = build(*args, **kwargs)
        first = features_df.orderBy("user_id").limit(1)
        return (features_df
                .withColumn("item_seq", F.when(F.col("seq_length") == 1, F.slice("item_seq", 1, 3))
                            .otherwise(F.col("item_seq")))
                .withColumn("item_seq", F.when(F.col("seq_length") == 2,
                                               F.array_repeat(F.lit(10**6), L))
                            .otherwise(F.col("item_seq")))
                .unionByName(first))

    version = table_version(spark, "gold.user_features")
    monkeypatch.setattr("clickscore.features.job.user_features", corrupted)
    with pytest.raises(DataQualityError) as raised:
        run_features(spark, cfg)
    assert {("gold.user_features", check) for check in (
        "sequences_have_length_L", "item_indices_inside_vocab", "one_row_per_user_and_cutoff",
        "rows_reconcile_with_run")} <= raised.value.checks
    assert table_version(spark, "gold.user_features") == version
    assert_same_rows(read_table(spark, "gold.user_features"), before)
