"""The functions a user calls outside training: maps, probabilities, probe sets.

``maps`` computes class activation maps, probabilities and activations for a batch of
images (no I/O); ``probes`` finds misclassified and doubtful images and picks probe sets.

Example:
    >>> from cam_callback import api
    >>> "gradcam" in api.available_methods()
    True
"""

from __future__ import annotations

from cam_callback.api.maps import (
    HEADS,
    SCORES,
    CAMError,
    CAMResult,
    ModelCheck,
    available_methods,
    check_head,
    check_method,
    compute_cams,
    compute_with,
    explained_score,
    head_scores,
    inspect_model,
    inspect_with,
    layer_activations,
    predict_probabilities,
    predict_scores,
    prepare_images,
    probabilities_with,
    trace_count,
)
from cam_callback.api.probes import (
    DEFAULT_NUM_PROBES,
    find_misclassified,
    select_probes,
    take_probes,
)
from cam_callback.methods.settings import CAMSettings

__all__ = [
    "CAMError", "CAMResult", "CAMSettings", "DEFAULT_NUM_PROBES", "HEADS", "ModelCheck", "SCORES",
    "available_methods", "check_head", "check_method", "compute_cams", "compute_with",
    "explained_score",
    "find_misclassified", "head_scores",
    "inspect_model", "inspect_with", "layer_activations", "predict_probabilities",
    "predict_scores", "probabilities_with",
    "prepare_images", "select_probes", "take_probes", "trace_count",
]  # fmt: skip
