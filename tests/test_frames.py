"""Frame drawing against independent numpy references, within a pixel value."""

from __future__ import annotations

import numpy as np
import pytest

from cam_callback import frames as F


def bilinear_reference(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Half-pixel-centred bilinear upsampling with edge clamping, in float64."""
    h, w = m.shape
    ys = np.clip((np.arange(size[0]) + 0.5) * h / size[0] - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size[1]) + 0.5) * w / size[1] - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = m[y0][:, x0] * (1 - fx) + m[y0][:, x1] * fx
    bottom = m[y1][:, x0] * (1 - fx) + m[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


HAND_MAP = np.array([[0.0, 0.25, 1.0], [0.5, 0.75, 0.1], [0.2, 0.0, 0.6]], np.float32)


def test_upsample_matches_bilinear_reference():
    got = F.upsample(HAND_MAP, (48, 60))
    np.testing.assert_allclose(
        got, bilinear_reference(HAND_MAP.astype(np.float64), (48, 60)), atol=1e-4
    )
    assert got.min() >= 0 and got.max() <= 1


def test_overlay_parity_with_float_blend():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        got = F.overlay(image, HAND_MAP, alpha).astype(int)
        heat = F.colorize(HAND_MAP, (48, 60)).astype(np.float64)
        luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        want = np.round(alpha * heat + (1 - alpha) * luma[..., None])
        assert np.abs(got - want).max() <= 1, alpha
        colour = F.overlay(image, HAND_MAP, alpha, grey=False).astype(int)
        assert np.abs(colour - np.round(alpha * heat + (1 - alpha) * image)).max() <= 1


def test_overlay_greys_the_probe_so_a_red_frame_is_not_read_as_heat():
    red = np.zeros((16, 16, 3), np.uint8)
    red[...] = (210, 30, 35)
    cold = F.overlay(red, np.zeros((2, 2)), 0.5)
    # Over a cold map the red object no longer shows red: every channel is near-equal grey.
    assert cold.dtype == np.uint8 and int(np.ptp(cold.astype(int) - cold[..., :1], axis=None)) < 70
    assert cold[0, 0, 0] < 100  # not the probe's red 210 half-blended (≈ 130)
    np.testing.assert_array_equal(F.desaturate(red)[..., 0], F.desaturate(red)[..., 2])


def test_colorize_uses_turbo_lookup():
    lut = F.turbo_lut()
    assert lut.dtype == np.uint8 and lut.shape == (256, 3)
    # turbo: dark at 0, blue in the low range, green-yellow in the middle, red at the top.
    assert lut[0].sum() < 100 and lut[25, 2] == lut[25].max()
    assert lut[128, 1] > 200 and lut[230, 0] == lut[230].max() and lut[255, 2] < 20
    np.testing.assert_array_equal(F.colorize(np.array([[0.0, 1.0]])), lut[[[0, 255]]])


def test_to_display_min_max():
    x = np.array([[[[-1.0], [1.0]], [[0.0], [1.0]]]])
    d = F.to_display(x)
    assert d.dtype == np.uint8 and d.shape == (1, 2, 2, 3)
    assert d[0, :, :, 0].tolist() == [[0, 255], [128, 255]]
    assert F.to_display(np.zeros((1, 2, 2, 3))).max() == 0  # a flat image stays black


# side, shown, text size (a ninth of the shown side), caption (two lines of 1.2 x text, + 4)
# and bar panel (11 x text) heights and widths.
@pytest.mark.parametrize(
    "side,shown,text,caption,panel",
    [(32, 160, 18, 48, 198), (200, 200, 22, 56, 242), (512, 256, 28, 72, 308)],
)
def test_frame_stays_legible_for_small_and_large_inputs(side, shown, text, caption, panel):
    image = np.full((side, side, 3), 90, np.uint8)
    r = F.FrameRenderer(image, label=1, class_names=["cat", "dog", "bird"], top_k=3)
    frame = r.draw(HAND_MAP, np.array([0.1, 0.7, 0.2]), epoch=4)
    assert (r.font_size, r.bar_font, r.top) == (text, text, caption)
    assert frame.shape == (caption + shown, 2 * shown + panel, 3)
    # The middle panel is exactly the overlay of the shown image, on its grey copy.
    np.testing.assert_array_equal(
        frame[caption:, shown : 2 * shown], F.overlay(r.image, HAND_MAP, 0.5)
    )
    np.testing.assert_array_equal(frame[caption:, :shown], r.image)


def cap_height(size):
    """Rows of a capital H drawn at ``size`` px."""
    return int((F.text_mask("H", size) > 127).any(1).sum())


@pytest.mark.parametrize("side", [32, 200, 512])
def test_text_stays_readable_where_tensorboard_shows_the_frame_350_px_wide(side):
    """TensorBoard's IMAGES tab scales a frame to about 350 px wide: captions and bar labels
    must keep capitals at least 8 px high there (they were 5 to 6.3 px: unreadable)."""
    r = F.FrameRenderer(np.zeros((side, side, 3), np.uint8), label=0, class_names=["a", "b"])
    scale = 350 / r.width
    assert cap_height(r.font_size) * scale >= 8, (r.font_size, r.width)
    assert cap_height(r.bar_font) * scale >= 8, (r.bar_font, r.width)
    # The caption's two lines fit the frame, with names of up to 12 characters uncut.
    names = ["a" * 12, "b" * 12, "c" * 12]
    r = F.FrameRenderer(np.zeros((side, side, 3), np.uint8), label=0, class_names=names)
    for line in r.caption_lines(np.array([0.1, 0.8, 0.1]), epoch=-1, target=2):
        text = "".join(line)
        assert "…" not in text and F.font(r.font_size).getlength(text) <= r.width - 12, text


def test_bar_rows_shrink_their_text_only_when_top_k_rows_would_not_fit():
    image = np.zeros((32, 32, 3), np.uint8)
    three = F.FrameRenderer(image, top_k=3)
    five = F.FrameRenderer(image, top_k=5)
    assert (three.row_h, three.bar_font, five.row_h, five.bar_font) == (38, 18, 30, 16)
    for r in (three, five):  # the last bar ends inside the frame
        assert r.bar_top(r.top_k - 1) + r.bar_h <= r.height


@pytest.mark.parametrize("top_k, caption", [(10, True), (30, False), (50, True)])
def test_many_bar_rows_draw_only_the_rows_that_fit(top_k, caption):
    probs = np.linspace(1.0, 0.0, 50)
    r = F.FrameRenderer(np.zeros((32, 32, 3), np.uint8), class_names=[f"c{i}" for i in range(50)],
                        top_k=top_k, caption=caption)  # fmt: skip
    frame = r.draw(np.zeros((2, 2)), probs / probs.sum(), epoch=0)  # raised IndexError before
    assert frame.shape == (r.height, r.width, 3)
    assert 1 <= r.rows <= top_k and r.bar_top(r.rows - 1) + r.bar_h <= r.height
    assert r.rows == min(top_k, (r.size[0] - 8) // 16)  # 8 px text + 3 + a 3 px bar


def test_left_panel_keeps_colour_and_baseline_caption():
    image = np.zeros((32, 32, 3), np.uint8)
    image[...] = (210, 30, 35)
    r = F.FrameRenderer(image, label=0, class_names=["homer", "square"])
    before = r.draw(np.zeros((2, 2)), np.array([0.5, 0.5]), epoch=-1)
    after = r.draw(np.zeros((2, 2)), np.array([0.5, 0.5]), epoch=0)
    assert before[F.CAPTION_H + 5, 5].tolist() == [210, 30, 35]  # the probe, in colour
    mid = before[F.CAPTION_H + 5, 165]
    assert abs(int(mid[0]) - int(mid[2])) < 60  # the overlay's background is grey
    # "before training" is wider than "epoch 0": the captions differ.
    assert not np.array_equal(before[: F.CAPTION_H], after[: F.CAPTION_H])
    assert F.epoch_label(-1) == "before training" and F.epoch_label(7) == "epoch 7"


def bar_y(shown, row):
    """The middle of a bar's row for a 160-px probe, by the layout rules: 18-px text, rows
    38 px apart from 6 px below the 48-px caption, each bar 8 px high, 3 px under its text
    (which ends 1.2 x 18 = 22 px below where it is put)."""
    assert shown == 160
    return 48 + 6 + row * 38 + 22 + 3 + 4


def bar_colour(frame, shown, row):
    return tuple(frame[bar_y(shown, row), 2 * shown + 10 + 5])


def test_bars_green_when_right_red_when_wrong_and_true_class_marked():
    image = np.zeros((32, 32, 3), np.uint8)
    right = F.FrameRenderer(image, label=1, class_names=["a", "b", "c"])
    frame = right.draw(HAND_MAP, np.array([0.2, 0.7, 0.1]), 0)
    assert bar_colour(frame, 160, 0) == F.RIGHT
    wrong = F.FrameRenderer(image, label=2, class_names=["a", "b", "c"])
    frame = wrong.draw(HAND_MAP, np.array([0.2, 0.7, 0.1]), 0)
    assert bar_colour(frame, 160, 0) == F.WRONG
    assert bar_colour(frame, 160, 1) == F.OTHER
    # The true class (third row here) carries a white tick left of its bar.
    assert tuple(frame[bar_y(160, 2), 2 * 160 + 10 - 3]) == F.TEXT
    unlabeled = F.FrameRenderer(image).draw(HAND_MAP, np.array([0.2, 0.7, 0.1]), 0)
    assert bar_colour(unlabeled, 160, 0) == F.OTHER


def test_bar_length_proportional_to_probability():
    frame = F.FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=0).draw(
        HAND_MAP, np.array([0.5, 0.5]), 0
    )
    line = frame[bar_y(160, 0), 2 * 160 + 10 : 2 * 160 + 10 + F.PANEL_W - 20]
    filled = int((line == np.array(F.RIGHT)).all(1).sum())
    assert abs(filled - (F.PANEL_W - 20) * 0.5) <= 2


def test_class_names_lose_hidden_characters_and_long_ones_cost_linear(monkeypatch):
    r = F.FrameRenderer(
        np.zeros((32, 32, 3), np.uint8), class_names=["\u202eevil\u202c\x00", "x" * 5000]
    )
    assert r.name(0) == "evil"
    assert r.name(1) == "x" * (F.MAX_NAME - 1) + "…"
    font = F.font(13)
    calls = []
    real = type(font).getlength
    monkeypatch.setattr(
        type(font),
        "getlength",
        lambda self, text, *a, **k: calls.append(len(text)) or real(self, text, *a, **k),
    )
    F.fit_text.cache_clear()
    cut = F.fit_text("y" * 5000, 13, 120)
    assert cut.endswith("…") and font.getlength(cut) <= 120 < font.getlength(cut[:-1] + "y…")
    assert len(calls) <= 16 and sum(calls) <= 2 * 5000 + 16 * 60  # a binary search, not a loop


def test_non_finite_values_are_drawn_and_flagged():
    r = F.FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=0, class_names=["a", "b"])
    fine = r.draw(HAND_MAP, np.array([0.6, 0.4]), 3)
    nan_map = HAND_MAP.copy()
    nan_map[0, 0] = np.nan
    for heat, probs in ((nan_map, np.array([0.6, 0.4])), (HAND_MAP, np.array([np.nan, np.inf]))):
        frame = r.draw(heat, probs, 3)
        caption = frame[: F.CAPTION_H]
        # The caption's second line (from y = 22) gains a red NON-FINITE after its text.
        tail = (caption[22:, 120:] == np.array(F.WRONG)).all(-1).sum()
        assert tail > (fine[22 : F.CAPTION_H, 120:] == np.array(F.WRONG)).all(-1).sum() + 20


def test_grid_and_tile():
    tiles = [np.full((3, 3, 3), i * 40, np.uint8) for i in range(5)]
    g = F.grid(tiles, cols=3)
    assert g.shape == (2 * 3 + 4, 3 * 3 + 8, 3)
    assert g[0, 0].tolist() == [0, 0, 0] and g[0, 7].tolist() == [40, 40, 40]
    assert g[7, 7].tolist() == [160, 160, 160]
    assert g[9, 15].tolist() == list(F.BACKGROUND)  # the empty sixth cell
    t = F.tile(np.zeros((10, 20, 3), np.uint8), HAND_MAP, np.array([0.1, 0.9]), 0, side=40)
    assert t.shape == (44, 44, 3) and t[0, 0].tolist() == list(F.WRONG)
    with pytest.raises(ValueError, match="`frames` is empty"):
        F.grid([])


def test_grid_title_and_tile_caption_are_drawn():
    t = F.tile(np.zeros((10, 10, 3), np.uint8), HAND_MAP, np.array([0.9, 0.1]), 0, side=40)
    c = F.tile(
        np.zeros((10, 10, 3), np.uint8),
        HAND_MAP,
        np.array([0.9, 0.1]),
        0,
        side=40,
        caption="003 homer",
    )
    assert c.shape == (44 + F.TILE_CAPTION_H, 44, 3)
    np.testing.assert_array_equal(c[:44], t)
    strip = c[44:]
    assert (strip == F.TEXT).all(-1).any() or strip.max() > 200  # text pixels in the strip
    plain = F.grid([t, t], cols=2)
    titled = F.grid([t, t], cols=2, title="epoch 3")
    assert titled.shape[0] == plain.shape[0] + F.GRID_TITLE_H
    np.testing.assert_array_equal(titled[F.GRID_TITLE_H :], plain)
    assert titled[: F.GRID_TITLE_H].max() > 200  # the title's text
    other = F.grid([t, t], cols=2, title="epoch 4")
    assert not np.array_equal(titled[: F.GRID_TITLE_H], other[: F.GRID_TITLE_H])


def test_bad_frame_inputs():
    with pytest.raises(ValueError, match="`image` must be uint8"):
        F.FrameRenderer(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="`alpha`"):
        F.overlay(np.zeros((4, 4, 3), np.uint8), HAND_MAP, 1.5)


@pytest.mark.parametrize(
    "shape,shown",
    [
        ((1, 16384), (160, 1024)),  # 160 x 2.6 M px before the cap
        ((64, 512), (160, 1024)),  # 8:1, squeezed to 6.4:1
        ((200, 1280), (200, 1024)),
        ((100, 640), (160, 1024)),  # exactly 6.4:1: kept
        ((16384, 1), (256, 1)),
        ((300, 600), (256, 512)),
    ],
)
def test_a_frame_is_bounded_whatever_the_probe_shape(shape, shown):
    """A frame is at most (72 + 256) x (2 * 1024 + 308) px: a 1 x 16384 probe cannot make
    the renderer draw 160 x 2.6 M px."""
    assert F.display_size(*shape) == shown
    r = F.FrameRenderer(np.full((*shape, 3), 200, np.uint8), label=0, class_names=["a", "b"])
    frame = r.draw(np.ones((2, 2)), np.array([0.8, 0.2]), epoch=1)
    assert frame.shape == (r.top + shown[0], 2 * shown[1] + r.panel_w, 3)
    # Text is at most 28 px (a ninth of 256): a 72-px caption and a 308-px panel.
    assert frame.shape[0] <= 72 + 256 and frame.shape[1] <= 2 * 1024 + 308
    np.testing.assert_array_equal(frame[r.top :, : shown[1]], 200)  # the image, resized


def test_a_non_finite_prediction_is_never_drawn_right():
    """argmax(NaN) is 0: a label-0 probe of a diverged model is framed and captioned wrong."""
    nan = np.array([np.nan, np.nan])
    t = F.tile(np.zeros((10, 20, 3), np.uint8), HAND_MAP, nan, 0, side=40)
    assert t[0, 0].tolist() == list(F.WRONG)
    r = F.FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=0, class_names=["a", "b"])
    caption = r.draw(HAND_MAP, nan, 1)[: F.CAPTION_H]
    fine = r.draw(HAND_MAP, np.array([0.9, 0.1]), 1)[: F.CAPTION_H]
    # A right prediction's caption is drawn in green; the NaN one has no green at all.
    assert (fine == np.array(F.RIGHT)).all(-1).sum() > 0
    assert (caption == np.array(F.RIGHT)).all(-1).sum() == 0


def test_the_caption_says_which_class_the_map_explains():
    r = F.FrameRenderer(np.zeros((32, 32, 3), np.uint8), label=0, class_names=["cross", "square"])
    probs = np.array([0.2, 0.8])
    text = "".join(r.caption_pieces(probs, epoch=2, target=1))
    assert text == "epoch 2 · true: cross · pred: square 0.80 · map: square"
    assert "map:" not in "".join(r.caption_pieces(probs, epoch=2))
    # The pixels drawn are those pieces: the caption strip equals the text put piece by piece.
    frame = r.draw(HAND_MAP, probs, 2, target=1)
    want = np.empty((48, frame.shape[1], 3), np.uint8)  # two 22-px lines of 18-px text
    want[:] = F.BACKGROUND
    for y, pieces in ((0, ["epoch 2", " · ", "true: cross"]),
                      (22, ["pred: square", " 0.80", " · ", "map: square"])):  # fmt: skip
        x = 6
        for piece in pieces:
            x = F.put_text(want, x, y, piece, F.WRONG, 18)
    assert r.top == 48
    np.testing.assert_array_equal(frame[: F.CAPTION_H], want)
    # Another target is another caption; the rest of the frame is the same.
    other = r.draw(HAND_MAP, probs, 2, target=0)
    assert not np.array_equal(other[: F.CAPTION_H], frame[: F.CAPTION_H])
    np.testing.assert_array_equal(other[F.CAPTION_H :], frame[F.CAPTION_H :])


def test_a_frame_without_caption_is_the_frame_below_the_caption():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    full = F.FrameRenderer(image, label=1, class_names=["a", "b"])
    bare = F.FrameRenderer(image, label=1, class_names=["a", "b"], caption=False)
    probs = np.array([0.3, 0.7])
    got = bare.draw(HAND_MAP, probs, 4, target=1)
    assert got.shape[0] == full.height - F.CAPTION_H == bare.height
    np.testing.assert_array_equal(got, full.draw(HAND_MAP, probs, 4, target=1)[F.CAPTION_H :])


def test_the_grid_legend_names_the_border_colours():
    t = F.tile(np.zeros((10, 10, 3), np.uint8), HAND_MAP, np.array([0.9, 0.1]), 0, side=96)
    plain = F.grid([t] * 9, title="epoch 3")
    keyed = F.grid([t] * 9, title="epoch 3", legend=F.TILE_LEGEND)
    assert keyed.shape == plain.shape  # a 3x3 grid of 100-px tiles holds the legend
    np.testing.assert_array_equal(keyed[F.GRID_TITLE_H :], plain[F.GRID_TITLE_H :])
    strip = keyed[: F.GRID_TITLE_H]
    # One 9x9 swatch per entry, in the border colours, right-aligned, with its text after it.
    x0 = strip.shape[1] - 4 - F.legend_width(F.TILE_LEGEND)
    np.testing.assert_array_equal(strip[4:13, x0 : x0 + 9], np.broadcast_to(F.RIGHT, (9, 9, 3)))
    want = np.empty_like(strip)
    want[:] = F.BACKGROUND
    F.put_text(want, 4, 1, "epoch 3", F.TEXT, 13)
    end = F.draw_legend(want, x0, F.TILE_LEGEND)
    assert end == strip.shape[1] - 4
    np.testing.assert_array_equal(strip, want)
    assert (strip == F.WRONG).all(-1).sum() == 81 and (strip == F.RIGHT).all(-1).sum() == 81
    # A grid narrower than its title and legend is widened to hold both.
    one = F.grid([t], title="before training", legend=F.TILE_LEGEND)
    assert one.shape[1] > t.shape[1] and (one[: F.GRID_TITLE_H] == F.WRONG).all(-1).sum() == 81
    # Every epoch's grid of an animation is as wide, whatever its title.
    assert F.grid([t], title="epoch 3", legend=F.TILE_LEGEND).shape == one.shape


def test_rendered_grid_animations_carry_the_legend_at_one_width(tmp_path):
    from records import make_record

    from cam_callback import animate
    from cam_callback.record import load_run

    run = load_run(make_record(tmp_path, n_probes=3, n_epochs=3, baseline=True))
    grids = animate.grid_frames(run, [0, 1])
    assert len({g.shape for g in grids}) == 1  # "before training" and "epoch 2" alike
    for g in grids:
        strip = g[: F.GRID_TITLE_H]
        assert (strip == F.RIGHT).all(-1).sum() == 81 and (strip == F.WRONG).all(-1).sum() == 81
