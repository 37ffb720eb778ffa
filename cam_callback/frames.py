"""Pure numpy/Pillow drawing of the per-epoch frame: no TensorFlow, no I/O.

A frame is ``[caption]`` over ``[display image | CAM overlay | top-k bars]``.
Small probes are scaled up and large ones down so the frame stays legible
from 32-px to 512-px inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_SIDE, MAX_SIDE = 160, 256  # displayed image height, whatever the probe's size
MAX_WIDTH = 4 * MAX_SIDE  # displayed image width: a frame is at most 2 * 1024 + 180 px wide
CAPTION_H = 22
PANEL_W = 180
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
MUTED = (150, 150, 160)
RIGHT = (46, 160, 67)
WRONG = (215, 58, 73)
OTHER = (95, 110, 130)
BAR_EDGE = (60, 60, 70)

# Turbo as a degree-5 polynomial (Google AI's published approximation), so no table ships.
_TURBO = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)


@lru_cache(maxsize=1)
def turbo_lut() -> np.ndarray:
    """The turbo colormap as a ``[256, 3]`` uint8 lookup table.

    Example:
        >>> turbo_lut().shape
        (256, 3)
    """
    x = np.linspace(0.0, 1.0, 256)
    powers = np.stack([x**i for i in range(6)])  # [6, 256]
    return (np.clip(_TURBO @ powers, 0, 1).T * 255 + 0.5).astype(np.uint8)


def to_display(images: np.ndarray) -> np.ndarray:
    """Model-space images to uint8 RGB by a per-image min-max rescale.

    Args:
        images: ``[N, H, W, C]`` with C of 1 or 3 (more: the first three).

    Example:
        >>> to_display(np.array([[[[0.0], [2.0]]]])).tolist()
        [[[[0, 0, 0], [255, 255, 255]]]]
    """
    x = np.asarray(images, dtype=np.float64)
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = x.max(axis=(1, 2, 3), keepdims=True) - lo
    x = (x - lo) / np.where(span > 0, span, 1.0)
    x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]
    return (x * 255 + 0.5).astype(np.uint8)


def display_size(height: int, width: int) -> tuple[int, int]:
    """``(h, w)`` an image is shown at: height clamped to [160, 256], aspect kept, width
    at most ``MAX_WIDTH`` (an image wider than 6.4:1 is squeezed), so a frame's size is
    bounded whatever the probe's shape.

    Example:
        >>> display_size(32, 32), display_size(1, 16384)
        ((160, 160), (160, 1024))
    """
    side = min(max(height, MIN_SIDE), MAX_SIDE)
    return side, min(MAX_WIDTH, max(1, round(width * side / height)))


def upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a ``[h, w]`` float map to ``size = (H, W)``, clipped to [0, 1]."""
    if heatmap.shape == size:
        return np.clip(heatmap, 0, 1).astype(np.float32, copy=False)
    img = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    out = np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR))
    return np.clip(out, 0, 1)


def colorize(heatmap: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A ``[h, w]`` map in [0, 1] to turbo RGB uint8, upsampled to ``size`` first.

    NaN cells are drawn as 0 and inf as 1; the frame's caption says the map is not finite.
    """
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    heat = upsample(heatmap, size) if size else np.clip(heatmap, 0, 1)
    return turbo_lut()[(heat * 255 + 0.5).astype(np.uint8)]


def desaturate(image: np.ndarray) -> np.ndarray:
    """A grey copy of a uint8 RGB image (ITU-R 601 luma), still ``[H, W, 3]``.

    Example:
        >>> desaturate(np.array([[[255, 0, 0]]], np.uint8)).tolist()
        [[[77, 77, 77]]]
    """
    rgb = np.asarray(image, np.uint16)
    luma = (rgb[..., 0] * 77 + rgb[..., 1] * 150 + rgb[..., 2] * 29 + 128) >> 8
    return np.repeat(luma.astype(np.uint8)[..., None], 3, axis=-1)


def epoch_label(epoch: int) -> str:
    """How an epoch is captioned: ``"epoch 3"``, or ``"before training"`` for -1.

    Example:
        >>> epoch_label(-1), epoch_label(3)
        ('before training', 'epoch 3')
    """
    return "before training" if epoch < 0 else f"epoch {epoch}"


def overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, *, grey: bool = True
) -> np.ndarray:
    """Blends the colorized map onto a grey copy of a uint8 RGB image of any size.

    The probe's own colours would blur with the colormap's (a red object under a
    red hot spot), so the map is laid over the image's luma.

    Args:
        image: ``[H, W, 3]`` uint8.
        heatmap: ``[h, w]`` in [0, 1]; upsampled smoothly to ``H x W``.
        alpha: Weight of the map, in [0, 1].
        grey: Desaturate ``image`` first; pass ``False`` when it already is grey.

    Example:
        >>> overlay(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), 1.0)[0, 0].tolist()
        [122, 4, 3]
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    if grey:
        image = desaturate(image)
    heat = colorize(heatmap, image.shape[:2])
    a = int(round(alpha * 256))  # integer blend: 3x faster than float, within 1 of exact
    return ((heat.astype(np.uint16) * a + image.astype(np.uint16) * (256 - a) + 128) >> 8).astype(
        np.uint8
    )


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def _text_mask(text: str, size: int) -> np.ndarray:
    """Coverage of ``text`` as uint8 ``[h, w]``; cached, since names and numbers recur."""
    font = _font(size)
    width = max(1, int(np.ceil(font.getlength(text))))
    img = Image.new("L", (width, size + size // 2))
    ImageDraw.Draw(img).text((0, 0), text, fill=255, font=font)
    return np.asarray(img)


# NUL, other control characters, and the bidi embeddings, overrides and isolates that could
# reverse what a page or frame shows (U+202A-U+202E, U+2066-U+2069, and the LRM/RLM marks).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_NAME = 48  # characters of a class name shown; longer names end in an ellipsis


def clean_name(name: str, limit: int = MAX_NAME) -> str:
    """A class name safe to show: control and bidi characters removed, cut to ``limit``.

    Example:
        >>> clean_name("cat\u202edog\x00"), clean_name("x" * 60, limit=5)
        ('catdog', 'xxxx…')
    """
    text = _HIDDEN.sub("", str(name))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@lru_cache(maxsize=1024)
def _fit(text: str, size: int, width: int) -> str:
    """``text`` cut with an ellipsis to ``width`` pixels: a binary search, so cost stays linear."""
    font = _font(size)
    if font.getlength(text) <= width:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid] + "…") <= width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def put_text(frame: np.ndarray, x: int, y: int, text: str, colour, size: int) -> int:
    """Blends ``text`` into ``frame`` at ``(x, y)`` in place; returns the x after it.

    Example:
        >>> f = np.zeros((20, 60, 3), np.uint8)
        >>> put_text(f, 2, 2, "hi", (255, 255, 255), 13) > 2, int(f.max())
        (True, 255)
    """
    mask = _text_mask(text, size)
    h = min(mask.shape[0], frame.shape[0] - y)
    w = min(mask.shape[1], frame.shape[1] - x)
    if h <= 0 or w <= 0:
        return x
    a = mask[:h, :w, None].astype(np.uint16)
    region = frame[y : y + h, x : x + w]
    colour = np.asarray(colour, np.uint16)
    region[:] = ((colour * a + region.astype(np.uint16) * (255 - a) + 127) // 255).astype(np.uint8)
    return x + mask.shape[1]


class FrameRenderer:
    """Draws one probe's frames; the static parts are laid out once.

    Args:
        image: The probe's display image, ``[H, W, 3]`` uint8.
        label: True class id, or ``None`` when unknown.
        class_names: Names for the class ids; ids are shown when ``None``.
        top_k: How many classes the bar chart shows.
        alpha: Weight of the heatmap in the overlay.

    Example:
        >>> r = FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=1, class_names=["a", "b"])
        >>> r.draw(np.ones((4, 4)), np.array([0.3, 0.7]), epoch=0).shape
        (182, 500, 3)
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        label: int | None = None,
        class_names: Sequence[str] | None = None,
        top_k: int = 3,
        alpha: float = 0.5,
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
        self.height = CAPTION_H + h
        self.width = 2 * w + PANEL_W
        base = np.empty((self.height, self.width, 3), np.uint8)
        base[:] = BACKGROUND
        base[CAPTION_H:, :w] = self.image
        self.base = base

    def name(self, cls: int) -> str:
        """The class name of ``cls``, or its id."""
        if self.class_names is not None and 0 <= cls < len(self.class_names):
            return clean_name(self.class_names[cls])
        return str(cls)

    def draw(self, heatmap: np.ndarray, probabilities: np.ndarray, epoch: int) -> np.ndarray:
        """The frame for one epoch as ``[height, width, 3]`` uint8."""
        h, w = self.size
        frame = self.base.copy()
        frame[CAPTION_H:, w : 2 * w] = overlay(self.grey, heatmap, self.alpha, grey=False)
        probs = np.asarray(probabilities, dtype=np.float64).ravel()
        non_finite = not (np.isfinite(probs).all() and np.isfinite(heatmap).all())
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        pred = int(order[0])
        correct = self.label is not None and pred == self.label
        size = self.font_size

        # The caption is drawn in pieces so each piece's rendering is cached across frames.
        colour = TEXT if self.label is None else (RIGHT if correct else WRONG)
        pieces = [epoch_label(epoch)]
        if self.label is not None:
            pieces += [" · ", f"true: {_fit(self.name(self.label), size, 120)}"]
        pieces += [" · ", f"pred: {_fit(self.name(pred), size, 120)}", f" {probs[pred]:.2f}"]
        x = 6
        for piece in pieces:
            x = put_text(frame, x, 4, piece, colour, size)
        if non_finite:  # a diverged model: its numbers are shown as they are, and flagged
            put_text(frame, x, 4, " · NON-FINITE", WRONG, size)

        x0 = 2 * w + 10
        bar_w = PANEL_W - 20
        row = min(40, max(28, (h - 10) // max(1, self.top_k)))
        for i, cls in enumerate(order):
            y = CAPTION_H + 8 + i * row
            is_true = self.label is not None and int(cls) == self.label
            name = _fit(self.name(int(cls)), size, bar_w - (95 if is_true else 40))
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


def tile(
    image: np.ndarray,
    heatmap: np.ndarray,
    probabilities: np.ndarray,
    label: int | None,
    alpha: float = 0.5,
    side: int = 96,
    caption: str | None = None,
) -> np.ndarray:
    """A small overlay for grids, framed green when top-1 is right, red when wrong.

    Args:
        caption: Written in a strip under the overlay (the probe id and its true
            class), cut to fit.

    Example:
        >>> t = tile(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2)), np.array([0.9, 0.1]), 0)
        >>> t.shape, t[0, 0].tolist()
        ((100, 100, 3), [46, 160, 67])
    """
    scale = side / max(image.shape[:2])
    w = max(1, round(image.shape[1] * scale))
    h = max(1, round(image.shape[0] * scale))
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    strip = TILE_CAPTION_H if caption is not None else 0
    out = np.empty((side + 4 + strip, side + 4, 3), np.uint8)
    if label is None:
        out[:] = OTHER
    else:
        out[:] = RIGHT if int(np.argmax(probabilities)) == label else WRONG
    out[2 : 2 + h, 2 : 2 + w] = overlay(small, heatmap, alpha)
    if caption is not None:
        out[side + 4 :] = BACKGROUND
        put_text(out, 2, side + 5, _fit(caption, 11, side), TEXT, 11)
    return out


TILE_CAPTION_H = 15
GRID_TITLE_H = 16


def grid(
    frames: Sequence[np.ndarray], cols: int | None = None, title: str | None = None
) -> np.ndarray:
    """Tiles equally sized frames into a grid, row by row, 4 px apart.

    Args:
        frames: uint8 ``[H, W, 3]`` images.
        cols: Columns; about the square root of the count by default.
        title: Written in a strip above the grid (the epoch, in animations).

    Example:
        >>> grid([np.zeros((2, 2, 3), np.uint8)] * 3, cols=2).shape
        (8, 8, 3)
    """
    if not frames:
        raise ValueError("`frames` is empty: nothing to tile. Received: frames=[]")
    n = len(frames)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    gap = 4
    top = GRID_TITLE_H if title is not None else 0
    out = np.empty((top + rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.uint8)
    out[:] = BACKGROUND
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        y, x = top + r * (h + gap), c * (w + gap)
        out[y : y + f.shape[0], x : x + f.shape[1]] = f
    if title is not None:  # drawn in its own strip, so nothing spills onto the tiles
        put_text(out[:top], 4, 1, title, TEXT, 13)
    return out


def activation_grid(activations: np.ndarray, top: int = 16, side: int = 64) -> np.ndarray:
    """Tiles the strongest channels of one image's ``[h, w, C]`` activations.

    Channels are ranked by mean activation; each is scaled to its own max and
    drawn with turbo, so a user sees where feature extraction fires, or fails to.

    Args:
        activations: One image's layer output, ``[h, w, C]``.
        top: How many channels to show.
        side: Tile size in pixels.

    Returns:
        uint8 RGB grid, strongest channel first.

    Example:
        >>> activation_grid(np.random.rand(6, 6, 32), top=4).shape
        (132, 132, 3)
    """
    a = np.asarray(activations, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"`activations` must be [h, w, channels]. Received: shape {a.shape}")
    strength = a.reshape(-1, a.shape[-1]).mean(0)
    order = np.argsort(-strength, kind="stable")[:top]
    tiles = []
    for c in order:
        ch = np.maximum(a[..., c], 0)
        peak = ch.max()
        tiles.append(colorize(ch / peak if peak > 0 else ch, (side, side)))
    return grid(tiles)
