"""spark-submit entry point for the `export` command: `spark-submit jobs/export.py --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
