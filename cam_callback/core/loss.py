"""How a head is read: the compiled loss, ``head=`` and what the layers show.

:func:`resolve_head` turns a :class:`~cam_callback.core.heads.HeadInfo` (what the
layers showed) into a :class:`~cam_callback.core.heads.Head` (how to read it).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import keras

from cam_callback.core import layer_roles
from cam_callback.core import layers as _layers
from cam_callback.core.heads import Head, HeadInfo

_L = keras.losses
# Keras's own crossentropies, by type and by function: what each says about the output.
_KINDS: tuple[tuple[tuple[type, ...], tuple[Any, ...], str], ...] = (
    (
        (_L.CategoricalCrossentropy, _L.SparseCategoricalCrossentropy,
         _L.CategoricalFocalCrossentropy),
        (_L.categorical_crossentropy, _L.sparse_categorical_crossentropy,
         _L.categorical_focal_crossentropy),
        "softmax",
    ),
    (
        (_L.BinaryCrossentropy, _L.BinaryFocalCrossentropy),
        (_L.binary_crossentropy, _L.binary_focal_crossentropy),
        "sigmoid",
    ),
)  # fmt: skip


def _fn_kind(fn: Any) -> str:
    fn = getattr(fn, "__wrapped__", fn)  # functools.wraps
    for _, fns, kind in _KINDS:
        if any(fn is f for f in fns):
            return kind
    return ""


def _said(value: Any) -> Any:
    return value if isinstance(value, bool) else None


def _read(loss: Any) -> tuple[str, Any]:
    """``(kind, from_logits)`` of one loss: Keras's by type or wrapped function, any
    other's ``from_logits`` from its config, attribute or wrapped keywords; never a name."""
    if isinstance(loss, str):
        try:
            got = keras.losses.get(loss)
        except (ValueError, TypeError):
            return "", None
        if got is None or isinstance(got, str):
            return "", None
        kind, said = _read(got)
        return kind, False if kind and said is None else said  # a name takes the defaults
    if isinstance(loss, functools.partial):
        kind, said = _read(loss.func)
        return kind, _said(loss.keywords.get("from_logits", said))
    if isinstance(loss, keras.losses.Loss):
        kind = next((k for types, _, k in _KINDS if isinstance(loss, types)), "")
        kind = kind or _fn_kind(getattr(loss, "fn", None))  # LossFunctionWrapper(fn, ...)
        said = None
        try:
            said = _said(loss.get_config().get("from_logits"))
        except (NotImplementedError, TypeError, AttributeError):
            pass
        if said is None:
            said = _said(getattr(loss, "from_logits", None))
        if said is None:
            said = _said((getattr(loss, "_fn_kwargs", None) or {}).get("from_logits"))
        if said is None and kind:
            said = False  # Keras's crossentropies default to probabilities
        return kind, said
    if callable(loss):
        kind = _fn_kind(loss)
        said = None
        try:
            param = inspect.signature(loss).parameters.get("from_logits")
        except (TypeError, ValueError):
            param = None
        if param is not None and param.default is not inspect.Parameter.empty:
            said = _said(param.default)
        return kind, None if kind and said is False else said
    return "", None


def loss_squash(loss: Any, key: Any = None, names: list[str] | None = None) -> tuple[str, Any]:
    """``(squash, from_logits)`` a compiled loss says for the output ``key``.

    ``squash`` is ``"softmax"`` for Keras's categorical crossentropies, ``"sigmoid"``
    for its binary ones (their subclasses and wrappers too, e.g.
    ``LossFunctionWrapper(binary_crossentropy)``), ``""`` for any other loss or
    none: a name (``bce_logits``) says nothing. ``from_logits`` is ``True``,
    ``False`` or ``None`` (not said), read from any ``Loss``'s config or attributes
    and from a function's keywords (``functools.partial``) or defaults. Also reads
    per-output lists and dicts, and Keras's string names.

    Example:
        >>> loss_squash(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        ('softmax', True)
    """
    if isinstance(loss, dict):
        name = names[key] if isinstance(key, int) and names and key < len(names) else key
        loss = (
            loss.get(name)
            if name is not None
            else (next(iter(loss.values())) if len(loss) == 1 else None)
        )
    elif isinstance(loss, (list, tuple)):
        index = names.index(key) if isinstance(key, str) and names and key in names else key
        index = 0 if index is None else index
        loss = loss[index] if isinstance(index, int) and index < len(loss) else None
    if loss is None:
        return "", None
    return _read(loss)


def resolve_head(
    h: HeadInfo,
    key: Any,
    *,
    score: str,
    head: str = "auto",
    loss: Any = None,
    names: list[str] | None = None,
    calls: list[_layers.LayerCall],
    warn: Any,
) -> Head:
    """Decides how a head is read; refuses an output that is not a classifier.

    ``warn(topic, message)`` is called for what the caller should say once.
    """
    where = "the model's output" if key is None else f"output {key!r}"
    if len(h.shape) != 2:
        raise ValueError(
            f"{where} has shape {('N', *h.shape[1:])}, not [batch, classes]: class activation "
            "maps explain classifiers (a softmax or sigmoid head). Received: an output of "
            f"rank {len(h.shape)}"
        )
    if h.off_axes and h.squash_at is not None:  # an off-axes softmax is a squash found
        axis = h.off_axes[0] if len(h.off_axes) == 1 else h.off_axes
        raise ValueError(
            f"{where} comes from layer {calls[h.squash_at].path!r}, a softmax over axis {axis} "
            f"of its output {('N', *h.shape[1:])}, not over the classes (axis -1): its rows are "
            "no class probabilities (a softmax over the batch depends on the batch size). "
            "End the model with Softmax(axis=-1) or Dense(C, activation='softmax'). "
            f"Received: a Softmax layer with axis={axis}"
        )
    c = h.shape[1]
    how, squash = _decide(h, c, head, loss_squash(loss, key, names), where, calls, warn)
    assumed = how == "assume"
    how = "apply" if assumed else how
    hook, producer, applied = "", h.producer, ""
    if how == "apply":
        applied = squash
    elif h.squash and h.squash_at is not None and (how == "layer" or h.after != "other"):
        producer, hook = h.squash_at, layer_roles.head_kind(calls[h.squash_at].layer)
        if how == "layer" and h.after == "other":
            applied = squash  # the output is not a probability: the squash's values are
            warn(
                ("after", key),
                f"{where} comes from {', '.join(map(repr, h.through))} after the {squash} of "
                f"layer {calls[h.squash_at].path!r}, and is not a probability: the "
                f"probabilities are that {squash}'s, and the logit explained is its input.",
            )
    if squash == "softmax":
        kind = "logits" if how == "apply" else "softmax"
    else:
        kind = "binary" if c == 1 else "multilabel"
    used = score
    if score == "logit" and not hook and how != "apply":
        used = "probability"
        warn(
            ("logit", key),
            f"score='logit': {where} holds probabilities made outside any softmax or sigmoid "
            "layer (for example keras.ops.softmax in call()), so its logit cannot be read; "
            "explaining the probability instead. Use a Dense(..., activation=...) or "
            "Activation layer to explain the logit.",
        )
    if used == "probability" and not applied:
        hook = ""  # the logit is not needed
    name = f"{kind}_logits" if how == "apply" and kind in ("binary", "multilabel") else kind
    n = 2 if kind == "binary" else c
    return Head(key, kind, used, n, producer, hook, applied, name, assumed=assumed)


def _decide(
    h: HeadInfo, c: int, head: str, hint: tuple[str, Any], where: str, calls: list, warn: Any
) -> tuple[str, str]:
    """``(how, squash)``: ``how`` is ``"layer"`` (the model's squash layer), ``"apply"``
    (squash the output here), ``"assume"`` (apply a softmax nothing asked for) or
    ``"given"`` (the output holds the probabilities)."""
    found = h.squash
    at = "" if h.squash_at is None else f" {calls[h.squash_at].path!r}"
    given = "softmax" if h.looks_like == "distribution" else "sigmoid"
    if head == "auto":
        loss_kind, from_logits = hint
        if found:
            return "layer", found
        if h.producer is None and h.looks_like:  # an op we cannot see squashed it
            return "given", given
        if loss_kind and from_logits and (c > 1 or loss_kind == "sigmoid"):
            return "apply", loss_kind
        if c == 1 and from_logits and not loss_kind:  # one logit of an own loss: binary
            return "apply", "sigmoid"
        if h.looks_like == "distribution":
            return "given", "softmax"
        if loss_kind == "sigmoid" and h.looks_like == "unit":
            return "given", "sigmoid"
        if c == 1 and loss_kind != "sigmoid":
            raise ValueError(
                f"{where} is one unit with no sigmoid, which reads as a regression, not a "
                "classifier. For a binary classifier end the model with Dense(1, "
                'activation="sigmoid") (a logit is still explained), or pass head="sigmoid" '
                "for a one-unit logit. Received: an output of "
                f"shape (N, {c}) and no softmax or sigmoid"
            )
        if loss_kind:
            warn(
                ("auto", where),
                f"head='auto': the compiled loss expects probabilities (from_logits=False), yet "
                f"{where} is a linear output; taking its {loss_kind} as the probabilities and the "
                "output as the logit. Pass head='softmax', 'sigmoid' or 'logits' (or compile with "
                "from_logits=True) to say so.",
            )
            return "apply", loss_kind
        said = " (the compiled loss says from_logits=True, not which)" if from_logits else ""
        warn(
            ("auto", where),
            f"head='auto': {where} is linear ({c} units), and neither a softmax or sigmoid layer "
            f"nor the compiled loss says whether its classes exclude each other{said}: "
            "ASSUMING softmax logits, taking its softmax as the probabilities (one class out "
            "of C), marked head_assumed (ModelCheck, record.json). If the classes are "
            "independent (multi-label), softmax would divide their probabilities: pass "
            "head='sigmoid'; pass head='softmax' (or 'logits') to say it is softmax.",
        )
        return "assume", "softmax"
    if head in ("softmax", "sigmoid"):
        other = "sigmoid" if head == "softmax" else "softmax"
        if found == other:
            raise ValueError(
                f"`head`={head!r} contradicts the model: {where} comes from the {found} of "
                f"layer{at}. Use head='auto' or {found!r}. Received: head={head!r}"
            )
        if found:
            return "layer", found
        if head == "softmax" and h.looks_like == "distribution":  # already sums to one
            return "given", "softmax"
        if head == "sigmoid" and h.producer is None and h.looks_like:  # an op we cannot see
            return "given", "sigmoid"
        if head == "softmax" and c == 1:
            raise ValueError(
                f"`head`='softmax' needs 2 classes or more; {where} has one unit, a binary "
                "classifier: use head='sigmoid'. Received: head='softmax'"
            )
        return "apply", head
    if head == "logits":
        if found and not h.logit_of_squash:  # behind pass-through layers too
            via = f", passed on by {', '.join(map(repr, h.through))}" if h.through else ""
            raise ValueError(
                f"`head`='logits' says {where} is a logit, but it is the output of the {found} "
                f"of layer{at}{via}, a probability. Use head='auto' or {found!r}. "
                "Received: head='logits'"
            )
        if found:  # the output is that squash's logit (log p, log(p / (1 - p))): undo it
            return "apply", found
        return "apply", "softmax" if c > 1 else "sigmoid"
    if not h.looks_like:  # head == "probabilities"
        raise ValueError(
            f"`head`='probabilities' says {where} holds probabilities, but it holds values "
            "outside [0, 1]. Use head='auto', 'softmax', 'sigmoid' or 'logits'. "
            "Received: head='probabilities'"
        )
    keep = found and h.after != "other"
    return "given", found if keep else given
