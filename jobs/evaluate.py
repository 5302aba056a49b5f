"""spark-submit entry point for the `evaluate` stage: `spark-submit jobs/evaluate.py --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
