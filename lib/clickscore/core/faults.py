"""Pause points, where kill tests stop a job that has committed part of its output.

`CLICKSCORE_PAUSE_AT=JOB:POINT` (for example `sessionize:silver-events-published`) makes the
run of JOB that reaches POINT print one line to stderr and wait there until it is killed. The
points every stage has are `staged` (a batch is computed into the staging area, nothing
published) and `published` (its tables are written, its run row still says `running`); a stage
that commits more than one table names the points between them (see the README's runbook).
Unset, a pause point costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "CLICKSCORE_PAUSE_AT"


def pause_point(job: str, point: str) -> None:
    """Wait here forever when `$CLICKSCORE_PAUSE_AT` names `job:point`."""
    if os.environ.get(PAUSE_ENV) != f"{job}:{point}":
        return
    print(f"clickscore: paused at {job}:{point} (pid {os.getpid()})", file=sys.stderr,
          flush=True)
    while True:
        time.sleep(60)
