"""Animations from the record: frame count and order, formats, grid, sizes and errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from records import make_record

from cam_callback import animate
from cam_callback import frames as F
from cam_callback.record import load_run


def gif_frames(path):
    img = Image.open(path)
    out = []
    for i in range(img.n_frames):
        img.seek(i)
        out.append(np.asarray(img.convert("RGB")))
    return out


def test_gif_frames_in_epoch_order_match_drawn_frames(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=5))
    paths = animate.render_animations(run, tmp_path / "out", fps=5, grid=True)
    assert [p.name for p in paths] == [f"probe_{i:03d}.gif" for i in range(6)] + ["grid.gif"]
    frames = gif_frames(paths[3])
    assert len(frames) == 5
    drawn = animate.probe_frames(run, 3)
    for got, want in zip(frames, drawn, strict=True):
        # A shared 256-colour palette: close to the drawn frame, never another epoch's.
        assert np.abs(got.astype(int) - want).mean() < 6  # other epochs differ by > 11
    # Order: each GIF frame is nearest to the drawn frame of the same epoch.
    for e, got in enumerate(frames):
        errors = [np.abs(got.astype(int) - d).mean() for d in drawn]
        assert int(np.argmin(errors)) == e
    info = Image.open(paths[3]).info
    assert info["loop"] == 0 and info["duration"] == 200
    grid = gif_frames(paths[-1])
    assert len(grid) == 5 and grid[0].shape[0] > F.MIN_SIDE // 2


def test_mp4_frame_count(tmp_path):
    import imageio.v3 as iio

    run = load_run(make_record(tmp_path, n_epochs=4))
    paths = animate.render_animations(run, tmp_path / "mp4", formats="mp4", probes=[1], grid=False)
    video = iio.imread(paths[0])
    assert len(video) == 4
    want = animate.probe_frames(run, 1)
    h, w = want[0].shape[:2]
    for e in range(4):  # lossy, but each frame is its own epoch's
        errors = [np.abs(video[e][:h, :w].astype(int) - d).mean() for d in want]
        assert int(np.argmin(errors)) == e


def test_missing_video_extra_names_it(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ffmpeg(name, *args, **kwargs):
        if name == "imageio_ffmpeg":
            raise ImportError("No module named 'imageio_ffmpeg'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)
    with pytest.raises(animate.MissingVideoExtra, match=r'pip install "cam-callback\[video\]"'):
        animate.write_mp4(tmp_path / "x.mp4", [np.zeros((8, 8, 3), np.uint8)])


def test_errors_and_single_epoch(tmp_path):
    empty = make_record(tmp_path / "empty", n_epochs=0)
    with pytest.raises(ValueError, match="no complete epoch yet"):
        animate.render_animations(empty)
    one = load_run(make_record(tmp_path / "one", n_epochs=1))
    [path] = animate.render_animations(one, tmp_path / "o", probes=[0], grid=False)
    assert Image.open(path).n_frames == 1
    with pytest.raises(ValueError, match=r"`probes` \[7\] do not exist"):
        animate.render_animations(one, probes=[7])
    with pytest.raises(ValueError, match="`animate` formats"):
        animate.render_animations(one, formats="avi")
    with pytest.raises(ValueError, match="`frames` is empty"):
        animate.gif_bytes([])


def test_gif_stays_small_for_50_frames_at_224px(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:224, :224]
    image = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    renderer = F.FrameRenderer(image, label=1, class_names=["cat", "dog", "bird"])
    base = rng.random((7, 7))
    frames = [
        renderer.draw(
            np.clip(base + 0.05 * e * rng.random((7, 7)), 0, 1) / 1.5, rng.dirichlet([1, 1, 1]), e
        )
        for e in range(50)
    ]
    data = animate.gif_bytes(frames, fps=5)
    assert len(data) < 1_000_000
    assert Image.open(io.BytesIO(data)).n_frames == 50


def test_compare_side_by_side(tmp_path):
    a = make_record(tmp_path / "a", n_epochs=4)
    b = make_record(tmp_path / "b", n_epochs=3, seed=1)
    paths = animate.compare_animations(
        a, b, tmp_path / "cmp", labels=("Inception", "VGG-19"), probes=[0, 2]
    )
    assert [p.name for p in paths] == ["probe_000.gif", "probe_002.gif"]
    frames = gif_frames(paths[0])
    assert len(frames) == 3  # aligned by index: the shorter run sets the length
    single = animate.probe_frames(load_run(a), 0)[0]
    assert frames[0].shape[1] == 2 * single.shape[1] + 6
    other = make_record(tmp_path / "c", fingerprint="beef")
    with pytest.raises(ValueError, match="different probes"):
        animate.compare_animations(a, other, tmp_path / "x")


def test_worker_processes_write_the_same_files_as_threads(tmp_path):
    run = load_run(make_record(tmp_path, n_probes=16, n_epochs=2, size=16))
    threaded = animate.render_animations(run, tmp_path / "t", grid=True, workers=2)
    spawned = animate.render_animations(run, tmp_path / "p", grid=True, workers=2, processes=True)
    assert len(spawned) == 17 >= animate.PROCESS_MIN_JOBS
    assert [p.name for p in spawned] == [p.name for p in threaded]
    for a, b in zip(threaded, spawned, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_gif_stream_on_disk_equals_gif_bytes_and_finishes_by_rename(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=6))
    frames = animate.probe_frames(run, 1)
    stream = animate.GifStream(tmp_path / "anim" / "probe_001.gif", fps=5)
    for e, f in enumerate(frames[:3]):
        stream.append(e, f)
    # A killed run leaves the partial file only; the final name does not exist yet.
    assert stream.part.is_file() and not stream.path.exists()
    assert stream.keys == [0, 1, 2]
    for e, f in enumerate(frames[3:], 3):
        stream.append(e, f)
    path = stream.finish()
    assert not stream.part.exists()
    assert path.read_bytes() == animate.gif_bytes(frames, fps=5)
    # Unchanged pixels are transparent over the frame before: decoding gives every frame back.
    for got, want in zip(animate.read_gif(path), frames, strict=True):
        assert np.abs(got.astype(int) - want).mean() < 6


def test_gif_stream_trims_to_max_frames_when_finishing(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=7))
    frames = animate.probe_frames(run, 0)
    stream = animate.GifStream(tmp_path / "a" / "p.gif")
    for e, f in enumerate(frames):
        stream.append(e, f)
    path = stream.finish(max_frames=3)
    got = animate.read_gif(path)
    assert len(got) == 3
    for g, want in zip(got, [frames[0], frames[3], frames[6]], strict=True):
        assert np.abs(g.astype(int) - want).mean() < 6
    with pytest.raises(ValueError, match="no frame was appended"):
        animate.GifStream(tmp_path / "b.gif").finish()


def test_render_max_frames_and_bounded_grid(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=9, n_probes=3))
    [probe, grid] = animate.render_animations(
        run, tmp_path / "o", probes=[0], max_frames=3, grid=True
    )
    assert Image.open(probe).n_frames == 3 and Image.open(grid).n_frames == 3
    drawn = animate.probe_frames(run, 0, positions=[0, 4, 8])
    for got, want in zip(gif_frames(probe), drawn, strict=True):
        assert np.abs(got.astype(int) - want).mean() < 6
    with pytest.raises(ValueError, match="`max_frames` must be an int >= 2"):
        animate.render_animations(run, tmp_path / "x", max_frames=1)


def test_worker_processes_render_exactly_the_run_given(tmp_path):
    from PIL import Image

    log_dir = make_record(tmp_path, n_probes=16, n_epochs=5, size=16)
    run = load_run(log_dir, epochs=slice(2, None))
    assert run.epochs == [2, 3, 4]
    threaded = animate.render_animations(run, tmp_path / "t", grid=False, workers=2)
    spawned = animate.render_animations(run, tmp_path / "p", grid=False, workers=2, processes=True)
    assert len(spawned) == 16 >= animate.PROCESS_MIN_JOBS
    for a, b in zip(threaded, spawned, strict=True):
        assert Image.open(b).n_frames == 3
        assert a.read_bytes() == b.read_bytes()
