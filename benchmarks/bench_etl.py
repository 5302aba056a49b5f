"""ETL benchmark: ingest + sessionize throughput, peak memory, and Spark vs DuckDB on the same
sessionization of the same data.

    python benchmarks/bench_etl.py                      # generates ~10M events first
    python benchmarks/bench_etl.py --input DIR          # REES46-format files already on disk
    python benchmarks/bench_etl.py --events 1000000     # a smaller run
    python benchmarks/bench_etl.py --input DIR --floors # also the compute-only floors

Prints events/s end to end and per stage, peak RSS of the driver process tree (Python + JVM),
the Spark/DuckDB time ratio, and per stage the time its data-quality gate (Great Expectations
on the staged batch) takes and what it adds to the stage; writes benchmarks/out/etl.json.

`--floors` also times each stage's computation alone, into Spark's no-op sink (nothing staged,
validated or written): parsing and checking the landing files, and sessionizing bronze. Their
sum bounds the end-to-end rate any tuning of the writes and gates could reach.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil
from pyspark.sql import SparkSession

from clickscore.core.config import RunDate
from clickscore.core.spark import get_spark
from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import generate
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.job import run_ingest
from clickscore.ingest.reader import list_files, read_raw
from clickscore.ingest.sources import get_adapter
from clickscore.ingest.transforms import checked_events, staged_rows
from clickscore.sessionize.config import SessionizeConfig
from clickscore.sessionize.job import run_sessionize, sessionized_events
from clickscore.sessionize.transforms import event_columns, flag_duplicate_events

ROWS_PER_USER_DAY = 3.9  # measured on the generator's defaults


class PeakRss:
    """Samples the RSS of this process and its children (the Spark JVM) in the background."""

    def __init__(self, interval: float = 0.25) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def save_figures(name: str, figures: dict[str, object]) -> None:
    """Write a benchmark's figures to benchmarks/out/<name>.json."""
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))


def duckdb_sessionize(parquet_glob: str, out_dir: Path, threads: int) -> dict[str, float]:
    """The same rule in DuckDB over the bronze Parquet files: dedup by event_id, gap >= 30 min,
    24 h cut. Times two variants: sessions only, and (like the Spark step) every event with its
    session written as well as the sessions. Returns seconds and the session count."""
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    sessionized = f"""
      WITH e AS (
        SELECT DISTINCT ON (event_id) event_id, event_ts, epoch_us(event_ts) AS ts, user_id,
               item_id, event_type, category_id, category_code, brand, price,
               source_session_id, source, event_date
        FROM read_parquet('{parquet_glob}', hive_partitioning = true)
      ), g AS (
        SELECT *, ts - lag(ts) OVER w AS gap FROM e
        WINDOW w AS (PARTITION BY source, user_id ORDER BY ts, event_id)
      ), b AS (
        SELECT *, sum(CASE WHEN gap IS NULL OR gap >= 1800000000 THEN 1 ELSE 0 END)
                  OVER (PARTITION BY source, user_id ORDER BY ts, event_id
                        ROWS UNBOUNDED PRECEDING)
                  AS burst
        FROM g
      ), c AS (
        SELECT *, (ts - min(ts) OVER (PARTITION BY source, user_id, burst)) // 86400000000
               AS cut FROM b
      )"""
    session_rows = """
      SELECT source, user_id, burst, cut, min(ts) AS session_start, max(ts) AS session_end,
             count(*) AS n_events, count(DISTINCT item_id) AS distinct_items,
             coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) AS revenue
      FROM {src} GROUP BY source, user_id, burst, cut"""
    t0 = time.perf_counter()
    con.execute(f"COPY ({sessionized} {session_rows.format(src='c')}) "
                f"TO '{out_dir / 'sessions_only.parquet'}' (FORMAT parquet)")
    sessions_only = time.perf_counter() - t0
    t0 = time.perf_counter()
    con.execute(f"""CREATE TEMP TABLE c AS {sessionized}
      SELECT *, row_number() OVER (PARTITION BY source, user_id, burst, cut
                                 ORDER BY ts, event_id)
             AS session_seq FROM c""")
    con.execute(f"COPY (SELECT * EXCLUDE (ts, gap) FROM c) TO '{out_dir / 'events'}' "
                "(FORMAT parquet, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE)")
    con.execute(f"COPY ({session_rows.format(src='c')}) TO '{out_dir / 'sessions.parquet'}' "
                "(FORMAT parquet)")
    both = time.perf_counter() - t0
    sessions = con.execute(
        f"SELECT count(*) FROM read_parquet('{out_dir / 'sessions.parquet'}')").fetchall()[0][0]
    return {"sessions_only_s": sessions_only, "events_and_sessions_s": both,
            "sessions": sessions}


def compute_floors(spark: SparkSession, landing: Path, data_root: Path) -> dict[str, float]:
    """Seconds each stage's computation takes alone, into the no-op sink."""
    cfg = IngestConfig(source="rees46", input_path=str(landing), run_date=RunDate.parse("all"),
                       data_root=str(data_root))
    raw_df = read_raw(spark, get_adapter("rees46").layout, list_files(spark, str(landing)))
    t0 = time.perf_counter()
    staged_rows(checked_events(raw_df, cfg)).write.format("noop").mode("overwrite").save()
    parse = time.perf_counter() - t0
    bronze_df = spark.read.table("bronze.events").select(*event_columns())
    t0 = time.perf_counter()
    sessionize_cfg = SessionizeConfig(run_date=RunDate.parse("all"), data_root=str(data_root))
    (sessionized_events(sessionize_cfg, flag_duplicate_events(bronze_df))
     .write.format("noop").mode("overwrite").save())
    return {"parse_and_check_s": parse, "sessionize_compute_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--input", help="REES46-format landing folder (skips generation)")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--floors", action="store_true",
                        help="also time each stage's computation alone (no-op sink)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    work = Path(args.work or tempfile.mkdtemp(prefix="clickscore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    landing = Path(args.input) if args.input else work / "landing"
    figures: dict[str, object] = {}
    if not args.input:
        users = max(1, round(args.events / (args.days * ROWS_PER_USER_DAY)))
        t0 = time.perf_counter()
        manifest = generate(GenerateConfig(output_dir=str(landing), days=args.days, users=users,
                                           items=50_000, start_date=date(2019, 10, 1)))
        figures["generate_s"] = round(time.perf_counter() - t0, 1)
        figures["generated_rows"] = manifest["total_rows"]
        print(f"generated {manifest['total_rows']:,} rows for {users:,} users over "
              f"{args.days} days in {figures['generate_s']} s -> {landing}")

    data_root = work / "root"
    shutil.rmtree(data_root, ignore_errors=True)
    spark = get_spark(str(data_root), app_name="clickscore-bench",
                      conf={"spark.driver.memory": args.driver_memory})
    cores = spark.sparkContext.defaultParallelism
    with PeakRss() as rss:
        t0 = time.perf_counter()
        ingested = run_ingest(spark, IngestConfig(source="rees46", input_path=str(landing),
                                                  run_date=RunDate.parse("all"),
                                                  data_root=str(data_root)))
        t1 = time.perf_counter()
        sessionized = run_sessionize(spark, SessionizeConfig(run_date=RunDate.parse("all"),
                                                             data_root=str(data_root)))
        t2 = time.perf_counter()
    sessions = spark.table("silver.sessions").count()
    floors = compute_floors(spark, landing, data_root) if args.floors else None
    bronze_glob = f"{data_root}/warehouse/bronze.db/events/*/*.parquet"
    spark.stop()

    duck_dir = work / "duckdb"
    shutil.rmtree(duck_dir, ignore_errors=True)
    duck_dir.mkdir()
    duck = duckdb_sessionize(bronze_glob, duck_dir, cores)
    events = ingested.input_rows
    figures.update({
        "events": events,
        "cores": cores,
        "ingest_s": round(t1 - t0, 1),
        "sessionize_s": round(t2 - t1, 1),
        "end_to_end_s": round(t2 - t0, 1),
        "ingest_events_per_s": round(events / (t1 - t0)),
        "sessionize_events_per_s": round(sessionized.input_rows / (t2 - t1)),
        "end_to_end_events_per_s": round(events / (t2 - t0)),
        "peak_rss_gib": round(rss.peak / 2**30, 2),
        "sessions": sessions,
        "duckdb_sessions_only_s": round(duck["sessions_only_s"], 1),
        "duckdb_events_and_sessions_s": round(duck["events_and_sessions_s"], 1),
        "duckdb_sessions": duck["sessions"],
        "spark_over_duckdb_same_outputs": round((t2 - t1) / duck["events_and_sessions_s"], 2),
        "spark_over_duckdb_sessions_only": round((t2 - t1) / duck["sessions_only_s"], 2),
    })
    for stage, counts, seconds in (("ingest", ingested, t1 - t0),
                                   ("sessionize", sessionized, t2 - t1)):
        parts = counts.details["seconds"]
        figures[f"{stage}_stage_s"] = parts["stage"]
        figures[f"{stage}_dq_s"] = parts["validate"]
        figures[f"{stage}_publish_s"] = parts["publish"]
        # what validation adds to the stage, relative to the same stage without it
        figures[f"{stage}_dq_added_pct"] = round(
            100 * parts["validate"] / (seconds - parts["validate"]), 1)
    # DuckDB does not validate: compare it with the sessionize step minus its validation too
    figures["spark_without_dq_over_duckdb_same_outputs"] = round(
        (t2 - t1 - float(figures["sessionize_dq_s"])) / duck["events_and_sessions_s"], 2)
    if floors:
        floor_s = floors["parse_and_check_s"] + floors["sessionize_compute_s"]
        figures.update({
            "floor_parse_and_check_s": round(floors["parse_and_check_s"], 1),
            "floor_sessionize_compute_s": round(floors["sessionize_compute_s"], 1),
            "floor_end_to_end_events_per_s": round(events / floor_s),
        })
    print(json.dumps(figures, indent=2))
    print(f"\nend to end: {figures['end_to_end_events_per_s']:,} events/s "
          f"(target >= 200,000) | sessionize: Spark {figures['sessionize_s']} s vs DuckDB "
          f"{figures['duckdb_events_and_sessions_s']} s writing the same outputs = "
          f"{figures['spark_over_duckdb_same_outputs']}x "
          f"({figures['spark_without_dq_over_duckdb_same_outputs']}x without its DQ gate), "
          f"{figures['spark_over_duckdb_sessions_only']}x vs DuckDB writing sessions only "
          f"(target <= 5x) | sessions agree: {sessions == duck['sessions']}")
    print(f"data-quality gates: ingest {figures['ingest_dq_s']} s "
          f"(+{figures['ingest_dq_added_pct']}%), sessionize {figures['sessionize_dq_s']} s "
          f"(+{figures['sessionize_dq_added_pct']}%) (target <= +25% per stage)")
    if floors:
        print(f"compute-only floors (no-op sink): parse + check "
              f"{figures['floor_parse_and_check_s']} s, sessionize "
              f"{figures['floor_sessionize_compute_s']} s: at most "
              f"{figures['floor_end_to_end_events_per_s']:,} events/s end to end on "
              f"{cores} cores even if staging, validation and writes cost nothing")
    save_figures("etl", figures)


if __name__ == "__main__":
    main()
