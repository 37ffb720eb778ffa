"""A gallery of what each class looks for: the evidence regions that moved other probes most.

Per class (the class a donor's map explains, see :mod:`cam_callback.metrics.evidence`):
its evidence transplant rate and control at every recorded epoch; the regions of its
``TOP`` donors with the highest rates, cropped from the display images, at the last
epoch and at the epoch where the class's rate first rose (by
:data:`~cam_callback.metrics.evidence.RISE` over its first recorded rate); and the mean
of its probes' maps at each epoch (at most ``MAX_MAPS``, evenly spread), over the mean of
their images. Images are inline PNGs (data URIs): the page and the CAM tab stay offline.
At most ``MAX_CLASSES`` classes, the highest last rate first.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cam_callback.frames import clean_name, epoch_label, overlay
from cam_callback.frames.notebook import frame_positions
from cam_callback.metrics.evidence import EVIDENCE_SHARE, class_rates, evidence_regions, rose_at
from cam_callback.record import Run

TOP = 4  # regions shown per class and epoch
MAX_MAPS = 12  # mean maps shown per class
MAX_CLASSES = 24
TILE = 72  # the longer side of a shown crop or map, in pixels
DIM = 0.3  # brightness of the pixels outside the region in a crop


@dataclass(frozen=True)
class EvidenceTile:
    """One donor's evidence region at one epoch.

    Attributes:
        probe: The donor.
        epoch: The recorded epoch.
        rate: Its evidence transplant rate; ``control`` its control's.
        on_mask: The share of the region on the probe's mask, or ``None``.
        region: bool ``[H, W]`` the region at the display images' size.
        box: ``(top, bottom, left, right)`` the crop, in display pixels (end exclusive).
        png: The crop, the pixels outside the region dimmed.
    """

    probe: int
    epoch: int
    rate: float
    control: float
    on_mask: float | None
    region: np.ndarray
    box: tuple[int, int, int, int]
    png: bytes


@dataclass(frozen=True)
class ClassGallery:
    """What one class looks for (see the module doc).

    Attributes:
        cls: The class id; ``name`` its name.
        epochs: The recorded epochs; ``rates`` and ``controls`` per epoch (NaN: no donor).
        rose: The epoch its rate first rose, or ``None``.
        strips: ``(title, epoch, tiles)``: at the last epoch, then where it rose.
        mean_maps: ``(epoch, png)`` the mean map of its probes.
    """

    cls: int
    name: str
    epochs: list[int]
    rates: np.ndarray
    controls: np.ndarray
    rose: int | None
    strips: list[tuple[str, int, list[EvidenceTile]]] = field(default_factory=list)
    mean_maps: list[tuple[int, bytes]] = field(default_factory=list)


def png_bytes(image: np.ndarray, side: int = TILE) -> bytes:
    """A uint8 ``[H, W, 3]`` image scaled (nearest) so its longer side is ``side``, as PNG.

    Example:
        >>> png_bytes(np.zeros((2, 4, 3), np.uint8))[:4]
        b'\\x89PNG'
    """
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    buf = io.BytesIO()
    Image.fromarray(image).resize(size, Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``: an image the page carries inside itself.

    Example:
        >>> data_uri(b"x")
        'data:image/png;base64,eA=='
    """
    return "data:image/png;base64," + base64.b64encode(png).decode()


def crop(image: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The region's bounding box cut from ``image``, pixels outside the region dimmed.

    Example:
        >>> r = np.zeros((4, 4), bool); r[1:3, 2] = True
        >>> crop(np.full((4, 4, 3), 200, np.uint8), r)[1]
        (1, 3, 2, 3)
    """
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    part = image[box[0] : box[1], box[2] : box[3]].astype(np.float64)
    inside = region[box[0] : box[1], box[2] : box[3], None]
    return np.where(inside, part, part * DIM).astype(np.uint8), box


def evidence_share(run: Run) -> float:
    """The region's share of the area that the record was measured with."""
    share = (run.meta.get("evidence") or {}).get("share")
    return float(share) if isinstance(share, (int, float)) and 0 < share <= 1 else EVIDENCE_SHARE


def tiles(run: Run, pos: int, cls: int, top: int = TOP) -> list[EvidenceTile]:
    """The regions of class ``cls``'s ``top`` donors with the highest rates at ``run.epochs[pos]``
    (ties: the larger margin over the control, then probe order)."""
    rate = run.metrics["evidence_transplant"][pos].astype(np.float64)
    control = run.metrics.get(
        "evidence_control", np.full_like(run.metrics["evidence_transplant"], np.nan)
    )[pos]
    on_mask = run.metrics.get("evidence_on_mask")
    donors = np.flatnonzero((run.targets[pos] == cls) & np.isfinite(rate))
    order = sorted(donors, key=lambda i: (-rate[i], -(rate[i] - np.nan_to_num(control[i])), i))
    size = run.images.shape[1:3]
    out = []
    for i in order[:top]:
        region = evidence_regions(run.heatmaps[pos, [i]], size, evidence_share(run))[0]
        if not region.any():
            continue
        part, box = crop(run.images[i], region)
        share = (
            None if on_mask is None or not np.isfinite(on_mask[pos, i]) else float(on_mask[pos, i])
        )
        out.append(
            EvidenceTile(
                int(i), run.epochs[pos], float(rate[i]), float(control[i]), share, region, box,
                png_bytes(part),
            )
        )  # fmt: skip
    return out


def mean_map_png(run: Run, pos: int, cls: int) -> bytes | None:
    """The mean map of the probes explaining ``cls`` at ``run.epochs[pos]``, over their mean
    image, as PNG; ``None`` when no probe explains it with a finite map."""
    members = np.flatnonzero(run.targets[pos] == cls)
    maps = run.heatmaps[pos, members]
    maps = maps[np.isfinite(maps).reshape(len(maps), -1).all(1)] if len(maps) else maps
    if not len(maps):
        return None
    image = run.images[members].mean(0).astype(np.uint8)
    return png_bytes(overlay(image, np.clip(maps.mean(0), 0, 1), 0.6))


def class_galleries(run: Run, top: int = TOP) -> list[ClassGallery]:
    """Every class's gallery (module doc); ``[]`` when the record has no evidence transplant.

    Example:
        >>> [g.name for g in class_galleries(load_run("runs/spurious"))]  # doctest: +SKIP
        ['homer', 'square', 'triangle']
    """
    if "evidence_transplant" not in run.metrics or not run.epochs:
        return []
    rates = {
        c: r
        for c, r in class_rates(run.metrics["evidence_transplant"], run.targets).items()
        if np.isfinite(r).any()  # a class that never had a donor has nothing to show
    }
    controls = class_rates(
        run.metrics.get("evidence_control", run.metrics["evidence_transplant"] * np.nan),
        run.targets,
    )
    last = {c: r[-1] if np.isfinite(r[-1]) else -1.0 for c, r in rates.items()}
    chosen = sorted(rates, key=lambda c: (-last[c], c))[:MAX_CLASSES]
    out = []
    for cls in chosen:
        rose = rose_at(rates[cls], run.epochs)
        g = ClassGallery(cls, clean_name(run.class_name(cls)), list(run.epochs), rates[cls],
                         controls.get(cls, rates[cls] * np.nan), rose)  # fmt: skip
        wanted = [("at the end", len(run.epochs) - 1)]
        if rose is not None and rose != run.epochs[-1]:
            wanted.append(("where its rate first rose", run.epochs.index(rose)))
        for title, pos in wanted:
            g.strips.append((title, run.epochs[pos], tiles(run, pos, cls, top)))
        for pos in frame_positions(len(run.epochs), MAX_MAPS):
            png = mean_map_png(run, pos, cls)
            if png is not None:
                g.mean_maps.append((run.epochs[pos], png))
        out.append(g)
    return out


def percent(value: float) -> str:
    """A rate as a percentage, ``"-"`` when undefined.

    Example:
        >>> percent(0.875), percent(float("nan"))
        ('88%', '-')
    """
    return f"{value:.0%}" if np.isfinite(value) else "-"


def tile_caption(t: EvidenceTile) -> str:
    """``"probe 3: 100% (control 0%), 90% on mask"``.

    Example:
        >>> one = np.ones((1, 1), bool)
        >>> tile_caption(EvidenceTile(3, 0, 1.0, 0.0, 0.5, one, (0, 1, 0, 1), b""))
        'probe 3: 100% (control 0%), 50% on mask'
    """
    text = f"probe {t.probe}: {percent(t.rate)} (control {percent(t.control)})"
    return text if t.on_mask is None else f"{text}, {t.on_mask:.0%} on mask"


def summary_line(g: ClassGallery) -> str:
    """``"homer: 0% before training -> 100% at epoch 11 (control 0%); rose at epoch 0"``."""
    first = np.flatnonzero(np.isfinite(g.rates))
    start = (
        f"{percent(g.rates[first[0]])} {epoch_label(g.epochs[first[0]])} -> " if len(first) else ""
    )
    rose = f"; rose at {epoch_label(g.rose)}" if g.rose is not None else "; never rose"
    return (
        f"{g.name}: {start}{percent(g.rates[-1])} at {epoch_label(g.epochs[-1])} "
        f"(control {percent(g.controls[-1])}){rose}"
    )


def gallery_data(run: Run) -> list[dict]:
    """The galleries as JSON values (PNG data URIs, NaN as ``None``), for the CAM tab."""

    def num(v: float) -> float | None:
        return round(float(v), 5) if np.isfinite(v) else None

    return [
        {
            "class": g.cls,
            "name": g.name,
            "summary": summary_line(g),
            "epochs": g.epochs,
            "rates": [num(v) for v in g.rates],
            "controls": [num(v) for v in g.controls],
            "rose": g.rose,
            "strips": [
                {
                    "title": f"{title} ({epoch_label(epoch)})",
                    "tiles": [
                        {"probe": t.probe, "caption": tile_caption(t), "png": data_uri(t.png)}
                        for t in shown
                    ],
                }
                for title, epoch, shown in g.strips
            ],  # fmt: skip
            "maps": [{"epoch": epoch_label(e), "png": data_uri(p)} for e, p in g.mean_maps],
        }
        for g in class_galleries(run)
    ]


def gallery_section(run: Run) -> str:
    """The review page's section (``""`` without an evidence transplant in the record)."""
    data = gallery_data(run)
    if not data:
        return ""
    esc = html.escape
    parts = []
    for g in data:
        strips = "".join(
            f'<div class="ev-strip"><div class="ev-title">{esc(s["title"])}</div>'
            + "".join(
                f'<figure><a href="#probe-{t["probe"]:03d}"><img src="{t["png"]}" alt="'
                f'{esc(t["caption"])}"></a><figcaption>{esc(t["caption"])}</figcaption></figure>'
                for t in s["tiles"]
            )
            + ("" if s["tiles"] else '<span class="ev-none">no donor</span>')
            + "</div>"
            for s in g["strips"]
        )
        maps = "".join(
            f'<figure><img src="{m["png"]}" alt="mean map, {esc(m["epoch"])}">'
            f"<figcaption>{esc(m['epoch'])}</figcaption></figure>"
            for m in g["maps"]
        )
        parts.append(
            f'<div class="ev-class" data-class="{esc(g["name"])}"><h3>{esc(g["summary"])}</h3>'
            f'{strips}<div class="ev-strip"><div class="ev-title">where the class looks '
            f"(mean map of its probes)</div>{maps}</div></div>"
        )
    return (
        '<section id="evidence"><style>#evidence{padding:6px 24px}#evidence h3{font-size:14px;'
        "margin:12px 0 4px}.ev-strip{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-end;"
        "margin:4px 0}.ev-title{width:100%;color:#a0a0aa;font-size:12px}#evidence figure{margin:0;"
        "font-size:11px;color:#a0a0aa;max-width:150px}#evidence img{display:block;"
        'image-rendering:pixelated}</style><h2>What each class looks for</h2><p class="sub">'
        "Each probe's most-attended part of the image (its top share of the map), pasted at the "
        "same place onto probes of other classes the model does not call its class: the share "
        "it turns into its class is its evidence transplant rate; the control pastes a region "
        "of the same shape from elsewhere in the same image. Found without any mask.</p>"
        + "".join(parts)
        + "</section>"
    )


def evidence_figures(run: Run, index: int) -> dict:
    """Probe ``index``'s last evidence transplant rate and control, for its badge."""
    out = {}
    for key in ("evidence_transplant", "evidence_control"):
        if key in run.metrics and np.isfinite(run.metrics[key][-1, index]):
            out[key] = float(run.metrics[key][-1, index])
    return out


def evidence_badge(flag: str, figures: dict) -> str | None:
    """The figure-stating badge of ``portable_evidence``.

    Example:
        >>> evidence_badge("portable_evidence", {"evidence_transplant": 1.0,
        ...                                      "evidence_control": 0.0, "target_name": "homer"})
        'its top region alone makes 100% of other probes homer (control 0%)'
    """
    if flag != "portable_evidence" or "evidence_transplant" not in figures:
        return None
    control = figures.get("evidence_control", float("nan"))
    return (
        f"its top region alone makes {figures['evidence_transplant']:.0%} of other probes "
        f"{figures.get('target_name', 'its class')} (control {percent(control)})"
    )
