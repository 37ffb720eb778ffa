"""Synthetic run records written with RecordWriter: no TensorFlow, fast."""

from __future__ import annotations

import numpy as np

from cam_callback.metrics import epoch_metrics
from cam_callback.record import RecordWriter


def make_record(
    log_dir,
    n_probes=6,
    n_epochs=5,
    n_classes=3,
    size=32,
    hw=6,
    seed=0,
    fingerprint="f00d",
    labels=True,
    mask_kind="object",
    class_names=None,
    baseline=False,
    masks=False,
    score="probability",
):
    """A record whose probes drift from wrong to right; returns the log_dir.

    ``baseline`` also records the state before training (epoch -1); ``masks`` gives
    every probe a mask over its left quarter, whose share of attention grows for
    the probes of class 0.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.stack(
        [
            np.stack([(xx * 255 // size), (yy * 255 // size), np.full_like(xx, 40 * i)], -1)
            for i in range(n_probes)
        ]
    ).astype(np.uint8)
    y = np.arange(n_probes) % n_classes
    w = RecordWriter(log_dir)
    w.open(
        {
            "layer": "conv2",
            "method": "gradcam",
            "fingerprint": fingerprint,
            "n_probes": n_probes,
            "n_classes": n_classes,
            "map_shape": [hw, hw],
            "class_names": class_names or [f"class_{c}" for c in range(n_classes)],
            "mask_kind": mask_kind,
            "score": score,
        },
        images=images,
        labels=y if labels else None,
        masks=_left_quarter(n_probes, size) if masks else None,
    )
    previous = first = None
    for e in range(-1 if baseline else 0, n_epochs):
        maps = rng.random((n_probes, hw, hw)).astype(np.float32)
        if masks:  # class 0 looks more and more at its mask
            maps[y == 0, :, : hw // 4] += 2.0 * (e + 1) / n_epochs
        maps /= maps.max(axis=(1, 2), keepdims=True)
        probs = rng.dirichlet(np.ones(n_classes), n_probes)
        if e == n_epochs - 1:  # probes 0 and 1 end right and sure, probe 2 ends wrong
            probs[0] = np.eye(n_classes)[y[0]] * 0.9 + 0.1 / n_classes
            probs[1] = np.eye(n_classes)[y[1]] * 0.9 + 0.1 / n_classes
            probs[2] = np.eye(n_classes)[(y[2] + 1) % n_classes] * 0.9 + 0.1 / n_classes
        values = epoch_metrics(
            maps,
            probs,
            labels=y if labels else None,
            previous=previous,
            first=first,
            masks=_left_quarter(n_probes, size) if masks else None,
        )
        w.write_epoch(
            e, heatmaps=maps, probabilities=probs, targets=probs.argmax(1), metrics=values
        )
        previous = maps
        first = maps if first is None else first
    return log_dir


def _left_quarter(n, size):
    m = np.zeros((n, size, size), bool)
    m[:, :, : size // 4] = True
    return m
