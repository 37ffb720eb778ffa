"""The commands that write files: ``render``, ``report`` and ``compare``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cam_callback.animate import compare_animations, render_animations
from cam_callback.cli.common import (
    CLIError,
    count_files,
    load_recorded,
    own_dir,
    page_head,
    parse_max_frames,
    parse_probes,
    progress_printer,
)
from cam_callback.report import GENERATOR, write_report


def cmd_render(args: argparse.Namespace) -> int:
    """Writes one animation per probe (and a grid) with worker processes.

    Example:
        >>> cmd_render(build_parser().parse_args(["render", "runs/a"]))  # doctest: +SKIP
        0
    """

    run = load_recorded(args.log_dir)
    probes = parse_probes(args.probes)
    max_frames = parse_max_frames(args.max_frames)
    chosen = probes if probes is not None else range(run.n_probes)
    names = [f"probe_{i:03d}.{args.format}" for i in chosen]
    out = own_dir(
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
        progress=progress_printer("rendering"),
    )
    print(f"wrote {count_files(len(paths), args.format.upper())} to {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Writes the review page, refusing to overwrite a page or files another tool made.

    Example:
        >>> cmd_report(build_parser().parse_args(["report", "runs/a"]))  # doctest: +SKIP
        0
    """

    run = load_recorded(args.log_dir)
    page = Path(args.out) if args.out else run.path / "report" / "index.html"
    if os.path.lexists(page) and GENERATOR not in page_head(page):
        raise CLIError(f"{page} exists and was not written by cam-callback; choose another --out")
    # Its GIFs go to PAGE_files/: never over files there that another tool or person made.
    gifs = [f"probe_{i:03d}{end}" for i in range(run.n_probes) for end in (".gif", "_last.png")]
    own_dir(page.parent / f"{page.stem}_files", gifs, default=not args.out)
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
        progress=progress_printer("rendering"),
    )
    print(written)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Writes side-by-side animations of two runs recorded on the same probes.

    Example:
        >>> cmd_compare(build_parser().parse_args(["compare", "a", "b"]))  # doctest: +SKIP
        0
    """

    a, b = load_recorded(args.log_a), load_recorded(args.log_b)
    if a.fingerprint != b.fingerprint:
        raise CLIError(
            f"{args.log_a} and {args.log_b} recorded different probes (fingerprints "
            f"{a.fingerprint} and {b.fingerprint}); compare needs the same probe set"
        )
    labels = args.labels or [Path(args.log_a).name, Path(args.log_b).name]
    names = [f"probe_{i:03d}.{args.format}" for i in range(a.n_probes)]
    out = own_dir(Path(args.out) if args.out else Path("cam-compare"), names)
    paths = compare_animations(
        a,
        b,
        out,
        labels=labels,
        formats=args.format,
        fps=args.fps,
        probes=parse_probes(args.probes),
        progress=progress_printer("comparing"),
    )
    n = min(len(a.epochs), len(b.epochs))
    print(f"wrote {count_files(len(paths), 'side-by-side')} ({n} aligned epochs) to {out}")
    return 0
