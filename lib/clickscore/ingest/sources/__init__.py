"""Source adapters: one module per raw format, each defining `ADAPTER`, the mapping from its
raw text columns to the canonical event, beside its layout `schemas/sources/<name>.yaml`
(column order and file format). This package is the only list of sources: a new source is a
new module here plus its layout file, and nothing else changes."""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clickscore.ingest.sources.base import SourceAdapter

_NOT_ADAPTERS = {"base"}


@cache
def source_names() -> tuple[str, ...]:
    """The sources, found as the adapter modules of this package (nothing is imported, so
    the command line lists them without starting Spark)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if m.name not in _NOT_ADAPTERS and not m.name.startswith("_")))


def get_adapter(name: str) -> SourceAdapter:
    """The adapter for a source name; a clear error for an unknown one."""
    if name not in source_names():
        raise ValueError(f"unknown source {name!r}; expected one of {list(source_names())}")
    adapter: SourceAdapter = import_module(f"{__name__}.{name}").ADAPTER
    return adapter


__all__ = ["get_adapter", "source_names"]
