"""The TensorFlow-free event writer: record framing and CRCs TensorBoard accepts."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as stub

from cam_callback.tensorboard import SummaryWriter, masked_crc32c, record_bytes


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 255, 4096, 100_003])
def test_masked_crc32c_matches_tensorboards_reference(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert masked_crc32c(data) == stub.masked_crc32c(data)


def test_records_pass_tensorboards_crc_checks_and_a_flipped_byte_fails(tmp_path):
    payload = b"an event, serialised"
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(record_bytes(payload) * 2)
    broken = bytearray(record_bytes(payload))
    broken[14] ^= 1  # inside the data
    bad.write_bytes(bytes(broken))
    reader = stub.PyRecordReader_New(str(good))
    for _ in range(2):
        reader.GetNext()
        assert reader.record() == payload
    with pytest.raises(Exception, match="event crc32 check"):
        stub.PyRecordReader_New(str(bad)).GetNext()


def test_event_file_reads_back_images_and_scalars(tmp_path):
    frame = np.zeros((20, 30, 3), np.uint8)
    frame[:, 10:] = (200, 30, 40)  # few colours: the palette PNG is exact
    writer = SummaryWriter(tmp_path)
    writer.write(0, {"cam/grid": frame}, {"cam/mean_drift": 0.25})
    writer.write(1, {"cam/grid": frame[::-1, ::-1]}, {"cam/mean_drift": 0.5})
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    grids = acc.Tensors("cam/grid")
    assert [e.step for e in grids] == [0, 1]
    for event, want in zip(grids, (frame, frame[::-1, ::-1]), strict=True):
        width, height, png = event.tensor_proto.string_val
        assert (int(width), int(height)) == (30, 20)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), want)
    drift = [(e.step, e.tensor_proto.float_val[0]) for e in acc.Tensors("cam/mean_drift")]
    assert drift == [(0, 0.25), (1, 0.5)]
