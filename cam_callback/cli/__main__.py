"""``python -m cam_callback.cli``: the same as ``cam-callback``."""

import sys

from cam_callback.cli.main import main

if __name__ == "__main__":  # spawned render workers import this module too
    sys.exit(main())
