"""The "CAM" dashboard for TensorBoard: every epoch of every run record under ``--logdir``.

Installed with the package and found by TensorBoard through the
``tensorboard_plugins`` entry point, so ``tensorboard --logdir runs`` shows a
CAM tab. It is a thin HTTP layer over :func:`cam_callback.load_run` (the only
parser of the record) plus static frontend files; it imports no TensorFlow.

Example:
    >>> from cam_callback.tensorboard_plugin import CAMPlugin
    >>> CAMPlugin.plugin_name
    'cam'
"""

from cam_callback.tensorboard_plugin.plugin import CAMPlugin
from cam_callback.tensorboard_plugin.runs import discover_runs

__all__ = ["CAMPlugin", "discover_runs"]
