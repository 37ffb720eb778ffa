"""What every ``cam-callback`` command shares: the error it prints as one line, progress
lines, argument parsing helpers, output folders it may write, and loading a record."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cam_callback.record import Run, load_run
from cam_callback.safe_read import UnreadableFile, open_regular

MARKER = ".cam-callback-output"  # marks folders this tool made and may overwrite


class CLIError(Exception):
    """Bad input: printed as one line, exit status 1."""


def progress_printer(what: str) -> Callable[[int, int], None]:
    """A progress line: rewritten in place on a terminal; piped into a log, a few whole lines
    (every tenth of the way), never a run of ``\r``.

    Example:
        >>> progress_printer("rendering")(10, 10)  # doctest: +SKIP
        rendering 10/10
    """
    live = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if live:
            end = "\n" if done == total else ""
            print(f"\r{what} {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"{what} {done}/{total}", file=sys.stderr, flush=True)

    return show


def count_files(n: int, what: str) -> str:
    """How many files of a kind were written, in words.

    Example:
        >>> count_files(1, "MP4"), count_files(3, "GIF")
        ('1 MP4 file', '3 GIF files')
    """
    return f"{n} {what} file{'' if n == 1 else 's'}"


def parse_probes(text: str | None) -> list[int] | None:
    """``--probes``: comma-separated ids, or ``None`` for all.

    Raises:
        CLIError: Not a list of whole numbers.

    Example:
        >>> parse_probes("0,3,7"), parse_probes(None)
        ([0, 3, 7], None)
    """
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CLIError(f"--probes must be comma-separated ids like 0,3,7; got {text!r}") from None


def parse_max_frames(text: str) -> int | None:
    """``--max-frames``: a whole number >= 2, or ``"all"`` (``None``: every epoch).

    Raises:
        CLIError: Anything else.

    Example:
        >>> parse_max_frames("100"), parse_max_frames("all")
        (100, None)
    """
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise CLIError(f"--max-frames must be a whole number >= 2, or 'all'; got {text!r}")
    return value


def own_dir(path: Path, names: Sequence[str], default: bool = False) -> Path:
    """Creates ``path`` as our output folder; refuses to overwrite files in a folder not ours.

    ``default`` folders live inside the record (``LOG_DIR/cam/...``) and are ours by definition.
    """
    if path.exists() and not path.is_dir():
        raise CLIError(f"output {path} exists and is not a folder")
    if path.is_dir() and not default and not (path / MARKER).exists():
        clash = [n for n in names if (path / n).exists()]
        if clash:
            raise CLIError(
                f"{path} was not made by cam-callback and already holds {clash[0]}; "
                "choose a new or empty --out folder"
            )
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).touch()
    except OSError as exc:
        raise CLIError(f"cannot write to {path}: {exc.strerror or exc}") from exc
    return path


def load_recorded(log_dir: str) -> Run:
    """The record in ``log_dir``, which must hold at least one complete epoch.

    Raises:
        CLIError: No complete epoch yet.

    Example:
        >>> load_recorded("runs/a").n_probes  # doctest: +SKIP
        12
    """
    run = load_run(log_dir)
    if not run.epochs:
        raise CLIError(f"the record in {log_dir} has no complete epoch yet: nothing to show")
    return run


def page_head(page: Path) -> str:
    """The first 2,000 characters of an existing page; a FIFO, device or symlink there is
    refused, never opened."""
    try:
        with open_regular(page, max_bytes=2**40) as f:
            return f.read(2000).decode(errors="replace")
    except UnreadableFile as exc:
        raise CLIError(f"--out {page} {exc}; choose another --out") from None
