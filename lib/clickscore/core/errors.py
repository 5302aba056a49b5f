"""Typed failures: each says what was expected, what was found, and where."""

from __future__ import annotations

from collections.abc import Iterable


class ClickscoreError(Exception):
    """Base class for failures that stop a run before anything is published."""


class InputNotFoundError(ClickscoreError):
    """The input path matches no file."""

    def __init__(self, path: str) -> None:
        super().__init__(f"input not found: no file matches {path!r}")
        self.path = path


class DataRootError(ClickscoreError):
    """A part of the data root that must be local (the embedded catalog and its lock, the
    MLflow store, checkpoints, reports) has no local place: the root is a URI and
    $CLICKSCORE_LOCAL_DIR is not set."""


class CatalogBusyError(ClickscoreError):
    """Another process holds a data root's embedded catalog for longer than we wait."""

    def __init__(self, data_root: str, holder: str, waited_s: float) -> None:
        super().__init__(
            f"data root {data_root} is busy: its embedded catalog admits one process and "
            f"{holder} holds it; gave up after {waited_s:.0f} s (set CLICKSCORE_CATALOG_WAIT_S "
            "to wait longer, or use a shared metastore)")
        self.data_root = data_root


def java_cause(exc: Exception) -> str:
    """The root cause of a JVM error in one line (its last `Caused by:`), not py4j's
    `An error occurred while calling o466.count`."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    caused = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by:")]
    return (caused[-1] if caused else lines[-1] if lines else type(exc).__name__)[:300]


# what a JVM failure says when the machine, not the input, gave out
RESOURCE_CAUSES = (("OutOfMemoryError", "memory"), ("No space left on device", "disk space"),
                   ("Disk quota exceeded", "disk space"))


class ResourceExhaustedError(ClickscoreError):
    """A run ran out of memory or disk: the input is not at fault."""

    def __init__(self, what: str, resource: str, cause: str) -> None:
        super().__init__(
            f"{what} ran out of {resource} ({cause}); the input is not at fault: give the "
            "driver more memory (CLICKSCORE_DRIVER_MEMORY, spark.driver.memory) or free disk "
            "under spark.local.dir, then rerun")
        self.resource = resource


def input_error(path: str, exc: Exception) -> ClickscoreError:
    """The error for a JVM failure while reading `path`: out of memory or disk when the JVM
    says so (its whole trace is searched), else the file is unreadable, with the cause."""
    cause = java_cause(exc)
    text = str(exc)
    for marker, resource in RESOURCE_CAUSES:
        if marker in text:
            return ResourceExhaustedError(f"reading {path}", resource, cause)
    return UnreadableInputError(path, cause)


class UnreadableInputError(ClickscoreError):
    """A file exists but cannot be read (corrupt compression, permissions, ...)."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"cannot read input file {path!r}: {cause}")
        self.path = path


class QueryError(ClickscoreError):
    """Spark refused or failed an analyst's query: its error class and message, one line."""

    def __init__(self, condition: str | None, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else "no message"
        super().__init__(f"[{condition}] {first}" if condition and f"[{condition}]" not in first
                         else first)
        self.condition = condition


class BadInputFileError(ClickscoreError):
    """A landing file as a whole is not what its layout says (most rows quarantined, times in
    another unit): the run fails before publishing anything, naming the file."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"input file {path!r}: {detail}; nothing was published")
        self.path = path
        self.detail = detail


class SchemaDriftError(ClickscoreError):
    """A file or DataFrame does not carry the columns its contract declares."""

    def __init__(
        self,
        where: str,
        *,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Iterable[str] = (),
        run_date: str | None = None,
    ) -> None:
        self.where = where
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        self.run_date = run_date
        parts = []
        if self.missing:
            parts.append(f"missing columns {self.missing}")
        if self.unexpected:
            parts.append(f"unexpected columns {self.unexpected}")
        if self.mismatched:
            parts.append(f"type mismatches {self.mismatched}")
        when = f" (run date {run_date})" if run_date else ""
        super().__init__(f"schema drift in {where}{when}: " + "; ".join(parts))


class EmptyInputError(ClickscoreError):
    """A run found nothing to process and was not told that this is fine."""

    def __init__(self, what: str, run_date: str) -> None:
        super().__init__(
            f"empty input: {what} has no rows for run date {run_date} "
            "(pass --allow-empty if an empty batch is expected)"
        )
        self.what = what
        self.run_date = run_date


class ReconciliationError(ClickscoreError):
    """Rows in != rows out + quarantined + duplicates removed."""

    def __init__(self, job: str, run_date: str, counts: dict[str, int]) -> None:
        super().__init__(f"{job} for {run_date} does not reconcile: {counts}")
        self.counts = counts



class DataQualityError(ClickscoreError):
    """A batch failed critical expectations; it was not published."""

    def __init__(self, run_date: str, failures: list[tuple[str, str, str]]) -> None:
        """`failures`: (table, check name, description with the observed value) triples."""
        self.run_date = run_date
        self.failures = failures
        self.tables = sorted({table for table, _, _ in failures})
        self.checks = {(table, check) for table, check, _ in failures}
        lines = "\n".join(f"  {table}: {description}" for table, _, description in failures)
        super().__init__(
            f"data quality gate failed for {', '.join(self.tables)} on run date {run_date}: "
            f"{len(failures)} critical expectation(s) failed, nothing was published\n{lines}")


class VocabularyError(ClickscoreError):
    """No vocabulary (or not the requested version) to build features with."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"vocabulary: {detail}")


class FeatureContractError(ClickscoreError):
    """A feature frame does not match the feature contract (schemas/features/)."""

    def __init__(self, version: int, problems: list[str]) -> None:
        super().__init__(f"features do not match feature contract v{version}: "
                         + "; ".join(problems))
        self.problems = problems
