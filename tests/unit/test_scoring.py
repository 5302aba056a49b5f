"""Scoring's pieces on their own: inference on an Arrow batch against the model's own
forward (exclusions, a vocabulary smaller than K), exact deciles across partitions with ties,
and the purchases left out of a user's top items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import torch
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from clickscore.model.config import ModelConfig, ModelHyper
from clickscore.model.network import FIRST_ITEM, SEQUENCES, SequenceModel
from clickscore.scoring.inference import ARROW_OUTPUT, EXCLUDE, Scorer, model_payload
from clickscore.scoring.transforms import (
    partition_sizes,
    purchased_items,
    sorted_by_propensity,
    with_deciles,
)

L, N_DENSE = 6, 4


def tiny_model(items: int) -> SequenceModel:
    torch.manual_seed(3)
    cfg = ModelConfig(item_vocab_size=items + FIRST_ITEM, category_vocab_size=5,
                      sequence_length=L, n_event_types=5, n_time_gap_buckets=9,
                      n_price_buckets=10, n_dense=N_DENSE, feature_version=1,
                      vocab_version="vtest",
                      # not anchored: an untrained anchored model ties the items a user
                      # has not had, and this test compares rankings item by item
                      hyper=ModelHyper(d_model=16, n_heads=2, n_layers=1, repeat=True,
                                       anchored=False))
    return SequenceModel(cfg).eval()


def feature_batch(items: int, users: int, excluded: list[list[int]],
                  sources: list[str] | None = None) -> pa.RecordBatch:
    rng = np.random.default_rng(0)
    columns = {"source": pa.array(sources or ["taobao"] * users, pa.string()),
               "user_id": pa.array(np.arange(100, 100 + users), pa.int64())}
    for name in SEQUENCES:
        high = items + FIRST_ITEM if name == "item_seq" else 5
        values = rng.integers(1, high, size=(users, L)).astype(np.int32)
        values[:, :2] = 0  # left padding
        columns[name] = pa.array(list(values), pa.list_(pa.int32()))
    columns["dense"] = pa.array(list(rng.random((users, N_DENSE), dtype=np.float32)),
                                pa.list_(pa.float32()))
    columns[EXCLUDE] = pa.array(excluded, pa.list_(pa.int32()))
    return pa.RecordBatch.from_pydict(columns)


def forward(model: SequenceModel, batch: pa.RecordBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own (item scores, propensity) for a feature batch."""
    tensors = {name: torch.tensor(np.stack(batch.column(name).to_numpy(zero_copy_only=False)
                                           )).long() for name in SEQUENCES}
    tensors["dense"] = torch.tensor(np.stack(batch.column("dense").to_numpy(
        zero_copy_only=False)))
    with torch.no_grad():
        return model(tensors)


def test_the_scorer_gives_the_models_own_ranking_without_excluded_items_in_source_ids():
    model = tiny_model(items=30)
    item_ids = np.array([-1, -1, *range(5000, 5030)])  # index i -> source id
    excluded = [[], [2, 3, 4], [7], []]
    batch = feature_batch(30, 4, excluded)
    scorer = Scorer.from_payload(model_payload(model, item_ids), top_k=5, batch_size=3,
                                 device=torch.device("cpu"))
    got = scorer.score_batch(batch)
    assert got.schema == ARROW_OUTPUT

    scores, propensity = forward(model, batch)
    probabilities = torch.softmax(scores, dim=1)
    assert got.column("user_id").to_pylist() == [100, 101, 102, 103]
    assert got.column("source").to_pylist() == ["taobao"] * 4
    assert got.column("purchase_propensity").to_numpy() == pytest.approx(
        propensity.numpy(), abs=1e-6)
    for row, top in enumerate(got.column("top_items").to_pylist()):
        ranked = [i for i in torch.argsort(scores[row], descending=True).tolist()
                  if i >= FIRST_ITEM and i not in excluded[row]][:5]
        assert [t["item_id"] for t in top] == [int(item_ids[i]) for i in ranked]
        assert [t["score"] for t in top] == pytest.approx(
            [float(probabilities[row, i]) for i in ranked], rel=1e-5)


def test_a_vocabulary_smaller_than_k_gives_every_item_left_and_no_padding():
    model = tiny_model(items=4)
    item_ids = np.array([-1, -1, 11, 12, 13, 14])
    scorer = Scorer(model, item_ids, top_k=20, device=torch.device("cpu"))
    got = scorer.score_batch(feature_batch(4, 2, [[], [2, 5]])).column("top_items").to_pylist()
    assert sorted(t["item_id"] for t in got[0]) == [11, 12, 13, 14]
    assert sorted(t["item_id"] for t in got[1]) == [12, 13]


def test_a_user_is_recommended_only_items_of_their_own_source():
    """One vocabulary holds two sources' items (indices 2-7 Taobao's, 8-13 RetailRocket's,
    with overlapping ids): each user's top items are their own source's, ranked as the model
    ranks them, and a user of a source the vocabulary lacks gets none."""
    model = tiny_model(items=12)
    item_ids = np.array([-1, -1, *range(1, 7), *range(1, 7)])
    item_sources = ["", "", *["taobao"] * 6, *["retailrocket"] * 6]
    sources = ["taobao", "retailrocket", "retailrocket", "diginetica"]
    batch = feature_batch(12, 4, [[], [8], [], []], sources)
    scorer = Scorer.from_payload(model_payload(model, item_ids, item_sources=item_sources),
                                 top_k=4, device=torch.device("cpu"))
    got = scorer.score_batch(batch)
    assert got.column("source").to_pylist() == sources
    scores, _ = forward(model, batch)
    own = {"taobao": range(2, 8), "retailrocket": range(8, 14), "diginetica": range(0)}
    excluded = [set(), {8}, set(), set()]
    for row, top in enumerate(got.column("top_items").to_pylist()):
        ranked = [i for i in torch.argsort(scores[row], descending=True).tolist()
                  if i in own[sources[row]] and i not in excluded[row]][:4]
        assert [t["item_id"] for t in top] == [int(item_ids[i]) for i in ranked]
    assert got.column("top_items").to_pylist()[3] == []


def test_deciles_are_exact_ranks_across_partitions_ties_by_user(spark):
    propensities = [0.9, 0.5, 0.5, 0.5, 0.1, 0.7, 0.3, 0.3, 0.8, 0.2, 0.6, 0.4, 0.5, 0.05,
                    0.95, 0.65, 0.35, 0.25, 0.15, 0.45, 0.55, 0.75, 0.85]
    # users 23..1, the odd ones of one source and the even of another: ties by source, then id
    rows = [("b" if user % 2 else "a", user, p)
            for user, p in zip(range(23, 0, -1), propensities, strict=True)]
    scored_df = spark.createDataFrame(
        rows, "source string, user_id bigint, purchase_propensity double").repartition(3)
    coalesce = "spark.sql.adaptive.coalescePartitions.enabled"
    spark.conf.set(coalesce, "false")  # or so few rows end in one partition
    try:
        ordered_df = sorted_by_propensity(scored_df).localCheckpoint()
    finally:
        spark.conf.unset(coalesce)
    sizes = partition_sizes(ordered_df)
    assert len(sizes) > 1  # the ranks really cross partitions
    ranked = sorted(rows, key=lambda r: (-r[2], r[0], r[1]))
    expected = [Row(source=s, user_id=u, purchase_propensity=p,
                    propensity_decile=(rank * 10) // 23 + 1)
                for rank, (s, u, p) in enumerate(ranked)]
    assertDataFrameEqual(with_deciles(ordered_df, sizes), expected)


def test_purchases_in_the_lookback_are_the_excluded_items(spark):
    cutoff = datetime(2019, 10, 4, tzinfo=UTC)
    events = [  # user, item index, type, time before the cutoff
        (1, 2, "purchase", timedelta(hours=1)), (1, 2, "purchase", timedelta(hours=2)),
        (1, 5, "purchase", timedelta(hours=3)), (1, 3, "view", timedelta(hours=1)),
        (1, 7, "purchase", timedelta(hours=13)),  # before the lookback
        (2, 1, "purchase", timedelta(hours=1)),  # out of vocabulary: nothing to exclude
        (3, 4, "purchase", timedelta(0)),  # at the cutoff: not in the features' past
        (4, 6, "purchase", timedelta(hours=12)),  # the lookback's first instant
    ]
    events_df = spark.createDataFrame(
        [("t", u, i, t, cutoff - before) for u, i, t, before in events]
        + [("r", 1, 8, "purchase", cutoff - timedelta(hours=1))],  # another source's user 1
        "source string, user_id bigint, item_idx int, event_type string, event_ts timestamp")
    got = purchased_items(events_df, cutoff, timedelta(hours=12), FIRST_ITEM)
    assertDataFrameEqual(got, [Row(source="t", user_id=1, exclude_idx=[2, 5]),
                               Row(source="t", user_id=4, exclude_idx=[6]),
                               Row(source="r", user_id=1, exclude_idx=[8])])
