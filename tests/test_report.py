"""The review page: its content, and a real headless Chromium driving its filters."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from records import make_record

from cam_callback import report
from cam_callback.record import load_run
from cam_callback.report.write import tracker_gif

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def paletted(frame: np.ndarray) -> np.ndarray:
    """``frame`` as the page's stills keep it: 256 colours of Pillow's fast octree, as GIFs."""
    from PIL import Image

    still = Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE)
    return np.asarray(still.convert("RGB"))


def test_rows_flags_and_order(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=4))
    rows = report.probe_rows(run, threshold=0.5)
    assert [r["index"] for r in rows] == list(range(6))
    assert rows[2]["flags"][0] == "misclassified" and rows[2]["pred"] != rows[2]["label"]
    assert "misclassified" not in rows[0]["flags"] and "low_confidence" not in rows[0]["flags"]
    np.testing.assert_allclose(rows[0]["curve"], run.probabilities[:, 0, run.labels[0]], rtol=1e-6)
    ordered = sorted(rows, key=lambda r: (r["priority"], r["index"]))
    wrong = [r for r in ordered if "misclassified" in r["flags"]]
    # Misclassified first, least sure of the true class first among them; then low confidence.
    assert ordered[: len(wrong)] == wrong and 2 in [r["index"] for r in wrong]
    assert [r["true_probability"] for r in wrong] == sorted(r["true_probability"] for r in wrong)
    rest = ordered[len(wrong) :]
    low = [r for r in rest if "low_confidence" in r["flags"]]
    assert rest[: len(low)] == low


def test_page_names_the_score_really_used(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=2, score="probability"))
    gifs = dict.fromkeys(range(run.n_probes), "")
    page = report.render_page(run, report.probe_rows(run, threshold=0.5), gifs, 0.5)
    assert "gradcam of the probability" in page


def test_sparkline_points():
    svg = report.sparkline(np.array([0.0, 1.0]), width=100, height=20)
    assert 'points="2.0,18.0 98.0,2.0"' in svg


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not shutil.which("chromium") and not shutil.os.path.exists(CHROMIUM):
        pytest.fail(
            "Debian's chromium is needed for the page test: apt-get install chromium "
            "(make test installs it)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_page_in_real_browser(tmp_path, browser):
    run = load_run(make_record(tmp_path, n_probes=6, n_epochs=4))
    page_path = report.write_report(run, threshold=0.5)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    assert errors == []
    decoded = page.evaluate(
        "Array.from(document.querySelectorAll('.card img'))"
        ".map(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)"
    )
    assert decoded == [True] * 6
    visible = lambda: page.evaluate(  # noqa: E731
        "Array.from(document.querySelectorAll('.card:not(.hidden)'))"
        ".map(c => Number(c.dataset.index))"
    )
    rows = report.probe_rows(run, 0.5)
    doubt = [r["index"] for r in sorted(rows, key=lambda r: (r["priority"], r["index"]))]
    assert visible() == doubt and "misclassified" in rows[doubt[0]]["flags"]
    assert page.inner_text("#count") == "6 of 6 probes"

    page.select_option("#class-filter", "class_1")
    assert sorted(visible()) == [i for i in range(6) if i % 3 == 1]
    page.select_option("#class-filter", "")
    page.select_option("#flag-filter", "misclassified")
    flagged = [r["index"] for r in rows if "misclassified" in r["flags"]]
    assert sorted(visible()) == sorted(flagged) and 2 in flagged
    assert page.inner_text("#count") == f"{len(flagged)} of 6 probes"
    page.select_option("#flag-filter", "")
    page.select_option("#sort", "index")
    assert visible() == list(range(6))
    page.close()


def test_poster_is_the_last_epoch_and_badges_carry_their_figure(tmp_path):
    from io import BytesIO

    from PIL import Image

    from cam_callback.frames import FrameRenderer

    run = load_run(
        make_record(tmp_path, n_probes=6, n_epochs=4, baseline=True, masks=True, mask_kind="cue")
    )
    page = report.write_report(run)
    html_text = page.read_text()
    rows = report.probe_rows(run, 0.5)
    cue = [r for r in rows if "on_cue" in r["flags"]]
    assert cue, "the fixture pulls class 0 onto its mask"
    for r in cue:
        badge = f"on cue {r['lift']:.1f}x"
        assert r["badges"]["on_cue"] == badge and f">{badge}</span>" in html_text
    assert "before training to epoch 3" in html_text
    for i in range(run.n_probes):
        poster = page.parent / "index_files" / f"probe_{i:03d}_last.png"
        assert f'src="index_files/probe_{i:03d}_last.png"' in html_text
        label = int(run.labels[i])
        want = FrameRenderer(run.images[i], label=label, class_names=run.class_names).draw(
            run.heatmaps[-1, i],
            run.probabilities[-1, i],
            run.epochs[-1],
            target=int(run.targets[-1, i]),
        )
        got = np.asarray(Image.open(BytesIO(poster.read_bytes())).convert("RGB"))
        np.testing.assert_array_equal(got, paletted(want))
    assert report.badge_text("low_confidence", {"confidence": 0.413}) == "low confidence 0.41"
    assert report.badge_text("left_mask", {"lift": 0.84}) == "left mask 0.8x"


def test_attention_sort_and_poster_play_in_real_browser(tmp_path, browser):
    run = load_run(
        make_record(tmp_path, n_probes=6, n_epochs=4, baseline=True, masks=True, mask_kind="cue")
    )
    page_path = report.write_report(run)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    page.select_option("#sort", "attention")
    order = page.evaluate(
        "Array.from(document.querySelectorAll('.card:not(.hidden)')).map(c => +c.dataset.index)"
    )
    rows = report.probe_rows(run, 0.5)
    assert order == [r["index"] for r in sorted(rows, key=lambda r: (r["attention"], r["index"]))]
    flagged = [r["index"] for r in rows if "on_cue" in r["flags"]]
    assert sorted(order[: len(flagged)]) == sorted(flagged)
    img = page.locator(".card[data-index='0'] img")
    assert img.get_attribute("src").endswith("_last.png")
    img.hover()
    assert page.evaluate("document.querySelector(\".card[data-index='0'] img\").src").endswith(
        "probe_000.gif"
    )
    page.mouse.move(0, 0)
    assert errors == []


def test_hostile_names_and_paths(tmp_path, browser):
    log = make_record(tmp_path / "a b#c", n_probes=3, n_epochs=2)
    meta = log / "cam" / "record.json"
    data = json.loads(meta.read_text())
    data["class_names"] = ["\u202eevil\u202c", "nul\x00name\u2066", "x" * 5000]
    data["layer"] = "</script><script>alert(1)</script>\"'&"
    meta.write_text(json.dumps(data))
    run = load_run(log)
    page_path = report.write_report(run, tmp_path / "out dir" / "run#1.html")
    text = page_path.read_text()
    for hidden in ("\u202e", "\u202c", "\u2066", "\x00"):
        assert hidden not in text
    assert "evil" in text and "nulname" in text
    assert "x" * 47 + "…" in text and "x" * 48 not in text
    assert 'data-gif="run%231_files/probe_000.gif"' in text  # played on hover
    assert 'src="run%231_files/probe_000_last.png"' in text  # the poster
    page = browser.new_page()
    errors, dialogs = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    assert errors == [] and dialogs == []
    decoded = page.evaluate(
        "Array.from(document.querySelectorAll('.card img'))"
        ".map(i => i.complete && i.naturalWidth > 0)"
    )
    assert decoded == [True] * 3
    gifs = page.evaluate(  # the animations load from the encoded path too
        "Promise.all(Array.from(document.querySelectorAll('.card img')).map(i => new Promise("
        "r => { const g = new Image(); g.onload = () => r(g.naturalWidth > 0);"
        " g.onerror = () => r(false); g.src = i.dataset.gif; })))"
    )
    assert gifs == [True] * 3
    page.hover(".card img")  # the GIF behind the "#" in its folder's name loads too
    page.wait_for_function(
        "(() => { const i = document.querySelector('.card img');"
        " return i.src.endsWith('.gif') && i.complete && i.naturalWidth > 0; })()"
    )
    summary = json.loads(page.evaluate("document.getElementById('summary').textContent"))
    assert summary["layer"] == data["layer"] and summary["epochs"] == [0, 1]
    page.close()


def _saved_evaluation(folder):
    from cam_callback.evaluation import Evaluation

    return Evaluation(
        {
            "random": {"deletion_auc": 0.61, "insertion_auc": 0.40},
            "gradcam": {"deletion_auc": 0.22, "insertion_auc": 0.71},
            "<b>x</b>": {"deletion_auc": 0.35, "insertion_auc": 0.75},
        },
        settings={"n_images": 32},
    ).save(folder)


def test_page_ranks_methods_saved_beside_the_run(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=2))
    assert report.methods_section(run) == ""  # nothing saved: no section
    _saved_evaluation(tmp_path)
    section = report.methods_section(run)
    rows = section.split("<tr>")[2:]
    assert [r.split("<code>")[1].split("</code>")[0] for r in rows] == [
        "gradcam",
        "&lt;b&gt;x&lt;/b&gt;",  # a hostile name is escaped
        "random",
    ]
    assert "<td><b>0.22</b></td>" in rows[0] and "<td><b>0.75</b></td>" in rows[1]
    assert "32 images" in section
    gifs = dict.fromkeys(range(run.n_probes), "")
    page = report.render_page(run, report.probe_rows(run, threshold=0.5), gifs, 0.5)
    assert section in page
    (tmp_path / "evaluation.json").write_text("{")
    assert "damaged" in report.methods_section(run)


def test_methods_section_imports_no_tensorflow(tmp_path):
    import subprocess
    import sys

    make_record(tmp_path, n_epochs=2)
    _saved_evaluation(tmp_path)
    code = (
        "import sys; from cam_callback import report, record;"
        f"s = report.methods_section(record.load_run({str(tmp_path)!r}));"
        "assert 'gradcam' in s;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


GOOD_SCORES = {"gradcam": {"deletion_auc": 0.2}, "random": {"deletion_auc": 0.5}}
DAMAGED_EVALUATIONS = {
    "scores_a_list": json.dumps({"scores": [1, 2]}),
    "row_a_string": json.dumps({"scores": {"gradcam": "0.2"}}),
    "value_a_string": json.dumps({"scores": {"gradcam": {"deletion_auc": "0.2"}}}),
    "value_a_bool": json.dumps({"scores": {"gradcam": {"deletion_auc": True}}}),
    "value_10_400": '{"scores": {"gradcam": {"deletion_auc": 1' + "0" * 400 + "}}}",
    "value_5000_digits": '{"scores": {"gradcam": {"deletion_auc": ' + "9" * 5000 + "}}}",
    "deep": '{"scores": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "not_an_object": "[1, 2, 3]",
    "bad_utf8": b'{"scores": "\xff\xfe"}',
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", [*DAMAGED_EVALUATIONS, "fifo", "dev_zero", "folder", "sparse"])
def test_a_damaged_evaluation_json_is_said_on_the_page(tmp_path, case):
    """Wrong types, 10**400, deep nesting, special files: `report` still writes the page,
    and its methods section says the file is damaged."""
    make_record(tmp_path, n_epochs=2)
    file = tmp_path / "evaluation.json"
    if case == "fifo":
        os.mkfifo(file)
    elif case == "dev_zero":
        os.symlink("/dev/zero", file)
    elif case == "folder":
        file.mkdir()
    elif case == "sparse":
        with open(file, "wb") as f:
            f.truncate(3 * 2**30)
    else:
        text = DAMAGED_EVALUATIONS[case]
        file.write_bytes(text if isinstance(text, bytes) else text.encode())
    page = report.write_report(tmp_path, tmp_path / "page" / "index.html")
    html = page.read_text()
    assert '<section class="methods"><p>evaluation.json is damaged: ' in html
    assert "<main>" in html and html.count('<article class="card') == 6


def test_evaluation_extras_the_page_does_not_show_cannot_break_it(tmp_path):
    """The page reads only scores and settings: damaged per-image lists or settings, and
    non-finite scores, still give the ranking."""
    run = load_run(make_record(tmp_path, n_epochs=2))
    data = {
        "scores": {**GOOD_SCORES, "nan": {"deletion_auc": float("nan")}},
        "per_image": -1,
        "settings": [1, 2],
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(data))
    section = report.methods_section(run)
    rows = section.split("<tr>")[2:]
    names = [r.split("<code>")[1].split("</code>")[0] for r in rows]
    assert sorted(names) == ["gradcam", "nan", "random"] and names.index("gradcam") < names.index(
        "random"
    )
    assert "on ? images" in section and "<td>nan</td>" in section


def test_a_non_finite_prediction_is_never_a_right_card(tmp_path):
    """argmax of a NaN row is 0: the probes of class 0 must not be drawn right (green)."""
    make_record(tmp_path, n_probes=6, n_epochs=2)
    last = tmp_path / "cam" / "epochs" / "epoch_000001.npz"
    with np.load(last) as f:
        arrays = dict(f)
    arrays["probabilities"][:] = np.nan
    np.savez(last, **arrays)
    run = load_run(tmp_path)
    rows = report.probe_rows(run, 0.5)
    assert [r["pred"] for r in rows] == [0] * 6 and not any(r["finite"] for r in rows)
    page = report.render_page(run, rows, dict.fromkeys(range(6), ""), 0.5)
    assert page.count('<article class="card wrong"') == 6


# ---------------------------------------------------------------------- what the maps explain


def _explained_run(tmp_path):
    """A run with a baseline whose record says the maps explain the predicted class and
    that the model was handed back with epoch 1's weights (restore_best_weights)."""
    run = load_run(make_record(tmp_path, n_probes=6, n_epochs=4, baseline=True))
    run.meta["target"] = "predicted"
    run.meta["final_weights_epoch"] = 1
    return run


def test_cards_and_header_say_which_class_each_map_explains(tmp_path):
    run = _explained_run(tmp_path)
    # A map may explain another class than the prediction (a `target` given per probe).
    run.targets[-1, 2] = (run.probabilities[-1, 2].argmax() + 1) % 3
    rows = report.probe_rows(run, 0.5)
    page = report.render_page(run, rows, dict.fromkeys(range(6), "g.gif"), 0.5)
    assert '<span id="target-rule">each map explains the predicted class</span>' in page
    want = run.class_name(int(run.targets[-1, 2]))
    assert rows[2]["target_name"] == want != rows[2]["pred_name"]
    card = report.card(rows[2], "g.gif", "p.png")
    assert f'map: <b class="map">{want}</b>' in card and 'id="probe-002"' in card
    assert report.target_rule({"target": "label"}) == "the true class"
    assert report.target_rule({"target": 2}, ["a", "b", "cat"]) == "class cat"
    # Which epoch's weights the model holds, next to the last frame's epoch.
    assert (
        '<span id="final-weights">the model holds the weights of epoch 1, not those of the '
        "last frame (epoch 3)</span>" in page
    )
    run.meta["final_weights_epoch"] = 3
    assert report.weights_note(run) == "the model holds the weights of the last frame (epoch 3)"
    del run.meta["final_weights_epoch"]
    assert report.weights_note(run) == ""


def test_the_poster_caption_names_the_mapped_class(tmp_path):
    from io import BytesIO

    from PIL import Image

    from cam_callback.frames import FrameRenderer

    run = _explained_run(tmp_path)
    got = np.asarray(Image.open(BytesIO(report.last_frame_png(run, 2))).convert("RGB"))
    r = FrameRenderer(run.images[2], label=int(run.labels[2]), class_names=run.class_names)
    want = r.draw(run.heatmaps[-1, 2], run.probabilities[-1, 2], 3, target=int(run.targets[-1, 2]))
    np.testing.assert_array_equal(got, paletted(want))
    plain = r.draw(run.heatmaps[-1, 2], run.probabilities[-1, 2], 3)
    assert not np.array_equal(got, paletted(plain))  # the "map: ..." piece is drawn


def test_the_empty_map_flag_is_shown_with_its_explanation(tmp_path):
    run = load_run(make_record(tmp_path, n_epochs=2))
    row = dict(report.probe_rows(run, 0.5)[0])
    row["flags"] = ["empty_map"]
    row["badges"] = {"empty_map": report.badge_text("empty_map", {})}
    card = report.card(row, "g.gif", "p.png")
    help_text = report.FLAG_HELP["empty_map"]
    assert "all zero" in help_text and "layer" in help_text
    assert f'<span class="badge empty_map" title="{help_text}">empty map</span>' in card


# ---------------------------------------------------------------------- the data map


def _hand_point(run, i):
    """Mean and population std of p(true) over the trained epochs, by hand."""
    values = [float(run.probabilities[e, i, run.labels[i]]) for e in range(1, len(run.epochs))]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return mean, std


def test_datamap_points_sit_at_hand_computed_mean_and_std(tmp_path):
    import xml.etree.ElementTree as ET

    run = _explained_run(tmp_path)
    assert run.epochs[0] == -1  # the baseline is left out of the map
    rows = report.probe_rows(run, 0.5)
    points = report.datamap_points(run, {r["index"]: r["flags"] for r in rows})
    svg = report.datamap_svg(points, {r["index"]: r["label_name"] for r in rows})
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.fromstring(svg)
    links = root.findall("s:a", ns)
    assert len(links) == 6
    for a in links:
        i = int(a.get("data-probe"))
        assert a.get("href") == f"#probe-{i:03d}"
        c = a.find("s:circle", ns)
        mean, std = _hand_point(run, i)
        # The plot spans x 46..428 for std 0..0.5 and y 12..240 for mean 1..0.
        assert float(c.get("cx")) == pytest.approx(46 + std / 0.5 * 382, abs=0.01)
        assert float(c.get("cy")) == pytest.approx(12 + (1 - mean) * 228, abs=0.01)
        region = "ambiguous" if std >= 0.2 else ("easy" if mean >= 0.5 else "hard")
        assert c.get("data-region") == region
        first = rows[i]["flags"][0] if rows[i]["flags"] else "none"
        assert c.get("class") == f"pt {first}"
        assert c.get("fill") == report.datamap.FLAG_COLOURS[first]
    assert {t.text for t in root.findall("s:text", ns)} >= {"easy", "ambiguous", "hard"}


def test_datamap_leaves_out_a_non_finite_probe_and_says_so(tmp_path):
    run = load_run(make_record(tmp_path, n_probes=4, n_epochs=3))
    run.probabilities[1, 3] = np.nan
    points = report.datamap_points(run, {})
    assert [p.index for p in points] == [0, 1, 2]
    assert "1 probe with a non-finite probability is not shown." in report.datamap_legend(
        points, 4
    )


def test_datamap_in_chromium_links_points_to_cards_coloured_by_flag(tmp_path, browser):
    run = _explained_run(tmp_path)
    rows = report.probe_rows(run, 0.5)
    page_path = report.write_report(run, threshold=0.5)
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    assert page.evaluate("document.querySelectorAll('svg.datamap circle').length") == 6
    wrong = next(r["index"] for r in rows if r["flags"][:1] == ["misclassified"])
    fills = page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('svg.datamap a')).map("
        "a => [a.dataset.probe, getComputedStyle(a.querySelector('circle')).fill]))"
    )
    assert fills[str(wrong)] == "rgb(255, 92, 108)"  # FLAG_COLOURS["misclassified"]
    clean = [r["index"] for r in rows if not r["flags"]]
    for i in clean:
        assert fills[str(i)] == "rgb(76, 196, 106)"  # no flag
    # A click on a point goes to its card, even when a filter hid that card.
    page.select_option("#flag-filter", "misclassified")
    target = next(r["index"] for r in rows if "misclassified" not in r["flags"])
    page.click(f"svg.datamap a[data-probe='{target}'] circle", force=True)
    page.wait_for_function(f"location.hash === '#probe-{target:03d}'")
    shown = page.evaluate(
        "(() => { const c = document.querySelector(':target');"
        " return [+c.dataset.index, c.classList.contains('hidden')]; })()"
    )
    assert shown == [target, False]
    assert all(u.startswith("file:") for u in requests)
    page.close()


def test_a_large_page_animates_the_probes_that_matter_and_shares_the_tracker_gifs(tmp_path):
    """Issue 31: the page draws at most `max_animated` animations, the doubtful first, links
    the tracker's fresh GIFs (same inode, no copy) and leaves no file of an earlier page."""
    from cam_callback import animate

    run = load_run(make_record(tmp_path, n_probes=10, n_epochs=2))
    rows = report.probe_rows(run, 0.5)
    wrong = [r["index"] for r in rows if "misclassified" in r["flags"]]
    animated = report.animated_probes(rows, 2)
    assert len(wrong) >= 2 and len(animated) == 2 and set(animated) <= set(wrong)
    tracker = animate.render_animations(run, probes=animated, grid=False)
    stale = tracker[1]
    os.utime(stale, ns=(1, 1))  # older than the last epoch: not what the page speaks of
    files = run.path / "report" / "index_files"
    files.mkdir(parents=True)
    (files / "probe_009.gif").write_bytes(b"an earlier page's")
    page = report.write_report(run, max_animated=2)
    assert sorted(p.name for p in files.glob("*.gif")) == [f"probe_{i:03d}.gif" for i in animated]
    assert len(list(files.glob("*_last.png"))) == 10
    shared = files / tracker[0].name
    assert shared.stat().st_ino == tracker[0].stat().st_ino  # a hardlink: one copy on disk
    assert (files / stale.name).stat().st_ino != stale.stat().st_ino  # drawn again
    text = page.read_text()
    assert text.count("data-gif=") == 2 and text.count('class="still"') == 8
    assert "2 probes animated (the most doubtful and flagged), 8 shown as stills" in text
    with pytest.raises(ValueError, match="`max_animated` must be an int >= 0"):
        report.write_report(run, max_animated=-1)


def test_the_page_follows_no_linked_animations_folder_out_of_the_record(tmp_path):
    """A record whose animations/ is a link elsewhere: the page draws its own GIFs rather
    than link or copy files from outside the record; a foreign file named like a probe
    beyond the run's probes is left alone."""
    from cam_callback import animate

    run = load_run(make_record(tmp_path / "a", n_probes=3, n_epochs=2))
    elsewhere = tmp_path / "elsewhere"
    outside = animate.render_animations(run, out_dir=elsewhere, probes=[0], grid=False)[0]
    (run.path / "animations").symlink_to(elsewhere, target_is_directory=True)
    assert tracker_gif(run, 0) is None
    files = run.path / "report" / "index_files"
    files.mkdir(parents=True)
    (files / "probe_1500.gif").write_bytes(b"not this page's")
    report.write_report(run)
    assert (files / "probe_000.gif").stat().st_ino != outside.stat().st_ino
    assert (files / "probe_1500.gif").read_bytes() == b"not this page's"


def test_the_flag_filter_names_each_flag_once_and_plainly(tmp_path):
    """Issue 31: "relies on_cue" stood beside "on cue" and "left mask" in the filter."""
    import re

    from cam_callback.metrics import FLAG_NAMES

    page = report.write_report(load_run(make_record(tmp_path, n_epochs=2)))
    select = re.search(r'<select id="flag-filter">(.*?)</select>', page.read_text(), re.S)
    options = re.findall(r'<option value="(\w*)">([^<]*)</option>', select.group(1))
    labels = dict(options[2:])
    assert list(labels) == list(FLAG_NAMES) and len(set(labels.values())) == len(labels)
    assert labels["on_cue"] == "attention on the cue"
    assert labels["relies_on_cue"] == "relies on the cue (removal test)"
    assert not any("_" in text for text in labels.values())
