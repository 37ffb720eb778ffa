"""The TensorFlow-free event writer: record framing and CRCs TensorBoard accepts."""

from __future__ import annotations

import io
import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as stub

from cam_callback.record.tensorboard import SummaryWriter, masked_crc32c, record_bytes


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


def _readme_tensorboard_flags() -> list[str]:
    """The flags of README's `tensorboard --logdir runs/spurious ...` command, verbatim."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(s for s in readme.splitlines() if s.startswith("tensorboard --logdir "))
    words = shlex.split(line)
    return words[3:]  # after `tensorboard --logdir DIR`


def test_readme_tensorboard_command_keeps_every_epochs_image(tmp_path):
    """README's exact flags on a real TensorBoard: the images route returns all 12 epochs.

    (`--samples_per_plugin images=0` keeps them at ingestion but the images route then
    downsamples to zero and returns `[]`.)"""
    flags = _readme_tensorboard_flags()
    assert "--samples_per_plugin" in flags
    frame = np.zeros((8, 8, 3), np.uint8)
    writer = SummaryWriter(tmp_path / "cam")
    for step in range(12):
        frame[:, :, 0] = step * 20
        writer.write(step, {"cam/grid": frame}, {})
    writer.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path), *flags]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/data/plugin/images"
    steps = None
    try:
        deadline = time.monotonic() + 120
        while steps is None and time.monotonic() < deadline and proc.poll() is None:
            try:  # once the tag is ingested, the images route answers for good
                with urllib.request.urlopen(base + "/tags", timeout=5) as r:
                    tags = json.loads(r.read()).get("cam", {})
                if "cam/grid" in tags:
                    route = base + "/images?run=cam&tag=cam/grid&sample=0"
                    with urllib.request.urlopen(route, timeout=5) as r:
                        steps = [e["step"] for e in json.loads(r.read())]
            except OSError:
                pass
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert steps == list(range(12)), f"images route returned steps {steps}"
