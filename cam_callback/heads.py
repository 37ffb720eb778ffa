"""Heads under their old module path (kept for callers): see :mod:`cam_callback.core.heads`.

Example:
    >>> from cam_callback.heads import HEADS
    >>> "softmax" in HEADS
    True
"""

from __future__ import annotations

from cam_callback.core.heads import (
    HEADS,
    Head,
    HeadInfo,
    check_head,
    head_info,
    head_scores,
    logit_hooks,
)
from cam_callback.core.loss import loss_squash, resolve_head

__all__ = [
    "HEADS", "Head", "HeadInfo", "check_head", "head_info", "head_scores", "logit_hooks",
    "loss_squash", "resolve_head",
]  # fmt: skip
