"""Source adapters: one module per raw format, each mapping raw text columns to the canonical
event. A new source is a new module here plus its layout in `schemas/sources/`."""

from __future__ import annotations

from clickscore.sources.base import SourceAdapter
from clickscore.sources.rees46 import ADAPTER as REES46
from clickscore.sources.retailrocket import ADAPTER as RETAILROCKET
from clickscore.sources.taobao import ADAPTER as TAOBAO

ADAPTERS: dict[str, SourceAdapter] = {a.name: a for a in (REES46, TAOBAO, RETAILROCKET)}


def get_adapter(name: str) -> SourceAdapter:
    """The adapter for a source name; a clear error for an unknown one."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; known: {sorted(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "SourceAdapter", "get_adapter"]
