"""Drawing primitives: the frame's palette and sizes, turbo colours, display images,
upsampled heatmaps and overlays. Pure numpy/Pillow; no TensorFlow, no I/O."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

MIN_SIDE, MAX_SIDE = 160, 256  # displayed image height, whatever the probe's size
MAX_WIDTH = 4 * MAX_SIDE  # displayed image width: a frame is at most 2 * 1024 + 308 px wide
MIN_TEXT = 16  # the smallest caption and bar text, in pixels


def text_size(height: int, width: int) -> int:
    """The caption's and the bars' text size for an image shown at ``height x width``: a
    ninth of its shorter side, so that text keeps the same share of the frame at every
    size. TensorBoard's IMAGES tab shows a frame about 350 px wide: a 160-px probe's frame
    (518 px) is scaled by 0.68 there, and its 18-px text stays 12 px high.

    Example:
        >>> text_size(160, 160), text_size(256, 256), text_size(160, 1024), text_size(256, 1)
        (18, 28, 18, 16)
    """
    return max(MIN_TEXT, min(round(width / 9), round(height / 9)))


def caption_height(size: int) -> int:
    """The caption strip's height for text of ``size`` px: two lines (the epoch and the
    true class; the prediction and the explained class) and a 4-px margin.

    Example:
        >>> caption_height(18)
        48
    """
    return 2 * round(1.2 * size) + 4


def panel_width(size: int) -> int:
    """The bar panel's width for text of ``size`` px: a name, " (true)" and "0.97" fit.

    Example:
        >>> panel_width(18)
        198
    """
    return 11 * size


CAPTION_H = caption_height(text_size(MIN_SIDE, MIN_SIDE))  # 48: a probe of at most 160 px
PANEL_W = panel_width(text_size(MIN_SIDE, MIN_SIDE))  # 198
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
        [144, 13, 0]
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
