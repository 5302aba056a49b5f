"""The FeatureSpec: one value for how features were built, stored with the model (JSON), read
back unchanged, compared field by field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clickscore.model.config import ModelConfig
from clickscore.model.spec import FeatureSpec

WINDOWS = (("1h", timedelta(hours=1)), ("6h", timedelta(hours=6)))


def spec(**overrides) -> FeatureSpec:
    values = dict(feature_version=1, vocab_version="vabc", lookback=timedelta(hours=12),
                  windows=WINDOWS, horizon=timedelta(hours=6))
    return FeatureSpec.of(**{**values, **overrides})


def test_it_round_trips_through_json_and_gives_the_durations_back():
    built = spec()
    assert built.to_dict() == {"feature_version": 1, "vocab_version": "vabc",
                               "lookback_s": 43200.0, "windows": [["1h", 3600.0],
                                                                 ["6h", 21600.0]],
                               "horizon_s": 21600.0}
    assert FeatureSpec.from_json(built.to_json()) == built
    assert built.lookback == timedelta(hours=12) and built.window_spans == WINDOWS
    assert built.labels == ["1h", "6h"]


def test_features_at_a_cutoff_drop_the_horizon_and_take_overrides():
    at = spec().at_cutoff(lookback=timedelta(days=1))
    assert at.horizon_s is None and at.lookback == timedelta(days=1)
    assert at.window_spans == WINDOWS
    assert spec().at_cutoff().differences(at) == ["lookback_s 86400.0, wanted 43200.0"]
    assert at.differences(None) == ["no feature spec recorded"]


def test_an_impossible_spec_is_refused():
    with pytest.raises(ValueError, match="exceed the lookback"):
        spec(lookback=timedelta(hours=2))
    with pytest.raises(ValueError, match="at least one aggregation window"):
        spec(windows=())


def test_the_model_config_stores_the_spec_and_it_must_agree_with_the_model():
    values = dict(item_vocab_size=10, category_vocab_size=4, sequence_length=5,
                  n_event_types=5, n_time_gap_buckets=9, n_price_buckets=10, n_dense=4,
                  feature_version=1, vocab_version="vabc")
    cfg = ModelConfig(**values, features=spec(), training_set="ts0123456789ab")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["features"]["lookback_s"] == 43200.0
    with pytest.raises(ValueError, match="the feature spec says contract v1 with vocabulary "
                                         "vother, the model v1 with vabc"):
        ModelConfig(**values, features=spec(vocab_version="vother"))
