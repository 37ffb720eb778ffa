"""Argument checks of :func:`~cam_callback.evaluation.scoring.evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cam_callback.evaluation.results import CONTROLS, METRICS, MapFn
from cam_callback.methods import available_methods


def check_metrics(metrics: Any, have_masks: bool) -> list[str]:
    """The metrics to compute (``pointing_game`` and ``energy`` only with masks).

    Example: ``check_metrics(("road",), False) == ["road"]``.
    """
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"`metrics` must be a sequence of names from {METRICS}. Received: metrics={metrics!r}"
        )
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"`metrics` must be names from {METRICS}. Received: {bad[0]!r}")
    return [m for m in metrics if have_masks or m not in ("pointing_game", "energy")]


def check_options(
    method_options: Any, entries: list[tuple[str, MapFn | None]]
) -> dict[str, Mapping[str, Any]]:
    """``method_options`` checked against the methods evaluated, per name.

    Example: ``check_options(None, [("gradcam", None)]) == {}``.
    """
    """``method_options`` as ``{method name: options}``, for named methods of ``entries``."""
    if method_options is None:
        return {}
    named = [name for name, fn in entries if fn is None and name not in CONTROLS]
    if not isinstance(method_options, Mapping) or not all(
        isinstance(v, Mapping) for v in method_options.values()
    ):
        raise TypeError(
            "`method_options` must map method names to dicts of options, e.g. "
            '{"scorecam": {"max_channels": 64}}. '
            f"Received: method_options={method_options!r}"
        )
    unknown = [k for k in method_options if k not in named]
    if unknown:
        raise ValueError(
            f"`method_options` names {unknown[0]!r}, which is not one of the registered "
            f"methods in `methods` ({', '.join(named) or 'none'}). "
            f"Received: method_options={method_options!r}"
        )
    return dict(method_options)


def check_methods(methods: Any) -> list[tuple[str, MapFn | None]]:
    """``[(name, fn or None)]``: registered names, controls or ``(name, fn)`` pairs.

    Example: ``check_methods(("gradcam", "random"))[0] == ("gradcam", None)``.
    """
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(
            "`methods` must be a non-empty sequence of method names or (name, fn) pairs. "
            f"Received: methods={methods!r}"
        )
    known = available_methods()
    out: list[tuple[str, MapFn | None]] = []
    for entry in methods:
        if isinstance(entry, tuple) and len(entry) == 2 and callable(entry[1]):
            out.append((str(entry[0]), entry[1]))
        elif isinstance(entry, str) and (entry in known or entry in CONTROLS):
            out.append((entry, None))
        else:
            raise ValueError(
                f"`methods` entries must be one of {known + CONTROLS} or a (name, fn) pair. "
                f"Received: {entry!r}"
            )
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"`methods` names must be unique. Received: {names}")
    return out
