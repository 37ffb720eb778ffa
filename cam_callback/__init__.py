"""cam-callback: watch a Keras 3 classifier's attention move while it trains.

Heavy submodules load lazily, so ``import cam_callback.cli`` (and reading a run
record) never imports TensorFlow.

Example:
    >>> import cam_callback
    >>> tracker = cam_callback.CAMTracker(x_probe, y_probe, log_dir="runs/a")  # doctest: +SKIP
    >>> model.fit(x, y, epochs=10, callbacks=[tracker])  # doctest: +SKIP
    >>> cam_callback.load_run("runs/a").heatmaps.shape  # doctest: +SKIP
    (10, 16, 6, 6)

In a notebook, draw one map over its image with :func:`overlay` (uint8 RGB image,
map in [0, 1] at any size):

    >>> import numpy as np
    >>> res = cam_callback.compute_cams(model, x[:1])  # doctest: +SKIP
    >>> rgb = (x[0] * 255).astype(np.uint8)  # doctest: +SKIP
    >>> cam_callback.overlay(rgb, res.heatmaps[0], alpha=0.5).shape  # doctest: +SKIP
    (32, 32, 3)
    >>> orange = np.full((4, 4, 3), (200, 100, 0), np.uint8)
    >>> cam_callback.overlay(orange, np.zeros((2, 2)), 0.5)[0, 0].tolist()
    [77, 71, 73]
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cam-callback")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

_LAZY = {
    "compute_cams": "cam_callback.api",
    "CAMResult": "cam_callback.api",
    "CAMError": "cam_callback.api",
    "CAMSettings": "cam_callback.api",
    "available_methods": "cam_callback.api",
    "HEADS": "cam_callback.api",
    "CAMTracker": "cam_callback.tracker.callback",
    "load_run": "cam_callback.record",
    "Run": "cam_callback.record",
    "RecordError": "cam_callback.record",
    "TrackerWarning": "cam_callback.tracker.callback",
    "find_misclassified": "cam_callback.api.probes",
    "select_probes": "cam_callback.api.probes",
    "layer_activations": "cam_callback.api",
    "activation_grid": "cam_callback.frames",
    "overlay": "cam_callback.frames",
    "render_animations": "cam_callback.animate",
    "compare_animations": "cam_callback.animate",
    "write_report": "cam_callback.report",
    "inspect_model": "cam_callback.api",
    "predict_probabilities": "cam_callback.api",
    "evaluate": "cam_callback.evaluation",
    "Evaluation": "cam_callback.evaluation",
    "load_evaluation": "cam_callback.evaluation",
    "model_randomisation_test": "cam_callback.evaluation",
    "register_method": "cam_callback.methods",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cam_callback' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
