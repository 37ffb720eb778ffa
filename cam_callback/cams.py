"""The public API under its old module path (kept for callers): see :mod:`cam_callback.api`.

Example:
    >>> from cam_callback.cams import compute_cams  # doctest: +SKIP
"""

from __future__ import annotations

from cam_callback.api import (
    HEADS,
    METHODS,
    SCORES,
    CAMError,
    CAMResult,
    ModelCheck,
    available_methods,
    check_head,
    check_method,
    compute_cams,
    explained_score,
    head_scores,
    inspect_model,
    layer_activations,
    predict_probabilities,
    predict_scores,
    prepare_images,
    trace_count,
)
from cam_callback.evaluation.faithfulness import deletion_faithfulness

__all__ = [
    "CAMError", "CAMResult", "HEADS", "METHODS", "ModelCheck", "SCORES", "available_methods",
    "check_head", "check_method", "compute_cams", "deletion_faithfulness", "explained_score",
    "head_scores", "inspect_model", "layer_activations", "predict_probabilities",
    "predict_scores", "prepare_images", "trace_count",
]  # fmt: skip
