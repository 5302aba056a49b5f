"""Synthetic REES46-format clickstream: one gzip CSV per day, deterministic for a seed.

What is in it, so that tests and later stages can check for it:

- Items with Zipf popularity, each in a category (REES46-like ids and codes, some codes null)
  with a brand (some null) and a fixed price drawn per category.
- Users with heavy-tailed activity: several sessions a day for some, none for most; sessions
  centred on a focus category, the user's favourite category in 60% of their sessions (so a
  user's history predicts their next session beyond plain popularity); gaps between events
  well under the 30-minute session gap.
- A view -> cart -> purchase funnel (some carts are removed instead).
- **The planted sequential pattern**: `planted_pairs()` lists (trigger, follow) item pairs;
  after a view of a trigger item, the user's next view in the session is its follow item
  with probability `PATTERN_STRENGTH`. A next-item model should learn these pairs.
- Defects, counted exactly in `_manifest.json`: dirty rows (one per quarantine reason kind),
  malformed lines, exact duplicate rows, late events (written to a later day's file), and one
  bot-like user who makes a burst of `BOT_EVENTS` views in three minutes.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clickscore.demo.config import GenerateConfig

log = logging.getLogger(__name__)

COLUMNS = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand",
           "price", "user_id", "user_session"]
PATTERN_PAIRS = 20
PATTERN_STRENGTH = 0.8
FAVOURITE_SHARE = 0.6  # a user's sessions that centre on their favourite category
P_CART = 0.06
P_PURCHASE_GIVEN_CART = 0.45
P_REMOVE_GIVEN_CART = 0.2
BOT_USER_ID = 999_999_999
BOT_EVENTS = 600
FIRST_PRODUCT_ID = 1_000_000
FIRST_USER_ID = 500_000_000
FIRST_CATEGORY_ID = 2_053_013_552_226_107_000
CATEGORY_CODES = [
    "electronics.smartphone", "electronics.audio.headphone", "electronics.video.tv",
    "electronics.clocks", "computers.notebook", "computers.desktop",
    "computers.peripherals.mouse", "appliances.kitchen.washer",
    "appliances.kitchen.refrigerators", "appliances.environment.vacuum",
    "apparel.shoes", "apparel.shoes.keds", "apparel.trousers", "furniture.living_room.sofa",
    "furniture.bedroom.bed", "kids.toys", "auto.accessories.player", "sport.bicycle",
    "construction.tools.drill", "accessories.bag",
]
# Dirty-row kinds and the quarantine reason each one must produce.
DIRTY_KINDS = {
    "bad_timestamp": "invalid_timestamp",
    "missing_user": "missing_user_id",
    "unknown_type": "unknown_event_type",
    "negative_price": "negative_price",
    "bad_product": "invalid_item_id",
    "malformed": "malformed_row",
}


def planted_pairs(items: int, seed: int) -> list[tuple[int, int]]:
    """The (trigger product_id, follow product_id) pairs planted for a catalogue and seed."""
    rng = np.random.default_rng([seed, 7])
    lo, hi = min(20, items // 4), max(min(400, items), 2 * PATTERN_PAIRS + 20)
    ranks = rng.choice(np.arange(lo, min(hi, items)), size=2 * PATTERN_PAIRS, replace=False)
    ids = FIRST_PRODUCT_ID + ranks
    return [(int(a), int(b)) for a, b in zip(ids[:PATTERN_PAIRS], ids[PATTERN_PAIRS:],
                                             strict=True)]


class _Catalogue:
    """Items ranked by popularity (rank 0 most popular), with category, brand and price."""

    def __init__(self, rng: np.random.Generator, n_items: int) -> None:
        n_categories = max(5, min(80, n_items // 50))
        cat_weights = 1.0 / np.arange(1, n_categories + 1) ** 0.8
        self.item_category = rng.choice(n_categories, size=n_items,
                                        p=cat_weights / cat_weights.sum())
        code_of = np.arange(n_categories) % len(CATEGORY_CODES)
        codes = np.array(CATEGORY_CODES, dtype=object)[code_of]
        codes[rng.random(n_categories) < 0.3] = None
        self.category_code = codes
        self.category_id = FIRST_CATEGORY_ID + np.arange(n_categories) * 8_191
        n_brands = max(10, n_items // 20)
        brand_names = np.array([f"brand{b:04d}" for b in range(n_brands)], dtype=object)
        self.item_brand = brand_names[rng.integers(0, n_brands, n_items)]
        self.item_brand[rng.random(n_items) < 0.15] = None
        base_price = np.exp(rng.normal(4.0, 1.0, n_categories))
        self.item_price = np.round(
            base_price[self.item_category] * np.exp(rng.normal(0, 0.4, n_items)), 2)
        self.item_price[rng.random(n_items) < 0.001] = 0.0
        pop = 1.0 / np.arange(1, n_items + 1) ** 1.1
        self.popularity = pop / pop.sum()
        # Items of each category, most popular first, for focus-category draws.
        order = np.lexsort((np.arange(n_items), self.item_category))
        self.by_category = order
        self.category_offset = np.searchsorted(self.item_category[order], np.arange(n_categories))
        self.category_size = np.bincount(self.item_category, minlength=n_categories)
        self.category_popularity = np.bincount(self.item_category, weights=self.popularity,
                                               minlength=n_categories)

    def draw_in_category(self, rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        size = self.category_size[categories]
        within = np.minimum((size * rng.random(len(categories)) ** 3).astype(np.int64), size - 1)
        return self.by_category[self.category_offset[categories] + within]


def _sessions(cfg: GenerateConfig, rng: np.random.Generator, cat: _Catalogue) -> dict:
    shape = 0.7
    rate = rng.gamma(shape, cfg.sessions_per_user_per_day / shape, cfg.users)
    per_user_day = rng.poisson(np.repeat(rate, cfg.days))
    n = int(per_user_day.sum())
    user = np.repeat(np.repeat(np.arange(cfg.users), cfg.days), per_user_day)
    day = np.repeat(np.tile(np.arange(cfg.days), cfg.users), per_user_day)
    hour_weights = 1.0 + 0.8 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    start = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    return {
        "user": user,
        "start": start,
        "views": rng.geometric(1.0 / cfg.mean_events_per_session, n),
        "focus": _focus(cfg, rng, cat, user),
        "uuid_hi": rng.integers(0, 2**63, n, dtype=np.int64),
        "uuid_lo": rng.integers(0, 2**63, n, dtype=np.int64),
    }


def _focus(cfg: GenerateConfig, rng: np.random.Generator, cat: _Catalogue,
           user: np.ndarray) -> np.ndarray:
    """Each session's focus category: the user's favourite (drawn once per user by category
    popularity) in FAVOURITE_SHARE of sessions, a fresh draw otherwise, so a user's past says
    something about their next session, as with real shoppers."""
    p = cat.category_popularity / cat.category_popularity.sum()
    focus = rng.choice(len(cat.category_size), size=len(user), p=p)
    favourite = rng.choice(len(cat.category_size), size=cfg.users, p=p)
    keeps = rng.random(len(user)) < FAVOURITE_SHARE
    focus[keeps] = favourite[user[keeps]]
    return np.asarray(focus)


def _views(cfg: GenerateConfig, rng: np.random.Generator, cat: _Catalogue, s: dict) -> dict:
    n_views = s["views"]
    session = np.repeat(np.arange(len(n_views)), n_views)
    first = np.repeat(np.cumsum(n_views) - n_views, n_views)
    gaps = np.minimum(rng.exponential(45.0, len(session)), 1_500.0).astype(np.int64) + 1
    gaps[first == np.arange(len(session))] = 0
    csum = np.cumsum(gaps)
    offset = csum - csum[first]
    ts = s["start"][session] + offset
    from_focus = rng.random(len(session)) < 0.7
    item = rng.choice(cfg.items, size=len(session), p=cat.popularity)
    item[from_focus] = cat.draw_in_category(rng, s["focus"][session[from_focus]])
    pairs = np.array(planted_pairs(cfg.items, cfg.seed)) - FIRST_PRODUCT_ID
    opens_with_trigger = (first == np.arange(len(session))) & (rng.random(len(session)) < 0.15)
    item[opens_with_trigger] = rng.choice(pairs[:, 0], size=int(opens_with_trigger.sum()))
    follow_of = np.full(cfg.items, -1)
    follow_of[pairs[:, 0]] = pairs[:, 1]
    has_next = np.append(session[1:] == session[:-1], False)
    followed = has_next & (follow_of[item] >= 0)  # trigger views with a next view
    planted = followed & (rng.random(len(session)) < PATTERN_STRENGTH)
    nxt = np.flatnonzero(planted) + 1
    item[nxt] = follow_of[item[nxt - 1]]
    return {"session": session, "ts": ts, "item": item, "planted": int(planted.sum()),
            "followed": int(followed.sum())}


def _funnel(rng: np.random.Generator, v: dict) -> dict:
    n = len(v["ts"])
    is_cart = rng.random(n) < P_CART
    cart_ts = v["ts"][is_cart] + rng.integers(5, 60, int(is_cart.sum()))
    u = rng.random(int(is_cart.sum()))
    is_purchase = u < P_PURCHASE_GIVEN_CART
    is_remove = (u >= P_PURCHASE_GIVEN_CART) & (u < P_PURCHASE_GIVEN_CART + P_REMOVE_GIVEN_CART)
    cart_session, cart_item = v["session"][is_cart], v["item"][is_cart]
    parts = [
        (v["session"], v["ts"], v["item"], np.zeros(n, np.int8)),
        (cart_session, cart_ts, cart_item, np.full(len(cart_ts), 1, np.int8)),
        (cart_session[is_purchase], cart_ts[is_purchase]
         + rng.integers(30, 300, int(is_purchase.sum())), cart_item[is_purchase],
         np.full(int(is_purchase.sum()), 3, np.int8)),
        (cart_session[is_remove], cart_ts[is_remove]
         + rng.integers(10, 200, int(is_remove.sum())), cart_item[is_remove],
         np.full(int(is_remove.sum()), 2, np.int8)),
    ]
    return {k: np.concatenate([p[i] for p in parts])
            for i, k in enumerate(("session", "ts", "item", "type"))}


_TYPES = np.array(["view", "cart", "remove_from_cart", "purchase"], dtype=object)


def _format_times(epoch_s: np.ndarray) -> np.ndarray:
    text = np.datetime_as_string(epoch_s.astype("datetime64[s]"), unit="s")
    return np.char.add(np.char.replace(text, "T", " "), " UTC")


def generate(cfg: GenerateConfig) -> dict:
    """Write `cfg.days` files `events-YYYY-MM-DD.csv.gz` and `_manifest.json` under
    `cfg.output_dir`; return the manifest (config, planted pairs and exact defect counts)."""
    rng = np.random.default_rng(cfg.seed)
    cat = _Catalogue(rng, cfg.items)
    s = _sessions(cfg, rng, cat)
    v = _views(cfg, rng, cat, s)
    epoch0 = int(datetime.combine(cfg.start_date, datetime.min.time(),
                                  tzinfo=UTC).timestamp())
    ev = _timeline(cfg, rng, cat, s, _funnel(rng, v), epoch0)
    frame = _rows(cat, s, ev)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = _write_days(cfg, rng, frame, ev, out)
    manifest = {
        "config": {k: str(val) for k, val in asdict(cfg).items()},
        "planted_pairs": planted_pairs(cfg.items, cfg.seed),
        "pattern_strength": PATTERN_STRENGTH,
        "planted_transitions": v["planted"],
        # trigger views followed by another view in their session: planted / this is the
        # realized probability that a trigger's next view is its follow item
        "trigger_views_with_next_view": v["followed"],
        "bot_user_id": BOT_USER_ID if cfg.with_bot else None,
        "bot_events": BOT_EVENTS if cfg.with_bot else 0,
        **counts,
    }
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("generated %s rows in %d daily files under %s", f"{counts['total_rows']:,}",
             cfg.days, out)
    return manifest


def _timeline(cfg: GenerateConfig, rng: np.random.Generator, cat: _Catalogue, s: dict,
              e: dict, epoch0: int) -> dict:
    """Every event in time order with its user, session, item, type and day: the funnel's
    events, the bot's burst, cut at the end of the last day."""
    ts = epoch0 + e["ts"]
    user = FIRST_USER_ID + s["user"][e["session"]]
    session, item, etype = e["session"], e["item"], e["type"]
    if cfg.with_bot:
        burst_start = epoch0 + 10 * 3_600
        ts = np.append(ts, burst_start + np.arange(BOT_EVENTS) * 180 // BOT_EVENTS)
        user = np.append(user, np.full(BOT_EVENTS, BOT_USER_ID))
        session = np.append(session, np.full(BOT_EVENTS, len(s["start"])))
        item = np.append(item, rng.choice(cfg.items, BOT_EVENTS, p=cat.popularity))
        etype = np.append(etype, np.zeros(BOT_EVENTS, np.int8))
        s["uuid_hi"] = np.append(s["uuid_hi"], 1)
        s["uuid_lo"] = np.append(s["uuid_lo"], 1)
    order = np.argsort(ts, kind="stable")
    ev = {"ts": ts[order], "user": user[order], "session": session[order],
          "item": item[order], "type": etype[order]}
    ev["day"] = (ev["ts"] - epoch0) // 86_400
    keep = ev["day"] < cfg.days  # a session that runs past the last day is cut at its end
    return {k: a[keep] for k, a in ev.items()}


def _rows(cat: _Catalogue, s: dict, ev: dict) -> pd.DataFrame:
    """The events as REES46 rows."""
    item = ev["item"]
    return pd.DataFrame({
        "event_time": _format_times(ev["ts"]),
        "event_type": _TYPES[ev["type"]],
        "product_id": FIRST_PRODUCT_ID + item,
        "category_id": cat.category_id[cat.item_category[item]],
        "category_code": cat.category_code[cat.item_category[item]],
        "brand": cat.item_brand[item],
        "price": cat.item_price[item],
        "user_id": ev["user"],
        "user_session": _uuids(s["uuid_hi"], s["uuid_lo"])[ev["session"]],
    })


def _write_days(cfg: GenerateConfig, rng: np.random.Generator, frame: pd.DataFrame,
                ev: dict, out: Path) -> dict[str, Any]:
    """One file per day with its late events (from earlier days), exact duplicate rows and
    dirty rows; returns the exact counts of each for the manifest."""
    day, n = ev["day"], len(frame)
    # Late events: written to the file of a later day than their own.
    file_day = day.copy()
    late = (rng.random(n) < cfg.late_share) & (day < cfg.days - 1)
    file_day[late] = np.minimum(day[late] + rng.integers(1, 3, int(late.sum())), cfg.days - 1)
    dup = rng.random(n) < cfg.duplicate_share
    dirty = rng.random(n) < cfg.dirty_share
    dirty_kind = rng.integers(0, len(DIRTY_KINDS), n)
    counts: dict[str, Any] = {
        "clean_events": 0, "duplicate_rows": 0, "late_events": int(late.sum()),
        # the rows of late events that reach bronze: not the dirty ones (quarantined), and
        # the exact duplicate of a duplicated one too
        "late_clean_rows": int((late & ~dirty).sum() + (late & ~dirty & dup).sum()),
        "dirty_rows": dict.fromkeys(DIRTY_KINDS.values(), 0), "files": [], "per_file": {},
    }
    for d in range(cfg.days):
        in_file = file_day == d
        good = in_file & ~dirty
        kinds = dirty_kind[in_file & dirty]
        lines = _dirty_lines(frame[in_file & dirty].astype(object).copy(), kinds)
        for k in kinds:
            counts["dirty_rows"][list(DIRTY_KINDS.values())[k]] += 1
        body = pd.concat([frame[good], frame[good & dup]]).sort_index(kind="stable")
        counts["clean_events"] += int(good.sum())
        counts["duplicate_rows"] += int((good & dup).sum())
        name = f"events-{(cfg.start_date + timedelta(days=d)).isoformat()}.csv.gz"
        _write(out / name, body, lines)
        counts["files"].append(name)
        counts["per_file"][name] = {"rows": len(body) + len(lines), "dirty_rows": len(lines),
                                    "duplicate_rows": int((good & dup).sum()),
                                    "late_events": int((in_file & late).sum())}
    # Rows of the data itself can coincide (same cart, same second): count distinct events.
    counts["distinct_events"] = int((~frame[~dirty].duplicated()).sum())
    counts["total_rows"] = (counts["clean_events"] + counts["duplicate_rows"]
                            + sum(counts["dirty_rows"].values()))
    return counts


def _uuids(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    h = pd.Series(hi).map("{:016x}".format).to_numpy(dtype=str)
    lo_text = pd.Series(lo).map("{:016x}".format).to_numpy(dtype=str)
    return np.char.add(np.char.add(h, "-"), lo_text)


def _dirty_lines(rows: pd.DataFrame, kinds: np.ndarray) -> list[str]:
    """Text lines for dirty rows, each broken in the way its kind names."""
    names = list(DIRTY_KINDS)
    lines = []
    for (_, row), k in zip(rows.iterrows(), kinds, strict=True):
        values = ["" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)
                  for x in row.tolist()]
        kind = names[k]
        if kind == "bad_timestamp":
            values[0] = values[0].replace(":", "#", 1)
        elif kind == "missing_user":
            values[7] = ""
        elif kind == "unknown_type":
            values[1] = "click"
        elif kind == "negative_price":
            values[6] = f"-{float(values[6] or 0) + 1:.2f}"
        elif kind == "bad_product":
            values[2] = "p" + values[2]
        elif kind == "malformed":
            values = values[:5]
        lines.append(",".join(values))
    return lines


def _write(path: Path, body: pd.DataFrame, extra_lines: list[str]) -> None:
    buffer = io.StringIO()
    body.to_csv(buffer, index=False, header=True, columns=COLUMNS, float_format="%.2f",
                lineterminator="\n")
    for line in extra_lines:
        buffer.write(line + "\n")
    with gzip.open(path, "wt", compresslevel=1, newline="") as fh:
        fh.write(buffer.getvalue())
