"""Integration fixtures: warehouses built once per session and restored for each test."""

from __future__ import annotations

import pytest

from tests.integration.helpers import WarehouseStates, ingest, sessionize


@pytest.fixture(scope="session")
def warehouse_states(spark, tmp_path_factory) -> WarehouseStates:
    return WarehouseStates(spark, tmp_path_factory.mktemp("warehouse-states"))


@pytest.fixture
def rees46_day(warehouse_states, spark, data_root, rees46_file):
    """REES46 sample ingested and sessionized as run date 2019-10-01; the runs' counts."""
    return warehouse_states.start_from("rees46-2019-10-01", lambda: {
        "ingest": ingest(spark, data_root, "rees46", rees46_file, "2019-10-01"),
        "sessionize": sessionize(spark, data_root, "2019-10-01")})


@pytest.fixture
def rees46_all(warehouse_states, spark, data_root, rees46_file):
    """REES46 sample ingested and sessionized with run date `all`; the runs' counts."""
    return warehouse_states.start_from("rees46-all", lambda: {
        "ingest": ingest(spark, data_root, "rees46", rees46_file, "all"),
        "sessionize": sessionize(spark, data_root, "all")})
