"""The per-epoch frame: ``[caption]`` over ``[display image | CAM overlay | top-k bars]``,
drawn by a :class:`FrameRenderer` that lays out a probe's static parts once.

Text is sized to the image (:func:`~cam_callback.frames.draw.text_size`), so that it stays
legible where the frame is shown scaled down, as TensorBoard's IMAGES tab shows it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from cam_callback.frames.draw import (
    BACKGROUND,
    BAR_EDGE,
    MUTED,
    OTHER,
    RIGHT,
    TEXT,
    WRONG,
    caption_height,
    desaturate,
    display_size,
    epoch_label,
    overlay,
    panel_width,
    text_size,
)
from cam_callback.frames.text import clean_name, fit_text, font, put_text


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
            ``top`` pixels shorter.

    Attributes:
        font_size: The caption's text size; ``bar_font`` the bars' (smaller only when
            ``top_k`` rows would not fit at ``font_size``).
        top: The caption strip's height (0 without one).
        rows: The bar rows drawn: ``top_k``, or as many as fit the panel (8 px text over
            a 3 px bar each) when ``top_k`` is larger.
        row_h, bar_h: Each bar row's pitch and each bar's thickness, in pixels.

    Example:
        >>> r = FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=1, class_names=["a", "b"])
        >>> r.draw(np.ones((4, 4)), np.array([0.3, 0.7]), epoch=0, target=1).shape
        (208, 518, 3)
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
        self.font_size = size = text_size(h, w)
        self.top = caption_height(size) if caption else 0
        self.height = self.top + h
        self.panel_w = panel_width(size)
        self.width = 2 * w + self.panel_w
        # top_k rows in the panel: at the caption's size where they fit, else smaller, down
        # to 8 px text over a 3 px bar; rows that would not fit even so are not drawn.
        smallest = self.text_bottom(8) + 3 + 3
        self.rows = max(1, min(top_k, (h - 8) // smallest))
        self.row_h = min(round(2.1 * size), (h - 8) // self.rows)
        self.bar_h = max(3, min(round(0.45 * size), self.row_h - self.text_bottom(8) - 3))
        self.bar_font = size
        while self.bar_font > 8 and self.text_bottom(self.bar_font) + 3 + self.bar_h > self.row_h:
            self.bar_font -= 1
        base = np.empty((self.height, self.width, 3), np.uint8)
        base[:] = BACKGROUND
        base[self.top :, :w] = self.image
        self.base = base

    @staticmethod
    def text_bottom(size: int) -> int:
        """Where text of ``size`` px put at ``y`` ends (its descenders): ``y + 1.2 * size``."""
        return round(1.2 * size)

    def bar_top(self, row: int) -> int:
        """The y of the top of the bar in row ``row`` (0: the most probable class)."""
        return self.top + 6 + row * self.row_h + self.text_bottom(self.bar_font) + 3

    def name(self, cls: int) -> str:
        """The class name of ``cls``, or its id."""
        if self.class_names is not None and 0 <= cls < len(self.class_names):
            return clean_name(self.class_names[cls])
        return str(cls)

    def caption_lines(
        self, probabilities: np.ndarray, epoch: int, target: int | None = None
    ) -> list[list[str]]:
        """The caption's two lines, in the pieces they are drawn in: the epoch and the true
        class; the prediction and its probability, and ``map: <class>``, the class the map
        explains (``target``; left out when ``None``). Names are cut to fit the frame.

        Example:
            >>> r = FrameRenderer(np.zeros((8, 8, 3), np.uint8), label=0, class_names=["a", "b"])
            >>> r.caption_lines(np.array([0.3, 0.7]), epoch=2, target=1)
            [['epoch 2', ' · ', 'true: a'], ['pred: b', ' 0.70', ' · ', 'map: b']]
        """
        probs = np.asarray(probabilities, dtype=np.float64).ravel()
        pred = int(np.argsort(-probs, kind="stable")[0])
        size, room = self.font_size, self.width - 12
        first = [epoch_label(epoch)]
        if self.label is not None:
            first += [" · ", f"true: {fit_text(self.name(self.label), size, room // 2)}"]
        second = [f"pred: {fit_text(self.name(pred), size, room * 3 // 10)}", f" {probs[pred]:.2f}"]
        if target is not None:
            second += [" · ", f"map: {fit_text(self.name(int(target)), size, room * 3 // 10)}"]
        return [first, second]

    def caption_pieces(
        self, probabilities: np.ndarray, epoch: int, target: int | None = None
    ) -> list[str]:
        """The caption's text as one line of pieces (:meth:`caption_lines` joined by
        ``" · "``), for a page that writes it as HTML."""
        first, second = self.caption_lines(probabilities, epoch, target)
        return [*first, " · ", *second]

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
        order = np.argsort(-probs, kind="stable")[: self.rows]
        pred = int(order[0])
        # argmax(NaN) is 0: a non-finite prediction is never right.
        correct = self.label is not None and bool(np.isfinite(probs).all()) and pred == self.label
        size = self.font_size

        if strip:  # drawn in pieces so each piece's rendering is cached across frames
            colour = TEXT if self.label is None else (RIGHT if correct else WRONG)
            pitch = round(1.2 * size)
            for line, pieces in enumerate(self.caption_lines(probs, epoch, target)):
                x = 6
                for piece in pieces:
                    x = put_text(frame, x, line * pitch, piece, colour, size)
            if non_finite:  # a diverged model: its numbers are shown as they are, and flagged
                put_text(frame, x, pitch, " · NON-FINITE", WRONG, size)

        x0 = 2 * w + 10
        bar_w = self.panel_w - 20
        size, bar_h = self.bar_font, self.bar_h
        number = font(size).getlength("  0.00")
        for i, cls in enumerate(order):
            y = strip + 6 + i * self.row_h
            is_true = self.label is not None and int(cls) == self.label
            suffix = " (true)" if is_true else ""
            room = bar_w - int(font(size).getlength(suffix) + number) - 2
            name = fit_text(self.name(int(cls)), size, room) + suffix
            after = put_text(frame, x0, y, name, TEXT if is_true else MUTED, size)
            put_text(frame, after, y, f"  {probs[cls]:.2f}", TEXT if is_true else MUTED, size)
            if i == 0 and self.label is not None:
                fill = RIGHT if correct else WRONG
            else:
                fill = OTHER
            top = self.bar_top(i)
            frame[top, x0 : x0 + bar_w + 1] = BAR_EDGE  # outline
            frame[top + bar_h - 1, x0 : x0 + bar_w + 1] = BAR_EDGE
            frame[top : top + bar_h, x0] = BAR_EDGE
            frame[top : top + bar_h, x0 + bar_w] = BAR_EDGE
            p = float(probs[cls]) if np.isfinite(probs[cls]) else 0.0
            length = int(round(bar_w * min(max(p, 0.0), 1.0)))
            if length:
                frame[top : top + bar_h, x0 : x0 + length + 1] = fill
            if is_true:
                frame[top : top + bar_h, x0 - 4 : x0 - 1] = TEXT
        return frame
