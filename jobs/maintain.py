"""spark-submit entry point for `maintain`: `spark-submit jobs/maintain.py --help`.

All logic lives in the installed `clickscore` package; this file only hands over the arguments.
"""

import sys

from clickscore.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
