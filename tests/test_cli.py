"""The cam-callback command in subprocesses: every command and its error exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from records import make_record

from cam_callback.animate import read_gif


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "cam_callback", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def test_cli_imports_no_tensorflow():
    code = (
        "import sys, cam_callback.cli, cam_callback.report, cam_callback.animate;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'));"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--version"], ["info", "LOG"]])
def test_version_and_info_import_no_keras(tmp_path, args):
    """The commands themselves, run to the end, load no TensorFlow, Keras, JAX or torch."""
    make_record(tmp_path, n_probes=3, n_epochs=2)
    argv = [str(tmp_path) if a == "LOG" else a for a in args]
    code = (
        "import sys\n"
        "from cam_callback.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        "heavy = ('tensorflow', 'keras', 'jax', 'torch')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print('LOADED', rc, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED 0 []"


def test_info(tmp_path):
    make_record(tmp_path, n_probes=6, n_epochs=5)
    out = cli("info", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "epochs:  5 recorded (0..4)" in out.stdout
    assert "probes:  6 of 32x32 px, 3 classes (class_0, class_1, class_2)" in out.stdout
    assert "layer:   conv2  method: gradcam  score: probability" in out.stdout
    assert "final accuracy on probes:" in out.stdout


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_goes_away_ends_it_quietly(tmp_path, unbuffered):
    """`cam-callback info runs/x | head` printed "cam-callback: error: Broken pipe". Buffered
    (the usual case), the write fails at the last flush; unbuffered, at the first print."""
    make_record(tmp_path, n_probes=30, n_epochs=3)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": unbuffered}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cam_callback", "info", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_render_gif_subset_with_grid_and_progress(tmp_path):
    make_record(tmp_path, n_epochs=3)
    out = cli("render", tmp_path, "--probes", "0,3", "--grid", "--fps", "2")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "cam" / "animations"
    assert sorted(p.name for p in folder.glob("*.gif")) == [
        "grid.gif",
        "probe_000.gif",
        "probe_003.gif",
    ]
    assert Image.open(folder / "probe_003.gif").n_frames == 3
    assert "rendering 3/3" in out.stderr
    again = cli("render", tmp_path, "--probes", "0")  # its own folder: overwriting is fine
    assert again.returncode == 0, again.stderr


def test_render_max_frames_samples_epochs_keeping_first_and_last(tmp_path):
    make_record(tmp_path, n_epochs=9)
    gif = tmp_path / "cam" / "animations" / "probe_001.gif"
    out = cli("render", tmp_path, "--probes", "1", "--max-frames", "3")
    assert out.returncode == 0, out.stderr
    all_out = tmp_path / "all"
    want = cli("render", tmp_path, "--probes", "1", "--max-frames", "all", "--out", all_out)
    assert want.returncode == 0, want.stderr
    every = read_gif(all_out / "probe_001.gif")
    assert len(every) == 9
    kept = read_gif(gif)
    assert len(kept) == 3
    # Each kept frame is nearest to epochs 0, 4 and 8 of the full render (palettes differ).
    nearest = [int(np.argmin([np.abs(k.astype(int) - f).mean() for f in every])) for k in kept]
    assert nearest == [0, 4, 8]
    bad = cli("render", tmp_path, "--max-frames", "1")
    assert bad.returncode != 0 and "--max-frames must be a whole number >= 2" in bad.stderr


def test_render_mp4_to_new_out(tmp_path):
    make_record(tmp_path / "run", n_epochs=2)
    out = cli(
        "render", tmp_path / "run", "--format", "mp4", "--out", tmp_path / "videos", "--probes", "1"
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "videos" / "probe_001.mp4").stat().st_size > 0


def test_one_epoch_says_nothing_to_animate(tmp_path):
    make_record(tmp_path, n_epochs=1)
    out = cli("render", tmp_path, "--probes", "0")
    assert out.returncode == 0
    assert "nothing to animate yet" in out.stderr
    assert Image.open(tmp_path / "cam" / "animations" / "probe_000.gif").n_frames == 1


def one_line_error(out, pattern):
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cam-callback: error:"), out.stderr
    assert pattern in lines[0], lines[0]


def test_error_exits(tmp_path):
    one_line_error(cli("info", tmp_path / "missing"), "no cam-callback record")
    one_line_error(cli("render", tmp_path / "missing"), "no cam-callback record")
    make_record(tmp_path / "empty", n_epochs=0)
    one_line_error(cli("render", tmp_path / "empty"), "no complete epoch yet")
    one_line_error(cli("report", tmp_path / "empty"), "no complete epoch yet")
    make_record(tmp_path / "run", n_epochs=2)
    one_line_error(cli("render", tmp_path / "run", "--probes", "0,9"), "`probes` [9] do not exist")
    one_line_error(cli("render", tmp_path / "run", "--probes", "a,b"), "--probes must be")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    one_line_error(cli("render", tmp_path / "run", "--out", blocker), "is not a folder")
    one_line_error(cli("render", tmp_path / "run", "--out", blocker / "sub"), "cannot write")
    users = tmp_path / "users"
    users.mkdir()
    (users / "probe_000.gif").write_text("precious")
    one_line_error(cli("render", tmp_path / "run", "--out", users), "was not made by cam-callback")
    assert (users / "probe_000.gif").read_text() == "precious"
    page = tmp_path / "notes.html"
    page.write_text("<html>my notes</html>")
    one_line_error(cli("report", tmp_path / "run", "--out", page), "not written by cam-callback")
    assert page.read_text() == "<html>my notes</html>"


def damage(cam, how):
    meta = cam / "record.json"
    data = json.loads(meta.read_text())
    if how == "list":
        meta.write_text("[1, 2]")
    elif how == "version":
        meta.write_text(json.dumps({**data, "version": "1"}))
    elif how == "names":
        meta.write_text(json.dumps({**data, "class_names": {"a": 1}}))
    elif how == "deep":
        meta.write_text("[" * 50000 + "]" * 50000)
    elif how == "truncated":
        (cam / "probes.npz").write_bytes((cam / "probes.npz").read_bytes()[:200])
    elif how == "labels":
        with np.load(cam / "probes.npz") as f:
            arrays = dict(f)
        arrays["labels"] = arrays["labels"] + 10
        np.savez(cam / "probes.npz", **arrays)


def test_every_command_on_a_damaged_record_prints_one_line(tmp_path):
    make_record(tmp_path / "good", n_probes=3, n_epochs=2)
    for how in ("list", "version", "names", "deep", "truncated", "labels"):
        bad = make_record(tmp_path / how, n_probes=3, n_epochs=2)
        damage(bad / "cam", how)
        name = "probes.npz" if how in ("truncated", "labels") else "record.json"
        for args in (
            ("info", bad),
            ("render", bad),
            ("report", bad),
            ("compare", bad, tmp_path / "good", "--out", tmp_path / "cmp"),
            ("compare", tmp_path / "good", bad, "--out", tmp_path / "cmp"),
        ):
            one_line_error(cli(*args), f"{bad / 'cam' / name}")


def test_a_damaged_epoch_is_one_warning_line_and_the_rest_works(tmp_path):
    make_record(tmp_path, n_probes=3, n_epochs=3)
    epoch = tmp_path / "cam" / "epochs" / "epoch_000001.npz"
    epoch.write_bytes(epoch.read_bytes()[:100])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    out = subprocess.run(
        [sys.executable, "-m", "cam_callback", "info", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith("cam-callback: warning: skipping damaged cam-callback record: ")
    assert str(epoch) in out.stderr and "epochs:  2 recorded (0..2)" in out.stdout


def test_info_shows_names_without_control_or_bidi_characters(tmp_path):
    make_record(tmp_path, n_epochs=1)
    meta = tmp_path / "cam" / "record.json"
    data = json.loads(meta.read_text())
    data["class_names"] = ["\x1b[2Jcat", "\u202edog", "x" * 100]
    meta.write_text(json.dumps(data))
    out = cli("info", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert "([2Jcat, dog, " + "x" * 47 + "…)" in out.stdout


def test_fps_a_gif_cannot_hold_is_refused(tmp_path):
    make_record(tmp_path, n_epochs=2)
    one_line_error(cli("render", tmp_path, "--fps", "0.001"), "`--fps` must be between")
    one_line_error(cli("report", tmp_path, "--fps", "nan"), "`--fps` must be a finite")
    assert (
        cli("render", tmp_path, "--fps", "60", "--format", "mp4", "--probes", "0").returncode == 0
    )


def test_report_never_overwrites_a_files_folder_it_did_not_make(tmp_path):
    make_record(tmp_path / "run", n_probes=3, n_epochs=2)
    theirs = tmp_path / "D" / "page_files"
    theirs.mkdir(parents=True)
    (theirs / "probe_000.gif").write_text("precious")
    one_line_error(
        cli("report", tmp_path / "run", "--out", tmp_path / "D" / "page.html"),
        "was not made by cam-callback",
    )
    assert (theirs / "probe_000.gif").read_text() == "precious"
    assert not (tmp_path / "D" / "page.html").exists()
    (tmp_path / "E" / "page_files").mkdir(parents=True)
    (tmp_path / "E" / "page_files" / "probe_001_last.png").write_text("precious")
    one_line_error(
        cli("report", tmp_path / "run", "--out", tmp_path / "E" / "page.html"),
        "was not made by cam-callback",
    )
    out = cli("report", tmp_path / "run", "--out", tmp_path / "D" / "other.html")
    assert out.returncode == 0, out.stderr
    assert cli("report", tmp_path / "run", "--out", tmp_path / "D" / "other.html").returncode == 0


def test_report_prints_its_path(tmp_path):
    make_record(tmp_path, n_epochs=3)
    out = cli("report", tmp_path)
    assert out.returncode == 0, out.stderr
    page = tmp_path / "cam" / "report" / "index.html"
    assert out.stdout.strip() == str(page)
    assert len(list((tmp_path / "cam" / "report" / "index_files").glob("*.gif"))) == 6
    assert cli("report", tmp_path).returncode == 0  # rewriting our own page is fine


def test_compare(tmp_path):
    make_record(tmp_path / "a", n_epochs=3)
    make_record(tmp_path / "b", n_epochs=4, seed=3)
    out = cli(
        "compare",
        tmp_path / "a",
        tmp_path / "b",
        "--out",
        tmp_path / "cmp",
        "--labels",
        "Inception",
        "VGG-19",
    )
    assert out.returncode == 0, out.stderr
    assert "3 aligned epochs" in out.stdout
    assert Image.open(tmp_path / "cmp" / "probe_005.gif").n_frames == 3
    make_record(tmp_path / "c", fingerprint="other")
    one_line_error(
        cli("compare", tmp_path / "a", tmp_path / "c", "--out", tmp_path / "x"),
        "recorded different probes",
    )


def test_info_names_the_state_before_training(tmp_path):
    make_record(tmp_path, n_probes=3, n_epochs=2, baseline=True)
    out = cli("info", tmp_path)
    assert "epochs:  2 recorded (0..1) after the state before training" in out.stdout, out.stdout


def test_version_help_and_defaults_for_every_option():
    from cam_callback import __version__
    from cam_callback.cli import build_parser

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cam-callback {__version__}"
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "render" in a.choices).choices
    for name, sub in subparsers.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, (name, action.dest)
            if action.option_strings:  # each option's help gives its default
                assert "default: " in sub._get_formatter()._get_help_string(action), (
                    name,
                    action.dest,
                )
        assert "(default: None)" not in text and "%(default)" not in text
    render = " ".join(cli("render", "-h").stdout.split())
    assert "(default: 4.0)" in render and "(default: gif)" in render


def test_counts_are_pluralised_and_piped_progress_has_no_carriage_returns(tmp_path):
    make_record(tmp_path, n_epochs=2)
    one = cli("render", tmp_path, "--format", "mp4", "--probes", "1", "--out", tmp_path / "v")
    assert one.returncode == 0, one.stderr
    assert f"wrote 1 MP4 file to {tmp_path / 'v'}" in one.stdout
    many = cli("render", tmp_path)
    assert "wrote 6 GIF files to" in many.stdout
    # stderr is a pipe here, as in a CI log: whole lines only, ending with the total.
    assert "\r" not in many.stderr
    lines = [ln for ln in many.stderr.splitlines() if ln.startswith("rendering")]
    assert lines and lines[-1] == "rendering 6/6" and len(lines) <= 7


def test_info_shows_layer_method_and_score_without_escapes(tmp_path):
    make_record(tmp_path, n_epochs=1)
    meta = tmp_path / "cam" / "record.json"
    data = json.loads(meta.read_text())
    data |= {
        "layer": "\x1b[31mconv2\r",
        "method": "grad\x1b]0;x\x07cam",
        "score": "lo\u202egit\x00",
    }
    meta.write_text(json.dumps(data))
    out = cli("info", tmp_path)
    assert out.returncode == 0, out.stderr
    assert not any(c in out.stdout for c in "\x1b\r\x07\x00\u202e")
    assert "layer:   [31mconv2  method: grad]0;xcam  score: logit" in out.stdout


def test_info_counts_no_non_finite_prediction_as_right(tmp_path):
    """argmax of a NaN row is 0: the probes of class 0 must not count as right."""
    make_record(tmp_path, n_probes=6, n_epochs=2, n_classes=3)
    last = tmp_path / "cam" / "epochs" / "epoch_000001.npz"
    with np.load(last) as f:
        arrays = dict(f)
    arrays["probabilities"][:] = np.nan
    np.savez(last, **arrays)
    out = cli("info", tmp_path)
    assert out.returncode == 0, out.stderr
    assert "final accuracy on probes: 0.00 (0/6)" in out.stdout
    assert "non_finite: probes 0, 1, 2, 3, 4, 5" in out.stdout


def _capped():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


@pytest.mark.parametrize(
    "file,kind,said",
    [
        ("cam/record.json", "fifo", "record.json: is a FIFO (named pipe), not a regular file"),
        ("cam/probes.npz", "dev_zero", "probes.npz: is a symbolic link, not a regular file"),
        ("cam/probes.npz", "fifo", "probes.npz: is a FIFO (named pipe), not a regular file"),
    ],
)
def test_every_command_ends_in_one_line_on_special_files(tmp_path, file, kind, said):
    """The real entry point, in 1 GiB of address space and with a timeout: a FIFO never
    blocks it, /dev/zero never fills it."""
    make_record(tmp_path / "run", n_epochs=2)
    make_record(tmp_path / "other", n_epochs=2, fingerprint="f00d")
    target = tmp_path / "run" / file
    target.unlink()
    os.mkfifo(target) if kind == "fifo" else os.symlink("/dev/zero", target)
    for args in (
        ["info", tmp_path / "run"],
        ["render", tmp_path / "run", "--out", tmp_path / "gif"],
        ["report", tmp_path / "run", "--out", tmp_path / "page.html"],
        ["compare", tmp_path / "run", tmp_path / "other", "--out", tmp_path / "cmp"],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "cam_callback", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=_capped,
        )
        one_line_error(out, said)
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    out = cli("report", tmp_path / "other", "--out", fifo)
    one_line_error(out, "is a FIFO (named pipe), not a regular file; choose another --out")


def test_a_run_of_wide_probes_renders_frames_of_bounded_size(tmp_path):
    """1 x 16384 px probes: every frame is drawn at most 1,024 px wide per image."""
    make_record(tmp_path, n_probes=3, n_epochs=2)
    probes = tmp_path / "cam" / "probes.npz"
    with np.load(probes) as f:
        labels = f["labels"]
    np.savez(probes, images=np.zeros((3, 1, 16384, 3), np.uint8), labels=labels)
    out = cli("render", tmp_path, "--out", tmp_path / "gif", "--probes", "0")
    assert out.returncode == 0, out.stderr
    frames = read_gif(tmp_path / "gif" / "probe_000.gif")
    assert frames[0].shape == (48 + 160, 2 * 1024 + 198, 3)  # 18-px text: 160 / 9


def test_info_summarises_the_flags_the_mapped_class_and_the_weights(tmp_path):
    from cam_callback.record import load_run

    make_record(tmp_path, n_probes=6, n_epochs=4, baseline=True, masks=True, mask_kind="cue")
    meta = tmp_path / "cam" / "record.json"
    meta.write_text(
        json.dumps(json.loads(meta.read_text()) | {"target": "predicted", "final_weights_epoch": 1})
    )
    out = cli("info", tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "maps:    each explains the predicted class" in lines
    assert (
        "weights: the model holds the weights of epoch 1, not those of the last frame (epoch 3)"
        in lines
    )
    flags = load_run(tmp_path).flags
    flagged = {i for v in flags.values() for i in np.flatnonzero(v)}
    start = lines.index(f"flags:   {len(flagged)} of 6 probes flagged at the last frame")
    table = lines[start + 1 : start + 1 + len(flags)]
    assert [line.split()[0] for line in table] == list(flags)
    for line, values in zip(table, flags.values(), strict=True):
        ids = np.flatnonzero(values).tolist()
        count = line.split()[1]
        assert int(count) == len(ids), line
        if ids:
            assert f"probes {', '.join(map(str, ids))}  (" in line
    assert any(line.split()[0] == "on_cue" and int(line.split()[1]) > 0 for line in table)
    assert "(wrong at the last recorded epoch)" in table[0]
