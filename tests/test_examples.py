"""The examples, at a reduced size: the spurious-background story must come out of the data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from cam_callback import load_run

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_spurious_background_flags_the_cued_class(tmp_path):
    example = load("spurious_background")
    out = example.main(
        ["--out", str(tmp_path), "--train", "2400", "--epochs", "8", "--per-class", "3"]
    )
    labels = out["labels"]
    cued = np.flatnonzero(labels == example.CUED)
    assert out["on_cue"].tolist() == cued.tolist()
    run = load_run(tmp_path)
    focus = run.metrics["mask_focus"]
    # Their attention on the frame rises over the epochs, and ends above everyone else's.
    assert (focus[-1, cued] > focus[0, cued]).all()
    others = np.flatnonzero(labels != example.CUED)
    assert focus[-1, cued].min() > focus[-1, others].max()
    assert out["val_accuracy"] < 0.5  # the shortcut fails once the frame stops going with homer
    assert (tmp_path / "cam" / "report" / "index.html").is_file()
    assert len(list((tmp_path / "cam" / "animations").glob("probe_*.gif"))) == 9
    assert {p.parent.name for p in tmp_path.rglob("events.out.tfevents.*")} == {
        "train",
        "validation",
        "cam",
    }


def test_transfer_learning_explains_a_layer_inside_the_backbone(tmp_path):
    args = ["--out", str(tmp_path), "--train", "64", "--epochs", "1", "--fine-tune-epochs", "1"]
    run = load("transfer_learning").main(args)
    assert run.layer.endswith("/block_13_expand_relu") and run.layer.startswith("mobilenetv2")
    # Two phases, one continuous record: head-only epoch 0, then fine-tuning epoch 1.
    assert run.epochs == [0, 1]
    assert run.heatmaps.shape == (2, 6, 6, 6)
    assert np.isfinite(run.heatmaps).all()
    from PIL import Image

    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 2
