"""The examples, at a reduced size: the spurious-background story must come out of the data."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cam_callback
from cam_callback import load_run

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


README = (Path(__file__).parent.parent / "README.md").read_text()
# README's story paragraph, sentence by sentence: each number it quotes, and what it is.
STORY_NUMBERS = [
    (r"right at\s+(\d\.\d\d)", "cued_true_probability", 0.03),
    (r"classifies (\d\.\d\d) of training-like images", "train_accuracy", 0.03),
    (r"accuracy falls to (\d\.\d\d)", "val_accuracy", 0.05),
    (r"homer without the red frame, at (\d\.\d\d)", "worst_group_accuracy", 0.1),
    (r"goes from (\d\.\d\d) before training", "cued_focus_before", 0.03),
    (r"to (\d\.\d\d) after epoch 0", "cued_focus_first_epoch", 0.05),
    (r"and (\d\.\d\d) at the end", "cued_focus_last", 0.05),
    (r"at the end, (\d\.\d)x the frame's", "cued_lift_last", 0.2),
    (r"share of the image \((\d\.\d\d)\)", "chance", 0.005),
    (r"probes end at (\d\.\d\d)", "others_focus_last", 0.03),
    (r'"on cue (\d\.\d)x"', "cued_lift_last", 0.2),
    # The interventions (reliance on the frame, and its causal transplant rate and base rate,
    # in %; 13 points is one recipient of homer's 8 pasted images).
    (r"drops p\(homer\) by (\d\.\d\d) before training", "cued_reliance_before", 0.03),
    (r"and by (\d\.\d\d) at the end", "cued_reliance_last", 0.05),
    (r"their probability by at most (\d\.\d\d)", "plain_reliance_last", 0.08),
    (r"their own class by (\d\.\d\d) on average", "red_others_gain_last", 0.1),
    (r"makes (\d+)% of them homer before training", "cued_transplant_before", 13),
    (r"homer before training and (\d+)% at the end", "cued_transplant_last", 13),
    (r"already called homer, (\d+)% of them before training", "cued_base_before", 13),
    (r"of them before training and (\d+)% at the end", "cued_base_last", 13),
    (r"frame: at most (\d+)%", "others_transplant_last", 20),
]


def story_paragraph() -> str:
    start = README.index("This GIF is what `make example` writes")
    return README[start : README.index("`CAMTracker` is a callback")]


@pytest.fixture(scope="module")
def spurious(tmp_path_factory):
    """The example exactly as `make example` runs it (its defaults), once for all checks."""
    out_dir = tmp_path_factory.mktemp("spurious")
    example = load("spurious_background")
    return example, example.main(["--out", str(out_dir)]), out_dir


def test_spurious_background_flags_the_cued_class(spurious):
    example, out, tmp_path = spurious
    labels = out["labels"]
    cued = np.flatnonzero(labels == example.CUED)
    assert out["on_cue"].tolist() == cued.tolist()
    run = load_run(tmp_path)
    assert run.epochs == list(range(-1, 12))  # the state before training, then 12 epochs
    focus = run.metrics["mask_focus"]
    # The story drifts visibly: from the untrained model's map to the last epoch, the
    # cue-bearing class's attention on the cue rises by at least 0.25, probe by probe.
    assert (focus[-1, cued] - focus[0, cued] >= 0.25).all(), focus[:, cued]
    others = np.flatnonzero(labels != example.CUED)
    assert focus[-1, cued].min() > focus[-1, others].max()
    assert out["val_accuracy"] < 0.5  # the shortcut fails once the frame stops going with homer
    # The interventions say the same, causally: homer's probes need the frame, probe by probe.
    reliance, p_true = run.metrics["reliance"], run.metrics["true_class_probability"]
    assert (np.abs(reliance[0, cued]) < 0.05).all(), reliance[0, cued]
    assert (reliance[-1, cued] > 0.8 * p_true[-1, cued]).all(), reliance[-1, cued]
    assert np.flatnonzero(run.flags["relies_on_cue"]).tolist() == cued.tolist()
    plain = np.flatnonzero((labels != example.CUED) & ~out["red"])
    assert (np.abs(reliance[-1, plain]) < 0.15).all(), reliance[-1, plain]
    base = run.metrics["transplant_base"]
    rates = cam_callback.metrics.transplant_rates(run.metrics["transplant"], labels, base)
    assert rates[example.CUED][0] < 0.2 and rates[example.CUED][-1] > 0.8
    # Causal: the red-framed others that are homer already are out of the count (base rate).
    base_rates = cam_callback.metrics.transplant_rates(base, labels)
    assert base_rates[example.CUED][0] < 0.2 and 0.3 < base_rates[example.CUED][-1] < 0.7
    assert (tmp_path / "cam" / "report" / "index.html").is_file()
    assert len(list((tmp_path / "cam" / "animations").glob("probe_*.gif"))) == 12
    assert {p.parent.name for p in tmp_path.rglob("events.out.tfevents.*")} == {
        "train",
        "validation",
        "cam",
    }
    # The live curves carry the same story: the on-cue group's mean and homer's class mean.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "cam"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {
        "cam/mean_mask_lift",
        "cam/on_cue/mean_mask_focus",
        "cam/class_homer/mean_mask_focus",
        "cam/before_training",
        "cam/class_homer/mean_reliance",
        "cam/class_homer/transplant_rate",
        "cam/class_homer/transplant_base_rate",
    } <= tags


def test_readme_evidence_at_the_default_share_comes_from_the_example(spurious):
    """`make example`'s run (masks given, the evidence transplant at its default share)."""
    _, out, _ = spurious
    start = README.index("**Without being told where to look.**")
    text = " ".join(README[start : README.index("\n\n", start)].split())
    (homer,) = re.findall(r"there homer's region makes (\d+)% of the others homer", text)
    assert abs(int(homer) - out["cued_evidence_last"]) <= 10, (homer, out["cued_evidence_last"])
    assert out["cued_evidence_last"] <= out["others_evidence_last"] + 10  # "no more than"


def test_readme_numbers_come_from_the_example(spurious):
    _, out, _ = spurious
    text = " ".join(story_paragraph().split())
    rest = text
    for pattern, key, tol in STORY_NUMBERS:
        found = re.findall(pattern, text)
        assert len(found) == 1, (pattern, found)
        assert abs(float(found[0]) - out[key]) <= tol, (pattern, found[0], key, out[key])
        m = re.search(pattern, rest)  # blank out the number only: the patterns overlap
        rest = rest[: m.start(1)] + rest[m.end(1) :]
    # Every number in the paragraph is one of those checked ("top-3" aside).
    rest = rest.replace("top-3", "").replace("after epoch 0", "")  # names, not figures
    assert re.findall(r"\d", rest) == [], rest
    # The GIF README opens with is this example's probe 0: before training, then 12 epochs.
    gif = Image.open(Path(__file__).parent.parent / "docs" / "spurious_homer.gif")
    assert gif.n_frames == 13
    assert "before training to epoch 11" in README


def test_readme_api_snippet_runs_as_written(tmp_path, monkeypatch):
    section = README[README.index("## The API in ten lines") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n", 10)]
    assert len([ln for ln in code.strip().splitlines() if ln.strip()]) <= 12
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    # A user who copies the snippet sees none of our warnings.
    ours = [w for w in caught if "cam_callback" in w.filename or w.filename == "README.md"]
    assert not ours, [str(w.message) for w in ours]
    run = namespace["run"]
    assert run.epochs == [-1, 0, 1, 2] and run.heatmaps.shape[:2] == (4, 9)
    assert namespace["res"].heatmaps.shape[0] == 8
    assert (tmp_path / "runs" / "a" / "cam" / "animations" / "probe_000.gif").is_file()


def test_every_function_readme_lists_as_taking_head_is_public_and_takes_it():
    import inspect

    start = README.index("When auto cannot know, say it with `head=` on")
    sentence = README[start : README.index(":", start + 50)]
    names = re.findall(r"`(\w+)`", sentence)
    assert "predict_probabilities" in names and len(names) == 6, names
    for name in names:
        assert name in cam_callback.__all__, name
        assert "head" in inspect.signature(getattr(cam_callback, name)).parameters, name


def test_vit_without_keras_hub_says_what_to_install(tmp_path, monkeypatch, capsys):
    example = load("spurious_background")
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # find_spec then finds nothing
    with pytest.raises(SystemExit) as exit_:
        example.main(["--model", "vit", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert 'needs keras-hub: pip install -e ".[vit]"' in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything was trained or written


def test_the_example_prints_signed_changes_and_a_tensorboard_command_that_runs_as_is():
    import importlib.util
    import shlex

    example = load("spurious_background")
    assert [example.moves(v) for v in (0.314, -0.05, -0.004, 0.0, 0.005)] == [
        "drops by 0.31",
        "rises by 0.05",
        "stays within 0.005",
        "stays within 0.005",
        "drops by 0.01",
    ]
    command = shlex.split(example.tensorboard_command("runs/my run"))
    # This Python's own TensorBoard, found with no virtualenv activated.
    assert command[:3] == [sys.executable, "-m", "tensorboard.main"]
    assert Path(sys.executable).is_absolute() and importlib.util.find_spec("tensorboard.main")
    assert command[3:] == ["--logdir", "runs/my run", "--samples_per_plugin", "images=10000"]


def test_tensorflows_start_up_lines_are_dropped_and_other_stderr_kept(tmp_path):
    """TensorFlow's CUDA lines come from absl before TF_CPP_MIN_LOG_LEVEL is read, once per
    library: a stand-in `keras` writes them to file descriptor 2 as TensorFlow's C++ does."""
    import subprocess

    fake = tmp_path / "keras"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:17.1 17609 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.\\n' * 2)\n"
        "os.write(2, b'I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\\n')\n"
        "os.write(2, b'oneDNN custom operations are on. To turn them off, set the environment "
        "variable `TF_ENABLE_ONEDNN_OPTS=0`.\\n')\n"
        "os.write(2, b'a real problem\\n')\n"
        "print('a Python warning', file=__import__('sys').stderr)\n"
    )
    code = f"import runpy; runpy.run_path({str(EXAMPLES / 'spurious_background.py')!r})"
    root = str(EXAMPLES.parent)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), root])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, env=env, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.decode().splitlines() == ["a real problem", "a Python warning"]


def test_make_torch_checks_for_a_local_wheel_without_leaving_a_copy(tmp_path):
    """`make torch` once left a 190 MB copy of the wheel in a new temporary folder per run.
    A stand-in Python logs what make asks of it; TMPDIR must stay empty."""
    import stat
    import subprocess

    calls, tmp = tmp_path / "calls", tmp_path / "tmp"
    tmp.mkdir()
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        '[ "$1" = "-c" ] && exit 1\n'  # no torch installed yet
        # `pip download -d DIR` leaves the wheel in DIR, as the real one does
        'prev=; for a in "$@"; do [ "$prev" = -d ] && touch "$a/torch.whl"; prev=$a; done\n'
        "exit 0\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("VIRTUAL_ENV", None)
    out = subprocess.run(
        ["make", "-s", "-C", str(EXAMPLES.parent), "torch", f"PY={fake}", "TORCH=torch==2.13.0"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    asked = calls.read_text().splitlines()
    assert asked[0] == "-c import torch"
    assert asked[-1].startswith("-m pip install") and asked[-1].endswith("torch==2.13.0")
    assert "--index-url" not in asked[-1]  # the local wheel was found: no trip to PyTorch's index
    assert list(tmp.iterdir()) == []


def test_the_tracker_docs_name_every_method_and_the_default_target():
    import inspect

    doc = " ".join(cam_callback.CAMTracker.__doc__.split())
    method = doc[doc.index("method: ") : doc.index("target: ")]
    # The registry, not a list that falls behind it (it once named 5 of 19).
    assert ":func:`cam_callback.available_methods`" in method
    default = inspect.signature(cam_callback.CAMTracker).parameters["target"].default
    assert default == "predicted"
    assert f'``"{default}"`` (the default)' in doc
    text = " ".join(README.split())
    assert f'Each map explains `target="{default}"` by default' in text
    assert 'target="label"' in (EXAMPLES / "spurious_background.py").read_text()


def test_transfer_learning_explains_a_layer_inside_the_backbone(tmp_path, monkeypatch, capsys):
    import keras
    import tensorflow as tf

    import cam_callback
    from cam_callback import compute_cams

    example = load("transfer_learning")
    weights = []  # the classifier's weights at each recorded epoch: -1, 0, 1
    build_model, on_epoch_end = example.build_model, cam_callback.CAMTracker.on_epoch_end

    def build_and_keep(backbone):
        model = build_model(backbone)
        weights.append(model.get_weights())
        return model

    def keep_weights(self, epoch, logs=None):
        weights.append(self.model.get_weights())
        return on_epoch_end(self, epoch, logs)

    monkeypatch.setattr(example, "build_model", build_and_keep)
    monkeypatch.setattr(cam_callback.CAMTracker, "on_epoch_end", keep_weights)
    out = tmp_path / "run"
    args = ["--out", str(out), "--pretrain", "1280", "--pretrain-epochs", "2", "--train", "160"]
    story = example.main([*args, "--epochs", "1", "--fine-tune-epochs", "1", "--probes", "6"])
    run = story["run"]
    model = build_model(example.build_backbone())  # the architecture, to load each epoch into
    backbone = model.get_layer(run.layer.split("/")[0])
    assert isinstance(backbone, keras.Model)  # the explained layer is inside a nested model
    assert run.layer == f"{backbone.name}/{example.LAYER}"
    # The tracker watched the transfer only: the pretrained backbone under its untrained
    # head (-1), head-only epoch 0, then fine-tuning epoch 1, in one continuous record.
    assert run.epochs == [-1, 0, 1] and len(weights) == 3
    assert run.heatmaps.shape == (3, 6, 8, 8)
    # ...and it started from the pretrained backbone the script saved, not a random one.
    model.set_weights(weights[0])
    saved = keras.saving.load_model(out / "pretrained_backbone.keras")
    for a, b in zip(backbone.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    # The two phases did what they say: the head alone moved in phase 1; in phase 2 every
    # convolution of the backbone moved, but no BatchNorm statistic (frozen, in inference).
    def backbone_weights(i):
        model.set_weights(weights[i])
        return {layer.name: layer.get_weights() for layer in backbone.layers if layer.weights}

    def moved(a, b):
        return any(not np.array_equal(u, v) for u, v in zip(a, b, strict=True))

    before, head_only, fine_tuned = (backbone_weights(i) for i in range(3))
    assert not any(moved(before[k], head_only[k]) for k in before)
    bn = {k for k in before if isinstance(backbone.get_layer(k), keras.layers.BatchNormalization)}
    assert bn and not any(moved(head_only[k], fine_tuned[k]) for k in bn)
    assert all(moved(head_only[k], fine_tuned[k]) for k in set(before) - bn)
    probes, labels, masks = example.make_images(6, 4)  # seed 0 + 4: the probes
    assert run.labels.tolist() == labels.tolist() and run.class_names == example.CLASSES
    assert np.array_equal(run.images, probes.astype(np.uint8))
    assert np.array_equal(run.masks, masks)
    # A softmax head: probabilities are probabilities, and "predicted" is their argmax.
    assert ((run.probabilities >= 0) & (run.probabilities <= 1)).all()
    np.testing.assert_allclose(run.probabilities.sum(-1), 1.0, atol=1e-5)
    assert (run.targets == run.probabilities.argmax(-1)).all()
    # Each epoch's record holds the maps of that epoch's weights: against compute_cams, and
    # against a Grad-CAM taken with a tape written here (the backbone cut at the layer, the
    # head's logit written out as GAP -> x @ W + b).
    inner = backbone.get_layer(example.LAYER)
    cut = keras.Model(backbone.input, [inner.output, backbone.output])
    x = keras.applications.mobilenet_v2.preprocess_input(probes.copy())
    non_zero = []
    for i in range(3):
        model.set_weights(weights[i])
        kernel, bias = model.get_layer("head").get_weights()
        with tf.GradientTape() as tape:
            a, features = cut(x, training=False)
            logits = tf.reduce_mean(features, axis=(1, 2)) @ kernel + bias
            score = tf.reduce_sum(logits * tf.one_hot(run.targets[i], len(example.CLASSES)))
        a64, g64 = (t.numpy().astype(np.float64) for t in (a, tape.gradient(score, a)))
        cam = np.maximum((g64.mean(axis=(1, 2), keepdims=True) * a64).sum(-1), 0.0)
        peak = cam.reshape(6, -1).max(1)[:, None, None]
        np.testing.assert_allclose(
            run.heatmaps[i], np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0), atol=1e-4
        )
        non_zero.append(int((peak > 0).sum()))
        res = compute_cams(model, probes, layer=run.layer, target=run.targets[i])
        np.testing.assert_allclose(run.heatmaps[i], res.heatmaps, atol=1e-5)
        np.testing.assert_allclose(run.probabilities[i], res.probabilities, atol=1e-5)
    assert non_zero[-1] == 6  # no blank map at the end: not a comparison of empty maps
    assert Image.open(out / "cam" / "animations" / "probe_000.gif").n_frames == 3
    # The story, at this reduced size (seeds fixed; margins from seeds 0-3): pretraining
    # learnt task 1 (chance 0.25), the transfer learnt task 2 (chance 0.50; 0.95-1.00 seen),
    # and the last maps land on the shapes well above a flat map's share (2.0-4.6x seen).
    assert story["pretrain_accuracy"] > 0.5
    assert story["accuracy_final"] > 0.8
    focus = run.metrics["mask_focus"]
    assert story["chance"] == pytest.approx(masks.mean())
    assert story["focus_last"] == pytest.approx(focus[-1].mean())
    assert story["focus_last"] > 1.5 * story["chance"]
    # --weights imagenet asks Keras for the ImageNet weights; offline, the script says so
    # and exits with status 2 before training anything.
    asked = []

    def offline(**kwargs):
        asked.append(kwargs["weights"])
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--out", str(tmp_path / "imagenet"), "--weights", "imagenet"])
    assert exit_info.value.code == 2 and asked == ["imagenet"]
    assert "Could not load MobileNetV2's ImageNet weights" in capsys.readouterr().err
    assert not (tmp_path / "imagenet").exists()
