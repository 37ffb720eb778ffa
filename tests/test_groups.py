"""Worst-group accuracy: class x cue carried (a non-empty cue mask) or not, known answers."""

from __future__ import annotations

import json

import numpy as np
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from cam_callback import load_run
from cam_callback.metrics import (
    epoch_metrics,
    group_accuracies,
    group_metrics,
    group_scalars,
    worst_group_accuracy,
)
from cam_callback.record import RecordWriter
from cam_callback.report import groups_section, worst_group_note
from cam_callback.tensorboard_plugin import CAMPlugin

# Six probes: class 0 with the cue (0, 1), class 0 without (2), class 1 with (3), without (4, 5).
LABELS = np.array([0, 0, 0, 1, 1, 1])
PRESENT = np.array([True, True, False, True, False, False])
# Epoch by epoch: right everywhere, then the shortcut (class 0 without the cue and class 1
# with it go wrong).
CORRECT = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 1]], float)


def masks(present=PRESENT, size=8):
    m = np.zeros((len(present), size, size), bool)
    m[present, 0, :] = True  # one row of pixels: the cue
    return m


def test_group_accuracies_and_the_worst_group():
    acc = group_accuracies(CORRECT, LABELS, PRESENT)
    assert set(acc) == {(0, True), (0, False), (1, True), (1, False)}
    assert acc[(0, True)].tolist() == [1.0, 1.0] and acc[(0, False)].tolist() == [1.0, 0.0]
    assert acc[(1, True)].tolist() == [1.0, 0.0] and acc[(1, False)].tolist() == [1.0, 1.0]
    assert worst_group_accuracy(CORRECT, LABELS, PRESENT).tolist() == [1.0, 0.0]
    # The mean accuracy (4/6) hides what the worst group shows.
    assert CORRECT[1].mean() > 0.6
    half = np.array([1, 0, 1, 1, 1, 1], float)  # one of class 0's two cue probes wrong
    assert worst_group_accuracy(half, LABELS, PRESENT) == 0.5
    unknown = np.array([-1, -1, -1, -1, -1, -1])
    assert np.isnan(worst_group_accuracy(CORRECT, unknown, PRESENT)).all()


def test_per_probe_metric_and_scalars_come_from_the_masks():
    values = {"correct": CORRECT[1]}
    recorded = group_metrics(values, LABELS, masks())["group_accuracy"]
    assert recorded.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert group_metrics(values, None, masks()) == {} == group_metrics({}, LABELS, masks())
    s = group_scalars(values, LABELS, masks(), ["homer", "square"])
    assert s == {
        "class_homer/accuracy_with_cue": 1.0,
        "class_homer/accuracy_without_cue": 0.0,
        "class_square/accuracy_with_cue": 0.0,
        "class_square/accuracy_without_cue": 1.0,
        "worst_group_accuracy": 0.0,
    }


def group_record(path, class_names=("homer", "square")):
    """A record of 6 probes over 2 epochs, right as CORRECT says, with cue masks."""
    w = RecordWriter(path)
    meta = {"layer": "conv", "method": "gradcam", "fingerprint": "f", "n_probes": 6,
            "n_classes": 2, "map_shape": [2, 2], "class_names": list(class_names),
            "mask_kind": "cue", "score": "probability"}  # fmt: skip
    w.open(meta, images=np.zeros((6, 8, 8, 3), np.uint8), labels=LABELS, masks=masks())
    for epoch, right in zip((-1, 0), CORRECT, strict=True):
        probs = np.where(right[:, None] > 0, np.eye(2)[LABELS], np.eye(2)[1 - LABELS]) * 0.8 + 0.1
        maps = np.ones((6, 2, 2), np.float32)
        values = epoch_metrics(maps, probs, labels=LABELS, masks=masks())
        values.update(group_metrics(values, LABELS, masks()))
        w.write_epoch(epoch, heatmaps=maps, probabilities=probs, targets=LABELS, metrics=values)
    return load_run(path)


def test_page_and_cam_tab_show_the_worst_group(tmp_path):
    run = group_record(tmp_path)
    assert run.metrics["group_accuracy"].tolist() == [[1.0] * 6, [1, 1, 0, 0, 1, 1]]
    assert worst_group_note(run) == (
        "worst group: homer without the cue, 0.00 right (1.00 before training)"
    )
    section = groups_section(run)
    assert '<b id="worst-group">1.00 → 0.00</b>' in section
    assert "<td>square with the cue</td><td>1</td><td>1.00</td><td>0.00</td>" in section
    assert section.index("homer without") < section.index("homer with the")  # worst first
    # The CAM tab's probes route carries the same line for its status bar; the run list,
    # built from record.json alone, still lists the run.
    plugin = CAMPlugin(base_plugin.TBContext(logdir=str(tmp_path.parent)))
    apps = plugin.get_plugin_apps()
    runs = json.loads(Client(apps["/runs"]).get("/runs").get_data())["runs"]
    assert tmp_path.name in [r["name"] for r in runs if "error" not in r]  # others: other tests'
    probes = json.loads(Client(apps["/probes"]).get(f"/probes?run={tmp_path.name}").get_data())
    assert probes["worst_group"] == worst_group_note(run)


def test_group_names_are_cleaned_as_the_page_cleans_class_names(tmp_path):
    note = worst_group_note(group_record(tmp_path, ["ho\u202emer\nx", "square"]))
    assert "\u202e" not in note and "\n" not in note and "mer" in note
