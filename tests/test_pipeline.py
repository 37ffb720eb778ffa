"""The background pipeline: frames drawn once, max_frames, the record's promise, resume."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from children import kill_child_at
from PIL import Image
from records import make_record

from cam_callback import animate
from cam_callback import frames as F
from cam_callback.record import RecordWriter, epoch_files, load_run
from cam_callback.tracker import pipeline


def maps_for(epoch, n=6, hw=6, n_classes=3):
    rng = np.random.default_rng(100 + epoch)
    maps = rng.random((n, hw, hw)).astype(np.float32)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    probs = rng.dirichlet(np.ones(n_classes), n).astype(np.float32)
    return maps, probs, probs.argmax(1)


def open_pipe(log_dir, *, n=6, record_epochs=0, **kw):
    make_record(log_dir, n_probes=n, n_epochs=record_epochs)
    run = load_run(log_dir)
    drawn = {"tensorboard": False, "formats": ("gif",), "max_frames": 100}
    drawn.update({k: kw.pop(k) for k in list(kw) if k in pipeline.Drawing.__dataclass_fields__})
    options = dict(
        display=run.images,
        labels=run.labels,
        masks=None,
        class_names=run.class_names,
        drawing=pipeline.Drawing(**drawn),
        total_epochs=None,
    )
    options.update(kw)
    return pipeline.build_pipeline(RecordWriter(log_dir), **options)


def run_epochs(pipe, epochs, n=6):
    for e in epochs:
        pipe.submit(e, *maps_for(e, n))
    return pipe.finish()


def gif_epochs(path, run, probe=0):
    """The recorded epoch each GIF frame shows: the nearest drawn frame of the probe."""
    frames = animate.read_gif(path)
    drawn = animate.probe_frames(run, probe)
    return [
        run.epochs[int(np.argmin([np.abs(f.astype(int) - d).mean() for d in drawn]))]
        for f in frames
    ]


class Spy:
    """Counts FrameRenderer.draw per (probe, epoch) and keeps what TensorBoard and GIFs got."""

    def __init__(self, monkeypatch):
        self.draws: dict[tuple[int, int], int] = {}
        self.drawn: dict[tuple[int, int], np.ndarray] = {}
        self.shown: dict[int, dict] = {}
        self.appended: dict[tuple[str, int], np.ndarray] = {}
        spy = self
        real_draw = F.FrameRenderer.draw
        real_append = animate.GifStream.append

        def draw(renderer, heatmap, probs, epoch, target=None):
            probe = int(renderer.image[0, 0, 2]) // 40  # records.py paints probe i with 40 * i
            frame = real_draw(renderer, heatmap, probs, epoch, target=target)
            spy.draws[probe, epoch] = spy.draws.get((probe, epoch), 0) + 1
            spy.drawn[probe, epoch] = frame
            return frame

        def append(stream, key, frame):
            spy.appended[stream.path.name, key] = frame
            return real_append(stream, key, frame)

        class Writer:
            def __init__(self, logdir, **kwargs):
                self.is_open = False

            def write(self, step, images, scalars):
                spy.shown[step] = {"images": dict(images), "scalars": dict(scalars)}

            def close(self):
                pass

        monkeypatch.setattr(F.FrameRenderer, "draw", draw)
        monkeypatch.setattr(animate.GifStream, "append", append)
        monkeypatch.setattr(pipeline.build, "SummaryWriter", Writer)


def test_each_frame_is_drawn_once_and_feeds_tensorboard_and_the_gif(tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    pipe = open_pipe(
        tmp_path, tensorboard=True, tensorboard_probes=[1, 4], total_epochs=6, max_frames=3
    )
    run_epochs(pipe, range(6))
    # Kept epochs (0, 2 or 3, 5): every probe drawn once. Others: only the TensorBoard probes.
    kept = {0, 5} | {e for e in (2, 3) if spy.draws.get((0, e))}
    assert len(kept) == 3
    for e in range(6):
        for i in range(6):
            want = 1 if e in kept or i in (1, 4) else 0
            assert spy.draws.get((i, e), 0) == want, (i, e)
    # The very arrays drawn are the ones TensorBoard and the animation received.
    for e in range(6):
        images = spy.shown[e]["images"]
        assert set(images) == {"cam/probe_001_class_1", "cam/probe_004_class_1", "cam/grid"}
        assert images["cam/probe_001_class_1"] is spy.drawn[1, e]
        if e in kept:
            assert spy.appended["probe_001.gif", e] is spy.drawn[1, e]
            assert spy.appended["grid.gif", e] is images["cam/grid"]
    # Scalars are over every probe, not only the two shown.
    run = load_run(tmp_path)
    want = float(run.metrics["true_class_probability"][3].mean())
    assert spy.shown[3]["scalars"]["cam/mean_true_class_probability"] == pytest.approx(want)


def test_max_frames_samples_evenly_keeping_first_and_last(tmp_path):
    pipe = open_pipe(tmp_path / "a", total_epochs=10, max_frames=4)
    paths = run_epochs(pipe, range(10))
    run = load_run(tmp_path / "a")
    assert run.epochs == list(range(10))  # the record keeps every epoch
    assert gif_epochs(paths[0], run) == [0, 3, 6, 9]
    assert Image.open(paths[-1]).n_frames == 4  # the grid too

    # fit stopped early (EarlyStopping): the kept epochs so far, then the last one.
    pipe = open_pipe(tmp_path / "b", total_epochs=10, max_frames=4)
    paths = run_epochs(pipe, range(5))
    assert gif_epochs(paths[0], load_run(tmp_path / "b")) == [0, 3, 4]

    # fit's length unknown: everything is kept, then sampled when finishing.
    pipe = open_pipe(tmp_path / "c", total_epochs=None, max_frames=4)
    paths = run_epochs(pipe, range(10))
    assert gif_epochs(paths[0], load_run(tmp_path / "c")) == [0, 3, 6, 9]
    assert not (tmp_path / "c" / "cam" / "animations" / animate.PARTIAL).exists()


class FakeClock:
    """Every epoch looks ``interval`` s long, and drawing one looks ``cpu`` s of CPU."""

    def __init__(self, interval, cpu):
        self.now, self.cpu, self.step, self.cpu_step = 0.0, 0.0, interval, cpu

    def monotonic(self):
        self.now += self.step
        return self.now

    def thread_time(self):  # called twice per drawn epoch, before and after
        self.cpu += self.cpu_step
        return self.cpu


def test_animations_thin_evenly_once_when_drawing_outruns_its_budget(tmp_path, monkeypatch):
    # 1 s of drawing per 2 s epoch is 5x the 10% budget: one epoch in 5 from then on.
    clock = FakeClock(interval=2.0, cpu=1.0)
    monkeypatch.setattr(pipeline.core, "time", clock)  # epoch intervals
    monkeypatch.setattr(pipeline.drawing, "time", clock)  # drawing time
    pipe = open_pipe(tmp_path / "a", total_epochs=12)
    paths = run_epochs(pipe, range(12))
    run = load_run(tmp_path / "a")
    assert run.epochs == list(range(12))  # the record keeps every epoch
    # Epoch 0 has no interval yet; epoch 1 measures it, then 2..11 keep 6 and 11.
    assert gif_epochs(paths[0], run) == [0, 1, 6, 11]
    assert len(pipe.notices) == 1 and "keep one epoch in 5" in pipe.notices[0]

    # fit's length unknown: every 5th epoch after the measured one, and the last.
    pipe = open_pipe(tmp_path / "b", total_epochs=None)
    paths = run_epochs(pipe, range(9))
    assert gif_epochs(paths[0], load_run(tmp_path / "b")) == [0, 1, 6, 8]

    # Within budget (0.4 s, under the 0.5 s floor): every epoch.
    clock = FakeClock(interval=2.0, cpu=0.4)
    monkeypatch.setattr(pipeline.core, "time", clock)  # epoch intervals
    monkeypatch.setattr(pipeline.drawing, "time", clock)  # drawing time
    pipe = open_pipe(tmp_path / "c", total_epochs=6)
    paths = run_epochs(pipe, range(6))
    assert gif_epochs(paths[0], load_run(tmp_path / "c")) == [0, 1, 2, 3, 4, 5]
    assert pipe.notices == []


def test_sample_positions():
    assert animate.sample_positions(5, None) == [0, 1, 2, 3, 4]
    assert animate.sample_positions(300, 100)[:3] == [0, 3, 6]
    for n in (101, 150, 299, 1000):
        got = animate.sample_positions(n, 100)
        assert len(got) == len(set(got)) == 100 and got[0] == 0 and got[-1] == n - 1
        assert np.diff(got).max() - np.diff(got).min() <= 1  # even spacing
    with pytest.raises(ValueError, match="`max_frames`"):
        animate.sample_positions(5, 1)


def test_an_epoch_is_on_disk_before_the_next_is_handed_over(tmp_path, monkeypatch):
    pipe = open_pipe(tmp_path, formats=())
    real = RecordWriter.write_epoch

    def slow(self, epoch, **kw):
        time.sleep(0.3)  # a slow disk
        return real(self, epoch, **kw)

    monkeypatch.setattr(RecordWriter, "write_epoch", slow)
    pipe.submit(0, *maps_for(0))
    assert 0 not in epoch_files(tmp_path / "cam")  # written in the background
    pipe.submit(1, *maps_for(1))
    # Once submit(1) returns, epoch 0 is durable: a kill now loses at most epoch 1.
    assert 0 in epoch_files(tmp_path / "cam")
    pipe.finish()
    assert list(epoch_files(tmp_path / "cam")) == [0, 1]


def test_resumed_record_opens_the_animation_with_earlier_epochs(tmp_path):
    pipe = open_pipe(tmp_path, record_epochs=3, total_epochs=5)
    paths = run_epochs(pipe, [3, 4])
    run = load_run(tmp_path)
    assert run.epochs == [0, 1, 2, 3, 4]
    assert gif_epochs(paths[0], run) == [0, 1, 2, 3, 4]
    # Drift at the first new epoch is measured against the record's last one.
    from cam_callback.metrics import cosine_drift

    np.testing.assert_allclose(
        run.metrics["drift"][3], cosine_drift(run.heatmaps[3], run.heatmaps[2]), atol=1e-6
    )


def test_gif_and_mp4_match_a_render_from_the_record(tmp_path):
    import imageio.v3 as iio

    pipe = open_pipe(tmp_path, formats=("gif", "mp4"), total_epochs=4)
    paths = run_epochs(pipe, range(4))
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [f"probe_{i:03d}.{f}" for i in range(6) for f in ("gif", "mp4")] + ["grid.gif", "grid.mp4"]
    )
    run = load_run(tmp_path)
    rendered = animate.render_animations(run, tmp_path / "r", probes=[2], grid=True)
    live = tmp_path / "cam" / "animations"
    # The same frames, encoded the same way: byte for byte what render writes.
    assert (live / "probe_002.gif").read_bytes() == rendered[0].read_bytes()
    assert (live / "grid.gif").read_bytes() != b""
    assert len(iio.imread(live / "probe_002.mp4")) == 4


def test_background_errors_are_raised_back_once(tmp_path, monkeypatch):
    pipe = open_pipe(tmp_path)

    def broken(self, *args, **kwargs):
        raise OSError("no space for frames")

    monkeypatch.setattr(pipeline.FrameStage, "draw", broken)
    pipe.submit(0, *maps_for(0))
    with pytest.raises(RuntimeError, match="frames of epoch 0 failed: no space"):
        pipe.finish()
    assert load_run(tmp_path).epochs == [0]  # the record is kept
    assert not any(t.name.startswith("cam-tracker") for t in threading.enumerate())


def test_choose_tensorboard_probes_is_stable_and_spans_classes():
    labels = np.repeat(np.arange(8), 64)  # 512 probes, classes in blocks
    chosen = pipeline.choose_tensorboard_probes(16, 512, labels)
    assert len(chosen) == 16 and sorted(set(labels[chosen])) == list(range(8))
    assert chosen == pipeline.choose_tensorboard_probes(16, 512, labels)
    assert chosen[:2] == [0, 1] and 64 in chosen
    assert pipeline.choose_tensorboard_probes(16, 5, labels[:5]) == [0, 1, 2, 3, 4]
    assert pipeline.choose_tensorboard_probes(4, 100) == [0, 33, 66, 99]
    assert pipeline.choose_tensorboard_probes(0, 100) == []
    assert pipeline.check_tensorboard_probes([5, 2, 5], 8) == [2, 5]
    with pytest.raises(ValueError, match=r"`tensorboard_probes` \[9\] are not probe ids"):
        pipeline.check_tensorboard_probes([9], 8)
    with pytest.raises(ValueError, match="`tensorboard_probes` must be >= 0"):
        pipeline.check_tensorboard_probes(-1, 8)
    with pytest.raises(TypeError, match="`tensorboard_probes` must be a count"):
        pipeline.check_tensorboard_probes("all", 8)


def test_grid_of_512_probes_stays_bounded(tmp_path, monkeypatch):
    spy = Spy(monkeypatch)
    pipe = open_pipe(tmp_path, n=512, tensorboard=True, tensorboard_probes=[0], formats=())
    run_epochs(pipe, [0], n=512)
    grid = spy.shown[0]["images"]["cam/grid"]
    assert max(grid.shape[:2]) <= animate.GRID_MAX
    assert animate.grid_side(512) == 36 and animate.grid_side(32) == animate.GRID_SIDE
    assert set(spy.shown[0]["images"]) == {"cam/probe_000_class_0", "cam/grid"}


def test_killed_run_leaves_partial_animations_that_render_rebuilds(tmp_path):
    import subprocess
    import sys

    kill_child_at("slow-gif", tmp_path, "epoch 3 done")
    folder = tmp_path / "cam" / "animations"
    # The kill came before on_train_end: GIFs exist only as partial files, never torn.
    assert not list(folder.glob("*.gif"))
    # (The nice-19 frame thread may not have drawn anything yet on a busy machine.)
    partial = folder / animate.PARTIAL
    parts = sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []
    assert set(parts) <= {f"probe_{i:03d}.gif.part" for i in range(5)} | {"grid.gif.part"}
    run = load_run(tmp_path)
    # on_epoch_end(3) had returned, so epoch 2 is on disk; epoch 3 was in flight.
    assert run.epochs[:4] == [-1, 0, 1, 2]  # the untrained model first
    out = subprocess.run(
        [sys.executable, "-m", "cam_callback", "render", str(tmp_path), "--grid"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert gif_epochs(folder / "probe_000.gif", run) == run.epochs
    assert Image.open(folder / "grid.gif").n_frames == len(run.epochs)
    for i in range(1, run.n_probes):
        assert gif_epochs(folder / f"probe_{i:03d}.gif", run, i) == run.epochs


def test_planned_epochs_follow_cadence_resume_and_unknown_length():
    assert pipeline.planned_epochs(1, 6, 2, []) == [1, 3, 5]  # every_n_epochs=2
    assert pipeline.planned_epochs(3, 5, 1, [0, 1, 2, 7]) == [0, 1, 2, 3, 4]
    assert pipeline.planned_epochs(4, 3, 1, [0, 1]) is None  # past fit's end: unknown
    assert pipeline.planned_epochs(0, None, 1, []) is None
    # The fit's last epoch is always recorded, whatever the cadence.
    assert pipeline.planned_epochs(1, 5, 2, []) == [1, 3, 4]
    assert pipeline.planned_epochs(2, 7, 3, [-1]) == [-1, 2, 5, 6]


def test_drain_draws_the_queued_epochs_itself_in_order(tmp_path, monkeypatch):
    # The frame thread runs at nice 19; on a busy machine it may crawl. When training ends,
    # it finishes its current epoch and the caller draws the rest.
    real = pipeline.FrameStage.draw
    drawn = []

    def slow(self, recorded, *args, **kwargs):
        if threading.current_thread().name == "cam-tracker-frames":
            time.sleep(0.4)
        drawn.append((recorded.epoch, threading.current_thread().name))
        return real(self, recorded, *args, **kwargs)

    monkeypatch.setattr(pipeline.FrameStage, "draw", slow)
    pipe = open_pipe(tmp_path, total_epochs=5)
    for e in range(5):
        pipe.submit(e, *maps_for(e))
    pipe.drain()
    assert [e for e, _ in drawn] == [0, 1, 2, 3, 4]
    assert drawn[-1][1] == threading.current_thread().name
    pipe.finish()
    assert gif_epochs(tmp_path / "cam" / "animations" / "probe_000.gif", load_run(tmp_path)) == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_a_deleted_record_stops_the_background_and_is_never_recreated(tmp_path):
    import shutil

    from cam_callback.record import RecordDeleted

    pipe = open_pipe(tmp_path, record_epochs=1, tensorboard=True)
    pipe.submit(1, *maps_for(1))
    pipe._records.join()  # epoch 1 on disk
    shutil.rmtree(tmp_path / "cam")
    pipe.submit(2, *maps_for(2))
    pipe.submit(3, *maps_for(3))
    pipe.drain()
    stage, what, epoch, exc = pipe.take_error()
    assert (stage, epoch) == ("record", 2) and isinstance(exc, RecordDeleted)
    assert pipe.take_error() is None  # said once
    assert "was deleted during training" in str(exc)
    assert pipe.record_gone and not pipe.animating and pipe.finish_animations() == []
    pipe.close()
    assert not (tmp_path / "cam").exists()


def test_non_finite_probabilities_are_recorded_with_nan_maps(tmp_path):
    pipe = open_pipe(tmp_path, formats=())
    maps, probs, targets = maps_for(1)
    probs[[1, 4]] = np.nan
    pipe.submit(1, maps, probs, targets)
    pipe.finish()
    run = load_run(tmp_path)
    assert np.isnan(run.heatmaps[-1, [1, 4]]).all()
    others = [0, 2, 3, 5]
    np.testing.assert_array_equal(run.heatmaps[-1, others], maps[others])
    assert run.metrics["correct"][-1, [1, 4]].tolist() == [0.0, 0.0]


def test_empty_map_flag_reads_the_last_epoch_with_its_tolerance():
    from cam_callback.metrics import EMPTY_MAP_PEAK, empty_map_notice, flags

    probs = np.full((2, 4, 3), 1 / 3, np.float32)
    maps = np.zeros((2, 4, 2, 2), np.float32)
    maps[0] = 1.0  # an earlier epoch does not count
    maps[1, 1, 0, 0] = EMPTY_MAP_PEAK / 2  # nearly zero: float rounding, empty
    maps[1, 2, 1, 1] = 1e-3  # a small but real peak: not empty
    maps[1, 3, 0, 0] = np.nan  # not computed: non_finite, not empty
    f = flags({}, probs, heatmaps=maps)
    assert f["empty_map"].tolist() == [True, True, False, False]
    assert f["non_finite"].tolist() == [False, False, False, True]
    assert not flags({}, probs)["empty_map"].any()  # without maps, nothing is said
    notice = dict(layer="conv2", method="gradcam", score="logit")
    assert empty_map_notice(np.array([True, True, False, False]), **notice) is None  # half
    assert empty_map_notice(np.array([True, True, True, False]), **notice).startswith(
        "3 of 4 probes end with an empty map at layer 'conv2'"
    )


def test_option_dicts_name_the_field_and_the_value_received():
    import re

    bad = [
        ("fragility", {"copies": 0}, "copies", "an int >= 1"),
        ("fragility", {"copies": True}, "copies", "an int >= 1"),
        ("fragility", {"noise": 1.0}, "noise", "in (0, 1)"),
        ("fragility", {"threshold": True}, "threshold", "in [0, 1]"),
        ("fragility", {"seed": 1.5}, "seed", "an int"),
        ("evidence", {"recipients": 0}, "recipients", "an int >= 1"),
        ("evidence", {"share": 1.5}, "share", "in (0, 1]"),
        ("evidence", {"seed": np.float32(2)}, "seed", "an int"),
    ]
    for argument, value, key, expected in bad:
        check = getattr(pipeline, f"{argument}_options")
        message = f"`{argument}['{key}']` must be {expected}. Received: {value[key]!r}"
        with pytest.raises(ValueError, match=re.escape(message)):
            check(value)
    got = pipeline.fragility_options({"copies": np.int64(2), "threshold": 1, "seed": np.int8(3)})
    assert (got.copies, got.threshold, got.seed) == (2, 1.0, 3)
    assert type(got.copies) is int and type(got.threshold) is float
    assert pipeline.evidence_options({"share": 1}).share == 1.0
