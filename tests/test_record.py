"""The run record: atomic writes, reading back, resume and fingerprints. No TensorFlow."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import warnings
import zipfile
import zlib
from collections import Counter

import numpy as np
import pytest
from records import deflate_bomb, make_record, npz_members, raw_zip, write_members

from cam_callback import record, safe_read
from cam_callback.record import FLAGS_FILE, RecordWriter, fingerprint, load_run, write_flags


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

    monkeypatch.setattr(record.paths.os, "replace", crash)
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


def test_a_setting_newer_than_the_record_continues_it_while_off(tmp_path):
    write_run(tmp_path)  # a record from before `grid` was a setting: the key is absent
    w = RecordWriter(tmp_path)
    images = np.zeros((2, 4, 4, 3), np.uint8)
    assert w.open(meta("abc", grid=None, fragility=None), images=images) is True
    with pytest.raises(ValueError, match="`grid` differs from the record.*not recorded"):
        w.open(meta("abc", grid=[4, 6]), images=images)


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


# ------------------------------------------------------------------ damaged records


def npz_with(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def huge_header_npy(shape, dtype="<f4"):
    """An .npy whose header claims ``shape`` while holding no data."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def replace_member(npz, name, data):
    with zipfile.ZipFile(npz) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members[name] = data
    with zipfile.ZipFile(npz, "w") as zf:
        for key, value in members.items():
            zf.writestr(key, value)


def edit_json(path, change):
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def test_damaged_record_files_raise_record_error_naming_them(tmp_path):
    def case(name, damage, file, pattern):
        folder = tmp_path / name
        write_run(folder)
        damage(folder / "cam")
        with pytest.raises(record.RecordError, match=pattern) as err:
            load_run(folder)
        assert str(folder / "cam" / file) in str(err.value)
        assert isinstance(err.value, ValueError)

    meta_file = "record.json"
    case("list", lambda p: (p / meta_file).write_text("[1, 2]"), meta_file, "JSON object")
    case(
        "version",
        lambda p: edit_json(p / meta_file, lambda d: {**d, "version": "1"}),
        meta_file,
        "`version` must be an int",
    )
    case(
        "names_int",
        lambda p: edit_json(p / meta_file, lambda d: {**d, "class_names": 3}),
        meta_file,
        "`class_names` must be",
    )
    case(
        "names_dict",
        lambda p: edit_json(p / meta_file, lambda d: {**d, "class_names": {"a": 1}}),
        meta_file,
        "`class_names` must be",
    )
    case(
        "deep",
        lambda p: (p / meta_file).write_text("[" * 100000 + "]" * 100000),
        meta_file,
        "not readable JSON",
    )
    case(
        "no_classes",
        lambda p: edit_json(p / meta_file, lambda d: {**d, "n_classes": -1}),
        meta_file,
        "`n_classes` must be",
    )
    probes = "probes.npz"
    case(
        "trunc",
        lambda p: (p / probes).write_bytes((p / probes).read_bytes()[:150]),
        probes,
        "not a zip archive",
    )
    case(
        "no_images",
        lambda p: npz_with(p / probes, labels=np.array([0, 2])),
        probes,
        "missing array 'images'",
    )
    case(
        "labels",
        lambda p: npz_with(
            p / probes, images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 7])
        ),
        probes,
        "labels must all be",
    )
    case(
        "huge",
        lambda p: replace_member(
            p / probes, "images.npy", huge_header_npy((10**6, 10**3, 10**3, 3), "|u1")
        ),
        probes,
        r"images.*shape \(1000000, 1000, 1000, 3\)",
    )
    case(
        "huge_fits_config",
        lambda p: replace_member(
            p / probes, "images.npy", huge_header_npy((2, 4000, 4000, 3), "|u1")
        ),
        probes,
        "claims 96000000 bytes of uint8 .*, the member holds 0",
    )
    case(
        "huge2",
        lambda p: replace_member(
            p / probes, "labels.npy", huge_header_npy((2,), "<i8")[:-1] + b"\n"
        ),
        probes,
        "claims 16 bytes of int64 .*, the member holds 0",
    )
    case(
        "object",
        lambda p: npz_with(p / probes, images=np.array([None, 1], dtype=object)),
        probes,
        r"array 'images': dtype '\|O' is not bool, int or float",
    )


def test_damaged_epoch_files_are_skipped_with_a_warning_naming_them(tmp_path):
    w, _ = write_run(tmp_path, epochs=(0, 1, 2, 3, 4, 5, 6))
    epochs = w.path / "epochs"
    good = dict(np.load(epochs / "epoch_000000.npz"))
    (epochs / "epoch_000001.npz").write_bytes((epochs / "epoch_000001.npz").read_bytes()[:300])
    npz_with(
        epochs / "epoch_000002.npz", probabilities=good["probabilities"], targets=good["targets"]
    )  # no heatmaps
    npz_with(epochs / "epoch_000003.npz", **{**good, "heatmaps": np.zeros((2, 3, 3), "f4")})
    npz_with(epochs / "epoch_000004.npz", **{**good, "probabilities": np.zeros((3, 3), "f4")})
    replace_member(epochs / "epoch_000005.npz", "heatmaps.npy", huge_header_npy((10**12,)))
    data = bytearray((epochs / "epoch_000006.npz").read_bytes())
    data[200] ^= 0xFF  # a flipped byte: the zip CRC catches it
    (epochs / "epoch_000006.npz").write_bytes(bytes(data))
    with pytest.warns(UserWarning) as seen:
        run = load_run(tmp_path)
    assert run.epochs == [0]
    messages = sorted(str(m.message) for m in seen)
    assert len(messages) == 6
    for epoch, pattern in [
        (1, "not a zip archive"),
        (2, "missing array 'heatmaps'"),
        (3, r"shape \(2, 3, 3\), expected \(2, 2, 2\)"),
        (4, r"shape \(3, 3\), expected \(2, 3\)"),
        (5, r"shape \(1000000000000,\)"),
        (6, "unreadable"),
    ]:
        message = messages[epoch - 1]
        assert f"epoch_{epoch:06d}.npz" in message and re.search(pattern, message), message
    np.testing.assert_allclose(run.heatmaps[0], 0.0)


# ------------------------------------------------------------------ fuzzing a real record


@pytest.fixture(scope="module")
def real_record(tmp_path_factory):
    """A record written by CAMTracker in a real fit: masks, labels, names, metrics, flags."""
    import keras
    from conftest import small_cnn

    from cam_callback import CAMTracker

    keras.utils.set_random_seed(0)
    log_dir = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 32, 32, 3), dtype=np.float32), rng.integers(0, 3, 16)
    masks = np.zeros((3, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    model = small_cnn(3)
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = CAMTracker(
        x[:3],
        y[:3],
        log_dir=log_dir,
        class_names=["a", "b", "c"],
        probe_masks=masks,
        animate=None,
        tensorboard=False,
        report=False,  # the record only: the page is an output, not read back
    )
    model.fit(x, y, epochs=3, verbose=0, callbacks=[tracker])
    return log_dir / "cam"


OTHER_VALUES = [None, True, -1, 0, 10**12, 1.5, float("nan"), "x", [], {}, [1, 2], {"a": [None]}]


def _mutate_json(data, rng):
    """Replace or delete one value, at the top or one level down."""
    holder = data
    if isinstance(data, dict) and data and rng.random() < 0.3:
        inner = [v for v in data.values() if isinstance(v, (dict, list)) and v]
        if inner:
            holder = inner[rng.integers(len(inner))]
    if isinstance(holder, dict):
        keys = list(holder) or ["new"]
        key = keys[rng.integers(len(keys))]
    elif isinstance(holder, list) and holder:
        key = int(rng.integers(len(holder)))
    else:
        return OTHER_VALUES[rng.integers(len(OTHER_VALUES))]
    if isinstance(holder, dict) and rng.random() < 0.3:
        holder.pop(key, None)
    else:
        holder[key] = OTHER_VALUES[rng.integers(len(OTHER_VALUES))]
    return data


def _mutate_npz(path, rng):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    key = list(arrays)[rng.integers(len(arrays))]
    a = arrays[key]
    kind = rng.integers(6)
    if kind == 0:
        arrays[key] = a.reshape(-1)
    elif kind == 1:
        arrays[key] = a.reshape(1, *a.shape) if a.size else a[None]
    elif kind == 2:
        arrays[key] = a.T.copy() if a.ndim > 1 else a[: max(0, len(a) - 1)]
    elif kind == 3:
        arrays[key] = a.astype(
            [np.float64, np.int32, np.uint8, bool, np.complex64][rng.integers(5)]
        )
    elif kind == 4:
        del arrays[key]
    else:
        arrays["stray"] = np.zeros(3)
    if rng.random() < 0.2:
        replace_member(path, f"{key}.npy", huge_header_npy((10**12,)))
        return
    npz_with(path, **arrays)


def _tree(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_fuzzed_records_load_or_raise_record_error(real_record, tmp_path):
    from cam_callback.animate import probe_frames
    from cam_callback.report import probe_rows

    def timeout(signum, frame):
        raise TimeoutError("load_run hung")

    previous = signal.signal(signal.SIGALRM, timeout)
    rng = np.random.default_rng(1234)
    outcomes = {"loaded": 0, "RecordError": 0}
    try:
        for i in range(320):
            case = tmp_path / f"case{i}"
            shutil.copytree(real_record, case / "cam")
            (case / "outside.txt").write_text("must not change")
            files = sorted(
                p for p in (case / "cam").rglob("*") if p.is_file() and "lock" not in p.name
            )
            target = files[rng.integers(len(files))]
            how = rng.integers(4)
            data = target.read_bytes()
            if how == 0:
                target.write_bytes(data[: rng.integers(len(data) + 1)])
            elif how == 1:
                buf = bytearray(data)
                for pos in rng.integers(0, len(buf), rng.integers(1, 9)):
                    buf[pos] = rng.integers(256)
                target.write_bytes(bytes(buf))
            elif target.suffix == ".json":
                target.write_text(json.dumps(_mutate_json(json.loads(data), rng)))
            else:
                _mutate_npz(target, rng)
            before = _tree(case)
            signal.alarm(20)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run = load_run(case)
                    # What the CLI does next must hold too.
                    assert set(run.flags) >= {"misclassified", "non_finite"}
                    if run.epochs:
                        probe_rows(run, 0.5)
                        probe_frames(run, 0, limit=1)
                outcomes["loaded"] += 1
            except record.RecordError:
                outcomes["RecordError"] += 1
            except Exception as exc:
                pytest.fail(f"mutation {i} of {target.name} ({how=}): {type(exc).__name__}: {exc}")
            finally:
                signal.alarm(0)
            assert _tree(case) == before, f"mutation {i} wrote into the folder"
            shutil.rmtree(case)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert sum(outcomes.values()) == 320
    assert outcomes["loaded"] > 20 and outcomes["RecordError"] > 20, outcomes


def test_baseline_epoch_is_read_back_first(tmp_path):
    w = RecordWriter(tmp_path)
    w.open(
        {"fingerprint": "f", "n_probes": 1, "n_classes": 2, "map_shape": [2, 2], "layer": "c"},
        images=np.zeros((1, 4, 4, 3), np.uint8),
        labels=np.array([1]),
    )
    for epoch, value in ((0, 0.5), (record.BASELINE_EPOCH, 0.25), (1, 1.0)):
        w.write_epoch(
            epoch,
            heatmaps=np.full((1, 2, 2), value, np.float32),
            probabilities=np.array([[0.5, 0.5]], np.float32),
            targets=np.array([1]),
        )
    assert (tmp_path / "cam" / "epochs" / "baseline.npz").is_file()
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1] and run.has_baseline
    assert run.heatmaps[:, 0, 0, 0].tolist() == [0.25, 0.5, 1.0]
    assert w.first_epoch() == -1 and w.previous_epoch(0) == -1
    assert load_run(tmp_path, epochs=slice(0, 2)).epochs == [-1, 0]


def test_repr_is_one_short_line_naming_the_run(tmp_path):
    """print(run) once printed every array (64,590 characters for a small run)."""
    make_record(tmp_path, n_probes=40, n_epochs=4, baseline=True)
    run = load_run(tmp_path)
    flagged = sum(any(bool(v[i]) for v in run.flags.values()) for i in range(40))
    assert 0 < flagged < 40
    cam = str(tmp_path / "cam")
    expected = (
        f"Run({cam!r}, epochs=[-1..3] (5), probes=40, layer='conv2', method='gradcam', "
        f"flagged={flagged} of 40)"
    )
    assert repr(run) == str(run) == expected
    assert len(repr(run)) < 120 + len(cam)
    assert repr(load_run(tmp_path, epochs=slice(1, 2))).startswith(f"Run({cam!r}, epochs=[0] (1),")


def test_readme_states_the_record_guarantees():
    from pathlib import Path

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    assert "(docs/record.md)" in readme.split("## The run record", 1)[1].split("\n## ", 1)[0]
    section = (root / "docs" / "record.md").read_text()
    for promise in (
        'on_error="warn"',
        'on_error="raise"',
        "non_finite",
        "initial_epoch=history.epoch[-1] + 1",
        "flock",
        "RecordError",
        "exits 1",
        "fuzz",
    ):
        assert promise in section, promise


# ------------------------------------------------------------------ hostile files, one by one


def test_npy_headers_are_parsed_strictly_and_read_back_exactly():
    # Whatever numpy writes for a plain array reads back equal, in native byte order.
    for value in [
        np.arange(6, dtype=">f4").reshape(2, 3),
        np.asfortranarray(np.arange(12, dtype="<i8").reshape(3, 4)),
        np.array([True, False, True]),
        np.uint8(7),
        np.zeros((0, 3), np.float16),
    ]:
        buf = io.BytesIO()
        np.save(buf, value)
        data = buf.getvalue()
        got = safe_read.read_npy(io.BytesIO(data), len(data), lambda d, s: None)
        np.testing.assert_array_equal(got, value)
        assert got.dtype == value.dtype.newbyteorder("=") and got.dtype.isnative
    ok = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3,), }"
    assert safe_read.parse_npy_header(ok) == (np.dtype("<f4"), True, (2, 3))
    for bad in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }",  # an int, not a tuple
        "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
        "{'descr': '<f4', 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",
        "{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (2,)}",
        "(" * 5000,
    ]:
        with pytest.raises(safe_read.UnreadableFile):
            safe_read.parse_npy_header(bad)


def _epoch_with_large_members(tmp_path):
    """A record whose epoch members pass 4 KiB: zipfile then hands the .npy header to the
    parser before it reads the rest and checks the CRC."""
    w = RecordWriter(tmp_path)
    w.open({**meta(), "n_probes": 8, "map_shape": [16, 16]}, images=np.zeros((8, 4, 4, 3), "u1"))
    for e in (0, 1):
        w.write_epoch(
            e,
            heatmaps=np.full((8, 16, 16), 0.5, np.float32),
            probabilities=np.full((8, 3), 1 / 3, np.float32),
            targets=np.zeros(8, int),
        )
    return w.path / "epochs" / "epoch_000001.npz"


def test_every_header_byte_changed_gives_the_epoch_or_skips_it(tmp_path):
    """One byte of an .npy header (its length field included), with the zip's CRC kept right
    so only the header parser stands: the epoch loads unchanged or is skipped with a warning."""
    file = _epoch_with_large_members(tmp_path)
    members = npz_members(file)
    good = members["heatmaps.npy"]
    end = 10 + int.from_bytes(good[8:10], "little")
    outcomes = Counter()
    for pos in range(end):
        for value in {0x00, 0x20, 0x29, 0x7F, 0xFF, good[pos] ^ 0x01} - {good[pos]}:
            data = bytearray(good)
            data[pos] = value
            write_members(file, {**members, "heatmaps.npy": bytes(data)})
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                run = load_run(tmp_path)
            if run.epochs == [0, 1]:
                np.testing.assert_array_equal(run.heatmaps[1], 0.5)
                outcomes["read"] += 1
            else:
                assert run.epochs == [0] and len(seen) == 1, (pos, value, run.epochs)
                message = str(seen[0].message)
                assert "epoch_000001.npz: array 'heatmaps'" in message and "\n" not in message
                outcomes["skipped"] += 1
    assert outcomes["skipped"] > 6 * end // 2 and outcomes["read"] > 0, outcomes


@pytest.mark.timeout(30)  # a FIFO opened for reading would block here forever
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "dangling", "outside"])
def test_special_files_are_refused_and_never_opened(tmp_path, kind):
    def replace(path):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            os.replace(path, tmp_path / f"outside_{path.name}")  # a good copy, kept outside
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dev_zero":
            os.symlink("/dev/zero", path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "dangling":
            os.symlink(tmp_path / "nothing", path)
        else:
            os.symlink(tmp_path / f"outside_{path.name}", path)

    said = {
        "fifo": "is a FIFO (named pipe), not a regular file",
        "dev_zero": "is a symbolic link, not a regular file",
        "directory": "is a directory, not a regular file",
        "dangling": "is a symbolic link, not a regular file",
        "outside": "is a symbolic link, not a regular file",
    }[kind]
    for name in ("record.json", "probes.npz"):
        folder = tmp_path / name
        w, _ = write_run(folder)
        replace(w.path / name)
        with pytest.raises(record.RecordError, match=re.escape(f"{name}: {said}")):
            load_run(folder)
    w, _ = write_run(tmp_path / "epoch")
    write_flags(load_run(w.path))
    replace(w.path / "epochs" / "epoch_000001.npz")
    replace(w.path / FLAGS_FILE)
    with pytest.warns(UserWarning, match=re.escape(f"epoch_000001.npz: {said}")):
        run = load_run(w.path)
    assert run.epochs == [0, 2]
    assert {k: v.tolist() for k, v in run.flags.items()} == {
        k: v.tolist() for k, v in record.compute_flags(run).items()
    }


def test_sizes_are_capped_whatever_record_json_claims(tmp_path):
    w, _ = write_run(tmp_path)
    cam = w.path
    # Sparse files: refused by their size, never read.
    with open(cam / FLAGS_FILE, "wb") as f:
        f.truncate(3 * 2**30)
    run = load_run(tmp_path)
    computed = {k: v.tolist() for k, v in record.compute_flags(run).items()}
    assert {k: v.tolist() for k, v in run.flags.items()} == computed
    with open(cam / "record.json", "r+b") as f:
        f.truncate(safe_read.MAX_JSON_BYTES + 1)
    with pytest.raises(record.RecordError, match=f"holds {safe_read.MAX_JSON_BYTES + 1} bytes"):
        load_run(tmp_path)
    w.close()  # one writer per record in a process
    shutil.rmtree(tmp_path / "cam")
    w, _ = write_run(tmp_path)
    sparse = tmp_path / "sparse.npz"
    with open(sparse, "wb") as f:
        f.truncate(safe_read.MAX_FILE_BYTES + 1)
    with pytest.raises(safe_read.UnreadableFile, match="holds 2147483649 bytes, more than the"):
        safe_read.read_npz(sparse, lambda *a: None)
    # An image of more pixels than MAX_IMAGE_PIXELS is refused from its header alone.
    replace_member(cam / "probes.npz", "images.npy", huge_header_npy((2, 8192, 4097, 3), "|u1"))
    with pytest.raises(record.RecordError, match="at most 16777216 pixels"):
        load_run(tmp_path)
    # A deflate bomb is refused from the zip directory, before anything is inflated.
    bomb = raw_zip([deflate_bomb("images.npy", (2, 4096, 2048, 3))])
    (cam / "probes.npz").write_bytes(bomb)
    with pytest.raises(record.RecordError, match=r"would expand from \d+ to 50331776 bytes"):
        load_run(tmp_path)
    # All members together, and their count, are capped too: 64 KiB of bits deflate about
    # 7 times, within the ratio, into a file far below a 20 KiB cap they exceed together.
    bits = np.random.default_rng(0).integers(0, 2, 2**16).astype(np.uint8)
    with zipfile.ZipFile(tmp_path / "bits.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        buf = io.BytesIO()
        np.save(buf, bits)
        zf.writestr("bits.npy", buf.getvalue())
    assert (tmp_path / "bits.npz").stat().st_size < 20_000
    with pytest.raises(safe_read.UnreadableFile, match="members expanding to more than 20000"):
        safe_read.read_npz(tmp_path / "bits.npz", lambda *a: None, max_bytes=20_000)
    got = safe_read.read_npz(tmp_path / "bits.npz", lambda *a: None)  # under the default caps
    np.testing.assert_array_equal(got["bits"], bits)
    members = npz_members(cam / "epochs" / "epoch_000000.npz")
    write_members(tmp_path / "many.npz", {f"m{i}.npy": members["targets.npy"] for i in range(65)})
    with pytest.raises(safe_read.UnreadableFile, match="65 members"):
        safe_read.read_npz(tmp_path / "many.npz", lambda *a: None)


def test_a_stored_member_claiming_more_than_it_holds_is_refused(tmp_path):
    w, _ = write_run(tmp_path)
    file = w.path / "epochs" / "epoch_000000.npz"
    entries = [
        {"name": k, "data": v, "method": 0, "crc": zlib.crc32(v), "file_size": len(v)}
        for k, v in npz_members(file).items()
    ]
    entries[0]["file_size"] *= 1000
    file.write_bytes(raw_zip(entries))
    with pytest.warns(UserWarning, match="is stored, yet claims"):
        assert load_run(tmp_path).epochs == [1, 2]


# ---------------------------------------------------------------------- notebooks


def test_a_run_shows_itself_inline_in_a_notebook_with_no_network(tmp_path):
    import base64
    import xml.etree.ElementTree as ET

    from PIL import Image
    from records import make_record

    from cam_callback import frames

    run = load_run(make_record(tmp_path / "nb", n_probes=6, n_epochs=4, baseline=True))
    page = run._repr_html_()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "cam-callback run nb</b>: 6 probes · 5 frames (before training to epoch 3)" in page
    # The grid animation: one inline GIF, one frame per epoch, each the grid of that epoch.
    gifs = re.findall(r'src="data:image/gif;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(gifs) == 1
    img = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert img.n_frames == len(run.epochs)
    for pos in (0, len(run.epochs) - 1):
        img.seek(pos)
        got = np.asarray(img.convert("RGB")).astype(int)
        tiles = [
            frames.tile(run.images[i], run.heatmaps[pos, i], run.probabilities[pos, i],
                        int(run.labels[i]), side=72)
            for i in range(6)
        ]  # fmt: skip
        want = frames.grid(
            tiles, cols=3, title=frames.epoch_label(run.epochs[pos]), legend=frames.TILE_LEGEND
        ).astype(int)
        assert got.shape == want.shape
        assert np.abs(got - want).mean() < 4  # a 255-colour palette, nothing more
    # The flags, as stored.
    for name, values in run.flags.items():
        ids = np.flatnonzero(values).tolist()
        row = re.search(rf'<tr data-flag="{name}"><td>[^<]*</td><td>(\d+)</td><td>([^<]*)</td>',
                        page)  # fmt: skip
        assert row and int(row.group(1)) == len(ids)
        assert row.group(2) == (", ".join(map(str, ids)) or "–")
    # The p(true) curves: one line per probe through p(label) at every epoch.
    svg = re.search(r'<svg class="ptrue".*?</svg>', page).group(0)
    lines = ET.fromstring(svg).findall("polyline")
    assert [int(p.get("data-probe")) for p in lines] == list(range(6))
    for line in lines:
        i = int(line.get("data-probe"))
        ys = [float(xy.split(",")[1]) for xy in line.get("points").split()]
        want = [8 + (1 - float(run.probabilities[e, i, run.labels[i]])) * 130 for e in range(5)]
        np.testing.assert_allclose(ys, want, atol=0.06)
        right = int(run.probabilities[-1, i].argmax()) == int(run.labels[i])
        assert line.get("stroke") == ("#2ea043" if right else "#d73a49")


def test_npz_bytes_holds_exactly_the_arrays_and_refuses_objects():
    import io
    import zipfile

    from cam_callback.record.paths import npz_bytes

    data = npz_bytes({"maps": np.zeros((2, 3), np.float32), "labels": np.arange(2)})
    # Exactly these members: no option of np.savez stored as an array (numpy < 2.2 did).
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["labels.npy", "maps.npy"]
    with pytest.raises(TypeError, match="`arrays` must hold numbers.*'bad'"):
        npz_bytes({"bad": np.array([{"a": 1}], dtype=object)})
