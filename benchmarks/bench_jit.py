"""The JIT and class loading in short-lived JVMs: an ingest and a sessionize of one generated
day, each in a fresh `clickscore` process (its own driver JVM, as a CLI test, an Airflow task
or a spark-submit has), with the JVM's default tiered compilation (C1 then C2), with the C1
compiler only (`-XX:TieredStopAtLevel=1`, given through `$SPARK_SUBMIT_OPTS`), and with C1
only and setup's class-data archive (`clickscore.core.spark.CLASS_ARCHIVE`; the other two
start without it), alternated round by round.

    python benchmarks/bench_jit.py [--rounds 2] [--users 500]
    python benchmarks/bench_jit.py --workload demo --concurrent 2 [--rounds 1]

`--workload demo` runs a longer process instead, the demo as the tests run it (`clickscore
demo --days 3 --users 300 --epochs 3`: every stage in one JVM, a few minutes), and
`--concurrent 2` runs two such workloads at once in each setting, as the suite's two test
workers do on this 2-core machine (the wall time is then that of the pair).

Prints each setting's wall seconds and the CPU-seconds the whole machine spent meanwhile (busy
time from /proc/stat: the JVM is not a waited-for child of the process that starts it, so its
CPU time never reaches this process's `getrusage`). Run it on a quiet machine; the default
setting is the reference. On 2 cores CPU-seconds are what a second test worker competes for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clickscore.core.spark import CLASS_ARCHIVE_ENV

CLI = [sys.executable, "-m", "clickscore.cli"]
ARCHIVE_OFF = {CLASS_ARCHIVE_ENV: "off"}
# with C1 only the JVM reserves 48 MB for compiled code, which a sessionize can fill (the JVM
# then dies: "Out of space in CodeCache"); the tests give their C1 JVMs a default JVM's 240 MB
C1 = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
SETTINGS = {"default (C1 + C2)": ("", ARCHIVE_OFF),
            "C1 only": (C1, ARCHIVE_OFF),
            "C1 + class archive": (C1, {})}
DAY = "2019-10-01"


def busy_seconds() -> float:
    """CPU-seconds the whole machine has been busy (every core; idle and iowait excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def stage_runs(landing: Path, options: str, extra: dict[str, str]) -> None:
    root = tempfile.mkdtemp(prefix="bench-jit-root-")
    env = {**os.environ, "SPARK_SUBMIT_OPTS": options, "CLICKSCORE_DATA_DOCS": "off", **extra}
    for argv in (["ingest", "--source", "rees46", "--input",
                  str(landing / f"events-{DAY}.csv.gz"), "--run-date", DAY],
                 ["sessionize", "--run-date", DAY]):
        done = subprocess.run([*CLI, *argv, "--data-root", root], env=env, text=True,
                              capture_output=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed:\n{done.stderr[-3000:]}")


def demo_run(options: str, extra: dict[str, str]) -> None:
    """The demo as the tests run it, in a fresh process and data root."""
    root = Path(tempfile.mkdtemp(prefix="bench-jit-demo-")) / "demo"
    env = {**os.environ, "SPARK_SUBMIT_OPTS": options, "CLICKSCORE_DATA_DOCS": "off",
           "CLICKSCORE_DRIVER_MEMORY": "1g", "CLICKSCORE_SPARK_MASTER": "local[1]", **extra}
    done = subprocess.run([*CLI, "demo", "--days", "3", "--users", "300", "--epochs", "3",
                           "--data-root", str(root)], env=env, text=True, capture_output=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"demo failed:\n{done.stderr[-3000:]}")


def concurrently(n: int, work: Callable[..., None], *args: object) -> None:
    """`work(*args)` in `n` threads at once (each starts its own processes); exits with the
    first failure's message."""
    failures: list[BaseException] = []

    def one() -> None:
        try:
            work(*args)
        except Exception as exc:  # reported below, from the main thread
            failures.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(str(failures[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--workload", choices=("stages", "demo"), default="stages",
                        help="an ingest and a sessionize in fresh processes, or the demo")
    parser.add_argument("--concurrent", type=int, default=1,
                        help="workloads run at once per setting")
    args = parser.parse_args()
    landing = Path(tempfile.mkdtemp(prefix="bench-jit-landing-"))
    if args.workload == "stages":
        subprocess.run([*CLI, "generate", "--output", str(landing), "--days", "1",
                        "--users", str(args.users)], check=True, capture_output=True)
    totals = {name: [0.0, 0.0] for name in SETTINGS}
    for n in range(args.rounds):
        for name, (options, extra) in (SETTINGS.items() if n % 2 == 0 else
                                       reversed(SETTINGS.items())):
            cpu, wall = busy_seconds(), time.perf_counter()
            if args.workload == "stages":
                concurrently(args.concurrent, stage_runs, landing, options, extra)
            else:
                concurrently(args.concurrent, demo_run, options, extra)
            wall, cpu = time.perf_counter() - wall, busy_seconds() - cpu
            totals[name][0] += wall
            totals[name][1] += cpu
            print(f"round {n + 1} {name:18s} wall {wall:6.1f} s  machine CPU {cpu:6.1f} s",
                  flush=True)
    (ref_wall, ref_cpu) = totals[next(iter(SETTINGS))]
    for name, (wall, cpu) in totals.items():
        print(f"{name:18s} per round: wall {wall / args.rounds:6.1f} s ({wall / ref_wall:.2f}x)"
              f"  machine CPU {cpu / args.rounds:6.1f} s ({cpu / ref_cpu:.2f}x)")


if __name__ == "__main__":
    main()
