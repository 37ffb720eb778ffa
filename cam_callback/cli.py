"""The ``cam-callback`` command: render, report, compare and info, from the record alone.

It never imports TensorFlow or Keras, so it starts fast and runs where only
the log folder was copied.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

MARKER = ".cam-callback-output"  # marks folders this tool made and may overwrite


class CLIError(Exception):
    """Bad input: printed as one line, exit status 1."""


def _progress(what: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{what} {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _probes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CLIError(f"--probes must be comma-separated ids like 0,3,7; got {text!r}") from None


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
        progress=_progress("rendering"),
    )
    print(f"wrote {len(paths)} {args.format.upper()} files to {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cam_callback.report import GENERATOR, write_report

    run = _load(args.log_dir)
    page = Path(args.out) if args.out else run.path / "report" / "index.html"
    if page.exists() and GENERATOR not in page.read_text(errors="replace")[:2000]:
        raise CLIError(f"{page} exists and was not written by cam-callback; choose another --out")
    # Its GIFs go to PAGE_files/: never over files there that another tool or person made.
    gifs = [f"probe_{i:03d}.gif" for i in range(run.n_probes)]
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
    print(f"wrote {len(paths)} side-by-side files ({n} aligned epochs) to {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from cam_callback.frames import clean_name
    from cam_callback.record import load_run

    run = load_run(args.log_dir)
    # Control and bidi characters in a name could rewrite the terminal line: shown clean.
    names = ", ".join(map(clean_name, run.class_names)) if run.class_names else "unnamed"
    n_classes = run.meta.get("n_classes", "?")
    print(f"record:  {run.path} (format version {run.meta.get('version')})")
    if run.epochs:
        print(f"epochs:  {len(run.epochs)} recorded ({run.epochs[0]}..{run.epochs[-1]})")
    else:
        print("epochs:  none recorded yet")
    print(
        f"probes:  {run.n_probes} of {run.images.shape[1]}x{run.images.shape[2]} px, "
        f"{n_classes} classes ({names})"
    )
    # The score really used (a logit that cannot be found falls back to the probability).
    score = run.meta.get("score") or "unknown (older record)"
    print(f"layer:   {run.layer or '(input)'}  method: {run.method}  score: {score}")
    finite = np.isfinite(run.heatmaps).all(axis=(0, 2, 3)) & np.isfinite(run.probabilities).all(
        axis=(0, 2)
    )
    bad = np.flatnonzero(~finite).tolist()
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        print(f"non_finite: probes {shown}: NaN or inf in maps or probabilities (diverged model)")
    if run.epochs and run.labels is not None:
        right = int((run.probabilities[-1].argmax(1) == run.labels).sum())
        print(f"final accuracy on probes: {right / run.n_probes:.2f} ({right}/{run.n_probes})")
    elif run.epochs:
        print("final accuracy on probes: unknown (no labels recorded)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cam-callback``."""
    p = argparse.ArgumentParser(
        prog="cam-callback",
        description="Review a CAMTracker run record: animations, a review page, comparisons.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="write one animation per probe")
    r.add_argument("log_dir")
    r.add_argument("--format", choices=("gif", "mp4"), default="gif")
    r.add_argument("--out", help="folder (default: LOG_DIR/cam/animations)")
    r.add_argument("--probes", help="comma-separated probe ids, e.g. 0,3,7")
    r.add_argument("--fps", type=float, default=4.0)
    r.add_argument("--grid", action="store_true", help="also write a grid of all probes")
    r.set_defaults(run=cmd_render)

    rep = sub.add_parser("report", help="write the HTML review page and print its path")
    rep.add_argument("log_dir")
    rep.add_argument("--out", help="HTML file (default: LOG_DIR/cam/report/index.html)")
    rep.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="flag probes whose top-1 probability is below this",
    )
    rep.add_argument("--fps", type=float, default=4.0)
    rep.set_defaults(run=cmd_report)

    c = sub.add_parser("compare", help="side-by-side animations of two runs on the same probes")
    c.add_argument("log_a")
    c.add_argument("log_b")
    c.add_argument("--out", help="folder (default: ./cam-compare)")
    c.add_argument("--labels", nargs=2, metavar=("A", "B"))
    c.add_argument("--format", choices=("gif", "mp4"), default="gif")
    c.add_argument("--probes")
    c.add_argument("--fps", type=float, default=4.0)
    c.set_defaults(run=cmd_compare)

    i = sub.add_parser("info", help="summarise a record in a few lines")
    i.add_argument("log_dir")
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
