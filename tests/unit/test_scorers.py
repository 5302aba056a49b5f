"""The scorers a model version bundles, on their own: bootstrap intervals and ties, the head
choice against the best baseline, calibration, baselines serving a head in scoring, and a
bundle that loads without running code."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from clickscore.model.baselines import Calibrator, ItemStats, fit_propensity_baselines
from clickscore.model.bundle import BundleError, ScorerBundle, choose_head
from clickscore.model.metrics import (
    Estimate,
    auc,
    auc_estimate,
    average_precision,
    compare,
    estimate,
    expected_calibration_error,
    mean_estimate,
)
from clickscore.model.network import SEQUENCES
from clickscore.scoring.inference import Scorer, model_payload
from tests.unit.test_scoring import N_DENSE, feature_batch, tiny_model


def test_a_mean_of_two_users_has_the_interval_worked_out_by_hand():
    # resampling {0, 1} twice gives means 0, 1/2, 1 with chances 1/4, 1/2, 1/4: the 2.5th
    # and 97.5th percentiles are 0 and 1
    got = mean_estimate(np.array([0.0, 1.0]), resamples=2000, seed=1)
    assert (got.value, got.low, got.high, got.n) == (0.5, 0.0, 1.0, 2)
    same = mean_estimate(np.full(50, 0.3))
    assert (same.low, same.high) == pytest.approx((0.3, 0.3))
    # the rank formula is scikit-learn's ROC-AUC (its documentation's example: 0.75)
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    wide = auc_estimate(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert wide.low < 0.75 < wide.high or wide.low <= 0.75 <= wide.high
    assert format(Estimate(0.5, 0.25, 0.75, 2)) == "0.5000 [0.2500, 0.7500]"


def test_pr_auc_and_calibration_error_over_many_resamples_at_once_equal_each_one_alone():
    """PR-AUC and ECE compute along an axis (every bootstrap resample in one call): each row
    equals scikit-learn's average_precision_score and the ECE of that row alone, with ties
    (a tied run of probabilities is one threshold) and a resample of one class (NaN)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    p = np.round(rng.random((40, 30)), 1)  # rounded: many ties
    labels = (rng.random((40, 30)) < p).astype(float)
    labels[0] = 0.0  # no positive: undefined
    labels[1] = 1.0  # no negative: undefined
    together = average_precision(p, labels)
    assert np.isnan(together[:2]).all()
    assert together[2:] == pytest.approx([average_precision_score(y, q)
                                          for q, y in zip(p[2:], labels[2:], strict=True)])
    # scikit-learn's own example
    assert average_precision(np.array([0.1, 0.4, 0.35, 0.8]),
                             np.array([0, 0, 1, 1])) == pytest.approx(0.8333333)

    def ece_alone(q: np.ndarray, y: np.ndarray) -> float:  # the definition, bin by bin
        which = np.minimum((q * 10).astype(int), 9)
        return sum((which == b).mean() * abs(y[which == b].mean() - q[which == b].mean())
                   for b in range(10) if (which == b).any())

    assert expected_calibration_error(p, labels) == pytest.approx(
        [ece_alone(q, y) for q, y in zip(p, labels, strict=True)])
    # the interval is that of the same resamples taken one at a time
    q, y = p.ravel(), labels.ravel()
    got = estimate(average_precision, q, y, resamples=300, seed=5)
    draws = np.random.default_rng(5).integers(0, len(q), size=(100, len(q)))
    alone = [average_precision_score(y[row], q[row]) for row in draws]
    first = estimate(average_precision, q, y, resamples=100, seed=5)
    assert (first.low, first.high) == pytest.approx(tuple(np.percentile(alone, [2.5, 97.5])))
    assert got.value == pytest.approx(average_precision_score(y, q))
    assert got.low < got.value < got.high and got.n == len(q)


def test_a_difference_inside_the_interval_is_a_tie_and_outside_it_a_win():
    rng = np.random.default_rng(0)
    a = rng.random(400)
    noisy = a + rng.normal(0, 0.3, 400)  # the same mean, very different per user
    assert compare(a, noisy)[0] == "tie"
    verdict, difference = compare(a + 0.05, a)
    assert verdict == "better" and difference.low > 0 and difference.value == pytest.approx(0.05)
    assert compare(a, a + 0.05)[0] == "worse"
    # probabilities: the same ranking is a tie, a better ranking a win
    labels = (rng.random(400) < a).astype(float)
    assert compare(a, a ** 2, labels)[0] == "tie"  # monotone: the same ROC-AUC
    assert compare(a, rng.random(400), labels)[0] == "better"


def estimates(values: dict[str, np.ndarray]) -> dict[str, Estimate]:
    return {n: mean_estimate(v) for n, v in values.items()}


def test_an_untrained_model_leaves_the_head_to_the_best_baseline_and_a_better_one_takes_it():
    rng = np.random.default_rng(3)
    baseline = rng.random(300) * 0.4
    untrained = {"model": rng.random(300) * 0.1, "most_popular": baseline * 0.5,
                 "item_knn": baseline}
    choice = choose_head("next_item", estimates(untrained), untrained, None, margin=0.0)
    assert (choice.scorer, choice.best_baseline, choice.verdict) == ("item_knn", "item_knn",
                                                                     "worse")
    tied = {**untrained, "model": baseline + rng.normal(0, 0.2, 300)}
    assert choose_head("next_item", estimates(tied), tied, None, 0.0).scorer == "item_knn"
    better = {**untrained, "model": baseline + 0.1}
    choice = choose_head("next_item", estimates(better), better, None, margin=0.0)
    assert (choice.scorer, choice.verdict) == ("model", "better")
    # better, but not by more than the margin: the baseline keeps it
    assert choose_head("next_item", estimates(better), better, None, 0.2).scorer == "item_knn"


def test_isotonic_calibration_lowers_the_error_of_a_skewed_scorer():
    rng = np.random.default_rng(5)
    truth = rng.random(4000) * 0.3
    labels = (rng.random(4000) < truth).astype(float)
    skewed = np.sqrt(truth)  # ranks right, probabilities far too high
    calibrator = Calibrator.fit(skewed[:2000], labels[:2000])
    assert calibrator is not None
    before = expected_calibration_error(skewed[2000:], labels[2000:])
    after = expected_calibration_error(calibrator(skewed[2000:]), labels[2000:])
    assert before > 0.1 and after < 0.03, (before, after)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    assert Calibrator.fit(skewed, np.zeros(4000)) is None  # one class: nothing to fit


def small_bundle(items: int = 30) -> ScorerBundle:
    model = tiny_model(items)
    rng = np.random.default_rng(1)
    train = [{"item_seq": torch.from_numpy(rng.integers(0, items + 2, (64, 6))),
              "time_gap_seq": torch.from_numpy(rng.integers(1, 9, (64, 6))),
              "dense": torch.from_numpy(rng.random((64, N_DENSE), dtype=np.float32)),
              "purchased_within_horizon": torch.from_numpy((rng.random(64) < 0.3)
                                                           .astype(np.float32))}]
    stats = ItemStats.from_batches(train, model.cfg.item_vocab_size, session_bucket=6)
    bundle = ScorerBundle(model=model, stats=stats, propensity=fit_propensity_baselines(stats, 0))
    bundle.calibrators["hist_gradient_boosting"] = Calibrator(x=(0.0, 1.0), y=(0.1, 0.2))
    return bundle


def test_a_baseline_serving_a_head_scores_as_in_evaluation_calibrated():
    bundle = small_bundle()
    item_ids = np.array([-1, -1, *range(5000, 5030)])
    batch = feature_batch(30, 4, [[], [2, 3], [], []])
    payload = model_payload(bundle, item_ids, {"next_item": "most_popular",
                                               "propensity": "hist_gradient_boosting"})
    scorer = Scorer.from_payload(payload, top_k=5, device=torch.device("cpu"))
    got = scorer.score_batch(batch)

    tensors = {n: torch.tensor(np.stack(batch.column(n).to_numpy(zero_copy_only=False))).long()
               for n in SEQUENCES}
    tensors["dense"] = torch.tensor(np.stack(batch.column("dense").to_numpy(
        zero_copy_only=False)))
    raw = bundle.raw_propensity("hist_gradient_boosting", tensors)
    assert got.column("purchase_propensity").to_numpy() == pytest.approx(0.1 + 0.1 * raw)
    popularity = bundle.stats.popularity
    for row, top in enumerate(got.column("top_items").to_pylist()):
        excluded = [[], [2, 3], [], []][row]
        ranked = [i for i in np.argsort(-popularity, kind="stable") if i >= 2
                  and i not in excluded][:5]
        assert [popularity[i] for i in ranked] == [popularity[t["item_id"] - 4998]
                                                   for t in top]
        assert all(0 < t["score"] <= 1 for t in top)


def test_a_bundle_reads_back_and_a_pickle_in_its_place_runs_nothing(tmp_path):
    bundle = small_bundle()
    again = ScorerBundle.from_bytes(bundle.to_bytes())
    batch = {n: torch.zeros((2, 6), dtype=torch.long) for n in SEQUENCES}
    batch["dense"] = torch.ones((2, N_DENSE))
    for name in ("model", "logistic_regression", "hist_gradient_boosting"):
        assert again.raw_propensity(name, batch) == pytest.approx(
            bundle.raw_propensity(name, batch))
    assert torch.equal(again.next_item_scores("item_knn", batch),
                       bundle.next_item_scores("item_knn", batch))

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with pytest.raises(BundleError, match="is not a clickscore bundle: UnpicklingError"):
        ScorerBundle.from_bytes(pickle.dumps({"format": 1, "state": Exploit()}))
    buffer = io.BytesIO()
    torch.save({"format": 1, "x": Exploit()}, buffer)
    with pytest.raises(BundleError, match="UnpicklingError"):
        ScorerBundle.from_bytes(buffer.getvalue())
    assert not marker.exists()
