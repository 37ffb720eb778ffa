"""Frame drawing and GIF encoding against the usual ways, side by side in one run.

Run: python benchmarks/bench_render.py      (matplotlib: pip install -e ".[bench]")

1. One frame of a 224 px probe: our renderer, a plain float numpy/Pillow
   compositor, and a matplotlib figure per frame.
2. One probe's 50-frame GIF: our frame-block encoder (a palette per frame,
   unchanged pixels transparent) against imageio's default GIF writer on the
   same frames, and the file sizes.
3. A record of 64 probes x 50 epochs rendered to GIFs, on one and on all cores.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw

from cam_callback import animate
from cam_callback import frames as F
from cam_callback.record import RecordWriter, load_run

CLASSES = ["homer", "marge", "bart", "lisa", "maggie"]


def probe_image(size=224):
    yy, xx = np.mgrid[:size, :size]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    img[60:170, 70:160] = (230, 200, 40)  # a figure
    img[:12], img[-12:], img[:, :12], img[:, -12:] = (200, 30, 30), (200, 30, 30), 0, 0
    return img


def maps_and_probs(n, rng):
    base = rng.random((7, 7))
    maps = [np.clip(base + 0.1 * e * rng.random((7, 7)), 0, None) for e in range(n)]
    maps = [m / m.max() for m in maps]
    return maps, [rng.dirichlet(np.ones(len(CLASSES))) for _ in range(n)]


def float_compositor(image, heat, probs, epoch, label=1):
    """The straightforward numpy/Pillow frame: float blend, ImageDraw text each time."""
    h, w = image.shape[:2]
    up = np.asarray(Image.fromarray(heat.astype(np.float32), "F").resize((w, h), Image.BILINEAR))
    colour = F.turbo_lut()[(np.clip(up, 0, 1) * 255).astype(np.uint8)].astype(np.float32)
    blend = (0.5 * colour + 0.5 * image.astype(np.float32)).astype(np.uint8)
    canvas = Image.new("RGB", (2 * w + 180, h + 22), F.BACKGROUND)
    canvas.paste(Image.fromarray(image), (0, 22))
    canvas.paste(Image.fromarray(blend), (w, 22))
    draw = ImageDraw.Draw(canvas)
    pred = int(np.argmax(probs))
    draw.text(
        (6, 4), f"epoch {epoch} · true: {CLASSES[label]} · pred: {CLASSES[pred]}", fill=F.TEXT
    )
    for i, c in enumerate(np.argsort(-probs)[:3]):
        y = 30 + 40 * i
        draw.text((2 * w + 10, y), f"{CLASSES[c]} {probs[c]:.2f}", fill=F.TEXT)
        draw.rectangle(
            (2 * w + 10, y + 16, 2 * w + 10 + int(160 * probs[c]), y + 23),
            fill=F.RIGHT if c == label else F.OTHER,
        )
    return np.asarray(canvas)


def matplotlib_frame(image, heat, probs, epoch, label=1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(6.28, 2.46), dpi=100)
    axes[0].imshow(image)
    axes[1].imshow(image)
    axes[1].imshow(heat, cmap="turbo", alpha=0.5, extent=(0, image.shape[1], image.shape[0], 0))
    order = np.argsort(-probs)[:3]
    axes[2].barh([CLASSES[c] for c in order][::-1], probs[order][::-1])
    for ax in axes[:2]:
        ax.axis("off")
    fig.suptitle(f"epoch {epoch} · true: {CLASSES[label]} · pred: {CLASSES[order[0]]}")
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def per_frame_ms(fn, args_list):
    fn(*args_list[0])
    start = time.perf_counter()
    for args in args_list:
        fn(*args)
    return (time.perf_counter() - start) * 1000 / len(args_list)


def drawing(rng):
    image = probe_image()
    maps, probs = maps_and_probs(50, rng)
    renderer = F.FrameRenderer(image, label=1, class_names=CLASSES)
    ours = per_frame_ms(
        lambda m, p, e: renderer.draw(m, p, e),
        [(m, p, e) for e, (m, p) in enumerate(zip(maps, probs, strict=True))],
    )
    plain = per_frame_ms(
        lambda m, p, e: float_compositor(image, m, p, e),
        [(m, p, e) for e, (m, p) in enumerate(zip(maps, probs, strict=True))],
    )
    rows = [("cam_callback FrameRenderer", ours), ("float numpy/Pillow compositor", plain)]
    try:
        mpl = per_frame_ms(
            lambda m, p, e: matplotlib_frame(image, m, p, e),
            [(m, p, e) for e, (m, p) in list(enumerate(zip(maps, probs, strict=True)))[:10]],
        )
        rows.append(("matplotlib figure per frame", mpl))
    except ImportError:
        rows.append(("matplotlib figure per frame (pip install -e '.[bench]')", float("nan")))
    shape = renderer.draw(maps[0], probs[0], 0).shape
    print(f"1. drawing one frame of a 224 px probe (frame {shape[0]}x{shape[1]})")
    print(f"{'':58s} {'ms/frame':>9s} {'frames/s':>9s}")
    for name, ms in rows:
        print(f"{name:58s} {ms:9.2f} {1000 / ms:9.0f}")
    return [renderer.draw(m, p, e) for e, (m, p) in enumerate(zip(maps, probs, strict=True))]


def encoding(frames):
    times = {"ours": [], "imageio": []}
    sizes = {}
    for _ in range(3):
        start = time.perf_counter()
        sizes["ours"] = len(animate.gif_bytes(frames, fps=5))
        times["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sizes["imageio"] = len(
            iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=200, loop=0)
        )
        times["imageio"].append(time.perf_counter() - start)
    print(f"\n2. encoding one probe's {len(frames)}-frame GIF")
    print(f"{'':34s} {'s':>7s} {'frames/s':>9s} {'size KB':>8s}")
    for label, key in (
        ("cam_callback frame blocks", "ours"),
        ("imageio default GIF writer", "imageio"),
    ):
        s = statistics.median(times[key])
        print(f"{label:34s} {s:7.3f} {len(frames) / s:9.0f} {sizes[key] / 1024:8.0f}")


def whole_record(rng, n_probes=64, n_epochs=50):
    with tempfile.TemporaryDirectory() as root:
        w = RecordWriter(root)
        images = np.stack([np.roll(probe_image(), 8 * i, axis=1) for i in range(n_probes)])
        w.open(
            {
                "layer": "conv",
                "method": "gradcam",
                "fingerprint": "bench",
                "n_probes": n_probes,
                "n_classes": len(CLASSES),
                "map_shape": [7, 7],
                "class_names": CLASSES,
            },
            images=images,
            labels=np.arange(n_probes) % 5,
        )
        for e in range(n_epochs):
            maps = rng.random((n_probes, 7, 7)).astype(np.float32)
            w.write_epoch(
                e,
                heatmaps=maps / maps.max(axis=(1, 2), keepdims=True),
                probabilities=rng.dirichlet(np.ones(5), n_probes),
                targets=np.zeros(n_probes),
            )
        run = load_run(root)
        print(f"\n3. rendering {n_probes} probes x {n_epochs} epochs of 224 px to GIFs (+ grid)")
        print(f"{'workers':>22s} {'s':>7s} {'frames/s':>9s}")
        cores = os.cpu_count() or 1
        for name, workers, processes in (
            ("1 thread", 1, False),
            (f"{cores} threads", cores, False),
            (f"{cores} processes (CLI)", cores, True),
        ):
            start = time.perf_counter()
            animate.render_animations(
                run,
                os.path.join(root, name.replace(" ", "_")),
                workers=workers,
                processes=processes,
            )
            s = time.perf_counter() - start
            print(f"{name:>22s} {s:7.1f} {n_probes * n_epochs / s:9.0f}")


def main():
    rng = np.random.default_rng(0)
    frames = drawing(rng)
    encoding(frames)
    whole_record(rng)


if __name__ == "__main__":
    main()
