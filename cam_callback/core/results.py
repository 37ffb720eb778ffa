"""What the API returns: maps, model checks and the error raised when a backend fails."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CAMError(RuntimeError):
    """A backend failure while computing maps, with the layer and input shape named."""


@dataclass(frozen=True)
class CAMResult:
    """Maps and predictions for a batch.

    Attributes:
        heatmaps: float32 ``[N, h, w]`` at the explained layer's resolution (input
            resolution for ``"saliency"``), each divided by its own max; an
            all-zero map stays zero.
        probabilities: float32 ``[N, C]``: the model's output where it is a softmax or
            sigmoid, the softmax (sigmoid) of a linear output (see ``head``);
            ``[1 - p, p]`` for one sigmoid unit.
        targets: int64 ``[N]``, the class explained for each image.
        layer: The explained layer's path, e.g. ``"mobilenetv2_1.00_96/out_relu"``
            (``""`` for ``"saliency"``).
        method: The method used.
        head: How the output was read (:attr:`ModelCheck.head`).
        score: The score the maps really explain: ``"logit"``, ``"probability"``, or
            ``"none"`` for a class-agnostic method (Eigen-CAM).
    """

    heatmaps: np.ndarray
    probabilities: np.ndarray
    targets: np.ndarray
    layer: str
    method: str
    head: str = ""
    score: str = ""


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`inspect_model` found.

    Attributes:
        layer: The explained layer's path (``""`` for ``"saliency"``).
        n_classes: Classes as the maps see them (2 for a one-unit sigmoid head).
        map_shape: ``(h, w)`` of the maps.
        score: The score the method really explains: ``"logit"`` or
            ``"probability"`` (a logit that cannot be found falls back to the
            probability, with a warning; some methods explain the probability
            whatever ``score`` asks), or ``"none"`` for a class-agnostic method.
        head: How the output is read: ``"softmax"`` (the model's softmax),
            ``"logits"`` (a linear multi-class output, softmaxed here), ``"binary"``
            (one sigmoid unit), ``"multilabel"`` (several sigmoid units),
            ``"binary_logits"`` or ``"multilabel_logits"`` (linear units, sigmoid
            applied here).
        head_assumed: ``head="auto"`` found nothing that tells how to read the output
            (a linear output with C > 1 units, no softmax or sigmoid layer, no loss
            that says) and assumed softmax logits, with a warning: pass ``head=``.
        backend: The Keras backend computing the maps.
        note: Why this layer and grid: for a token layer, its patch grid and the prefix
            tokens dropped; for a default layer, why it was chosen (and a finer layer where
            its map is coarse); for ``method="auto"``, which method it runs and why.
        method: The method the maps are computed with (``"auto"`` resolved).
    """

    layer: str
    n_classes: int
    map_shape: tuple[int, int]
    score: str = "logit"
    head: str = "softmax"
    backend: str = "tensorflow"
    note: str = ""
    head_assumed: bool = False
    method: str = "gradcam"
