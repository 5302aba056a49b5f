"""spark-submit entry point for the `score` stage: `spark-submit jobs/score.py --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
