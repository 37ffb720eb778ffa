"""Checks shared by the option dicts of the pipeline's measurements (``fragility=``,
``evidence=``): each field's kind and range, with one message shape.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any


def is_whole(value: Any) -> bool:
    """An integer (Python or numpy), not a bool.

    Example:
        >>> is_whole(3), is_whole(True), is_whole(3.0)
        (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python or numpy), not a bool.

    Example:
        >>> is_real(0.5), is_real(1), is_real(False)
        (True, True, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_fields(argument: str, options: Any, checks: Sequence[tuple[str, bool, str]]) -> None:
    """Raises for the first field of ``options`` whose check failed.

    Args:
        argument: The argument's name, for the message.
        options: The options read (a dataclass of the fields).
        checks: ``(field, ok, expected)`` per field, in the order to report.

    Raises:
        ValueError: ``"`argument['field']` must be expected. Received: value"``.

    Example:
        >>> from types import SimpleNamespace
        >>> check_fields("evidence", SimpleNamespace(seed=0.5), [("seed", False, "an int")])
        Traceback (most recent call last):
        ...
        ValueError: `evidence['seed']` must be an int. Received: 0.5
    """
    for key, ok, expected in checks:
        if not ok:
            raise ValueError(
                f"`{argument}['{key}']` must be {expected}. Received: {getattr(options, key)!r}"
            )
