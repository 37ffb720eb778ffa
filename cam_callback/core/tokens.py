"""Token layers on their patch grid: which tokens are patches, and how they tile the image.

A Vision Transformer layer outputs ``[batch, tokens, dim]``: a few *prefix* tokens
(the class token, DeiT's distillation token, DINOv2's register tokens) and then
one token per patch, row by row. :func:`token_grid` decides how many prefix tokens
to drop and the ``(h, w)`` grid of the rest; :func:`tokens_to_grid` and
:func:`grid_to_tokens` reshape between ``[b, tokens, dim]`` and ``[b, h, w, dim]``
in ``keras.ops`` on every backend. Shapes only: no model logic lives here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

MAX_PREFIX = 16
"""The most prefix tokens guessed when neither ``grid`` nor ``prefix_tokens`` is given."""


@dataclass(frozen=True)
class TokenGrid:
    """How a token layer's output tiles the image.

    Attributes:
        prefix: Tokens before the patches (class, distillation, register tokens).
        height: Patch rows.
        width: Patch columns.

    Example:
        >>> TokenGrid(1, 4, 4).tokens
        17
    """

    prefix: int
    height: int
    width: int

    @property
    def tokens(self) -> int:
        """The layer's token count: prefix plus patches."""
        return self.prefix + self.height * self.width


def is_token_shape(shape: Sequence[int | None] | None) -> bool:
    """True for a ``[batch, tokens, dim]`` output with more than one token.

    Example:
        >>> is_token_shape((None, 17, 32)), is_token_shape((None, 4, 4, 32))
        (True, False)
    """
    return shape is not None and len(shape) == 3 and shape[1] is not None and shape[1] > 1


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        value = None
    if isinstance(value, numbers.Integral):  # numpy ints too
        value = (value, value)
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0
            for v in value
        )
    )
    if not ok:
        raise ValueError(
            f"`{name}` must be a positive int or a pair of positive ints (h, w). "
            f"Received: {name}={value!r}"
        )
    return int(value[0]), int(value[1])


def _check_prefix(prefix_tokens: Any) -> int | None:
    if prefix_tokens is None:
        return None
    if (
        isinstance(prefix_tokens, bool)
        or not isinstance(prefix_tokens, numbers.Integral)
        or prefix_tokens < 0
    ):
        raise ValueError(
            "`prefix_tokens` must be None or an int >= 0 (1 for a class token, 2 with "
            f"DeiT's distillation token, 1 + registers for DINOv2). "
            f"Received: prefix_tokens={prefix_tokens!r}"
        )
    return int(prefix_tokens)


def check_token_arguments(
    grid: Any, prefix_tokens: Any
) -> tuple[tuple[int, int] | None, int | None]:
    """``grid`` and ``prefix_tokens`` checked before any model is seen (``CAMTracker``).

    Args:
        grid: ``None``, a positive int (a square grid) or a pair ``(h, w)``.
        prefix_tokens: ``None`` or an int >= 0.

    Returns:
        ``(grid as (h, w) or None, prefix_tokens)``.

    Raises:
        ValueError: Either is not of that form; the message names the argument.

    Example:
        >>> check_token_arguments([4, 6], 1)
        ((4, 6), 1)
    """
    return (None if grid is None else _pair(grid, "grid")), _check_prefix(prefix_tokens)


def _fits_image(n: int, image: tuple[int, int]) -> tuple[int, int] | None:
    """The ``(h, w)`` grid of ``n`` patches with the image's aspect ratio and whole patches."""
    big_h, big_w = image
    h = math.isqrt(n * big_h // big_w) if big_w else 0
    for cand in (h, h + 1):  # isqrt rounds down; the exact root is one of these
        if cand > 1 and n % cand == 0:
            w = n // cand
            if w > 1 and cand * big_w == w * big_h and big_h % cand == 0 and big_w % w == 0:
                return cand, w
    return None


def token_grid(
    shape: Sequence[int | None],
    image: tuple[int, int],
    *,
    patch_size: int | tuple[int, int] | None = None,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
    layer: str = "",
) -> TokenGrid:
    """Decides the prefix tokens and the patch grid of a ``[batch, tokens, dim]`` output.

    In order: an explicit ``grid`` (prefix = the tokens left over); the image
    size over ``patch_size``; else the fewest prefix tokens (``prefix_tokens``
    when given, else 0 to :data:`MAX_PREFIX`) that leave a grid of whole square
    patches with the image's aspect ratio: 17 tokens on a 32-pixel image are a
    class token and 4 x 4 patches of 8 pixels. A ``patch_size`` that does not fit
    this layer (a later Swin stage) falls back to that search.

    Args:
        shape: The layer's output shape, ``(batch, tokens, dim)``.
        image: The input image's ``(H, W)``.
        patch_size: Pixels per patch (int or ``(ph, pw)``), or ``None``.
        grid: The patch grid ``(h, w)``, or ``None`` to find it.
        prefix_tokens: Tokens before the patches, or ``None`` to find them.
        layer: The layer's path, for error messages.

    Returns:
        A :class:`TokenGrid`.

    Raises:
        ValueError: Not a token shape, bad arguments, or a grid that cannot be known;
            the message names ``grid=`` and ``prefix_tokens=``.

    Example:
        >>> token_grid((None, 17, 32), (32, 32))
        TokenGrid(prefix=1, height=4, width=4)
        >>> token_grid((None, 261, 8), (64, 64), patch_size=4)
        TokenGrid(prefix=5, height=16, width=16)
    """
    if not is_token_shape(shape):
        raise ValueError(
            f"`layer` {layer!r} has output shape {tuple(shape or ())}, not [batch, tokens, dim] "
            f"with more than one token. Received: layer={layer!r}"
        )
    n_tokens = int(shape[1])  # type: ignore[arg-type]
    prefix = _check_prefix(prefix_tokens)
    received = f"Received: layer={layer!r}, tokens={n_tokens}, image={tuple(image)}"
    if grid is not None:
        return check_grid(_pair(grid, "grid"), n_tokens, image, patch_size=patch_size,
                          prefix_tokens=prefix, layer=layer)  # fmt: skip
    found = _search(n_tokens, image, patch_size, prefix)
    if found is not None:
        return found
    raise ValueError(
        f"the patch grid of token layer {layer!r} cannot be known: {n_tokens} tokens "
        + ("" if prefix is None else f"minus prefix_tokens={prefix} ")
        + "leave no grid of whole patches with the image's aspect ratio. Pass grid=(h, w) "
        "(the patch rows and columns) and/or prefix_tokens=n (class, distillation and register "
        f"tokens before the patches). {received}"
    )


def _search(
    n_tokens: int, image: tuple[int, int], patch_size: Any, prefix: int | None
) -> TokenGrid | None:
    """The grid the shapes imply without ``grid=``: the patch size's, else the search."""
    if patch_size is not None:
        ph, pw = _pair(patch_size, "patch_size")
        h, w = image[0] // ph, image[1] // pw
        left = n_tokens - h * w
        if h > 1 and w > 1 and 0 <= left <= MAX_PREFIX and prefix in (None, left):
            return TokenGrid(left, h, w)
    options = range(MAX_PREFIX + 1) if prefix is None else (prefix,)
    for p in options:
        found = _fits_image(n_tokens - p, image) if n_tokens - p > 0 else None
        if found is not None:
            return TokenGrid(p, *found)
    return None


ASPECT_TOLERANCE = 1.5
"""How far a given grid's patches may be from the expected shape (square, or the declared
``patch_size``'s), as a ratio of their height-to-width ratios: whole-patch rounding stays
well inside it, a transposed 3:2 grid (2.25) does not."""


def check_grid(
    grid: tuple[int, int],
    n_tokens: int,
    image: tuple[int, int],
    *,
    patch_size: int | tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
    layer: str = "",
) -> TokenGrid:
    """A ``grid=`` given for a layer of ``n_tokens`` tokens, checked against the image.

    Refused: fewer than 2 rows or columns; more patches than tokens; a prefix other
    than ``prefix_tokens``, or over :data:`MAX_PREFIX` when ``prefix_tokens`` is not
    given; a grid whose aspect ratio contradicts the image's (a transposed grid).
    The message names the grid the image implies.

    Raises:
        ValueError: Any of these, naming ``grid`` and the grid the image implies.

    Example:
        >>> check_grid((4, 6), 24, (16, 24))
        TokenGrid(prefix=0, height=4, width=6)
    """
    h, w = grid
    left = n_tokens - h * w
    implied = _search(n_tokens, image, patch_size, prefix_tokens)
    hint = (
        f" The image {tuple(image)} implies grid={(implied.height, implied.width)} with "
        f"{implied.prefix} prefix tokens."
        if implied is not None and (implied.height, implied.width) != (h, w)
        else ""
    )
    ph, pw = (1, 1) if patch_size is None else _pair(patch_size, "patch_size")
    # >1: the grid's patches are taller than expected; <1: wider.
    ratio = (image[0] * w * pw) / (image[1] * h * ph)
    rows, cols = image[0] / ph, image[1] / pw
    why = ""
    if h < 2 or w < 2:
        why = "a map needs at least 2 patch rows and 2 columns"
    elif left < 0:
        why = f"{n_tokens} tokens minus {h * w} patches leaves {left} prefix tokens"
    elif prefix_tokens is not None and prefix_tokens != left:
        why = (
            f"{n_tokens} tokens minus {h * w} patches leaves {left} prefix tokens, not "
            f"prefix_tokens={prefix_tokens}"
        )
    elif prefix_tokens is None and left > MAX_PREFIX:
        why = (
            f"{n_tokens} tokens minus {h * w} patches leaves {left} prefix tokens, more than "
            f"the {MAX_PREFIX} taken without prefix_tokens= (pass prefix_tokens={left} as well "
            "if the layer really has them)"
        )
    elif (h - w) * (rows - cols) < 0 or not 1 / ASPECT_TOLERANCE <= ratio <= ASPECT_TOLERANCE:
        why = (
            f"its {h} rows and {w} columns contradict the image's aspect ratio "
            f"({image[0]} x {image[1]} pixels: each patch would be {image[0] / h:.3g} x "
            f"{image[1] / w:.3g} pixels; is it transposed?)"
        )
    if why:
        raise ValueError(
            f"`grid` {(h, w)} does not fit layer {layer!r}: {why}.{hint} Received: "
            f"layer={layer!r}, tokens={n_tokens}, image={tuple(image)}, grid={grid!r}, "
            f"prefix_tokens={prefix_tokens!r}"
        )
    return TokenGrid(left, h, w)


def tokens_to_grid(tokens: Any, grid: TokenGrid) -> Any:
    """``[b, tokens, dim]`` to ``[b, h, w, dim]`` in ``keras.ops``: prefix dropped, rows kept.

    Example:
        >>> import numpy as np
        >>> tuple(tokens_to_grid(np.zeros((2, 17, 3)), TokenGrid(1, 4, 4)).shape)
        (2, 4, 4, 3)
    """
    dim = tokens.shape[-1]
    return keras.ops.reshape(tokens[:, grid.prefix :], (-1, grid.height, grid.width, dim))


def grid_to_tokens(grid_map: Any, prefix: Any, grid: TokenGrid) -> Any:
    """``[b, h, w, dim]`` back to ``[b, tokens, dim]``, with ``prefix`` ``[b, p, dim]`` in front.

    The inverse of :func:`tokens_to_grid` given the prefix tokens it dropped.

    Example:
        >>> import numpy as np
        >>> t = np.arange(34.0).reshape(1, 17, 2)
        >>> g = TokenGrid(1, 4, 4)
        >>> bool((np.asarray(grid_to_tokens(tokens_to_grid(t, g), t[:, :1], g)) == t).all())
        True
    """
    dim = grid_map.shape[-1]
    patches = keras.ops.reshape(grid_map, (-1, grid.height * grid.width, dim))
    if grid.prefix == 0:
        return patches
    return keras.ops.concatenate([keras.ops.cast(prefix, patches.dtype), patches], axis=1)
