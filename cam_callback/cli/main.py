"""``cam-callback``'s entry point: parse, check ``--fps``, run the command, and turn every
error into one line and an exit status."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from cam_callback.cli.common import CLIError
from cam_callback.cli.parser import build_parser
from cam_callback.record.config import check_fps

SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for `cat` whose reader went away


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    A reader that goes away early (``cam-callback info runs/a | head -3``) ends it quietly
    with status 141, as it ends ``cat``: no error line, no traceback at exit.

    Example:
        >>> main(["info", "runs/a"])  # doctest: +SKIP
        0
    """
    try:
        try:
            return run_command(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here (also after --help), not at exit
    except BrokenPipeError:
        # Python's own advice: point stdout at devnull, so that the flush at exit is silent.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (a test's capture)
            pass
        return SIGPIPE_STATUS


def run_command(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` and runs its command; every error but a closed stdout becomes one
    line on stderr and status 1.

    Example:
        >>> run_command(["info", "runs/a"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    if hasattr(args, "fps"):
        try:
            check_fps(args.fps, (getattr(args, "format", "gif"),), name="--fps")
        except ValueError as exc:
            print(f"cam-callback: error: {exc}", file=sys.stderr)
            return 1
    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    try:
        return args.run(args)
    except (CLIError, FileNotFoundError, ValueError, ImportError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception held
        print(f"cam-callback: error: {message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # the reader went away: main ends quietly
    except OSError as exc:
        print(
            f"cam-callback: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a record damaged in a way no check foresaw: still one line
        message = " ".join(str(exc).split())
        print(f"cam-callback: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown


def one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings (a skipped damaged epoch file) as one line each, without source lines;
    installed as ``warnings.showwarning`` while a command runs.

    Example:
        >>> one_line_warning("epoch 3   skipped", UserWarning, "f.py", 1)  # doctest: +SKIP
        cam-callback: warning: epoch 3 skipped
    """
    print(f"cam-callback: warning: {' '.join(str(message).split())}", file=sys.stderr)
