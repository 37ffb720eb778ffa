"""The argument parser of ``cam-callback``: one sub-command each for render, report,
compare and info."""

from __future__ import annotations

import argparse

from cam_callback import __version__
from cam_callback.cli.commands import cmd_compare, cmd_render, cmd_report
from cam_callback.cli.info import cmd_info


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless it has none or its help already says it.

    Example:
        >>> argparse.ArgumentParser(formatter_class=HelpFormatter)  # doctest: +ELLIPSIS
        ArgumentParser(...)
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default:" in text:
            return text
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cam-callback``.

    Example:
        >>> build_parser().parse_args(["info", "runs/a"]).log_dir
        'runs/a'
    """
    fmt = HelpFormatter
    p = argparse.ArgumentParser(
        prog="cam-callback",
        description="Review a CAMTracker run record: animations, a review page, comparisons.",
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"cam-callback {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    log_help = "the run's log folder (the tracker's log_dir), or its cam/ record folder"
    fps_help = "animation speed: recorded epochs per second"

    r = sub.add_parser("render", help="write one animation per probe", formatter_class=fmt)
    r.add_argument("log_dir", help=log_help)
    r.add_argument("--format", choices=("gif", "mp4"), default="gif", help="animation format")
    r.add_argument("--out", help="output folder (default: LOG_DIR/cam/animations)")
    r.add_argument("--probes", help="comma-separated probe ids, e.g. 0,3,7 (default: all)")
    r.add_argument("--fps", type=float, default=4.0, help=fps_help)
    r.add_argument(
        "--max-frames",
        default="100",
        help="most frames per file: recorded epochs sampled evenly, first and last kept, "
        "as the tracker's own animations; 'all' for every epoch",
    )
    r.add_argument(
        "--grid", action="store_true", help="also write a grid of the chosen probes (default: off)"
    )
    r.set_defaults(run=cmd_render)

    rep = sub.add_parser(
        "report", help="write the HTML review page and print its path", formatter_class=fmt
    )
    rep.add_argument("log_dir", help=log_help)
    rep.add_argument("--out", help="HTML file (default: LOG_DIR/cam/report/index.html)")
    rep.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="flag probes whose top-1 probability is below this",
    )
    rep.add_argument("--fps", type=float, default=4.0, help=fps_help)
    rep.set_defaults(run=cmd_report)

    c = sub.add_parser(
        "compare",
        help="side-by-side animations of two runs on the same probes",
        formatter_class=fmt,
    )
    c.add_argument("log_a", help="the first run's log folder (left)")
    c.add_argument("log_b", help="the second run's log folder (right)")
    c.add_argument("--out", default="cam-compare", help="output folder")
    c.add_argument(
        "--labels",
        nargs=2,
        metavar=("A", "B"),
        help="names written above each side (default: the two folders' names)",
    )
    c.add_argument("--format", choices=("gif", "mp4"), default="gif", help="animation format")
    c.add_argument("--probes", help="comma-separated probe ids, e.g. 0,3,7 (default: all)")
    c.add_argument("--fps", type=float, default=4.0, help=fps_help)
    c.set_defaults(run=cmd_compare)

    i = sub.add_parser("info", help="summarise a record in a few lines", formatter_class=fmt)
    i.add_argument("log_dir", help=log_help)
    i.set_defaults(run=cmd_info)
    return p
