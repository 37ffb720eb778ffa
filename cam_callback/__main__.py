"""``python -m cam_callback``: the same as the ``cam-callback`` command."""

import sys

from cam_callback.cli import main

sys.exit(main())
