"""The run record: atomic writes, reading back, resume and fingerprints. No TensorFlow."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cam_callback import record
from cam_callback.record import RecordWriter, fingerprint, load_run


def meta(fp: str = "abc", **extra):
    return {
        "layer": "conv2",
        "method": "gradcam",
        "fingerprint": fp,
        "n_probes": 2,
        "n_classes": 3,
        "map_shape": [2, 2],
        "class_names": ["a", "b", "c"],
        **extra,
    }


def write_run(tmp_path, epochs=(0, 1, 2)):
    w = RecordWriter(tmp_path)
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    w.open(meta(), images=images, labels=np.array([0, 2]))
    for e in epochs:
        w.write_epoch(
            e,
            heatmaps=np.full((2, 2, 2), e / 10, np.float32),
            probabilities=np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]) + e / 100,
            targets=np.array([0, 2]),
            metrics={"drift": np.array([e, e + 1.0])},
        )
    return w, images


def test_write_and_load_values(tmp_path):
    _, images = write_run(tmp_path)
    run = load_run(tmp_path)
    assert run.epochs == [0, 1, 2]
    assert run.heatmaps.shape == (3, 2, 2, 2) and run.heatmaps.dtype == np.float32
    np.testing.assert_allclose(run.heatmaps[:, 0, 0, 0], [0.0, 0.1, 0.2])
    np.testing.assert_allclose(run.probabilities[2, 1], [0.12, 0.12, 0.82])
    assert run.targets.tolist() == [[0, 2]] * 3
    np.testing.assert_array_equal(run.images, images)
    assert run.labels.tolist() == [0, 2]
    assert run.class_names == ["a", "b", "c"] and run.layer == "conv2" and run.method == "gradcam"
    assert run.masks is None
    np.testing.assert_allclose(run.metrics["drift"], [[0, 1], [1, 2], [2, 3]])
    # The cam folder itself is accepted too.
    assert load_run(tmp_path / "cam").epochs == [0, 1, 2]


def test_missing_record_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cam" / "record.json")):
        load_run(tmp_path)


def test_epoch_written_twice_keeps_newest_and_stays_sorted(tmp_path):
    w, _ = write_run(tmp_path, epochs=(3, 1, 2))
    w.write_epoch(
        2,
        heatmaps=np.full((2, 2, 2), 0.9, np.float32),
        probabilities=np.zeros((2, 3)),
        targets=np.array([1, 1]),
    )
    run = load_run(tmp_path)
    assert run.epochs == [1, 2, 3]
    np.testing.assert_allclose(run.heatmaps[1], 0.9)
    # A metric missing from the rewritten epoch cannot be stacked: it is left out, not torn.
    assert "drift" not in run.metrics


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    w, _ = write_run(tmp_path, epochs=(0,))
    target = w.path / "epochs" / "epoch_000000.npz"
    before = target.read_bytes()

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(record.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        w.write_epoch(
            0, heatmaps=np.zeros((2, 2, 2)), probabilities=np.zeros((2, 3)), targets=np.zeros(2)
        )
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["epoch_000000.npz"]


def test_reader_ignores_temporaries_of_a_killed_writer(tmp_path):
    w, _ = write_run(tmp_path, epochs=(0, 1))
    (w.path / "epochs" / ".epoch_000002.npz.x1y2.tmp").write_bytes(b"half a file")
    assert load_run(tmp_path).epochs == [0, 1]


def test_different_probes_are_refused(tmp_path):
    write_run(tmp_path)
    w = RecordWriter(tmp_path)
    with pytest.raises(ValueError, match="different probes.*Use a new `log_dir`"):
        w.open(meta("zzz"), images=np.zeros((2, 4, 4, 3), np.uint8))
    assert w.open(meta("abc"), images=np.zeros((2, 4, 4, 3), np.uint8)) is True  # resume
    with pytest.raises(ValueError, match="`method` differs from the record.*mix maps"):
        w.open(meta("abc", method="layercam"), images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="`layer` differs"):
        w.open(meta("abc", layer="conv1"), images=np.zeros((2, 4, 4, 3), np.uint8))


def test_resume_helpers(tmp_path):
    w, _ = write_run(tmp_path, epochs=(0, 2, 4))
    assert w.previous_epoch(4) == 2 and w.previous_epoch(0) is None
    assert w.first_epoch() == 0
    np.testing.assert_allclose(w.read_epoch(2)["heatmaps"], 0.2)
    assert w.read_epoch(3) is None


def test_fingerprint_tracks_images_and_labels():
    x = np.zeros((2, 4, 4, 3), np.float32)
    assert fingerprint(x) == fingerprint(x.copy())
    y = x.copy()
    y[1, 0, 0, 0] = 1e-3
    assert fingerprint(x) != fingerprint(y)
    assert fingerprint(x, np.array([0, 1])) != fingerprint(x, np.array([1, 0]))


def test_empty_record_and_newer_version(tmp_path):
    w = RecordWriter(tmp_path)
    w.open(meta(), images=np.zeros((2, 4, 4, 3), np.uint8))
    run = load_run(tmp_path)
    assert run.epochs == [] and run.heatmaps.shape == (0, 2, 2, 2)
    assert run.labels is None
    data = json.loads((w.path / "record.json").read_text())
    data["version"] = 99
    (w.path / "record.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="record version 99"):
        load_run(tmp_path)


def test_atomic_write_is_durable_bytes(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    record.atomic_write_bytes(path, b"one")
    record.atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["f.bin"]


def _child(log_dir, phase):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "_child_record.py"), str(log_dir), phase],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("phase", ["create", "data", "fsync", "replace", "dirsync"])
def test_sigkill_inside_a_write_leaves_a_readable_record(tmp_path, phase):
    import signal

    child = _child(tmp_path, phase)
    try:
        line = child.stdout.readline()  # the child stops inside epoch 2's write
        assert line.strip() == f"STOP {phase}", line
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    run = load_run(tmp_path)
    # Before the rename the old state stands; after it the new epoch is whole.
    assert run.epochs == ([0, 1, 2] if phase == "dirsync" else [0, 1])
    want = np.float32([(e + 1) / 10 for e in run.epochs])
    np.testing.assert_array_equal(run.heatmaps[:, 0, 0, 0], want)
    leftovers = [p.name for p in (tmp_path / "cam" / "epochs").iterdir()]
    assert all(p.startswith("epoch_") or p.endswith(".tmp") for p in leftovers), leftovers
    # A new writer resumes in the same folder and overwrites what the kill interrupted.
    w = RecordWriter(tmp_path)
    w.open(meta(), images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 2]))
    w.write_epoch(
        2,
        heatmaps=np.full((2, 2, 2), 0.3, np.float32),
        probabilities=np.full((2, 3), 1 / 3),
        targets=np.array([0, 2]),
        metrics={"drift": np.array([2.0, 3.0])},
    )
    assert load_run(tmp_path).epochs == [0, 1, 2]


def test_written_files_follow_the_live_umask(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"f{umask}.bin"
            record.atomic_write_bytes(path, b"x")
        finally:
            os.umask(old)
        # The kernel applies the umask of the moment; nothing toggles it process-wide.
        assert (path.stat().st_mode & 0o777) == mode
    assert not hasattr(record, "_UMASK")
