"""spark-submit entry point for the `models` command: `spark-submit jobs/models.py promote --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["models", *sys.argv[1:]]))
