"""`clickscore dq run`: validate a published table's partition on demand.

The batch is the partition of the run date (by the table's partition column) or, for `all`,
the whole table. Checks that need a stage run's own figures (its reconciled row count) are
not evaluated; results are recorded in ops.dq_results with `published` null.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore.audit.config import DqRunConfig
from clickscore.core.contracts import table_schema
from clickscore.core.delta import read_table
from clickscore.core.errors import DataQualityError
from clickscore.dq.gate import render_data_docs, validate_batch
from clickscore.dq.results import BatchValidation, record_results
from clickscore.features.contract import feature_contract
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.sources import source_names
from clickscore.sessionize.config import SessionizeConfig

log = logging.getLogger(__name__)


def run_dq(spark: SparkSession, cfg: DqRunConfig) -> BatchValidation:
    """Validate `cfg.table` for `cfg.run_date`; raise `DataQualityError` on a critical failure."""
    batch_df = read_table(spark, cfg.table)
    contract = feature_contract()
    parameters: dict[str, object] = {
        # the stages' defaults and the feature contract, for the checks that take them
        "max_price": IngestConfig.max_price,
        "sources": list(source_names()),
        "max_session_seconds": int(SessionizeConfig.max_session_length.total_seconds()),
        "sequence_length": contract.sequence_length,
        "next_items": contract.next_items,
        # no stored event can be later than now plus the clock skew ingest allowed
        "latest_event_ts": datetime.now(UTC) + IngestConfig.future_skew,
    }
    if not cfg.run_date.is_all:
        schema = table_schema(cfg.table)
        types = {c.name: c.type for c in schema.columns}
        (date_column,) = [c for c in schema.partition_by if types[c] == "date"]
        batch_df = batch_df.where(F.col(date_column) == F.lit(cfg.run_date.day))
        parameters["window_start"] = cfg.run_date.start()
        parameters["window_end"] = cfg.run_date.start() + timedelta(days=1)
    validation = validate_batch(spark, batch_df, table=cfg.table, run_id=str(uuid.uuid4()),
                                job="dq_run", run_date=cfg.run_date, data_root=cfg.data_root,
                                parameters=parameters)
    record_results(spark, [validation], published=None)
    render_data_docs(cfg.data_root, [validation])
    if validation.critical_failures:
        raise DataQualityError(str(cfg.run_date),
                               [(cfg.table, r.check, r.describe())
                                for r in validation.critical_failures])
    return validation
