"""The metrics' names and directions, and the :class:`Evaluation` table: numpy only.

:func:`load_evaluation` reads a saved table back without TensorFlow or Keras (the CLI).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cam_callback.imputation import ROAD_NEIGHBOURS, ROAD_NOISE  # noqa: F401  (re-exported)

METRICS: tuple[str, ...] = (
    "deletion_auc",
    "insertion_auc",
    "average_drop",
    "increase_in_confidence",
    "road",
    "faithfulness",
    "pointing_game",
    "energy",
    "fragility",
    "seconds_per_image",
)
# +1: higher is better; -1: lower is better. Used to rank methods.
DIRECTION: dict[str, int] = {
    "deletion_auc": -1,
    "insertion_auc": 1,
    "average_drop": -1,
    "increase_in_confidence": 1,
    "road": -1,
    "faithfulness": 1,
    "pointing_game": 1,
    "energy": 1,
    "fragility": -1,
    "seconds_per_image": -1,
}
# How the console table shows each metric: its unit, and the decimals that unit needs.
UNITS: dict[str, tuple[str, int]] = {
    "deletion_auc": ("0-1", 3),
    "insertion_auc": ("0-1", 3),
    "average_drop": ("%", 1),
    "increase_in_confidence": ("% images", 1),
    "road": ("p", 3),
    "faithfulness": ("Δp", 3),
    "pointing_game": ("hit rate", 3),
    "energy": ("share", 3),
    "fragility": ("0-1", 3),
    "seconds_per_image": ("s", 4),
}
CONTROLS: tuple[str, ...] = ("random",)  # seeded uniform maps: the chance line
ROAD_FRACTIONS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))
FILE_NAME = "evaluation.json"

MapFn = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    """The table :func:`evaluate` returns.

    Attributes:
        scores: Method name to metric name to the mean over images.
        per_image: Method name to metric name to float ``[N]`` (not for
            ``seconds_per_image``).
        settings: How the numbers were made (steps, baseline, imputation, ...).
        fingerprints: What was scored: ``"weights"`` (the model's weights, as
            :func:`cam_callback.core.fingerprint.weights_fingerprint` hashes them at every epoch
            of a run's record) and ``"probes"`` (the images and labels, as a record's
            ``fingerprint``); the review page ties the table to a recorded epoch with them.
    """

    scores: dict[str, dict[str, float]]
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The methods, in the order given."""
        return list(self.scores)

    def ranking(self, metric: str = "deletion_auc") -> list[str]:
        """Methods from best to worst by ``metric`` (its direction is known).

        Example:
            >>> Evaluation({"a": {"deletion_auc": 0.3}, "b": {"deletion_auc": 0.1}}).ranking()
            ['b', 'a']
        """
        if metric not in DIRECTION:
            raise ValueError(f"`metric` must be one of {METRICS}. Received: metric={metric!r}")
        have = [m for m in self.scores if metric in self.scores[m]]
        return sorted(have, key=lambda m: -DIRECTION[metric] * self.scores[m][metric])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: scores, per-image lists, settings and fingerprints."""
        return {
            "scores": self.scores,
            "per_image": {
                m: {k: [float(v) for v in arr] for k, arr in d.items()}
                for m, d in self.per_image.items()
            },
            "settings": self.settings,
            "fingerprints": self.fingerprints,
        }

    def save(self, path: str | os.PathLike) -> str:
        """Writes the table as JSON; a directory (a run's ``log_dir``) gets ``evaluation.json``.

        Saved beside a run, ``cam-callback report`` ranks the methods on the page.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, FILE_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
        return path

    def __str__(self) -> str:
        """The scores as a text table: each metric with its direction (↑ higher is better,
        ↓ lower is better) and its unit, numbers right-aligned to one number of decimals
        per column, ``-`` where a method has no score.

        Example:
            >>> print(Evaluation({"gradcam": {"deletion_auc": 0.2, "average_drop": 12.5},
            ...                   "random": {"deletion_auc": 0.5}}))
            method   deletion_auc ↓  average_drop ↓
                              [0-1]             [%]
            gradcam           0.200            12.5
            random            0.500               -
            ↑ higher is better, ↓ lower is better
        """
        cols = [m for m in METRICS if any(m in s for s in self.scores.values())]
        rows = [["method", *(f"{c} {'↑' if DIRECTION[c] > 0 else '↓'}" for c in cols)]]
        rows.append(["", *(f"[{UNITS[c][0]}]" for c in cols)])
        for name, row in self.scores.items():
            rows.append([name, *(f"{row[c]:.{UNITS[c][1]}f}" if c in row else "-" for c in cols)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
        lines = [
            "  ".join([r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(r))])
            for r in rows
        ]
        return "\n".join([*lines, "↑ higher is better, ↓ lower is better"])


def load_evaluation(path: str | os.PathLike) -> Evaluation:
    """Reads a table written by :meth:`Evaluation.save` (a file, or a run directory).

    Needs only numpy: the CLI uses it.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not an evaluation table.

    Example:
        >>> load_evaluation("runs/a").ranking("insertion_auc")  # doctest: +SKIP
        ['gradcam++', 'gradcam', 'random']
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FILE_NAME)
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path!r} is not an evaluation table: {exc}") from exc
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict) or not all(
        isinstance(r, dict) and all(isinstance(v, (int, float)) for v in r.values())
        for r in scores.values()
    ):
        raise ValueError(f"{path!r} is not an evaluation table: no 'scores' of numbers")
    per_image = {
        m: {k: np.asarray(v, np.float64) for k, v in d.items()}
        for m, d in (data.get("per_image") or {}).items()
    }
    return Evaluation(
        {str(m): {str(k): float(v) for k, v in r.items()} for m, r in scores.items()},
        per_image,
        dict(data.get("settings") or {}),
        read_fingerprints(data.get("fingerprints")),
    )


def read_fingerprints(value: Any) -> dict[str, str]:
    """The ``fingerprints`` of a saved table: its short string entries, others left out
    (``{}`` for a table saved before they were kept).

    Example:
        >>> read_fingerprints({"weights": "0123456789abcdef", "probes": 3})
        {'weights': '0123456789abcdef'}
    """
    if not isinstance(value, dict):
        return {}
    return {
        k: v
        for k, v in value.items()
        if k in ("weights", "probes", "images") and isinstance(v, str) and len(v) <= 64
    }
