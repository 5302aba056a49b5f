"""spark-submit entry point for the `tune` stage: `spark-submit jobs/tune.py --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
