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
            run.heatmaps[-1, i], run.probabilities[-1, i], run.epochs[-1]
        )
        got = np.asarray(Image.open(BytesIO(poster.read_bytes())).convert("RGB"))
        np.testing.assert_array_equal(got, want)
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
