"""The ``cam-callback`` command: render, report, compare and info, from the record alone.

It never imports TensorFlow or Keras, so it starts fast and runs where only
the log folder was copied. The package is split by job:
:mod:`~cam_callback.cli.common` (errors, progress, output folders),
:mod:`~cam_callback.cli.commands` (render, report, compare),
:mod:`~cam_callback.cli.info` (info), :mod:`~cam_callback.cli.parser`
(arguments) and :mod:`~cam_callback.cli.main` (the entry point,
``cam_callback.cli:main``).

Example:
    >>> from cam_callback.cli import main
    >>> main(["info", "runs/a"])  # doctest: +SKIP
    0
"""

from cam_callback.cli.commands import cmd_compare, cmd_render, cmd_report
from cam_callback.cli.common import MARKER, CLIError
from cam_callback.cli.info import cmd_info
from cam_callback.cli.main import main, one_line_warning
from cam_callback.cli.parser import HelpFormatter, build_parser

__all__ = [
    "MARKER",
    "CLIError",
    "HelpFormatter",
    "build_parser",
    "cmd_compare",
    "cmd_info",
    "cmd_render",
    "cmd_report",
    "main",
    "one_line_warning",
]
