"""Data-quality gates: expectation suites declared in `schemas/expectations/`, run with Great
Expectations on the batch a stage is about to publish (write-audit-publish).

`gate.validate_batch` runs a table's suite on a batch and records every result in
`ops.dq_results`; `DataQualityError` stops the run when a critical check fails.
"""
