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
        ((None, 17, 8), (32, 32), {"grid": (2, 8)}, TokenGrid(1, 2, 8)),
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
