"""The PyTorch model and its metrics, on tensors: hand-computed metric cases, causality, the
loss only at positions with a target, overfitting a tiny set, and version refusal."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from clickscore.model.config import IncompatibleFeaturesError, ModelConfig, ModelHyper
from clickscore.model.metrics import (
    all_targets_hits,
    expected_calibration_error,
    first_target_hits,
    gains_by_decile,
)
from clickscore.model.network import SEQUENCES, SequenceModel

NEG = float("-inf")


def test_first_target_metrics_on_a_hand_ranked_case():
    scores = torch.tensor([[NEG, NEG, 0.9, 0.1, 0.5, 0.3],
                           [NEG, NEG, 0.8, 0.1, 0.5, 0.3],
                           [NEG, NEG, 0.8, 0.1, 0.5, 0.3]])
    targets = torch.tensor([4, 2, 3])  # ranks 2, 1 and 4
    got = first_target_hits(scores, targets, k=2)
    assert got["recall@2"].tolist() == [1.0, 1.0, 0.0]
    assert got["ndcg@2"].tolist() == pytest.approx([1 / math.log2(3), 1.0, 0.0])
    assert got["mrr@2"].tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_all_targets_metrics_on_a_hand_ranked_case():
    top = torch.tensor([[2, 5, 3], [4, 6, 7]])
    targets = torch.tensor([[5, 7, 0, 0], [4, 6, 1, 0]])  # 1 (OOV) is never relevant
    got = all_targets_hits(top, targets, k=3)
    assert got["recall_all@3"].tolist() == pytest.approx([0.5, 1.0])
    first_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert got["ndcg_all@3"].tolist() == pytest.approx([first_ndcg, 1.0])


def test_calibration_error_and_gains_on_hand_computed_cases():
    # bin 0.1: mean 0.1, observed 0.5; bin 0.9: mean 0.9, observed 1.0; each half the rows
    assert expected_calibration_error(np.array([0.1, 0.1, 0.9, 0.9]),
                                      np.array([0, 1, 1, 1])) == pytest.approx(0.25)
    p = np.linspace(1, 0.05, 20)
    labels = np.array([1, 1, 0, 1] + [0] * 16)
    assert gains_by_decile(p, labels).tolist() == pytest.approx(
        [2 / 3, 1 / 3] + [0.0] * 8)


def tiny_config(**overrides) -> ModelConfig:
    """Sizes and versions of a toy vocabulary; hyper-parameter overrides go to ModelHyper."""
    choices = {f.name for f in dataclasses.fields(ModelHyper)}
    # the bonus path too; the anchor off, so a test of another part reads its scores
    # unscaled (the anchor's own test, and the overfitting test with the defaults, turn it on)
    hyper = dict(d_model=32, n_heads=2, n_layers=2, dropout=0.0, repeat=True, anchored=False)
    values = dict(item_vocab_size=40, category_vocab_size=6, sequence_length=8,
                  n_event_types=5, n_time_gap_buckets=9, n_price_buckets=10, n_dense=4,
                  feature_version=1, vocab_version="vtest")
    hyper |= {k: v for k, v in overrides.items() if k in choices}
    values |= {k: v for k, v in overrides.items() if k not in choices}
    return ModelConfig(**values, hyper=ModelHyper(**hyper))


def tiny_batch(items: torch.Tensor, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    real = items > 0
    return {
        "item_seq": items,
        "event_type_seq": real.long(),
        "category_seq": real.long() * 2,
        "time_gap_seq": real.long() * 3,
        "price_seq": real.long() * 4,
        "dense": torch.rand(items.shape[0], cfg.n_dense),
        "target_seq": torch.zeros_like(items),
        "purchased_within_horizon": torch.zeros(items.shape[0]),
    }


def test_a_position_sees_only_earlier_events_and_padding_changes_nothing():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = SequenceModel(cfg).eval()
    items = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9]])
    hidden = model.encode(tiny_batch(items, cfg))
    changed = items.clone()
    changed[0, -1] = 30
    hidden_changed = model.encode(tiny_batch(changed, cfg))
    assert torch.allclose(hidden[0, :-1], hidden_changed[0, :-1], atol=1e-6)
    assert not torch.allclose(hidden[0, -1], hidden_changed[0, -1])
    assert torch.isfinite(hidden).all()  # fully padded positions do not turn into NaN
    with torch.no_grad():
        scores, propensity = model(tiny_batch(items, cfg))
    assert scores.shape == (1, 40) and (scores[:, :2] == NEG).all()
    assert 0 < float(propensity) < 1


def test_the_next_item_loss_counts_only_positions_with_a_target():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = SequenceModel(cfg).eval()
    batch = tiny_batch(torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]]), cfg)
    batch["target_seq"] = torch.tensor([[0, 0, 0, 0, 9, 1, 0, 11]])  # 1 (OOV) is no target
    hidden = model.encode(batch)
    expected = F.cross_entropy(model.item_scores(
        hidden[0, [4, 7]], batch["item_seq"][[0, 0]], torch.tensor([4, 7])),
        torch.tensor([9, 11]))
    assert model.losses(batch)["next_item"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_overfitting_a_tiny_set_reaches_recall_at_20_near_1(loss):
    torch.manual_seed(1)
    cfg = tiny_config(item_vocab_size=400, loss=loss, negatives=64, sequence_length=6,
                      anchored=True)  # as trained by default
    follow = torch.randperm(398) + 2  # item i is always followed by follow[i - 2]
    starts = torch.randint(2, 400, (64,))
    rows = [starts]
    for _ in range(6):
        rows.append(follow[rows[-1] - 2])
    chain = torch.stack(rows, dim=1)  # (64, 7)
    batch = tiny_batch(chain[:, :6], cfg)
    batch["target_seq"] = chain[:, 1:]
    model = SequenceModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(300):
        optimizer.zero_grad()
        model.losses(batch)["total"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores, _ = model(batch)
    recall = first_target_hits(scores, chain[:, 6], k=20)["recall@20"].mean().item()
    assert recall >= 0.95


def test_the_popularity_prior_ranks_like_most_popular_and_travels_with_the_weights():
    torch.manual_seed(2)
    cfg = tiny_config(repeat=False, popularity_prior=True)
    counts = torch.zeros(40, dtype=torch.long)
    counts[2:] = torch.randperm(38) * 3  # distinct counts: a strict popularity order
    counts[0], counts[1] = 500, 500  # padding and OOV counts are ignored
    model = SequenceModel(cfg).eval()
    model.set_item_prior(counts)
    prior = model.item_prior
    assert prior[:2].tolist() == [0.0, 0.0]
    assert prior[2:].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert prior[5] - prior[6] == pytest.approx(math.log((counts[5] + 1) / (counts[6] + 1)),
                                                abs=1e-5)
    flat = torch.zeros(3, cfg.hyper.d_model)  # a state that says nothing: popularity decides
    ranked = model.item_scores(flat).argsort(dim=1, descending=True)[:, :38]
    assert (ranked == (counts[2:].argsort(descending=True) + 2)).all()
    restored = SequenceModel(cfg)
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.item_prior, prior)
    without = SequenceModel(tiny_config(repeat=False, popularity_prior=False)).eval()
    without.set_item_prior(counts)  # stored, but not applied
    assert (without.item_scores(flat)[:, 2:] == 0).all()
    with pytest.raises(ValueError, match="vocabulary"):
        model.set_item_prior(torch.ones(39))


def test_an_anchored_model_starts_from_the_prior_and_training_moves_it_away():
    """`anchored`: the history's match with the item embeddings is scaled by a learned factor
    that starts at 0, so an untrained model ranks like most-popular whatever the history says,
    and a training step moves the factor (and the ranking) off the prior."""
    torch.manual_seed(3)
    counts = torch.zeros(40, dtype=torch.long)
    counts[2:] = torch.randperm(38) * 3
    popular = counts[2:].argsort(descending=True) + 2
    states = torch.randn(4, 32)  # states that do say something
    ranks = {}
    for anchored in (False, True):
        torch.manual_seed(4)  # the same weights with and without the anchor
        model = SequenceModel(tiny_config(repeat=False, anchored=anchored)).eval()
        model.set_item_prior(counts)
        ranks[anchored] = model.item_scores(states).argsort(dim=1, descending=True)[:, :38]
    assert (ranks[True] == popular).all()
    assert not (ranks[False] == popular).all()  # without it the embeddings move the ranking

    model.train()
    items = torch.tensor([[0, 0, 5, 6, 7, 8, 9, 10]])
    batch = tiny_batch(items, model.cfg)
    batch["target_seq"] = torch.tensor([[0, 0, 6, 7, 8, 9, 10, 11]])
    optimizer = torch.optim.AdamW(model.parameter_groups(1e-2, 0.0))
    model.losses(batch)["total"].backward()
    optimizer.step()
    assert model.anchor_scale.item() != 0.0


def test_a_config_saved_before_a_switch_existed_loads_with_it_off_and_its_weights_fit():
    """`repeat` and `anchored` are on by default; a model registered before `anchored`
    existed (its config has no such key, its weights no `anchor_scale`) still loads, as the
    model it was."""
    old = SequenceModel(tiny_config(repeat=False, anchored=False))
    saved = old.cfg.to_dict()
    del saved["hyper"]["anchored"], saved["hyper"]["repeat"]
    loaded = ModelConfig.from_dict(saved)
    assert (loaded.hyper.repeat, loaded.hyper.anchored) == (False, False)
    SequenceModel(loaded).load_state_dict(old.state_dict())  # strict: every key fits
    assert ModelHyper().repeat and ModelHyper().anchored  # today's defaults
    with pytest.raises(RuntimeError, match="anchor_scale"):  # read with today's defaults
        SequenceModel(dataclasses.replace(loaded, hyper=ModelHyper(
            **{**dataclasses.asdict(loaded.hyper), "anchored": True}))).load_state_dict(
            old.state_dict())


def test_items_of_a_category_share_its_output_embedding():
    torch.manual_seed(3)
    cfg = tiny_config(repeat=False, category_vocab_size=6, category_output=True)
    model = SequenceModel(cfg).eval()
    with torch.no_grad():
        model.item.weight.zero_()  # only the category part is left to score items
        model.category_out.weight.normal_()
    categories = torch.zeros(40, dtype=torch.long)
    categories[2:20], categories[20:] = 3, 5
    model.set_item_categories(categories)
    state = model.category_out.weight[3].detach().clone().unsqueeze(0)  # at category 3
    scores = model.item_scores(state)[0]
    assert torch.allclose(scores[2:20], scores[2]) and torch.allclose(scores[20:], scores[20])
    assert scores[2] > scores[20]
    expected = model.category_out.weight[3] @ model.category_out.weight[5]
    assert scores[20].item() == pytest.approx(expected.item(), rel=1e-5)
    # what a category learns reaches each of its items: one gradient step on item 2 as the
    # target raises item 19 (same category, never a target) and lowers item 25
    model.train()
    state = torch.randn(1, cfg.hyper.d_model) * 0.1  # no category dominates yet
    before = model.item_scores(state)[0].detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    F.cross_entropy(model.item_scores(state), torch.tensor([2])).backward()
    optimizer.step()
    after = model.item_scores(state)[0].detach()
    assert after[19] > before[19] and after[25] < before[25]
    without = SequenceModel(tiny_config(repeat=False, category_output=False)).eval()
    without.set_item_categories(categories)
    with torch.no_grad():
        without.item.weight.zero_()
    assert (without.item_scores(state)[0, 2:] == 0).all()
    with pytest.raises(ValueError, match="category indices"):
        model.set_item_categories(torch.full((40,), 6))


def test_a_model_refuses_features_of_another_version_naming_both():
    cfg = tiny_config(feature_version=1, vocab_version="vaaa")
    cfg.check_features(1, "vaaa")
    with pytest.raises(IncompatibleFeaturesError,
                       match="contract v1 with vocabulary vaaa; these features are contract "
                             "v2 with vocabulary vbbb"):
        cfg.check_features(2, "vbbb")


def test_the_model_package_imports_no_spark():
    probe = ("import sys, clickscore.model.network, clickscore.model.metrics, "
             "clickscore.model.config; print('pyspark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
    assert set(SEQUENCES) == {"item_seq", "event_type_seq", "category_seq", "time_gap_seq",
                              "price_seq"}


def test_one_device_choice_for_training_and_scoring(monkeypatch, capsys):
    from clickscore.model.device import pick_device

    if torch.cuda.is_available():
        pytest.skip("the CPU fallback is what this machine can show")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert pick_device("score", "scoring") == torch.device("cpu")
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert pick_device("train rank 1", "training") == torch.device("cpu")
    assert capsys.readouterr().out.endswith(
        "train rank 1: Spark assigned GPU 0 but CUDA sees no device here; training on the "
        "CPU\n")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pick_device("score", "scoring", gpu_address="3") == torch.device("cpu")
    assert "score: Spark assigned GPU 3 but CUDA sees no device here; scoring on the CPU" in \
        capsys.readouterr().out


def test_one_accumulator_averages_each_metric_over_its_own_users():
    from clickscore.model.metrics import NextItemMetrics

    metrics = NextItemMetrics(k=2)
    scores = torch.tensor([[-9.0, -9.0, 0.1, 0.9, 0.5, 0.2],    # ranks: 3, 4, 2, 5
                           [-9.0, -9.0, 0.9, 0.1, 0.5, 0.2],
                           [-9.0, -9.0, 0.3, 0.2, 0.1, 0.0]])
    next_items = torch.tensor([[3, 4, 0],   # first at rank 1; both in the top 2
                               [1, 5, 0],   # first is out of vocabulary; 5 ranked 3rd
                               [0, 0, 0]])  # nothing after the cutoff: left out
    metrics.add(scores[:2], next_items[:2])
    metrics.add(scores[2:], next_items[2:])
    assert metrics.users == {"first": 1, "all": 2}
    got = metrics.means()
    assert list(got) == ["mrr@2", "ndcg@2", "recall@2", "ndcg_all@2", "recall_all@2"]
    assert got["recall@2"] == got["mrr@2"] == got["ndcg@2"] == 1.0
    assert got["recall_all@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert got["ndcg_all@2"] == pytest.approx((1.0 + 0.0) / 2)


def test_the_category_affinity_bonus_is_each_categorys_share_of_the_history_so_far():
    torch.manual_seed(4)
    cfg = tiny_config(repeat=False, category_affinity=True, sequence_length=4)
    model = SequenceModel(cfg).eval()
    with torch.no_grad():
        model.item.weight.zero_()  # only the bonus is left to score items
    categories = torch.zeros(40, dtype=torch.long)
    categories[2:20], categories[20:30], categories[30:] = 2, 3, 1  # 1: unknown category
    model.set_item_categories(categories)
    history = torch.tensor([[0, 5, 25, 6]])  # one padding slot; categories 2, 3, 2
    cats = torch.tensor([[0, 2, 3, 2]])
    state = torch.zeros(1, cfg.hyper.d_model)  # the gate starts at softplus(bias) = 1
    scores = model.item_scores(state, history, categories=cats)[0]
    assert scores[2].item() == pytest.approx(2 / 3) and scores[19].item() == pytest.approx(2 / 3)
    assert scores[20].item() == pytest.approx(1 / 3)
    assert (scores[30:] == 0).all()  # an unknown category earns nothing
    # at position 2 only the history up to it counts (categories 2 and 3, one each)
    at_two = model.item_scores(state, history, torch.tensor([2]), cats)[0]
    assert at_two[2].item() == pytest.approx(0.5) and at_two[20].item() == pytest.approx(0.5)
    # the training loss sees the same bonus as scoring
    batch = tiny_batch(history, cfg) | {"category_seq": cats,
                                        "target_seq": torch.tensor([[0, 0, 0, 21]])}
    expected = F.cross_entropy(model.item_scores(
        model.encode(batch)[0, [3]], history, torch.tensor([3]), cats), torch.tensor([21]))
    assert model.losses(batch)["next_item"].item() == pytest.approx(expected.item(), rel=1e-5)
    without = SequenceModel(tiny_config(repeat=False, category_affinity=False,
                                        sequence_length=4)).eval()
    without.set_item_categories(categories)
    with torch.no_grad():
        without.item.weight.zero_()
    assert (without.item_scores(state, history, categories=cats)[0, 2:] == 0).all()


def test_the_cutoff_weight_weighs_the_last_positions_loss_against_the_history():
    torch.manual_seed(5)
    batch_items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    targets = torch.tensor([[0, 0, 4, 5, 6, 7, 8, 12]])
    losses = {}
    for weight in (1.0, 4.0):
        torch.manual_seed(5)
        model = SequenceModel(tiny_config(cutoff_weight=weight)).eval()
        batch = tiny_batch(batch_items, model.cfg) | {"target_seq": targets}
        hidden = model.encode(batch)
        positions = torch.arange(2, 8)
        each = F.cross_entropy(model.item_scores(
            hidden[0, positions], batch["item_seq"][[0] * 6], positions,
            batch["category_seq"][[0] * 6]), targets[0, 2:], reduction="none")
        expected = (each[:5].sum() + weight * each[5]) / (5 + weight)
        losses[weight] = model.losses(batch)["next_item"].item()
        assert losses[weight] == pytest.approx(expected.item(), rel=1e-5)
    assert losses[1.0] != pytest.approx(losses[4.0])
    with pytest.raises(ValueError, match="cutoff_weight"):
        tiny_config(cutoff_weight=0.0)
