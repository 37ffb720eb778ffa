"""The ``cam-callback`` command: render, report, compare and info, from the record alone.

It never imports TensorFlow or Keras, so it starts fast and runs where only
the log folder was copied.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from cam_callback.safe_read import UnreadableFile, open_regular

MARKER = ".cam-callback-output"  # marks folders this tool made and may overwrite


class CLIError(Exception):
    """Bad input: printed as one line, exit status 1."""


def _progress(what: str) -> Callable[[int, int], None]:
    """A progress line: rewritten in place on a terminal; piped into a log, a few whole lines
    (every tenth of the way), never a run of ``\r``."""
    live = sys.stderr.isatty()

    def show(done: int, total: int) -> None:
        if live:
            end = "\n" if done == total else ""
            print(f"\r{what} {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"{what} {done}/{total}", file=sys.stderr, flush=True)

    return show


def _count(n: int, what: str) -> str:
    """``"1 MP4 file"``, ``"3 GIF files"``."""
    return f"{n} {what} file{'' if n == 1 else 's'}"


def _probes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CLIError(f"--probes must be comma-separated ids like 0,3,7; got {text!r}") from None


def _max_frames(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise CLIError(f"--max-frames must be a whole number >= 2, or 'all'; got {text!r}")
    return value


def _own_dir(path: Path, names: Sequence[str], default: bool = False) -> Path:
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


def _load(log_dir: str):
    from cam_callback.record import load_run

    run = load_run(log_dir)
    if not run.epochs:
        raise CLIError(f"the record in {log_dir} has no complete epoch yet: nothing to show")
    return run


def cmd_render(args: argparse.Namespace) -> int:
    from cam_callback.animate import render_animations

    run = _load(args.log_dir)
    probes = _probes(args.probes)
    max_frames = _max_frames(args.max_frames)
    chosen = probes if probes is not None else range(run.n_probes)
    names = [f"probe_{i:03d}.{args.format}" for i in chosen]
    out = _own_dir(
        Path(args.out) if args.out else run.path / "animations",
        names + ([f"grid.{args.format}"] if args.grid else []),
        default=not args.out,
    )
    if len(run.epochs) == 1:
        print(
            "only one epoch is recorded: each file holds a single frame, nothing to animate yet",
            file=sys.stderr,
        )
    paths = render_animations(
        run,
        out,
        processes=True,
        formats=args.format,
        fps=args.fps,
        probes=probes,
        grid=args.grid,
        max_frames=max_frames,
        progress=_progress("rendering"),
    )
    print(f"wrote {_count(len(paths), args.format.upper())} to {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cam_callback.report import GENERATOR, write_report

    run = _load(args.log_dir)
    page = Path(args.out) if args.out else run.path / "report" / "index.html"
    if os.path.lexists(page) and GENERATOR not in _page_head(page):
        raise CLIError(f"{page} exists and was not written by cam-callback; choose another --out")
    # Its GIFs go to PAGE_files/: never over files there that another tool or person made.
    gifs = [f"probe_{i:03d}{end}" for i in range(run.n_probes) for end in (".gif", "_last.png")]
    _own_dir(page.parent / f"{page.stem}_files", gifs, default=not args.out)
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot write to {page.parent}: {exc.strerror or exc}") from exc
    written = write_report(
        run,
        page,
        threshold=args.threshold,
        fps=args.fps,
        processes=True,
        progress=_progress("rendering"),
    )
    print(written)
    return 0


def _page_head(page: Path) -> str:
    """The first 2,000 characters of an existing page; a FIFO, device or symlink there is
    refused, never opened."""
    try:
        with open_regular(page, max_bytes=2**40) as f:
            return f.read(2000).decode(errors="replace")
    except UnreadableFile as exc:
        raise CLIError(f"--out {page} {exc}; choose another --out") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from cam_callback.animate import compare_animations

    a, b = _load(args.log_a), _load(args.log_b)
    if a.fingerprint != b.fingerprint:
        raise CLIError(
            f"{args.log_a} and {args.log_b} recorded different probes (fingerprints "
            f"{a.fingerprint} and {b.fingerprint}); compare needs the same probe set"
        )
    labels = args.labels or [Path(args.log_a).name, Path(args.log_b).name]
    names = [f"probe_{i:03d}.{args.format}" for i in range(a.n_probes)]
    out = _own_dir(Path(args.out) if args.out else Path("cam-compare"), names)
    paths = compare_animations(
        a,
        b,
        out,
        labels=labels,
        formats=args.format,
        fps=args.fps,
        probes=_probes(args.probes),
        progress=_progress("comparing"),
    )
    n = min(len(a.epochs), len(b.epochs))
    print(f"wrote {_count(len(paths), 'side-by-side')} ({n} aligned epochs) to {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from cam_callback.frames import clean_name
    from cam_callback.record import load_run

    run = load_run(args.log_dir)
    # Everything from record.json is shown clean: control, ANSI escape and bidi characters
    # in a name could rewrite the terminal line.
    names = ", ".join(map(clean_name, run.class_names)) if run.class_names else "unnamed"
    n_classes = run.meta.get("n_classes", "?")
    print(f"record:  {run.path} (format version {run.meta.get('version')})")
    trained = run.epochs[1:] if run.has_baseline else run.epochs
    before = " after the state before training" if run.has_baseline else ""
    if trained:
        print(f"epochs:  {len(trained)} recorded ({trained[0]}..{trained[-1]}){before}")
    elif run.epochs:
        print("epochs:  only the state before training recorded yet")
    else:
        print("epochs:  none recorded yet")
    print(
        f"probes:  {run.n_probes} of {run.images.shape[1]}x{run.images.shape[2]} px, "
        f"{n_classes} classes ({names})"
    )
    # The score really used (a logit that cannot be found falls back to the probability).
    score = clean_name(run.meta.get("score") or "unknown (older record)", limit=120)
    layer = clean_name(run.layer or "(input)", limit=120)
    print(f"layer:   {layer}  method: {clean_name(run.method)}  score: {score}")
    finite = np.isfinite(run.heatmaps).all(axis=(0, 2, 3)) & np.isfinite(run.probabilities).all(
        axis=(0, 2)
    )
    bad = np.flatnonzero(~finite).tolist()
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        print(f"non_finite: probes {shown}: NaN or inf in maps or probabilities (diverged model)")
    if run.epochs and run.labels is not None:
        last = run.probabilities[-1]  # argmax of NaN is 0: a non-finite row is never right
        right = int(((last.argmax(1) == run.labels) & np.isfinite(last).all(1)).sum())
        print(f"final accuracy on probes: {right / run.n_probes:.2f} ({right}/{run.n_probes})")
    elif run.epochs:
        print("final accuracy on probes: unknown (no labels recorded)")
    return 0


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default:" in text:
            return text
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cam-callback``."""
    from cam_callback import __version__

    fmt = _Help
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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status.

    Example:
        >>> main(["info", "runs/a"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    if hasattr(args, "fps"):
        from cam_callback.config import check_fps

        try:
            check_fps(args.fps, (getattr(args, "format", "gif"),), name="--fps")
        except ValueError as exc:
            print(f"cam-callback: error: {exc}", file=sys.stderr)
            return 1
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        return args.run(args)
    except (CLIError, FileNotFoundError, ValueError, ImportError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the exception held
        print(f"cam-callback: error: {message}", file=sys.stderr)
        return 1
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


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a skipped damaged epoch file) as one line each, without source lines."""
    print(f"cam-callback: warning: {' '.join(str(message).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
