"""``python -m reports.tensorboard [FOLDER] [--port N]``: the trace viewer (reports/traces/tensorboard.py)
at the path the noxfile and README name."""

import sys

from .traces.tensorboard import main

if __name__ == "__main__":
    sys.exit(main())
