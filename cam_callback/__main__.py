"""``python -m cam_callback``: the same as the ``cam-callback`` command."""

import sys

from cam_callback.cli import main

if __name__ == "__main__":  # spawned render workers import this module too
    sys.exit(main())
