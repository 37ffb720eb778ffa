"""Every Keras backend: the narrow interface, no TensorFlow on JAX or PyTorch, the same
maps on all three, and keras.distribution. Backends other than the running one are
exercised in child processes, each with its own KERAS_BACKEND."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from cam_callback import backends, load_run

HERE = Path(__file__).parent
BACKENDS = ("tensorflow", "jax", "torch")


def child(mode: str, out: Path, backend: str, timeout: int = 420, env: dict | None = None):
    full = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(HERE.parent), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(HERE / "_child_backend.py"), mode, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def finish(proc: subprocess.Popen, timeout: int = 420) -> str:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"child hung past {timeout}s: {stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def run_child(mode: str, out: Path, backend: str, **kw) -> str:
    return finish(child(mode, out, backend, env=kw.pop("env", None)), **kw)


# ---------------------------------------------------------------- the interface


def test_each_backend_module_has_the_narrow_interface():
    for name in BACKENDS:
        module = backends.get(name)
        for attr in ("cam_function", "forward_function", "ERRORS", "EAGER", "PAD_BATCH"):
            assert hasattr(module, attr), (name, attr)


def test_unknown_or_missing_backend_is_named(monkeypatch):
    with pytest.raises(ValueError, match=r"Keras backend 'numpy' is not supported.*tensorflow"):
        backends.get("numpy")
    import importlib

    real = importlib.import_module

    def no_jax(name, *args):
        if name == "jax":
            raise ImportError("No module named 'jax'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_jax)
    with pytest.raises(ImportError, match=r"needs the 'jax' package.*cam-callback\[jax\]"):
        backends.get("jax")


BACKEND_PACKAGES = {"tensorflow", "tf_keras", "jax", "jaxlib", "torch"}


def imported_modules(source: str) -> set[str]:
    """Top-level packages a module imports: ``import a.b``, ``from a.b import c``, and
    ``importlib.import_module("a")`` / ``__import__("a")`` with a literal name."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                found.add(str(first.value).split(".")[0])
    return found


def test_imported_modules_sees_every_import_form():
    source = (
        "import os, jax.numpy as jnp\nfrom torch import nn\nfrom . import cams\n"
        "def f():\n    import tensorflow\n    importlib.import_module('jaxlib.xla')\n"
    )
    assert imported_modules(source) == {"os", "jax", "torch", "tensorflow", "jaxlib"}


def test_only_the_backends_package_imports_a_backend():
    package = HERE.parent / "cam_callback"
    paths = [p for p in package.rglob("*.py") if p.parent.name != "backends"]
    assert len(paths) > 10
    for path in paths:
        backend = imported_modules(path.read_text()) & BACKEND_PACKAGES
        assert not backend, f"{path.relative_to(package)} imports {sorted(backend)}"


# ---------------------------------------------------------------- TensorFlow: AutoGraph


@pytest.mark.skipif(backends.name() != "tensorflow", reason="TensorFlow's AutoGraph")
def test_tensorflow_compiles_cam_functions_without_autograph(monkeypatch):
    """AutoGraph costs about 2 s per trace on 2 cores, ten times the trace: never pay it."""
    import tensorflow as tf

    from cam_callback import compute_cams

    calls, real = [], tf.function

    def spy(fn=None, **kwargs):
        if getattr(fn, "__module__", "") == "cam_callback.backends.tensorflow":
            calls.append(kwargs.get("autograph", True))
        return real(fn, **kwargs)

    monkeypatch.setattr(tf, "function", spy)
    images = np.random.default_rng(0).random((5, 16, 16, 3), dtype=np.float32)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, activation="relu", name="feat"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    compute_cams(model, images)
    compute_cams(model, images, method="saliency")  # gradient of the input
    compute_cams(model, images, method="scorecam")  # forward only
    assert calls and not any(calls), calls


# ---------------------------------------------------------------- fit on JAX and PyTorch


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_fit_on_backend_records_renders_and_never_imports_tensorflow(tmp_path, backend):
    info = json.loads(run_child("fit", tmp_path, backend).strip().splitlines()[-1])
    assert info["backend"] == backend
    assert info["tensorflow_imported"] is False
    assert info["epochs"] == [-1, 0, 1] and info["config_backend"] == backend
    assert info["max_diff_to_compute_cams"] < 1e-5
    run = load_run(tmp_path)  # read back here, whatever this process's backend
    assert run.meta["backend"] == backend and np.isfinite(run.heatmaps).all()
    assert len(list((tmp_path / "cam" / "animations").glob("probe_*.gif"))) == 4
    assert Path(info["page"]).is_file()
    events = list((tmp_path / "cam").glob("events.out.tfevents.*"))
    assert len(events) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "cam"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("cam/grid")][-2:] == [0, 1]


# ---------------------------------------------------------------- the same maps everywhere


def test_every_backend_gives_the_same_maps(tmp_path):
    run_child("weights", tmp_path, "tensorflow")
    procs = {b: child("maps", tmp_path, b) for b in BACKENDS}
    for proc in procs.values():
        finish(proc)
    got = {b: np.load(tmp_path / f"maps_{b}.npz") for b in BACKENDS}
    keys = got["tensorflow"].files
    assert len(keys) == 3 * 5 * 2 * 3  # models x methods x scores x arrays
    for b in ("jax", "torch"):
        assert got[b].files == keys
        for key in keys:
            a, c = got["tensorflow"][key], got[b][key]
            if key.endswith("/targets"):
                np.testing.assert_array_equal(a, c, err_msg=f"{b} {key}")
            elif key.endswith("/probs"):
                np.testing.assert_allclose(a, c, atol=1e-5, rtol=0, err_msg=f"{b} {key}")
            else:
                np.testing.assert_allclose(a, c, atol=1e-4, rtol=0, err_msg=f"{b} {key}")
                assert a.max() > 0.99  # non-trivial maps


# ---------------------------------------------------------------- keras.distribution (JAX)


def test_jax_data_parallel_over_two_host_devices(tmp_path):
    flags = "--xla_force_host_platform_device_count=2"
    stdout = run_child("dataparallel", tmp_path, "jax", env={"XLA_FLAGS": flags})
    assert json.loads(stdout.strip().splitlines()[-1]) == {"devices": 2, "process": 0}
    run = load_run(tmp_path)
    assert run.epochs == [-1, 0, 1]  # the untrained model first
    single = np.load(tmp_path / "single.npz")
    # The last recorded epoch (final weights, two devices) against one device.
    np.testing.assert_allclose(run.heatmaps[-1], single["maps"], atol=1e-5)
    np.testing.assert_allclose(run.probabilities[-1], single["probs"], atol=1e-6)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jax_two_processes_on_loopback_write_one_record(tmp_path):
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    shared.mkdir()
    alone.mkdir()
    port = free_port()
    # Both processes get the same log_dir; JAX's CPU collectives (gloo) join them.
    procs = [child(f"process:{i}:{port}", shared, "jax") for i in (0, 1)]
    single = child("oneprocess", alone, "jax")
    infos = [json.loads(finish(p, timeout=300).strip().splitlines()[-1]) for p in procs]
    finish(single, timeout=300)
    assert [(i["process"], i["processes"]) for i in infos] == [(0, 2), (1, 2)]
    events = list((shared / "cam").glob("events.out.tfevents.*"))
    assert len(events) == 1 and f".{infos[0]['pid']}." in events[0].name  # process 0 only
    two, one = load_run(shared), load_run(alone)
    assert two.epochs == one.epochs == [-1, 0, 1]
    np.testing.assert_allclose(two.heatmaps, one.heatmaps, atol=1e-5)
    np.testing.assert_allclose(two.probabilities, one.probabilities, atol=1e-5)
