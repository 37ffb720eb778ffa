"""CAMTracker's argument checks, and how probes of any channel count are drawn."""

from __future__ import annotations

import numpy as np
import pytest

from cam_callback.record.config import check_fps
from cam_callback.tracker import arguments as A


def test_display_copy_by_channel_count():
    x = np.zeros((1, 1, 2, 13), np.float32)
    x[0, 0, 1] = np.arange(13) + 1.0  # the second pixel brighter in every channel
    x[0, 0, 0, 1:] = 100.0  # the first pixel bright in every channel but the first
    # 1 channel: grey.
    assert A.display_copy(x[..., :1])[0, 0].tolist() == [[0, 0, 0], [255, 255, 255]]
    # 2 and 13: the first channel in grey; the others do not change it.
    for c in (2, 13):
        assert A.display_copy(x[..., :c])[0, 0].tolist() == [[0, 0, 0], [255, 255, 255]], c
    # 3: RGB, min-max over the image; 4: the same, the fourth left out.
    rgb = A.display_copy(x[..., :3])[0, 0].tolist()
    assert rgb == [[0, 255, 255], [3, 5, 8]]
    assert A.display_copy(x[..., :4])[0, 0].tolist() == rgb


def test_display_images_given_in_grey_are_drawn_in_rgb():
    grey = np.array([[[0, 200]]], np.uint8)
    for given in (grey, grey[..., None]):
        assert A.display(given, 1, np.zeros((1, 1, 2, 5))).tolist() == [[[[0] * 3, [200] * 3]]]
    with pytest.raises(ValueError, match=r"\[1, H, W, 3\]"):
        A.display(np.zeros((1, 2, 2, 2), np.uint8), 1, np.zeros((1, 2, 2, 2)))


def test_numbers_accept_numpy_scalars_and_refuse_the_rest():
    assert A.positive_int(np.int64(2), "every_n_epochs") == 2
    assert type(A.positive_int(np.uint8(3), "top_k")) is int
    assert A.unit_float(np.float32(0.5), "alpha") == 0.5 and A.unit_float(1, "alpha") == 1.0
    assert A.max_frames(np.int32(5)) == 5 and A.max_frames(None) is None
    assert A.flag(np.bool_(False), "tensorboard") is False
    assert check_fps(np.float32(4.0), ("gif",)) == 4.0
    for bad in (True, np.bool_(True), 2.0, np.float32(2.0), "2", 0):
        with pytest.raises(ValueError, match="`every_n_epochs` must be a positive int"):
            A.positive_int(bad, "every_n_epochs")
    for bad in (float("nan"), np.float32(1.5), -0.1, "0.5", None):
        with pytest.raises(ValueError, match="`alpha` must be"):
            A.unit_float(bad, "alpha")
    with pytest.raises(TypeError, match="`tensorboard` must be a bool"):
        A.flag(1, "tensorboard")


def test_fps_ranges_for_gif_and_mp4():
    assert check_fps(240, ("mp4",)) == 240.0 and check_fps(0.002, ("mp4",)) == 0.002
    for fps in (1e-6, 1e-9, 241):
        with pytest.raises(ValueError, match="for an MP4"):
            check_fps(fps, ("mp4",))
    with pytest.raises(ValueError, match="for a GIF"):
        check_fps(60, ("gif", "mp4"))


def test_labels_class_names_and_log_dir():
    ids, width = A.labels(np.array([2, 0], np.uint64), 2)
    assert ids.tolist() == [2, 0] and ids.dtype == np.int64 and width is None
    with pytest.raises(ValueError, match="holds 18446744073709551615, which is no class id"):
        A.labels(np.array([0, 2**64 - 1], np.uint64), 2)
    assert A.class_names(name for name in ("cat", "dog")) == ["cat", "dog"]
    with pytest.raises(TypeError, match=r"`class_names`.*\['cat', 3\]"):
        A.class_names(name for name in ("cat", 3))  # the message shows what was read
    with pytest.raises(TypeError, match="`class_names`"):
        A.class_names(3)
    with pytest.raises(ValueError, match="`log_dir` is empty"):
        A.log_dir("")
    with pytest.raises(TypeError, match="`log_dir` must be a path"):
        A.log_dir(None)
    with pytest.raises(ValueError, match="which is no class id"):
        A.target(np.array([2**63, 0], np.uint64), 2, None)
