"""How a classifier's output becomes probabilities and the explained score.

A head is one output of a model read as a classifier. Its probabilities are what
the maps' predictions, the tracker's record and every perturbation method read;
its score (the logit where one can be found) is what the gradient maps explain.

``head=`` (:data:`HEADS`) says how to read it:

- ``"auto"``: a softmax or sigmoid layer at the output (also behind layers that
  only pass its values on: ``Identity``, ``Lambda``, ``Rescaling``, a temperature
  ``Activation``) is used, its input explained as the logit; a linear output is
  read through the compiled loss (``from_logits=True`` in a categorical
  crossentropy: softmax; in a binary crossentropy: sigmoid); an output that
  already holds probabilities (rows summing to one, or a squash in ``call()``)
  is used as it is; when nothing tells, a linear output with C > 1 units is
  taken as softmax logits, with one warning. One linear unit is refused (a
  regression) unless the loss or ``head=`` says it is a logit.
- ``"softmax"``: one class out of C. The model's softmax is used where it has one;
  a linear output gets one.
- ``"sigmoid"``: independent classes (multi-label; one unit is a binary
  classifier ``[1 - p, p]``). The model's sigmoid is used where it has one; a
  linear output gets one.
- ``"logits"``: the output itself is the logit, whatever layer made it: softmax
  (C > 1) or sigmoid (one unit) applied here.
- ``"probabilities"``: the output already holds probabilities (for example a
  ``keras.ops.softmax`` in ``call``); used as it is.

There is no ``"binary"``: one unit under ``"sigmoid"`` (or ``"logits"``) is the
binary classifier. The logit stays the explained score wherever one is found: a
linear output's own value, or the input of the softmax/sigmoid layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from cam_callback.core import layer_roles
from cam_callback.core import layers as _layers

HEADS: tuple[str, ...] = ("auto", "softmax", "sigmoid", "logits", "probabilities")


def check_head(head: Any) -> str:
    """``head`` checked against :data:`HEADS`.

    Raises:
        ValueError: Any other value.

    Example:
        >>> check_head("logits")
        'logits'
    """
    if not isinstance(head, str) or head not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}. Received: head={head!r}")
    return head


@dataclass(frozen=True)
class HeadInfo:
    """What a discovery pass learned about one output: shapes and indices, no tensors.

    Attributes:
        shape: The output's shape on the sample.
        producer: Index in the calls of the leaf layer whose output *is* this head.
        squash: ``"softmax"``/``"sigmoid"`` of the squashing layer found, else ``""``.
        squash_at: That layer's call: the producer, or one behind pass-through layers.
        after: How the output relates to the squash's values: ``""`` (it is the
            squash), ``"same"``, ``"probabilities"`` (an order-keeping map to other
            probabilities, e.g. temperature) or ``"other"`` (order kept, not probabilities).
        through: Paths of the pass-through layers after the squash.
        looks_like: From the values: ``"distribution"``, ``"unit"`` (all in [0, 1]) or ``""``.
        off_axes: The axes of a ``Softmax`` at the output that is not over the classes
            (``Softmax(axis=0)``: over the batch), else ``()``; such a head is refused.
        logit_of_squash: The output's own softmax (sigmoid) gives the squash's values
            back (``log p``): the output is a logit of them.
    """

    shape: tuple[int, ...]
    producer: int | None
    squash: str
    squash_at: int | None
    after: str
    through: tuple[str, ...]
    looks_like: str
    off_axes: tuple[int, ...] = ()
    logit_of_squash: bool = False


def _numpy(tensor: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


def _is_probability(values: np.ndarray, squash: str) -> bool:
    unit = bool(np.all((values >= 0) & (values <= 1)))
    if squash != "softmax":
        return unit
    return unit and values.shape[-1] > 1 and bool(np.allclose(values.sum(-1), 1.0, atol=1e-3))


def _keeps_order(before: np.ndarray, after: np.ndarray, per_row: bool) -> bool:
    """Whether ``after`` never ranks two values the other way round than ``before`` does.

    A softmax's order matters within a row (the classes); a sigmoid's across all
    values, so an element-wise map must keep it everywhere.
    """
    if not per_row:
        before, after = before.reshape(1, -1), after.reshape(1, -1)
    order = np.argsort(before, axis=1, kind="stable")
    steps = np.diff(np.take_along_axis(after, order, axis=1), axis=1)
    return bool(np.all(steps >= -1e-5 * (1.0 + np.abs(after).max())))


def head_info(calls: list[_layers.LayerCall], tensor: Any, *, single: bool) -> HeadInfo:
    """Finds the layer that produced ``tensor``, the squash behind it, and its values' kind.

    ``calls`` must still hold the discovery pass's tensors.
    """
    values = _numpy(tensor)
    leaves = [i for i, c in enumerate(calls) if not isinstance(c.layer, keras.Model)]
    producer = next((i for i in reversed(leaves) if calls[i].output is tensor), None)
    if producer is None and single and leaves:
        # Subclassed models may re-wrap the final tensor: accept the last leaf only when
        # its values are the output's, so an op after it (keras.ops.softmax) is not missed.
        last = calls[leaves[-1]]
        if last.output_shape == values.shape and np.allclose(
            _numpy(last.output), values, rtol=1e-6, atol=1e-7
        ):
            producer = leaves[-1]
    squash, squash_at, after, relogit = "", None, "", False
    through: tuple[str, ...] = ()
    off_axes: tuple[int, ...] = ()
    if producer is not None:
        i = producer
        passed: list[int] = []
        while (
            layer_roles.head_kind(calls[i].layer) == "linear"
            and layer_roles.passes_through(calls[i])
            and len(passed) < 16
        ):
            passed.append(i)
            j = layer_roles.feeder(calls, i)
            if j is None:
                break
            i = j
        if layer_roles.head_kind(calls[i].layer) != "linear":
            name = layer_roles.squash_name(calls[i].layer)
            squashed = _numpy(calls[i].output)
            relation = _relation(name, squashed, values) if passed else ""
            if not passed or relation:  # an order-breaking layer hides the squash
                squash, squash_at, after = name, i, relation
                through = tuple(calls[k].path for k in reversed(passed))
                off_axes = layer_roles.off_class_axes(calls[i].layer, squashed.ndim)
                relogit = bool(passed) and _squashes_to(name, values, squashed)
    looks_like = ""
    if values.ndim == 2 and _is_probability(values, "sigmoid"):
        looks_like = "distribution" if _is_probability(values, "softmax") else "unit"
    return HeadInfo(
        tuple(values.shape), producer, squash, squash_at, after, through, looks_like, off_axes,
        relogit,
    )  # fmt: skip


def _squashes_to(squash: str, out: np.ndarray, squashed: np.ndarray) -> bool:
    """Whether ``squash(out)`` gives ``squashed`` back: ``out`` is a logit of it (``log p``)."""
    if out.shape != squashed.shape or not np.all(np.isfinite(out)):
        return False
    if squash == "softmax":
        e = np.exp(out - out.max(-1, keepdims=True))
        again = e / e.sum(-1, keepdims=True)
    else:
        again = 1.0 / (1.0 + np.exp(-out))
    return bool(np.allclose(again, squashed, rtol=1e-4, atol=1e-5))


def _relation(squash: str, squashed: np.ndarray, out: np.ndarray) -> str:
    if squashed.shape != out.shape:
        return ""
    if np.allclose(out, squashed, rtol=1e-5, atol=1e-6):
        return "same"
    if not _keeps_order(squashed, out, per_row=squash == "softmax"):
        return ""
    return "probabilities" if _is_probability(out, squash) else "other"


@dataclass(frozen=True)
class Head:
    """How one output is explained.

    Attributes:
        key: The output, keyed like the model's outputs (``None``: a single output).
        kind: ``"softmax"`` (the model's softmax), ``"logits"`` (a linear multi-class
            output, softmaxed here), ``"binary"`` (one sigmoid unit: two classes
            ``[1 - p, p]``) or ``"multilabel"`` (C sigmoid units).
        score: The score really explained, ``"logit"`` or ``"probability"``.
        n_classes: Classes as the maps see them (2 for ``"binary"``).
        producer: The layer call the logit is read off, where ``hook`` is set.
        hook: ``"input"``/``"activation"`` where the logit is read off a layer.
        squash: ``"softmax"``/``"sigmoid"`` applied here to the logit (the output's
            for a linear head, the hooked one otherwise); ``""``: the output holds
            the probabilities.
        name: What is recorded (``ModelCheck.head``, ``record.json``): ``kind``, or
            ``"binary_logits"``/``"multilabel_logits"`` for a linear sigmoid head.
        assumed: ``head="auto"`` found nothing that says how to read a linear output
            with C > 1 units (no squash layer, no loss that tells) and took softmax
            logits (with a warning): ``ModelCheck.head_assumed``.
    """

    key: Any
    kind: str
    score: str
    n_classes: int
    producer: int | None
    hook: str
    squash: str = ""
    name: str = ""
    assumed: bool = False

    @property
    def request(self) -> str:
        """The ``head=`` that reads the same layers the same way (a model's suffix too)."""
        if not self.squash and not self.hook:
            return "probabilities"
        return "softmax" if self.kind in ("softmax", "logits") else "sigmoid"


def logit_hooks(
    calls: list[_layers.LayerCall], head: Head, store: dict
) -> dict[keras.layers.Layer, Any]:
    """Hooks (for :func:`cam_callback.core.layers.intercepted`) that capture the head's
    pre-softmax/sigmoid value into ``store["logits"]``."""
    if not head.hook or head.producer is None:
        return {}
    kind = head.hook
    layer = calls[head.producer].layer

    def hook(call: Any, args: tuple, kwargs: dict) -> Any:
        if kind == "input":
            store["logits"] = args[0] if args else next(iter(kwargs.values()))
            return call(*args, **kwargs)
        squash = layer.activation
        object.__setattr__(layer, "activation", keras.activations.linear)
        try:
            logits = call(*args, **kwargs)
        finally:
            object.__setattr__(layer, "activation", squash)
        store["logits"] = logits
        return squash(logits)

    return {layer: hook}


def head_scores(outputs: Any, logits: Any, head: Head) -> tuple[Any, Any]:
    """The probabilities ``[B, C]`` and the per-class scores ``[B, C]`` of a head.

    Written once in ``keras.ops`` for every backend. ``outputs`` is the selected
    model output, ``logits`` what :func:`logit_hooks` captured (``None`` without
    hooks). Where ``head.squash`` is set the probabilities are its softmax or
    sigmoid of the logit. A binary head becomes two classes: probabilities
    ``[1 - p, p]`` and scores ``[-z, z]`` (logit) or ``[1 - p, p]`` (probability).
    Multi-label probabilities are not renormalised.

    Example:
        >>> probs, scores = head_scores(model_output, captured, head)  # doctest: +SKIP
    """
    ops = keras.ops
    if head.squash and not head.hook:
        logits = outputs  # a linear head: the output is the logit
    z = None if logits is None else ops.cast(logits, "float32")
    if head.squash:
        if z is None:
            raise ValueError(
                "`logits` are needed: this head's probabilities are computed from the logit "
                "its layer hook captures (see logit_hooks). Received: logits=None"
            )
        probs = ops.softmax(z, axis=-1) if head.squash == "softmax" else ops.sigmoid(z)
    else:
        probs = ops.cast(outputs, "float32")
    scores = z if head.score == "logit" and z is not None else probs
    if head.kind == "binary":
        probs = ops.concatenate([1.0 - probs, probs], axis=-1)
        scores = (
            ops.concatenate([-scores, scores], axis=-1)
            if head.score == "logit"
            else ops.concatenate([1.0 - scores, scores], axis=-1)
        )
    return probs, scores
