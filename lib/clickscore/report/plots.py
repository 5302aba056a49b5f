"""Plots of the warehouse's tables, for the run report and the notebooks.

Each function takes a pandas frame (the result of a query shown next to it) and returns a
matplotlib Figure, made with the object API (no pyplot state, no backend to pick: the
report renders it on a server, a notebook displays it inline). A frame with no rows is an
error (`EmptyPlotError`), never an empty chart that looks like a result. `png_data_uri`
inlines a figure in HTML (no file, no CDN)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clickscore.core.errors import ClickscoreError

FUNNEL_STAGES = ("view", "cart", "purchase")


class EmptyPlotError(ClickscoreError):
    """A plot was asked of a query that returned no rows."""


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame lacks columns {missing} (has {list(frame.columns)})")
    if frame.empty:
        raise EmptyPlotError(f"{what}: the query returned no rows")
    return frame


def _figure(width: float = 7, height: float = 3.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def sessions_per_day(frame: pd.DataFrame) -> Figure:
    """Bars of `sessions` per `session_date`, with `users` as a line."""
    _require(frame, ("session_date", "sessions", "users"), "sessions per day")
    fig, ax = _figure()
    labels = frame["session_date"].astype(str)
    ax.bar(labels, frame["sessions"], label="sessions")
    ax.plot(labels, frame["users"], marker="o", color="tab:orange", label="users")
    ax.set(title="Sessions and users per day", xlabel="session date", ylabel="count")
    ax.legend()
    fig.autofmt_xdate()
    return fig


def session_lengths(frame: pd.DataFrame) -> Figure:
    """Histogram of `n_events` per session (log-spaced bins: lengths are long-tailed)."""
    _require(frame, ("n_events",), "session lengths")
    fig, ax = _figure()
    lengths = frame["n_events"].to_numpy()
    bins = np.unique(np.geomspace(1, max(int(lengths.max()), 2) + 1, 30).astype(int))
    ax.hist(lengths, bins=bins)
    ax.set(xscale="log", title="Events per session", xlabel="events (log scale)",
           ylabel="sessions")
    return fig


def funnel(frame: pd.DataFrame) -> Figure:
    """Horizontal bars: sessions that reached each step (`step`, `sessions`), with the share of
    the first step."""
    _require(frame, ("step", "sessions"), "funnel")
    fig, ax = _figure(height=2.8)
    steps = frame["step"].tolist()[::-1]
    counts = frame["sessions"].to_numpy()[::-1]
    ax.barh(steps, counts, color="tab:green")
    top = max(float(frame["sessions"].iloc[0]), 1.0)
    for y, count in enumerate(counts):
        ax.annotate(f" {count:,} ({count / top:.1%})", (count, y), va="center")
    ax.set(title="Session funnel", xlabel="sessions", xlim=(0, top * 1.3))
    ax.grid(axis="x", alpha=0.3)
    return fig


def top_categories(frame: pd.DataFrame) -> Figure:
    """Horizontal bars of `events` per `category`, the largest on top."""
    _require(frame, ("category", "events"), "top categories")
    fig, ax = _figure(height=max(2.5, 0.3 * len(frame) + 1))
    ordered = frame.sort_values("events")
    ax.barh(ordered["category"].astype(str), ordered["events"])
    ax.set(title="Top categories by events", xlabel="events")
    return fig


def score_distribution(frame: pd.DataFrame) -> Figure:
    """Histogram of purchase propensity, binned by the query (`bin_start`, `bin_end`,
    `users`; `queries.score_histogram`), so no user's row reaches the driver."""
    _require(frame, ("bin_start", "bin_end", "users"), "score distribution")
    fig, ax = _figure()
    ax.bar(frame["bin_start"], frame["users"], width=frame["bin_end"] - frame["bin_start"],
           align="edge", color="tab:purple")
    ax.set(title=f"Purchase propensity over {int(frame['users'].sum()):,} users",
           xlabel="purchase propensity", ylabel="users")
    return fig


def metrics_by_method(frame: pd.DataFrame, metric: str) -> Figure:
    """Bars of one metric (`method`, `value`), the model highlighted among the baselines."""
    _require(frame, ("method", "value"), f"{metric} by method")
    fig, ax = _figure(height=3)
    colors = ["tab:red" if m == "model" else "tab:gray" for m in frame["method"]]
    ax.bar(frame["method"], frame["value"], color=colors)
    ax.set(title=f"{metric} (test split)", ylabel=metric)
    ax.tick_params(axis="x", rotation=20)
    return fig


def learning_curves(frame: pd.DataFrame) -> Figure:
    """Lines of every metric column per `epoch`."""
    _require(frame, ("epoch",), "learning curves")
    metrics = [c for c in frame.columns if c != "epoch"]
    if not metrics:
        raise EmptyPlotError("learning curves: no metric columns")
    fig, ax = _figure()
    for metric in metrics:
        ax.plot(frame["epoch"], frame[metric], marker="o", label=metric)
    ax.set(title="Learning curves", xlabel="epoch")
    ax.legend(fontsize="small")
    return fig


def over_runs(frame: pd.DataFrame, x: str, series: str, value: str, title: str) -> Figure:
    """Stacked bars of `value` per `x`, one colour per `series` (gate outcomes per run date,
    quarantine reasons per ingest date)."""
    _require(frame, (x, series, value), title)
    table = frame.pivot_table(index=x, columns=series, values=value, aggfunc="sum",
                              fill_value=0).sort_index()
    fig, ax = _figure()
    bottom = np.zeros(len(table))
    labels = table.index.astype(str)
    for name in table.columns:
        ax.bar(labels, table[name], bottom=bottom, label=str(name))
        bottom += table[name].to_numpy()
    ax.set(title=title, xlabel=x, ylabel=value)
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return fig


def bars(frame: pd.DataFrame, x: str, y: str, title: str) -> Figure:
    """Bars of `y` per `x`, in the frame's order."""
    _require(frame, (x, y), title)
    fig, ax = _figure(height=3.2)
    labels = frame[x].astype(str)
    ax.bar(labels, frame[y])
    ax.set(title=title, xlabel=x, ylabel=y)
    if labels.str.len().max() > 4:
        ax.tick_params(axis="x", rotation=30)
    return fig


def lines(frame: pd.DataFrame, x: str, series: str, value: str, title: str) -> Figure:
    """One line of `value` per `series` over `x` (volumes and drift over run dates)."""
    _require(frame, (x, series, value), title)
    fig, ax = _figure()
    for name, part in frame.sort_values(x).groupby(series, sort=True):
        ax.plot(part[x].astype(str), part[value], marker="o", label=str(name))
    ax.set(title=title, xlabel=x, ylabel=value)
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return fig


def png_data_uri(fig: Figure) -> str:
    """The figure as an inline PNG (`data:image/png;base64,...`)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
