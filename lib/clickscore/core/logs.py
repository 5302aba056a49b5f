"""Quiet, legible output: clickscore's own progress at INFO, everything else at WARNING.

Called before Spark or Great Expectations is imported, so neither can switch on INFO logging
for its own modules first. `--verbose` shows clickscore's debug lines and third-party INFO
(Spark's log4j too, through $CLICKSCORE_SPARK_LOG_LEVEL).
"""

from __future__ import annotations

import logging
import os

SPARK_LOG_LEVEL_ENV = "CLICKSCORE_SPARK_LOG_LEVEL"
# chatty at INFO even when their parent logger is quiet
_THIRD_PARTY = ("py4j", "great_expectations", "urllib3", "matplotlib", "mlflow", "alembic")
# warnings that repeat a deliberate choice (mlflow.pytorch: the registry stores the model as
# pickle because its forward takes a dict, which the traced pt2 format cannot take; petastorm's
# converter: float32 is the dtype the model wants, and its cache files are small because the
# frames are)
_DELIBERATE = ("mlflow.pytorch", "petastorm.spark.spark_dataset_converter")


def configure_logging(verbose: bool = False) -> None:
    """One handler on the root logger; clickscore at INFO (DEBUG when verbose), third-party
    loggers at WARNING (INFO when verbose)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose
        else "%(asctime)s %(message)s",
        datefmt="%H:%M:%S", force=True)
    logging.getLogger("clickscore").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for name in _DELIBERATE:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    if verbose:
        os.environ.setdefault(SPARK_LOG_LEVEL_ENV, "INFO")
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow loads
