"""The per-epoch frame: ``[caption]`` over ``[display image | CAM overlay | top-k bars]``,
drawn by a :class:`FrameRenderer` that lays out a probe's static parts once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from cam_callback.frames.draw import (
    BACKGROUND,
    BAR_EDGE,
    CAPTION_H,
    MUTED,
    OTHER,
    PANEL_W,
    RIGHT,
    TEXT,
    WRONG,
    desaturate,
    display_size,
    epoch_label,
    overlay,
)
from cam_callback.frames.text import clean_name, fit_text, put_text


class FrameRenderer:
    """Draws one probe's frames; the static parts are laid out once.

    Args:
        image: The probe's display image, ``[H, W, 3]`` uint8.
        label: True class id, or ``None`` when unknown.
        class_names: Names for the class ids; ids are shown when ``None``.
        top_k: How many classes the bar chart shows.
        alpha: Weight of the heatmap in the overlay.
        caption: Draw the caption strip on top. A page that writes the caption as
            HTML text (crisp at any scale) passes ``False``; the frame is then
            ``CAPTION_H`` pixels shorter.

    Example:
        >>> r = FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=1, class_names=["a", "b"])
        >>> r.draw(np.ones((4, 4)), np.array([0.3, 0.7]), epoch=0, target=1).shape
        (182, 500, 3)
        >>> "".join(r.caption_pieces(np.array([0.3, 0.7]), epoch=0, target=1))
        'epoch 0 · true: b · pred: b 0.70 · map: b'
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        label: int | None = None,
        class_names: Sequence[str] | None = None,
        top_k: int = 3,
        alpha: float = 0.5,
        caption: bool = True,
    ) -> None:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"`image` must be uint8 [H, W, 3]. Received: {image.dtype} {image.shape}"
            )
        self.label = None if label is None or label < 0 else int(label)
        self.class_names = list(class_names) if class_names is not None else None
        self.top_k = top_k
        self.alpha = alpha
        h, w = display_size(*image.shape[:2])
        resample = (
            Image.Resampling.NEAREST if h >= image.shape[0] * 2 else Image.Resampling.BILINEAR
        )
        self.image = np.asarray(Image.fromarray(image).resize((w, h), resample))
        self.grey = desaturate(self.image)  # the overlay's background; the left panel keeps colour
        self.size = (h, w)
        self.font_size = 13 if h < 200 else 15
        self.top = CAPTION_H if caption else 0
        self.height = self.top + h
        self.width = 2 * w + PANEL_W
        base = np.empty((self.height, self.width, 3), np.uint8)
        base[:] = BACKGROUND
        base[self.top :, :w] = self.image
        self.base = base

    def name(self, cls: int) -> str:
        """The class name of ``cls``, or its id."""
        if self.class_names is not None and 0 <= cls < len(self.class_names):
            return clean_name(self.class_names[cls])
        return str(cls)

    def caption_pieces(
        self, probabilities: np.ndarray, epoch: int, target: int | None = None
    ) -> list[str]:
        """The caption's text, in the pieces it is drawn in: the epoch, the true class,
        the prediction and its probability, and ``map: <class>``, the class the map
        explains (``target``; left out when ``None``)."""
        probs = np.asarray(probabilities, dtype=np.float64).ravel()
        pred = int(np.argsort(-probs, kind="stable")[0])
        size = self.font_size
        pieces = [epoch_label(epoch)]
        if self.label is not None:
            pieces += [" · ", f"true: {fit_text(self.name(self.label), size, 120)}"]
        pieces += [" · ", f"pred: {fit_text(self.name(pred), size, 120)}", f" {probs[pred]:.2f}"]
        if target is not None:
            pieces += [" · ", f"map: {fit_text(self.name(int(target)), size, 100)}"]
        return pieces

    def draw(
        self,
        heatmap: np.ndarray,
        probabilities: np.ndarray,
        epoch: int,
        target: int | None = None,
    ) -> np.ndarray:
        """The frame for one epoch as ``[height, width, 3]`` uint8.

        Args:
            target: The class the map explains (the record's ``targets``), written
                as ``map: <class>`` in the caption: a misclassified frame's map may
                explain the predicted class, not the true one.
        """
        h, w = self.size
        strip = self.top  # the caption's height, 0 without one
        frame = self.base.copy()
        frame[strip:, w : 2 * w] = overlay(self.grey, heatmap, self.alpha, grey=False)
        probs = np.asarray(probabilities, dtype=np.float64).ravel()
        non_finite = not (np.isfinite(probs).all() and np.isfinite(heatmap).all())
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        pred = int(order[0])
        # argmax(NaN) is 0: a non-finite prediction is never right.
        correct = self.label is not None and bool(np.isfinite(probs).all()) and pred == self.label
        size = self.font_size

        if strip:  # drawn in pieces so each piece's rendering is cached across frames
            colour = TEXT if self.label is None else (RIGHT if correct else WRONG)
            x = 6
            for piece in self.caption_pieces(probs, epoch, target):
                x = put_text(frame, x, 4, piece, colour, size)
            if non_finite:  # a diverged model: its numbers are shown as they are, and flagged
                put_text(frame, x, 4, " · NON-FINITE", WRONG, size)

        x0 = 2 * w + 10
        bar_w = PANEL_W - 20
        row = min(40, max(28, (h - 10) // max(1, self.top_k)))
        for i, cls in enumerate(order):
            y = strip + 8 + i * row
            is_true = self.label is not None and int(cls) == self.label
            name = fit_text(self.name(int(cls)), size, bar_w - (95 if is_true else 40))
            name += " (true)" if is_true else ""
            after = put_text(frame, x0, y, name, TEXT if is_true else MUTED, size)
            put_text(frame, after, y, f"  {probs[cls]:.2f}", TEXT if is_true else MUTED, size)
            if i == 0 and self.label is not None:
                fill = RIGHT if correct else WRONG
            else:
                fill = OTHER
            top = y + size + 3
            frame[top, x0 : x0 + bar_w + 1] = BAR_EDGE  # outline
            frame[top + 7, x0 : x0 + bar_w + 1] = BAR_EDGE
            frame[top : top + 8, x0] = BAR_EDGE
            frame[top : top + 8, x0 + bar_w] = BAR_EDGE
            p = float(probs[cls]) if np.isfinite(probs[cls]) else 0.0
            length = int(round(bar_w * min(max(p, 0.0), 1.0)))
            if length:
                frame[top : top + 8, x0 : x0 + length + 1] = fill
            if is_true:
                frame[top : top + 8, x0 - 4 : x0 - 1] = TEXT
        return frame
