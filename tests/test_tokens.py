"""The token-grid helper: prefix tokens, patch grids and the reshapes, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cam_callback.core.tokens import (
    TokenGrid,
    check_token_arguments,
    grid_to_tokens,
    is_token_shape,
    token_grid,
    tokens_to_grid,
)


@pytest.mark.parametrize(
    ("shape", "image", "kwargs", "want"),
    [
        ((None, 17, 8), (32, 32), {}, TokenGrid(1, 4, 4)),  # class token
        ((None, 16, 8), (32, 32), {}, TokenGrid(0, 4, 4)),  # no prefix (GAP head)
        ((None, 198, 8), (224, 224), {}, TokenGrid(2, 14, 14)),  # DeiT: class + distillation
        ((None, 261, 8), (224, 224), {}, TokenGrid(5, 16, 16)),  # DINOv2: class + 4 registers
        ((None, 33, 8), (32, 64), {}, TokenGrid(1, 4, 8)),  # a wide image
        ((None, 261, 8), (64, 64), {"patch_size": 4}, TokenGrid(5, 16, 16)),
        ((None, 261, 8), (64, 64), {"patch_size": (4, 4)}, TokenGrid(5, 16, 16)),
        # A patch size that does not fit a later (Swin) stage falls back to the search.
        ((None, 16, 8), (32, 32), {"patch_size": 4}, TokenGrid(0, 4, 4)),
        ((None, 17, 8), (16, 64), {"grid": (2, 8)}, TokenGrid(1, 2, 8)),
        ((None, 50, 8), (30, 30), {"grid": (7, 7)}, TokenGrid(1, 7, 7)),  # 30 px, no whole patch
        ((None, 21, 8), (32, 32), {"prefix_tokens": 5}, TokenGrid(5, 4, 4)),
        ((None, 17, 8), (32, 32), {"grid": (4, 4), "prefix_tokens": 1}, TokenGrid(1, 4, 4)),
    ],
)
def test_token_grid_decides_prefix_and_grid(shape, image, kwargs, want):
    assert token_grid(shape, image, **kwargs) == want


@pytest.mark.parametrize(
    ("shape", "image", "kwargs", "needle"),
    [
        ((None, 50, 8), (31, 31), {}, "grid=(h, w)"),  # 31 px: no whole patches
        ((None, 50, 8), (31, 31), {}, "prefix_tokens=n"),
        ((None, 17, 8), (32, 32), {"prefix_tokens": 2}, "prefix_tokens=2"),
        ((None, 17, 8), (32, 32), {"grid": (5, 5)}, "leaves -8 prefix tokens"),
        ((None, 17, 8), (32, 32), {"grid": (4, 4), "prefix_tokens": 0}, "not prefix_tokens=0"),
        ((None, 17, 8), (32, 32), {"grid": (4, 0)}, "`grid` must be"),
        ((None, 17, 8), (32, 32), {"grid": "4x4"}, "`grid` must be"),
        ((None, 17, 8), (32, 32), {"prefix_tokens": -1}, "`prefix_tokens` must be"),
        ((None, 17, 8), (32, 32), {"prefix_tokens": True}, "`prefix_tokens` must be"),
        ((None, 4, 4, 8), (32, 32), {}, "not [batch, tokens, dim]"),
        ((None, 1, 8), (32, 32), {}, "not [batch, tokens, dim]"),
    ],
)
def test_token_grid_errors_name_the_fix(shape, image, kwargs, needle):
    with pytest.raises(ValueError) as err:
        token_grid(shape, image, layer="blk", **kwargs)
    assert needle in str(err.value)
    assert "blk" in str(err.value) or "must be" in str(err.value)


def test_is_token_shape():
    assert is_token_shape((None, 17, 8))
    assert not is_token_shape((None, 1, 8))
    assert not is_token_shape((None, 4, 4, 8))
    assert not is_token_shape(None)


def test_reshape_drops_prefix_row_major_and_inverts():
    g = TokenGrid(2, 2, 3)
    tokens = np.arange(2 * 8 * 2, dtype=np.float32).reshape(2, 8, 2)
    grid = np.asarray(tokens_to_grid(tokens, g))
    assert grid.shape == (2, 2, 3, 2)
    # Token 2 + r * 3 + c is patch (r, c): the prefix goes, rows stay rows.
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(grid[:, r, c], tokens[:, 2 + r * 3 + c])
    back = np.asarray(grid_to_tokens(grid, tokens[:, :2], g))
    np.testing.assert_array_equal(back, tokens)
    no_prefix = TokenGrid(0, 2, 4)
    back0 = np.asarray(grid_to_tokens(tokens_to_grid(tokens, no_prefix), tokens[:, :0], no_prefix))
    np.testing.assert_array_equal(back0, tokens)


def test_numpy_integers_are_taken_as_plain_ints():
    grid, prefix = check_token_arguments((np.int64(4), np.int32(6)), np.int64(1))
    assert grid == (4, 6) and prefix == 1
    assert all(type(v) is int for v in (*grid, prefix))  # recorded in record.json
    with pytest.raises(ValueError, match="prefix_tokens"):
        check_token_arguments(None, np.float64(1.0))


@pytest.mark.parametrize(
    ("tokens", "image", "grid", "needles"),
    [
        # 25 tokens on a square image are 5 x 5 patches; 2 x 2 would drop 21 "prefix" tokens
        (25, (20, 20), (2, 2), ("leaves 21 prefix tokens, more than the 16", "(5, 5) with 0")),
        (25, (20, 20), (1, 1), ("at least 2 patch rows and 2 columns", "grid=(5, 5)")),
        (17, (32, 32), (1, 16), ("at least 2 patch rows", "grid=(4, 4) with 1 prefix")),
        # a 16 x 24 image is 4 x 6 patches: the transposed grid scrambles the map
        (24, (16, 24), (6, 4), ("contradict the image's aspect ratio", "grid=(4, 6) with 0")),
        (17, (32, 32), (2, 8), ("contradict the image's aspect ratio", "grid=(4, 4) with 1")),
    ],
)
def test_a_grid_that_contradicts_the_image_is_refused_naming_the_implied_grid(
    tokens, image, grid, needles
):
    with pytest.raises(ValueError) as err:
        token_grid((None, tokens, 8), image, grid=grid, layer="blk")
    for needle in (*needles, f"grid={grid!r}", "`grid`"):
        assert needle in str(err.value), str(err.value)


def test_grids_that_fit_the_image_are_kept():
    assert token_grid((None, 24, 8), (16, 24), grid=(4, 6)) == TokenGrid(0, 4, 6)
    assert token_grid((None, 26, 8), (64, 64), grid=(5, 5)) == TokenGrid(1, 5, 5)  # 64 / 5
    assert token_grid((None, 64, 8), (100, 160), grid=(6, 10), prefix_tokens=4) == TokenGrid(
        4, 6, 10
    )  # 16.7 x 16 px patches (160 // 16 by 100 // 16): inside the tolerance
    # many prefix tokens are taken when prefix_tokens says so
    assert token_grid((None, 25, 8), (20, 20), grid=(2, 2), prefix_tokens=21) == TokenGrid(21, 2, 2)
    # a declared non-square patch size sets the expected patch shape
    assert token_grid((None, 16, 8), (16, 64), grid=(4, 4), patch_size=(4, 16)) == TokenGrid(
        0, 4, 4
    )


def test_the_tracker_refuses_a_transposed_grid_before_an_epoch(tmp_path):
    import keras  # noqa: PLC0415 - only this test builds a model

    from cam_callback import CAMTracker, inspect_model  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 24, 3))
    t = keras.layers.Reshape((24, 8), name="tokens")(keras.layers.Conv2D(8, 4, strides=4)(inp))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(t)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((4, 16, 24, 3)).astype("float32")
    assert inspect_model(model, x, layer="tokens").map_shape == (4, 6)
    msg = r"`grid` \(6, 4\) does not fit layer 'tokens'.*implies grid=\(4, 6\)"
    with pytest.raises(ValueError, match=msg):
        inspect_model(model, x, layer="tokens", grid=(6, 4))
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    tracker = CAMTracker(
        x, log_dir=tmp_path, layer="tokens", grid=(6, 4), animate=None, tensorboard=False
    )
    with pytest.raises(ValueError, match=msg):
        model.fit(x, np.zeros(4, int), epochs=2, verbose=0, callbacks=[tracker, seen])
    assert epochs == []
