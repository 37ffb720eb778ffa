"""Token layers of a model: their patch grid, and the default layer of a Vision Transformer.

A class-token ViT reads only token 0 after its last attention, so the patch tokens
of every later layer (the last block's output, the final norm) never reach the
score: Grad-CAM there is zero. :func:`default_layer` walks back from the end and
picks the last layer whose patch tokens do reach the output, found by perturbing
them in one eager forward and reading the explained logits (not the probabilities,
which saturate on a confident model) with a relative threshold; on keras-hub's ViT
that is the last block's first LayerNorm, pytorch-grad-cam's advice for ViTs. A
spatial default coarser than ``MIN_SIDE`` cells a side warns, naming a finer layer.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import keras
import numpy as np

from cam_callback import backends
from cam_callback.core import layers as _layers
from cam_callback.core.heads import Head, logit_hooks
from cam_callback.core.tokens import TokenGrid, token_grid

RTOL = 1e-4
"""A token layer reaches the output when perturbing its patches moves a logit by more
than this share of the largest logit (on :data:`PROBES` probes)."""
PROBES = 4
"""How many of the images the default-layer test perturbs."""

_DEFAULTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # {model: {key: (path, why)}}


def patch_size_hint(model: keras.Model) -> int | tuple[int, int] | None:
    """The ``patch_size`` a model or one of its layers declares (keras-hub's and keras.io's do).

    Example:
        >>> patch_size_hint(vit)  # doctest: +SKIP
        8
    """
    for obj in (model, *(layer for _, layer in _layers.iter_layers(model))):
        size = getattr(obj, "patch_size", None)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
        if (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(s, int) and s > 0 for s in size)
        ):
            return int(size[0]), int(size[1])
    return None


def layer_tokens(
    model: keras.Model,
    call: _layers.LayerCall,
    image: tuple[int, int],
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> TokenGrid | None:
    """The patch grid of ``call``'s token output, or ``None`` for a spatial (4-D) layer.

    Raises:
        ValueError: A grid that cannot be known (naming ``grid=`` and ``prefix_tokens=``),
            or ``grid``/``prefix_tokens`` given for a layer that has no tokens.

    Example:
        >>> layer_tokens(vit, call, (32, 32))  # doctest: +SKIP
        TokenGrid(prefix=1, height=4, width=4)
    """
    if not call.is_tokens:
        if grid is not None or prefix_tokens is not None:
            raise ValueError(
                f"`grid` and `prefix_tokens` apply to token layers ([batch, tokens, dim]); layer "
                f"{call.path!r} has output shape {(None, *call.shape[1:])}. "
                f"Received: grid={grid!r}, prefix_tokens={prefix_tokens!r}"
            )
        return None
    return token_grid(
        call.shape,
        image,
        patch_size=patch_size_hint(model),
        grid=grid,
        prefix_tokens=prefix_tokens,
        layer=call.path,
    )


def explained_tokens(
    model: keras.Model,
    calls: list[_layers.LayerCall],
    x: np.ndarray,
    target_layer: keras.layers.Layer | None,
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> TokenGrid | None:
    """The patch grid of the explained layer when it outputs tokens, else ``None``.

    Raises:
        ValueError: The grid cannot be known (the message names ``grid=`` and
            ``prefix_tokens=``), or those were given for a layer without tokens.

    Example:
        >>> explained_tokens(vit, info.calls, x, layer)  # doctest: +SKIP
        TokenGrid(prefix=1, height=4, width=4)
    """
    if target_layer is None:
        if grid is not None or prefix_tokens is not None:
            raise ValueError(
                "`grid` and `prefix_tokens` apply to a token layer; this method explains the "
                f"input. Received: grid={grid!r}, prefix_tokens={prefix_tokens!r}"
            )
        return None
    call = next(c for c in calls if c.layer is target_layer)
    return layer_tokens(model, call, x.shape[1:3], grid=grid, prefix_tokens=prefix_tokens)


def explained_scores(
    model: keras.Model,
    calls: list[_layers.LayerCall],
    sample: np.ndarray,
    head: Head,
    hooks: dict | None = None,
) -> np.ndarray:
    """The explained output's logits on ``sample`` as float64 numpy, one eager forward.

    Read where the head finds them (the input of a final softmax or sigmoid, a
    linear output); where it has none, the log of the probabilities, floored at
    1e-30. Logits, not probabilities: a confident model's float32 probabilities
    saturate at 1 and no longer move.

    Example:
        >>> explained_scores(model, info.calls, x[:4], head).shape  # doctest: +SKIP
        (4, 3)
    """
    store: dict = {}
    hooks = {**(hooks or {}), **logit_hooks(calls, head, store)}
    with backends.inference(model), _layers.intercepted(hooks):
        out = model(sample, training=False)
    key = head.key
    out = out[0] if isinstance(out, (list, tuple)) and key is None else out
    out = out if key is None else out[key]
    if "logits" in store:
        out = store["logits"]
    values = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
    if head.squash or head.hook:
        return values.reshape(len(values), -1)
    return np.log(np.maximum(values, 1e-30)).reshape(len(values), -1)


def reaches_output(
    model: keras.Model,
    calls: list[_layers.LayerCall],
    layer: keras.layers.Layer,
    tokens: TokenGrid,
    sample: np.ndarray,
    head: Head,
    clean: np.ndarray | None = None,
) -> bool:
    """Whether ``layer``'s patch tokens change the explained logits on ``sample``.

    One eager forward with random noise added to the patch tokens (prefix tokens
    untouched), compared with ``clean`` (the unperturbed logits, computed when not
    given) relative to their own size: a change above :data:`RTOL` times the largest
    logit on any of the probes. Scaling the head's weights scales both alike, so a
    confident model's layer is the same as an untrained one's. Noise, not a
    constant shift, which the next LayerNorm would remove.

    Example:
        >>> reaches_output(vit, calls, last_block, TokenGrid(1, 4, 4), x[:4], head)
        ... # doctest: +SKIP
        False
    """

    def hook(call: Any, args: tuple, kwargs: dict) -> Any:
        out = call(*args, **kwargs)
        b, t, d = int(out.shape[0]), int(out.shape[1]), int(out.shape[2])
        noise = np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)
        noise[:, : tokens.prefix] = 0.0
        scale = keras.ops.std(keras.ops.cast(out, "float32")) + 1.0
        return out + keras.ops.cast(keras.ops.convert_to_tensor(noise) * scale, out.dtype)

    if clean is None:
        clean = explained_scores(model, calls, sample, head)
    noisy = explained_scores(model, calls, sample, head, {layer: hook})
    change = float(np.abs(noisy - clean).max())
    return change > 0.0 and change > RTOL * float(np.abs(clean).max())


def coarse(calls: list[_layers.LayerCall], call: _layers.LayerCall) -> str:
    """``""``, or where ``call``'s map is under :data:`~.layers.MIN_SIDE` cells on a
    side, a warning (shown once per model and input) and the words for the note, naming
    the finer layer of :func:`~cam_callback.core.layers.finer_layer`.

    Example:
        >>> coarse(info.calls, top)  # doctest: +SKIP
        "; its maps are 2 x 2, under 4 cells a side: a finer layer is 'block6a_expand_activ..."
    """
    h, w = call.shape[1:3]
    if min(h, w) >= _layers.MIN_SIDE:
        return ""
    finer = _layers.finer_layer(calls)
    why = f"; its maps are {h} x {w}, under {_layers.MIN_SIDE} cells a side"
    if finer is None:
        why += ", and no layer has a finer spatial output"
    else:
        fh, fw = finer.shape[1:3]
        why += (
            f": a finer layer is {finer.path!r} ({fh} x {fw}), the last with at least "
            f"{_layers.MIN_SIDE} x {_layers.MIN_SIDE}"
        )
    hint = "" if finer is None else f"; pass layer={finer.path!r} for a finer map"
    warnings.warn(f"The default layer {call.path!r} is coarse{why}{hint}.", stacklevel=2)
    return why


def default_layer(
    model: keras.Model,
    calls: list[_layers.LayerCall],
    x: np.ndarray,
    head: Head,
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int | None = None,
) -> tuple[str, str]:
    """``(path, why)``: the layer explained when none is named, cached per model and input.

    The last layer with a spatial output, or with a token output whose patch grid
    is known and whose patch tokens reach the explained logits of ``head`` (see
    :func:`reaches_output`: the first :data:`PROBES` images, a relative threshold).

    Raises:
        ValueError: No such layer; where token layers were skipped because their
            grid cannot be known, that error (naming ``grid=``/``prefix_tokens=``).

    Example:
        >>> default_layer(vit, info.calls, x, head)  # doctest: +SKIP
        ('vi_t_backbone/vit_encoder/transformer_block_2/ln_1', 'the last layer whose ...')
    """
    cache = _DEFAULTS.setdefault(model, {})
    # repr: the arguments are checked later, and a list is not hashable.
    ckey = (x.shape[1:], x.dtype.str, head.key, head.hook, head.producer, head.squash,
            repr(grid), repr(prefix_tokens))  # fmt: skip
    if ckey in cache:
        return cache[ckey]
    by_path: dict[str, list[_layers.LayerCall]] = {}
    for c in calls:
        by_path.setdefault(c.path, []).append(c)
    skipped: list[str] = []
    grid_error, clean = None, None
    for path in reversed(_layers.spatial_paths(calls)):
        seen = by_path[path]
        if seen[-1].is_spatial:  # as before tokens: shared or not (check_spatial says why not)
            found = (path, "the last layer with a spatial output" + coarse(calls, seen[-1]))
            break
        if len(seen) > 1:
            continue  # a shared token layer (keras-hub's MLP runs its Dropout twice)
        try:
            tokens = layer_tokens(model, seen[0], x.shape[1:3], grid=grid,
                                  prefix_tokens=prefix_tokens)  # fmt: skip
        except ValueError as exc:
            grid_error = grid_error or exc
            continue
        if tokens is None:
            continue  # not a token layer after all
        sample = x[:PROBES]
        if tokens.prefix > 0 and clean is None:
            clean = explained_scores(model, calls, sample, head)
        if tokens.prefix == 0 or reaches_output(model, calls, seen[0].layer, tokens, sample,
                                                head, clean):  # fmt: skip
            why = (
                f"the last token layer whose patch tokens reach the output ({tokens.height} x "
                f"{tokens.width} patches, {tokens.prefix} prefix tokens dropped)"
            )
            if skipped:
                why += (
                    f"; the patch tokens of {len(skipped)} later layers (from {skipped[0]!r}) "
                    "do not reach it (only the class token is read), so their Grad-CAM is zero"
                )
            found = (path, why)
            break
        skipped.insert(0, path)
    else:
        if grid_error is not None:
            raise grid_error
        raise ValueError(
            "`layer`: the model has no layer with a spatial output (4-D, h and w > 1) or a "
            "token output whose patches reach the output, so there is nothing for a class "
            'activation map to explain. Use method="saliency" for an input-gradient map '
            "instead. Received: layer=None"
        )
    cache[ckey] = found
    return found
