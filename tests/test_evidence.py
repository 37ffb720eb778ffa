"""The evidence transplant against models whose answer is known by construction.

- ``patch_model`` reads a small bright patch wherever it is: p(class 1) =
  sigmoid(A * (mean relu(x - 0.5) - B)). Its map is the patch, so the evidence region is
  the patch, and pasted at its place it makes every recipient class 1; a region of the
  same shape from elsewhere of the (dark) donor moves none.
- ``place_model`` reads one fixed place R (HiResCAM, so the map is exactly R's
  brightness): the region of a bright-R donor is R.
- ``blind_model`` ignores the image (its output is its bias); Eigen-CAM still draws a
  map, so every probe has a region, and no paste moves anything: rates 0.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import cam_callback
from cam_callback import api
from cam_callback import metrics as M
from cam_callback.metrics import evidence as E
from cam_callback.report import class_galleries, gallery, gallery_section
from cam_callback.tracker.pipeline import EvidenceOptions, EvidenceTransplant, evidence_options

SIDE, A, B = 16, 2000.0, 0.01
PATCH = 3


def spatial_input(name: str, bias: float = 0.0) -> tuple:
    inp = keras.Input((SIDE, SIDE, 1))
    conv = keras.layers.Conv2D(1, 1, activation="relu", name=name)
    x = conv(inp)
    conv.set_weights([np.ones((1, 1, 1, 1), np.float32), np.array([bias], np.float32)])
    return inp, x


def softmax_head(x, w1: np.ndarray, b1: float, name: str) -> keras.layers.Layer:
    """Dense(2, softmax) with logit 1 = ``w1 . x + b1`` and logit 0 = 0."""
    dense = keras.layers.Dense(2, activation="softmax", name=name)
    out = dense(x)
    w = np.zeros((len(w1), 2), np.float32)
    w[:, 1] = w1
    dense.set_weights([w, np.array([0.0, b1], np.float32)])
    return out


def patch_model() -> keras.Model:
    inp, x = spatial_input("conv", bias=-0.5)
    out = softmax_head(keras.layers.GlobalAveragePooling2D()(x), np.array([A]), -A * B, "head")
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return model


R = np.zeros((SIDE, SIDE), bool)
R[2:5, 10:14] = True  # twelve pixels, the fixed place


def place_model() -> keras.Model:
    inp, x = spatial_input("conv")
    w1 = np.where(R.ravel(), 4.0, 0.0)
    out = softmax_head(keras.layers.Flatten()(x), w1, -4.0 * 0.5 * R.sum(), "head")
    return keras.Model(inp, out)


def blind_model() -> keras.Model:
    inp, x = spatial_input("conv")
    out = softmax_head(keras.layers.GlobalAveragePooling2D()(x), np.array([0.0]), 1.0, "head")
    return keras.Model(inp, out)


def patch_probes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probes 0-5 class 0 (dark), 6-11 class 1 (a bright patch at a different place each).
    Probe 5 is labelled 0 but carries a patch: the model already calls it 1 (no recipient
    of class 1's evidence: the count is causal)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.3, (12, SIDE, SIDE, 1)).astype(np.float32)
    labels = np.array([0] * 6 + [1] * 6)
    corners = [(1, 1), (2, 9), (9, 3), (11, 11), (6, 6), (4, 12), (12, 2)]
    for i, (y, c) in zip([6, 7, 8, 9, 10, 11, 5], corners, strict=True):
        x[i, y : y + PATCH, c : c + PATCH] = 1.0
    return x, labels, np.array([(y, c) for y, c in corners])


def measure(model, x, labels, method="gradcam", masks=None, options=None):
    res = cam_callback.compute_cams(model, x, layer="conv", method=method, target=labels)
    stage = EvidenceTransplant(x, labels, masks, options or EvidenceOptions())

    def probs(images):
        return api.predict_probabilities(model, images, batch_size=64)

    out = stage.measure(probs, res.heatmaps, res.probabilities, res.targets)
    regions = E.evidence_regions(res.heatmaps, (SIDE, SIDE))
    return out, regions, res, stage


@pytest.fixture(scope="module")
def patch():
    keras.utils.set_random_seed(0)
    x, labels, corners = patch_probes()
    return (x, labels, corners, *measure(patch_model(), x, labels))


def test_a_patch_read_anywhere_is_its_region_and_moves_every_recipient(patch):
    x, labels, corners, out, regions, res, stage = patch
    assert res.probabilities.argmax(1).tolist() == [0] * 5 + [1] * 7
    for i, (y, c) in zip(range(6, 12), corners, strict=False):
        want = np.zeros((SIDE, SIDE), bool)
        want[y : y + PATCH, c : c + PATCH] = True
        np.testing.assert_array_equal(regions[i], want)  # the region is the patch, where it is
    np.testing.assert_array_equal(out["evidence_transplant"][6:], 1.0)
    np.testing.assert_array_equal(out["evidence_control"][6:], 0.0)
    # Class 0's maps are empty (nothing raises its logit): nothing is pasted, nothing moves.
    assert not regions[:6].any()
    np.testing.assert_array_equal(out["evidence_transplant"][:6], 0.0)
    np.testing.assert_array_equal(out["evidence_control"][:6], 0.0)
    # Recipients: class-0 probes the model does not call 1, so never probe 5; 2 N / D = 4
    # (D: the 6 donors with a region); only those run forward.
    assert (out["evidence_recipients"] == 4).all() and stage.passes == 2 * 6 * 4
    rates = E.class_rates(out["evidence_transplant"], res.targets)
    assert rates[1] == 1.0 and rates[0] == 0.0
    flags = M.portable_flag({k: v[None] for k, v in out.items()})["portable_evidence"]
    assert flags.tolist() == [False] * 6 + [True] * 6


def test_pairs_are_causal_and_follow_the_rule_by_hand():
    classes = np.array([1, 1, 0, 0, 0])
    predicted = np.array([1, 1, 0, 1, 0])  # probe 3 (class 0) is already called 1
    d, r = E.evidence_pairs(classes, np.ones(5, bool), classes, predicted, recipients=2)
    # class 0's donors (2, 3, 4) take turns over the class-1 probes not called 0: 0, 1;
    # class 1's donors (0, 1) over the class-0 probes not called 1: 2, 4 (never 3).
    assert list(zip(d.tolist(), r.tolist(), strict=True)) == [
        (2, 0), (2, 1), (3, 0), (3, 1), (4, 0), (4, 1), (0, 2), (0, 4), (1, 2), (1, 4)
    ]  # fmt: skip


def test_a_fixed_place_is_the_region_and_its_control_moves_nothing():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 0.3, (8, SIDE, SIDE, 1)).astype(np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    x[4:, R] = 1.0
    x[4:, 12:, :4] = 0.8  # a bright corner off R: brighter than most, never read
    out, regions, res, _ = measure(place_model(), x, labels, method="hirescam")
    assert res.probabilities.argmax(1).tolist() == labels.tolist()
    for i in range(4, 8):
        np.testing.assert_array_equal(regions[i], R)  # 12 of the 26 top pixels: R, no more
    np.testing.assert_array_equal(out["evidence_transplant"][4:], 1.0)
    np.testing.assert_array_equal(out["evidence_control"][4:], 0.0)


def test_a_model_that_ignores_the_image_has_rates_of_zero():
    keras.utils.set_random_seed(0)
    x, labels, _ = patch_probes()
    out, regions, res, _ = measure(blind_model(), x, labels, method="eigencam")
    assert (res.probabilities.argmax(1) == 1).all()
    assert regions.reshape(12, -1).any(1).all()  # every probe has a region
    # Class 0's donors: class-1 probes, none called 0: pasting moves none of them.
    np.testing.assert_array_equal(out["evidence_transplant"][:6], 0.0)
    np.testing.assert_array_equal(out["evidence_control"][:6], 0.0)
    # Class 1's donors: every other probe is already called 1, so none is a recipient.
    assert np.isnan(out["evidence_transplant"][6:]).all()


def test_regions_controls_and_on_mask_by_hand():
    m = np.zeros((2, 4, 4))
    m[0, 1, 2] = 1.0
    m[1] = np.nan
    regions = E.evidence_regions(m, (4, 4), share=0.125)
    assert regions[0].sum() == 1 and regions[0, 1, 2] and not regions[1].any()
    controls = E.control_regions(regions, seed=3)
    assert controls[0].sum() == 1 and not (controls[0] & regions[0]).any()
    np.testing.assert_array_equal(controls, E.control_regions(regions, seed=3))  # seeded
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 1] = True
    share = E.on_mask_share(regions, mask)
    assert share[0] == 1.0 and np.isnan(share[1])


def test_options_are_checked():
    assert evidence_options(False) is None and evidence_options(True) == EvidenceOptions()
    with pytest.raises(ValueError, match="unknown keys"):
        evidence_options({"shares": 0.2})
    with pytest.raises(ValueError, match=r"evidence\['share'\]"):
        evidence_options({"share": 0.0})
    with pytest.raises(TypeError, match="Received: evidence=3"):
        evidence_options(3)


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    """One fit of the patch model (lr 0) through the tracker, with a mask on each patch."""
    keras.utils.set_random_seed(0)
    x, labels, corners = patch_probes()
    masks = np.zeros((12, SIDE, SIDE), bool)
    for i, (y, c) in zip(range(6, 12), corners, strict=False):
        masks[i, y : y + PATCH, c + 1 : c + PATCH] = True  # two of the patch's three columns
    log = tmp_path_factory.mktemp("evidence")
    tracker = cam_callback.CAMTracker(
        x, labels, log_dir=log, layer="conv", target="label", animate=None,
        class_names=["dark", "patch"], probe_masks=masks, interventions=False,
    )  # fmt: skip
    patch_model().fit(x, labels, epochs=1, batch_size=12, verbose=0, callbacks=[tracker])
    return log, cam_callback.load_run(log)


def test_the_record_tensorboard_flags_and_page_carry_it(patch_run):
    log, run = patch_run
    assert run.epochs == [-1, 0]
    np.testing.assert_array_equal(run.metrics["evidence_transplant"][:, 6:], 1.0)
    np.testing.assert_array_equal(run.metrics["evidence_control"][:, 6:], 0.0)
    np.testing.assert_allclose(run.metrics["evidence_on_mask"][-1, 6:], 2 / 3)
    assert run.meta["evidence"]["threshold"] == 0.5 and run.meta["evidence"]["share"] == 0.1
    assert np.flatnonzero(run.flags["portable_evidence"]).tolist() == list(range(6, 12))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log / "cam"), size_guidance={"tensors": 0})
    acc.Reload()
    value = acc.Tensors("cam/class_patch/evidence_transplant_rate")[-1].tensor_proto.float_val
    assert list(value) == [1.0]
    control = acc.Tensors("cam/class_patch/evidence_control_rate")[-1].tensor_proto.float_val
    assert list(control) == [0.0]
    page = (log / "cam" / "report" / "index.html").read_text()
    assert "What each class looks for" in page and "data:image/png;base64," in page
    assert "its top region alone makes 100% of other probes patch (control 0%)" in page


def test_the_gallery_shows_each_patch_and_the_cam_tab_serves_it(patch_run):
    log, run = patch_run
    g, dark = class_galleries(run)  # the highest last rate first
    assert dark.name == "dark" and dark.strips[0][2] == []  # empty maps: no region to show
    assert g.name == "patch" and g.rates.tolist() == [1.0, 1.0] and g.rose is None
    ((title, epoch, tiles),) = g.strips
    assert epoch == 0 and [t.probe for t in tiles] == [6, 7, 8, 9]
    x, _, corners = patch_probes()
    for t in tiles:
        y, c = corners[t.probe - 6]
        assert t.box == (y, y + PATCH, c, c + PATCH) and t.rate == 1.0 and t.control == 0.0
        assert t.on_mask == pytest.approx(2 / 3)
    assert len(g.mean_maps) == 2
    # An epoch where no probe's map explains the class (target="predicted") has no mean map.
    assert gallery.mean_map_png(run, 0, 7) is None
    assert gallery_section(run).count("<img") == 4 + 2 + 2  # patch tiles, mean maps
    from werkzeug.test import Client

    from cam_callback.tensorboard_plugin import CAMPlugin

    class Ctx:
        logdir = str(log.parent)

    client = Client(CAMPlugin(Ctx()).get_plugin_apps()["/gallery"])
    data = client.get(f"/gallery?run={log.name}").get_json()
    served = data["classes"][0]
    assert served["name"] == "patch" and served["rates"] == [1.0, 1.0]
    assert served["strips"][0]["tiles"][0]["caption"] == "probe 6: 100% (control 0%), 67% on mask"
    assert served["strips"][0]["tiles"][0]["png"].startswith("data:image/png;base64,")


# ---- README's example without masks: the shortcut found without being told where it is ----

README = (Path(__file__).parent.parent / "README.md").read_text()
EXAMPLE = Path(__file__).parent.parent / "examples" / "spurious_background.py"


def evidence_paragraph() -> str:
    start = README.index("**Without being told where to look.**")
    return " ".join(README[start : README.index("\n\n", start)].split())


@pytest.fixture(scope="module")
def no_masks(tmp_path_factory):
    """The example as README says, with --no-masks (its defaults otherwise), once."""
    spec = importlib.util.spec_from_file_location("spurious_background", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    sys.modules["spurious_background"] = example
    spec.loader.exec_module(example)
    out_dir = tmp_path_factory.mktemp("no_masks")
    return example, example.main(["--out", str(out_dir), "--no-masks"]), out_dir


def test_the_example_without_masks_finds_the_frame(no_masks):
    example, out, log = no_masks
    run = cam_callback.load_run(log)
    assert run.masks is None and "mask_focus" not in run.metrics and run.epochs[0] == -1
    cued = np.flatnonzero(out["labels"] == example.CUED)
    assert out["cued_evidence_before"] == 0.0 and out["cued_evidence_last"] > 90
    assert out["cued_evidence_control_last"] < 10 and out["others_evidence_last"] < 50
    assert np.flatnonzero(run.flags["portable_evidence"]).tolist() == cued.tolist()
    homer = next(g for g in class_galleries(run) if g.cls == example.CUED)
    frame = example.frame_mask()
    regions = np.array([t.region for _, _, tiles in homer.strips for t in tiles])
    on_frame = (regions & frame).sum() / regions.sum()
    assert len(regions) == 8 and on_frame > 0.8  # 4 at the end, 4 where the rate rose
    text = evidence_paragraph()
    for pattern, value, tol in [
        (r"(\d+)% of the other probes homer before training", out["cued_evidence_before"], 10),
        (r"and (\d+)% at the end", out["cued_evidence_last"], 10),
        (r"its control makes (\d+)%", out["cued_evidence_control_last"], 10),
        (r"regions at most (\d+)%", out["others_evidence_last"], 15),
        (r"frame: (\d\.\d\d) of their pixels", on_frame, 0.05),
    ]:
        (found,) = re.findall(pattern, text)
        assert abs(float(found) - value) <= tol, (pattern, found, value)


def test_the_cam_tab_draws_the_gallery_in_chromium(patch_run):
    """The tab's own index.js in headless Chromium, every request answered by the plugin's
    routes in this process (no TensorBoard server): the gallery is drawn, captions as text."""
    playwright = pytest.importorskip("playwright.sync_api")
    from test_report import CHROMIUM, FLAGS
    from werkzeug.test import Client

    from cam_callback.tensorboard_plugin import CAMPlugin

    log, _ = patch_run

    class Ctx:
        logdir = str(log.parent)

    apps = CAMPlugin(Ctx()).get_plugin_apps()
    shell = b"<!DOCTYPE html><body><script type=module>import {render} from './index.js'; render();"
    shell += b"</script></body>"

    def answer(route):
        url = route.request.url.split("cam.test", 1)[1]
        path = url.split("?", 1)[0]
        if path == "/":
            return route.fulfill(body=shell, content_type="text/html")
        resp = Client(apps[path]).get(url)
        route.fulfill(status=resp.status_code, body=resp.data, content_type=resp.content_type)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("http://cam.test/**", answer)
            page.goto("http://cam.test/")
            page.wait_for_selector("body[data-ready='1']", timeout=30000)
            page.wait_for_function("document.querySelectorAll('#evidence img').length === 8")
            titles = page.eval_on_selector_all("#evidence h3", "hs => hs.map(h => h.textContent)")
            captions = page.eval_on_selector_all(
                "#evidence figcaption", "cs => cs.map(c => c.textContent)"
            )
        finally:
            browser.close()
    assert not errors, errors
    assert titles[0].startswith("patch: 100% before training -> 100% at epoch 0 (control 0%)")
    assert captions[0] == "probe 6: 100% (control 0%), 67% on mask"
