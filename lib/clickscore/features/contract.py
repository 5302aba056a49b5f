"""The feature contract (`schemas/features/user_features.yaml`): what the features and labels
are, their lengths, codes and buckets, and the check that every reader of gold features
(training, scoring) runs before it trusts a frame."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickscore.core.errors import FeatureContractError
from clickscore.core.paths import schemas_dir


@dataclass(frozen=True)
class FeatureContract:
    version: int
    sequence_length: int
    next_items: int
    event_types: tuple[str, ...]
    time_gap_edges_s: tuple[float, ...]
    price_edges: tuple[float, ...]
    sequences: tuple[str, ...]
    window_arrays: tuple[str, ...]
    scalars: tuple[str, ...]
    labels: tuple[str, ...]


@cache
def feature_contract() -> FeatureContract:
    raw: dict[str, Any] = yaml.safe_load(
        (schemas_dir() / "features" / "user_features.yaml").read_text())
    return FeatureContract(
        version=int(raw["version"]), sequence_length=int(raw["sequence_length"]),
        next_items=int(raw["next_items"]), event_types=tuple(raw["event_types"]),
        time_gap_edges_s=tuple(float(e) for e in raw["time_gap_edges_s"]),
        price_edges=tuple(float(e) for e in raw["price_edges"]),
        sequences=tuple(raw["sequences"]), window_arrays=tuple(raw["window_arrays"]),
        scalars=tuple(raw["scalars"]), labels=tuple(raw["labels"]))


def check_feature_frame(df: DataFrame, contract: FeatureContract, *,
                        with_labels: bool = False) -> None:
    """Refuse a frame that does not match the feature contract: training and scoring call
    this before reading, so a model never meets features of another shape or version.

    Checks the columns and their types, the contract version, and (on one row) the array
    lengths; raises `FeatureContractError` naming what differs.
    """
    expected: dict[str, str] = {c: "array<int>" for c in contract.sequences}
    expected |= {c: "array<float>" for c in contract.window_arrays}
    expected |= {c: "float" for c in contract.scalars if c != "seq_length"}
    expected |= {"seq_length": "int", "feature_version": "int", "vocab_version": "string"}
    if with_labels:
        expected |= {"purchased_within_horizon": "int", "next_items": "array<int>",
                     "next_items_len": "int", "target_seq": "array<int>"}
    found = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = [f"{name}: expected {kind}, found {found.get(name, 'nothing')}"
                for name, kind in expected.items() if found.get(name) != kind]
    if not problems:
        lengths = {c: contract.sequence_length for c in contract.sequences}
        if with_labels:
            lengths |= {"next_items": contract.next_items,
                        "target_seq": contract.sequence_length}
        # one scan: the versions present and, per array column, the largest length error
        found_row = df.select(
            F.collect_set("feature_version").alias("_versions"),
            *[F.max(F.abs(F.size(c) - n)).alias(c) for c, n in lengths.items()]).first()
        versions = set(found_row["_versions"]) if found_row else set()
        if versions - {contract.version}:
            problems.append(f"feature_version: expected {contract.version}, found "
                            f"{sorted(versions)}")
        problems += [f"{c}: arrays must have length {lengths[c]}"
                     for c in lengths if found_row and found_row[c]]
    if problems:
        raise FeatureContractError(contract.version, problems)
