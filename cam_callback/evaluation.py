"""Which map to trust: faithfulness and localisation scores for several methods at once.

:func:`evaluate` explains the same images with each method and scores every map
by what the model does when the map's pixels are removed or kept:

- ``deletion_auc`` (RISE, Petsiuk et al. 2018; lower is better): the target's
  probability as the top-ranked pixels are replaced by the baseline in
  ``steps`` equal steps from 0% to 100%, its area under the curve (trapezoid,
  x in [0, 1]).
- ``insertion_auc`` (RISE; higher is better): the same curve starting from the
  baseline image and revealing the top-ranked pixels.
- ``average_drop`` and ``increase_in_confidence`` (Grad-CAM++, Chattopadhay et
  al. 2018): with ``Y`` the target's probability on the image and ``O`` on the
  image multiplied by its map (upsampled, in [0, 1]): ``100 * mean(max(0, Y - O) / Y)``
  (lower is better) and ``100 * mean(O > Y)`` (higher is better).
- ``road`` (Remove And Debias, Rong et al. 2022; lower is better): the mean
  target probability after the most-relevant 10%, 20%, ..., 90% of pixels are
  removed and filled by *noisy linear imputation*: each removed pixel is the
  weighted mean of its 8 neighbours (1/6 edge-adjacent, 1/12 diagonal, the
  paper's weights; neighbours outside the image left out), solved exactly as one
  sparse linear system per image (SciPy's SuperLU, as the authors' code), plus
  seeded Gaussian noise of standard deviation 0.01 times the image's value
  range. The fill leaks no shape of the mask, which a constant baseline does.
- ``faithfulness`` (higher is better): exactly the tracker's per-epoch number,
  :func:`cam_callback.cams.deletion_faithfulness` (blur the top 20% minus blur
  a random 20%), so ``evaluate`` and ``CAMTracker(faithfulness=True)`` agree.
- ``pointing_game`` and ``energy`` (only with ``probe_masks``; higher is
  better): 1 when the map's maximum (upsampled) falls inside the mask, and the
  share of the map's sum inside the mask (Score-CAM's energy-based pointing game).
- ``seconds_per_image``: wall time of the maps alone, after one warm-up call on
  the first image (one full batch on JAX, which compiles per batch shape), so
  the first trace and compile are not counted.

The baseline of deletion and insertion is the image blurred by the tracker's
box blur (an odd box of a quarter of the shorter side, mirrored edges): a
black baseline would itself be out of distribution. Pixels are ranked by the
map upsampled bilinearly to the image; ties keep raster order. Perturbed
copies are made one step (one fraction) of all images at a time.

Example:
    >>> table = evaluate(model, x_val[:32], y_val[:32],
    ...                  methods=("gradcam", "gradcam++", "random"))  # doctest: +SKIP
    >>> print(table)  # doctest: +SKIP
    method     deletion_auc  insertion_auc ...
    gradcam           0.121          0.642 ...
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cam_callback._imageops import deletion_blur, resize_bilinear

METRICS: tuple[str, ...] = (
    "deletion_auc",
    "insertion_auc",
    "average_drop",
    "increase_in_confidence",
    "road",
    "faithfulness",
    "pointing_game",
    "energy",
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
    "seconds_per_image": -1,
}
CONTROLS: tuple[str, ...] = ("random",)  # seeded uniform maps: the chance line
ROAD_FRACTIONS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))
ROAD_NOISE = 0.01
# Rong et al. 2022 (and their road_evaluation code): (row, column) offset and weight.
ROAD_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
    (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)  # fmt: skip
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
    """

    scores: dict[str, dict[str, float]]
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    settings: dict[str, Any] = field(default_factory=dict)

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
        """A JSON-ready dict: scores, per-image lists and settings."""
        return {
            "scores": self.scores,
            "per_image": {
                m: {k: [float(v) for v in arr] for k, arr in d.items()}
                for m, d in self.per_image.items()
            },
            "settings": self.settings,
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
        cols = [m for m in METRICS if any(m in s for s in self.scores.values())]
        width = max([6, *map(len, self.scores)])
        lines = ["method".ljust(width) + "".join(f"  {c:>22}" for c in cols)]
        for name, row in self.scores.items():
            cells = "".join(f"  {row[c]:>22.4g}" if c in row else f"  {'-':>22}" for c in cols)
            lines.append(name.ljust(width) + cells)
        return "\n".join(lines)


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
    )


def evaluate(
    model: Any,
    images: Any,
    labels: Any = None,
    *,
    methods: Sequence[str | tuple[str, MapFn]] = ("gradcam", "random"),
    metrics: Sequence[str] = METRICS,
    probe_masks: Any = None,
    layer: Any = None,
    score: str = "logit",
    output: int | str | None = None,
    steps: int = 20,
    batch_size: int = 32,
    seed: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evaluation:
    """Explains ``images`` with each method and scores how faithful each map is.

    Args:
        model: A Keras classifier.
        images: ``[N, H, W, C]`` in the model's input space.
        labels: Class ids ``[N]`` to explain; ``None`` explains the predicted class.
        methods: Names known to :func:`cam_callback.compute_cams`, the control
            ``"random"`` (seeded uniform maps), or ``(name, fn)`` pairs where
            ``fn(model, images, targets)`` returns maps ``[N, h, w]``.
        metrics: Which of :data:`METRICS` to compute (``pointing_game`` and
            ``energy`` need ``probe_masks``).
        probe_masks: bool ``[N, H, W]`` object masks, or ``None``.
        layer: The explained layer, as in ``compute_cams``.
        score: ``"logit"`` or ``"probability"``, as in ``compute_cams``.
        output: The head of a multi-output model.
        steps: Steps of the deletion and insertion curves (``steps + 1`` points).
        batch_size: Images per forward pass.
        seed: Seeds the ``"random"`` control, ROAD's noise and the tracker's
            random deletion.
        method_options: Options per method name, each passed as
            ``compute_cams(method_options=...)``: ``{"scorecam": {"max_channels": 64}}``.

    Returns:
        An :class:`Evaluation`; ``print`` it for the table.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: Unknown methods or metrics, masks without the images' size, ...

    Example:
        >>> table = evaluate(model, x[:16], methods=("gradcam", "random"))  # doctest: +SKIP
        >>> table.ranking("deletion_auc")  # doctest: +SKIP
        ['gradcam', 'random']
    """
    # Keras-bound modules load here: load_evaluation (the CLI) needs only numpy.
    from cam_callback import _validate, backends, cams
    from cam_callback import methods as _methods

    x = cams.prepare_images(model, images)
    n, h, w = x.shape[:3]
    metrics = _check_metrics(metrics, probe_masks is not None)
    entries = _check_methods(methods)
    options = _check_options(method_options, entries)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"`steps` must be an int >= 2. Received: steps={steps!r}")
    masks = None
    if probe_masks is not None:
        masks = np.asarray(probe_masks)
        if masks.shape != (n, h, w):
            raise ValueError(
                f"`probe_masks` must be bool [N, H, W] = {(n, h, w)}. "
                f"Received: probe_masks.shape={masks.shape}"
            )
        masks = masks.astype(bool)

    base, _, used = cams.predict_scores(
        model, x, score=score, output=output, batch_size=batch_size
    )
    if labels is None:
        targets = base.argmax(1).astype(np.int64)
    else:
        targets, _ = _validate.class_ids(labels, n, "labels")
        targets = np.asarray(targets, np.int64)
        if targets.max() >= base.shape[1]:
            raise ValueError(
                f"`labels` holds class {int(targets.max())} but the model has "
                f"{base.shape[1]} classes. Received: labels={labels!r}"
            )
    y = base[np.arange(n), targets].astype(np.float64)

    def probs(batch: np.ndarray) -> np.ndarray:
        p = cams.predict_probabilities(model, batch, output=output, batch_size=batch_size)
        return p.astype(np.float64)

    def explain(name: str, fn: MapFn | None, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
        if fn is not None:
            return np.asarray(fn(model, xs, ts), np.float64)
        if name == "random":
            return np.random.default_rng(seed).random((len(xs), h, w))
        res = cams.compute_cams(
            model,
            xs,
            layer=layer,
            method=name,
            target=ts,
            score=score,
            output=output,
            batch_size=batch_size,
            method_options=options.get(name),
        )
        return res.heatmaps.astype(np.float64)

    blurred = blur(x)
    scores: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, np.ndarray]] = {}
    explains: dict[str, str] = {}
    # Warm-up input: one image, or one full batch where programs are per batch shape (JAX).
    warm = min(n, batch_size) if backends.get().PAD_BATCH else 1
    for name, fn in entries:
        if "seconds_per_image" in metrics and name != "random":
            explain(name, fn, x[:warm], targets[:warm])  # traces and compiles, not timed
        start = time.perf_counter()
        maps = explain(name, fn, x, targets)
        seconds = time.perf_counter() - start
        if fn is None:
            explains[name] = "none" if name == "random" else _methods.explained_score(name, used)
        if maps.ndim != 3 or len(maps) != n:
            raise ValueError(
                f"method {name!r} returned maps of shape {maps.shape}; expected [N, h, w] with "
                f"N={n}. Received: methods entry {name!r}"
            )
        up = upsample_maps(maps, h, w)
        per: dict[str, np.ndarray] = {}
        if "deletion_auc" in metrics or "insertion_auc" in metrics:
            order = rank_pixels(up)
            if "deletion_auc" in metrics:
                curve = perturbation_curve(x, blurred, order, targets, probs, steps, "deletion")
                per["deletion_auc"] = auc(curve)
            if "insertion_auc" in metrics:
                curve = perturbation_curve(x, blurred, order, targets, probs, steps, "insertion")
                per["insertion_auc"] = auc(curve)
        if "average_drop" in metrics or "increase_in_confidence" in metrics:
            o = probs((x * _unit(up)[..., None]).astype(x.dtype))[np.arange(n), targets]
            if "average_drop" in metrics:
                per["average_drop"] = 100.0 * np.maximum(0.0, y - o) / np.maximum(y, 1e-12)
            if "increase_in_confidence" in metrics:
                per["increase_in_confidence"] = 100.0 * (o > y)
        if "road" in metrics:
            per["road"] = road(x, up, targets, probs, seed=seed)
        if "faithfulness" in metrics:
            per["faithfulness"] = cams.deletion_faithfulness(
                model,
                x,
                maps.astype(np.float32),
                targets,
                output=output,
                batch_size=batch_size,
                seed=seed,
            ).astype(np.float64)
        if masks is not None and "pointing_game" in metrics:
            peak = up.reshape(n, -1).argmax(1)
            per["pointing_game"] = masks.reshape(n, -1)[np.arange(n), peak].astype(np.float64)
        if masks is not None and "energy" in metrics:
            pos = np.maximum(up, 0.0)
            total = pos.reshape(n, -1).sum(1)
            inside = (pos * masks).reshape(n, -1).sum(1)
            per["energy"] = np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)
        row = {k: float(np.mean(v)) for k, v in per.items()}
        if "seconds_per_image" in metrics:
            row["seconds_per_image"] = seconds / n
        scores[name] = {k: row[k] for k in METRICS if k in row}
        per_image[name] = per
    settings = {
        "n_images": n,
        "steps": steps,
        "baseline": "box blur (tracker's)",
        "road_fractions": list(ROAD_FRACTIONS),
        "road_imputation": f"noisy linear (8 neighbours, exact sparse solve, noise {ROAD_NOISE})",
        "targets": "labels" if labels is not None else "predicted",
        "score": used,
        "explains": explains,
        "method_options": {k: dict(v) for k, v in options.items()},
        "seed": seed,
    }
    return Evaluation(scores, per_image, settings)


def _check_metrics(metrics: Any, have_masks: bool) -> list[str]:
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"`metrics` must be a sequence of names from {METRICS}. Received: metrics={metrics!r}"
        )
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"`metrics` must be names from {METRICS}. Received: {bad[0]!r}")
    return [m for m in metrics if have_masks or m not in ("pointing_game", "energy")]


def _check_options(
    method_options: Any, entries: list[tuple[str, MapFn | None]]
) -> dict[str, Mapping[str, Any]]:
    """``method_options`` as ``{method name: options}``, for named methods of ``entries``."""
    if method_options is None:
        return {}
    named = [name for name, fn in entries if fn is None and name not in CONTROLS]
    if not isinstance(method_options, Mapping) or not all(
        isinstance(v, Mapping) for v in method_options.values()
    ):
        raise TypeError(
            "`method_options` must map method names to dicts of options, e.g. "
            '{"scorecam": {"max_channels": 64}}. '
            f"Received: method_options={method_options!r}"
        )
    unknown = [k for k in method_options if k not in named]
    if unknown:
        raise ValueError(
            f"`method_options` names {unknown[0]!r}, which is not one of the registered "
            f"methods in `methods` ({', '.join(named) or 'none'}). "
            f"Received: method_options={method_options!r}"
        )
    return dict(method_options)


def _check_methods(methods: Any) -> list[tuple[str, MapFn | None]]:
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(
            "`methods` must be a non-empty sequence of method names or (name, fn) pairs. "
            f"Received: methods={methods!r}"
        )
    from cam_callback import cams

    known = tuple(getattr(cams, "available_methods", lambda: cams.METHODS)())
    out: list[tuple[str, MapFn | None]] = []
    for entry in methods:
        if isinstance(entry, tuple) and len(entry) == 2 and callable(entry[1]):
            out.append((str(entry[0]), entry[1]))
        elif isinstance(entry, str) and (entry in known or entry in CONTROLS):
            out.append((entry, None))
        else:
            raise ValueError(
                f"`methods` entries must be one of {known + CONTROLS} or a (name, fn) pair. "
                f"Received: {entry!r}"
            )
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"`methods` names must be unique. Received: {names}")
    return out


def upsample_maps(maps: np.ndarray, h: int, w: int) -> np.ndarray:
    """``[N, h0, w0]`` to ``[N, h, w]``, bilinear with half-pixel centres, float64.

    Example:
        >>> upsample_maps(np.ones((1, 2, 2)), 4, 4).shape
        (1, 4, 4)
    """
    return resize_bilinear(np.asarray(maps, np.float64), h, w)


def blur(x: np.ndarray) -> np.ndarray:
    """The deletion baseline: the tracker's box blur (odd box of a quarter side, mirrored).

    Example:
        >>> blur(np.ones((1, 8, 8, 1), np.float32)).max()
        1.0
    """
    return deletion_blur(x)


def rank_pixels(maps: np.ndarray) -> np.ndarray:
    """Pixel indices ``[N, H*W]``, most relevant first; ties keep raster order."""
    return np.argsort(-maps.reshape(len(maps), -1), axis=1, kind="stable")


def perturbation_curve(
    x: np.ndarray,
    baseline: np.ndarray,
    order: np.ndarray,
    targets: np.ndarray,
    probs: Callable[[np.ndarray], np.ndarray],
    steps: int,
    mode: str,
) -> np.ndarray:
    """The target's probability at ``steps + 1`` fractions of pixels removed or revealed.

    ``"deletion"`` replaces the top ``k`` pixels of ``x`` by ``baseline``;
    ``"insertion"`` puts them from ``x`` into ``baseline``. Returns ``[N, steps + 1]``.
    """
    n, h, w = x.shape[:3]
    hw = h * w
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(hw)[None].repeat(n, 0), axis=1)
    curve = np.empty((n, steps + 1))
    for i in range(steps + 1):  # one step's copies at a time: memory of N images, not N * steps
        k = int(round(i / steps * hw))
        top = (rank < k).reshape(n, h, w, 1)
        batch = np.where(top, baseline, x) if mode == "deletion" else np.where(top, x, baseline)
        curve[:, i] = probs(batch)[np.arange(n), targets]
    return curve


def auc(curve: np.ndarray) -> np.ndarray:
    """Trapezoid area of ``[N, K]`` curves over x in [0, 1]."""
    dx = 1.0 / (curve.shape[1] - 1)
    return (curve[:, 1:] + curve[:, :-1]).sum(1) * dx / 2


def impute(
    x: np.ndarray, removed: np.ndarray, *, seed: int = 0, noise: float = ROAD_NOISE
) -> np.ndarray:
    """ROAD's noisy linear imputation of the ``removed`` pixels (bool ``[N, H, W]``).

    Each removed pixel is the weighted mean of its 8 neighbours, weights
    :data:`ROAD_NEIGHBOURS` (1/6 edge-adjacent, 1/12 diagonal; neighbours
    outside the image left out), kept pixels fixed: one sparse linear system per
    image, every channel a right-hand side, solved exactly by SciPy's SuperLU (the
    fill of a linear ramp is the ramp). Then Gaussian noise of ``noise`` times the
    image's value range, seeded by ``seed``. Kept pixels are untouched.

    Raises:
        ValueError: An image with every pixel removed (nothing to impute from).
        ImportError: SciPy is not installed.

    Example:
        >>> out = impute(np.ones((1, 4, 4, 1)), np.eye(4, dtype=bool)[None], noise=0.0)
        >>> bool(np.allclose(out, 1))
        True
    """
    try:  # an optional dependency: evaluation.py itself needs only numpy
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import splu
    except ImportError as exc:
        raise ImportError("ROAD's imputation needs SciPy: pip install scipy") from exc
    xf = x.astype(np.float64)
    n, h, w, c = xf.shape
    removed = np.asarray(removed, bool).reshape(n, h * w)
    out = xf.reshape(n, h * w, c).copy()
    for i in range(n):
        idx = np.flatnonzero(removed[i])
        if len(idx) == h * w:
            raise ValueError(
                f"`removed` removes every pixel of image {i}; the imputation needs some kept "
                f"pixels. Received: removed[{i}].all() == True"
            )
        if not len(idx):
            continue
        var = np.full(h * w, -1)
        var[idx] = np.arange(len(idx))  # pixel -> unknown's index
        row, col = np.divmod(idx, w)
        diag, rhs = np.zeros(len(idx)), np.zeros((len(idx), c))
        rows, cols, vals = [np.arange(len(idx))], [np.arange(len(idx))], []
        for dr, dc, weight in ROAD_NEIGHBOURS:
            r, q = row + dr, col + dc
            inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
            eq, nb = np.flatnonzero(inside), (r * w + q)[inside]
            diag[eq] += weight
            unknown = removed[i, nb]
            rows.append(eq[unknown])
            cols.append(var[nb[unknown]])
            vals.append(np.full(int(unknown.sum()), -weight))
            rhs[eq[~unknown]] += weight * xf[i].reshape(h * w, c)[nb[~unknown]]
        a = coo_matrix(
            (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(idx), len(idx)),
        ).tocsc()
        out[i, idx] = splu(a).solve(rhs)
    spread = (xf.max(axis=(1, 2, 3)) - xf.min(axis=(1, 2, 3)))[:, None, None, None]
    jitter = np.random.default_rng(seed).normal(0.0, noise, size=x.shape) * spread
    filled = out.reshape(x.shape) + jitter
    return np.where(removed.reshape(n, h, w, 1), filled, xf).astype(x.dtype)


def road(
    x: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    probs: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int = 0,
) -> np.ndarray:
    """ROAD, most-relevant first: mean target probability over :data:`ROAD_FRACTIONS`."""
    n, h, w = x.shape[:3]
    order = rank_pixels(maps)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(h * w)[None].repeat(n, 0), axis=1)
    total = np.zeros(n)
    for i, f in enumerate(ROAD_FRACTIONS):  # one fraction's copies at a time
        filled = impute(x, (rank < int(round(f * h * w))).reshape(n, h, w), seed=seed + i)
        total += probs(filled)[np.arange(n), targets]
    return total / len(ROAD_FRACTIONS)


def _unit(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] by its max (negative parts cut): the Grad-CAM++ mask."""
    pos = np.maximum(maps, 0.0)
    peak = pos.reshape(len(pos), -1).max(1)[:, None, None]
    return np.where(peak > 0, pos / np.where(peak > 0, peak, 1.0), 0.0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..M within each row of ``[N, ...]`` (flattened), ties sharing their mean rank.

    As ``scipy.stats.rankdata(method="average")``, per row.

    Example:
        >>> average_ranks(np.array([[0.0, 0.0, 5.0, 1.0]]))
        array([[1.5, 1.5, 4. , 3. ]])
    """
    flat = np.asarray(values).reshape(len(values), -1)
    out = np.empty(flat.shape, np.float64)
    for i, row in enumerate(flat):
        order = np.argsort(row, kind="stable")
        ordered = row[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(row)]
        out[i, order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation per pair of maps ``[N, ...]`` (0 where one is constant).

    The Pearson correlation of :func:`average_ranks`, as ``scipy.stats.spearmanr``:
    tied values (a map's zeros) share a rank instead of being ordered by position.
    """
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.where(den == 0, 0.0, (ra * rb).sum(1) / np.where(den == 0, 1.0, den))


@dataclass(frozen=True)
class RandomisationCheck:
    """What :func:`model_randomisation_test` found for one method.

    Attributes:
        method: The method's name.
        similarity: Mean Spearman rank correlation between each image's map on
            the trained model and on the re-initialised one.
        flagged: ``similarity >= threshold``: the map barely depends on what the
            model learned, so it cannot explain it (Adebayo et al., 2018).
    """

    method: str
    similarity: float
    flagged: bool


def model_randomisation_test(
    model: Any,
    images: Any,
    *,
    methods: Sequence[str | tuple[str, MapFn]] = ("gradcam",),
    threshold: float = 0.5,
    layer: Any = None,
    score: str = "logit",
    output: int | str | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> list[RandomisationCheck]:
    """The model-randomisation sanity check (Adebayo et al., 2018).

    Re-initialises every weight (``keras.models.clone_model``, its initialisers
    seeded by ``seed``) and compares each method's maps on the trained and the
    random model by Spearman rank correlation with average ranks for ties (maps
    upsampled to the image). A method whose maps stay alike (``similarity >=
    threshold``) is flagged: it shows the input, not the model. The maps explain
    the trained model's predicted class (of ``output``) in both, for ``score``.
    The caller's ``random`` and ``numpy.random`` states are left as they were.

    Example:
        >>> checks = model_randomisation_test(model, x[:8], methods=("gradcam",))  # doctest: +SKIP
        >>> checks[0].flagged  # doctest: +SKIP
        False
    """
    import keras

    from cam_callback import cams

    x = cams.prepare_images(model, images)
    n, h, w = x.shape[:3]
    if not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
        raise ValueError(f"`threshold` must be in [-1, 1]. Received: threshold={threshold!r}")
    entries = _check_methods(methods)
    targets = cams.predict_scores(model, x, score=score, output=output, batch_size=batch_size)[
        0
    ].argmax(1)
    path = layer
    if layer is None:
        path = cams.inspect_model(model, x, output=output, score=score).layer
    # Keras draws an unseeded initialiser's seed from Python's `random` when the layer is
    # made: seed it for the clone only, then give the caller's state back.
    state = random.getstate()
    random.seed(seed)
    try:
        randomised = keras.models.clone_model(model)
        randomised.build(model.inputs[0].shape if getattr(model, "inputs", None) else x.shape)
    finally:
        random.setstate(state)

    def maps_of(m: Any, name: str, fn: MapFn | None) -> np.ndarray:
        if fn is not None:
            return np.asarray(fn(m, x, targets), np.float64)
        if name == "random":
            return np.random.default_rng(seed).random((n, h, w))
        lay = None if name == "saliency" else _local_layer(m, path)
        return cams.compute_cams(
            m, x, layer=lay, method=name, target=targets, score=score, output=output,
            batch_size=batch_size,
        ).heatmaps  # fmt: skip

    out = []
    for name, fn in entries:
        a = upsample_maps(maps_of(model, name, fn), h, w)
        b = upsample_maps(maps_of(randomised, name, fn), h, w)
        sim = float(np.mean(spearman(a, b)))
        out.append(RandomisationCheck(name, sim, bool(sim >= threshold and not math.isnan(sim))))
    return out


def _local_layer(model: Any, path: Any) -> Any:
    """A layer path as a string works on a clone too (clones keep layer names)."""
    return path if isinstance(path, str) or path is None else path.name
