"""Text on frames: the bundled font, names made safe to show, text cut to a width, and text
blended into a uint8 image."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels; cached.

    Example:
        >>> font(13).getlength("hi") > 0
        True
    """
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def text_mask(text: str, size: int) -> np.ndarray:
    """Coverage of ``text`` as uint8 ``[h, w]``; cached, since names and numbers recur."""
    face = font(size)
    width = max(1, int(np.ceil(face.getlength(text))))
    img = Image.new("L", (width, size + size // 2))
    ImageDraw.Draw(img).text((0, 0), text, fill=255, font=face)
    return np.asarray(img)


# NUL, other control characters, and the bidi embeddings, overrides and isolates that could
# reverse what a page or frame shows (U+202A-U+202E, U+2066-U+2069, and the LRM/RLM marks).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_NAME = 48  # characters of a class name shown; longer names end in an ellipsis


def clean_name(name: str, limit: int = MAX_NAME) -> str:
    r"""A class name safe to show: control and bidi characters removed, cut to ``limit``.

    Example:
        >>> clean_name("cat\u202edog\x00"), clean_name("x" * 60, limit=5)
        ('catdog', 'xxxx…')
    """
    text = _HIDDEN.sub("", str(name))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=1024)
def fit_text(text: str, size: int, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels: a binary search, so cost stays linear."""
    face = font(size)
    if face.getlength(text) <= width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if face.getlength(text[:mid] + "…") <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def put_text(
    frame: np.ndarray, x: int, y: int, text: str, colour: tuple[int, int, int], size: int
) -> int:
    """Blends ``text`` into ``frame`` at ``(x, y)`` in place; returns the x after it.

    Example:
        >>> f = np.zeros((20, 60, 3), np.uint8)
        >>> put_text(f, 2, 2, "hi", (255, 255, 255), 13) > 2, int(f.max())
        (True, 255)
    """
    mask = text_mask(text, size)
    h = min(mask.shape[0], frame.shape[0] - y)
    w = min(mask.shape[1], frame.shape[1] - x)
    if h <= 0 or w <= 0:
        return x
    a = mask[:h, :w, None].astype(np.uint16)
    region = frame[y : y + h, x : x + w]
    rgb = np.asarray(colour, np.uint16)
    region[:] = ((rgb * a + region.astype(np.uint16) * (255 - a) + 127) // 255).astype(np.uint8)
    return x + mask.shape[1]


def target_rule(meta: Mapping[str, Any], class_names: Sequence[str] | None = None) -> str:
    """Which class the maps explain, in words, from the record's ``target``.

    Example:
        >>> target_rule({"target": "predicted"}), target_rule({"target": 1}, ["a", "b"])
        ('the predicted class', 'class b')
        >>> target_rule({"target": "label"}), target_rule({})
        ('the true class', 'the class recorded per probe and epoch')
    """
    target = meta.get("target")
    if target == "predicted":
        return "the predicted class"
    if target == "label":
        return "the true class"
    if isinstance(target, int) and not isinstance(target, bool):
        names = class_names or []
        name = names[target] if 0 <= target < len(names) else str(target)
        return f"class {clean_name(name)}"
    if isinstance(target, list):
        return "a class given per probe"
    return "the class recorded per probe and epoch"  # older records: the targets say
