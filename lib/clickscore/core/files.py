"""Who may read what a run writes. The files of a data root hold quarantined raw lines,
scores, the model registry and run records: they are for their owner and group only. Every
clickscore process sets its umask from `$CLICKSCORE_UMASK` (default 007) before it writes
anything, and the JVMs and Python workers it starts inherit it; Spark's local writes follow
Hadoop's own umask, which `core.spark` sets to the same. No Spark import here."""

from __future__ import annotations

import os

UMASK_ENV = "CLICKSCORE_UMASK"
UMASK_DEFAULT = "007"


def private_files() -> int:
    """Set this process's umask from `$CLICKSCORE_UMASK` (octal, default 007: files for their
    owner and group, nothing for other users), for every file it and the JVMs and workers it
    starts create; the umask set."""
    text = os.environ.get(UMASK_ENV, UMASK_DEFAULT)
    try:
        umask = int(text, 8)
    except ValueError:
        raise ValueError(f"${UMASK_ENV} must be an octal umask such as 007 or 027, got "
                         f"{text!r}") from None
    if not 0 <= umask <= 0o777:
        raise ValueError(f"${UMASK_ENV} must be an octal umask such as 007, got {text!r}")
    os.umask(umask)
    return umask
