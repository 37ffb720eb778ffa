"""The CAM dashboard: found through its entry point by a real `tensorboard` server on loopback,
and driven in headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")
from records import make_record
from test_report import CHROMIUM, FLAGS

from cam_callback import report
from cam_callback.metrics import epoch_metrics
from cam_callback.record import RecordWriter, load_run
from cam_callback.tensorboard_plugin import CAMPlugin, discover_runs

ROOT = Path(__file__).parent.parent
HOSTILE = ['<img src=x onerror="window.__pwned=1">', 'a"b&c', "</script><b>x</b>"]


def entry_point() -> EntryPoint:
    """The `tensorboard_plugins` entry point as pyproject.toml declares it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (name, value), *rest = meta["project"]["entry-points"]["tensorboard_plugins"].items()
    assert rest == []
    return EntryPoint(name=name, value=value, group="tensorboard_plugins")


def test_entry_point_loads_the_plugin():
    ep = entry_point()
    assert ep.name == "cam" and ep.load() is CAMPlugin
    assert CAMPlugin.plugin_name == "cam"
    meta = CAMPlugin.frontend_metadata(CAMPlugin(_Context("")))
    assert meta.tab_name == "CAM" and meta.es_module_path == "/index.js"
    # The static files ship as package data.
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "tensorboard_plugin/static/*" in package_data["package-data"]["cam_callback"]


def test_plugin_imports_no_tensorflow():
    code = (
        "import sys, cam_callback.tensorboard_plugin as p; p.CAMPlugin; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert out.stdout.strip() == "[]"


class _Context:
    def __init__(self, logdir):
        self.logdir = logdir


def test_discover_runs_names_every_record(tmp_path):
    make_record(tmp_path / "a", n_epochs=1)
    make_record(tmp_path / "deep" / "b", n_epochs=1)
    (tmp_path / ".hidden" / "cam").mkdir(parents=True)
    (tmp_path / ".hidden" / "cam" / "record.json").write_text("{}")
    (tmp_path / "c" / "cam").mkdir(parents=True)  # no record.json: not a record
    found = discover_runs(tmp_path)
    assert found == {"a": tmp_path / "a" / "cam", "deep/b": tmp_path / "deep" / "b" / "cam"}
    # A record in the logdir itself is named after the folder (`make tensorboard`), not ".".
    assert discover_runs(tmp_path / "a") == {"a": tmp_path / "a" / "cam"}
    assert discover_runs(tmp_path / "missing") == {}
    assert CAMPlugin(_Context(str(tmp_path))).is_active()
    assert not CAMPlugin(_Context(str(tmp_path / "c"))).is_active()


# ---------------------------------------------------------------------- a real server


def _env(extra: Path | None = None) -> dict:
    env = dict(os.environ)
    paths = ([str(extra)] if extra else []) + [str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _dist_info(site: Path) -> Path:
    """Package metadata for this source tree, built from pyproject.toml, so TensorBoard's own
    entry-point discovery finds the plugin whether or not the package is pip-installed (an
    editable install of this tree yields the same entry point; this one shadows it)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = site / f"cam_callback-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    lines = ["[tensorboard_plugins]"]
    lines += [f"{k} = {v}" for k, v in meta["entry-points"]["tensorboard_plugins"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def _hostile_record(log_dir: Path) -> Path:
    return make_record(
        log_dir,
        n_probes=6,
        n_epochs=4,
        baseline=True,
        masks=True,
        mask_kind="cue",
        class_names=HOSTILE,
        fingerprint="same",
    )


def _append_epoch(log_dir: Path, epoch: int) -> None:
    """One more epoch, as a tracker still training would write it."""
    run = load_run(log_dir)
    rng = np.random.default_rng(epoch)
    maps = rng.random(run.heatmaps.shape[1:]).astype(np.float32)
    probs = rng.dirichlet(np.ones(run.probabilities.shape[2]), run.n_probes)
    values = epoch_metrics(maps, probs, labels=run.labels, masks=run.masks)
    RecordWriter(log_dir).write_epoch(
        epoch, heatmaps=maps, probabilities=probs, targets=probs.argmax(1), metrics=values
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    _hostile_record(logs / "a")
    make_record(logs / "b", n_probes=6, n_epochs=3, seed=4, fingerprint="same", class_names=HOSTILE)
    make_record(logs / "other", n_probes=3, n_epochs=2, fingerprint="else")
    site = _dist_info(tmp_path_factory.mktemp("site"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logs),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(site),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        listing = {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(base + "/data/plugins_listing", timeout=5) as r:
                    listing = json.loads(r.read())
                if "cam" in listing:
                    break
            except OSError:
                pass
            time.sleep(1)
        if "cam" not in listing:
            proc.kill()
            raise AssertionError(f"no CAM plugin in {list(listing)}: {proc.stderr.read()[-3000:]}")
        yield base, logs, listing
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_tab_listed_active_and_loaded_from_the_entry_point(server):
    base, _, listing = server
    cam = listing["cam"]
    assert cam["enabled"] is True and cam["tab_name"] == "CAM"
    assert cam["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": "/data/plugin/cam/index.js",
    }
    status, _, body = get(base + "/data/plugin/cam/runs")
    data = json.loads(body)
    runs = {r["name"]: r for r in data["runs"]}
    assert status == 200 and set(runs) == {"a", "b", "other"}
    from cam_callback.metrics import FLAG_NAMES

    assert data["flags"] == list(FLAG_NAMES)
    assert runs["a"]["epochs"] == [-1, 0, 1, 2, 3] and runs["a"]["has_baseline"] is True
    assert runs["a"]["class_names"] == HOSTILE


def test_data_routes_agree_with_the_record(server):
    base, logs, _ = server
    status, _, body = get(base + "/data/plugin/cam/probes?run=a")
    data = json.loads(body)
    run = load_run(logs / "a")
    rows = report.probe_rows(run, 0.5)
    assert status == 200 and data["epochs"] == run.epochs
    for got, want in zip(data["probes"], rows, strict=True):
        np.testing.assert_allclose(got["curve"], want["curve"], atol=1e-5)
        assert got["flags"] == want["flags"] and got["badges"] == want["badges"]
        assert got["pred"] == run.probabilities[:, want["index"]].argmax(-1).tolist()
        assert got["map"] == run.targets[:, want["index"]].tolist()
        np.testing.assert_allclose(
            got["p_pred"], run.probabilities[:, want["index"]].max(-1), atol=1e-5
        )
    status, ctype, png = get(base + "/data/plugin/cam/frame?run=a&probe=3&epoch=-1")
    assert status == 200 and ctype == "image/png" and png[:4] == b"\x89PNG"
    from io import BytesIO

    from PIL import Image

    from cam_callback.frames import FrameRenderer

    # No caption strip: the tab writes the caption as text, sharp at any scale.
    want = FrameRenderer(
        run.images[3], label=int(run.labels[3]), class_names=run.class_names, caption=False
    )
    frame = want.draw(
        run.heatmaps[0, 3], run.probabilities[0, 3], -1, target=int(run.targets[0, 3])
    )
    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(png)).convert("RGB")), frame)


@pytest.mark.parametrize(
    "query,code",
    [
        ("frame?run=a&probe=abc&epoch=0", 400),
        ("frame?run=a&probe=0", 400),
        ("frame?probe=0&epoch=0", 400),
        ("frame?run=a&probe=99&epoch=0", 404),
        ("frame?run=a&probe=-1&epoch=0", 404),
        ("frame?run=a&probe=0&epoch=77", 404),
        ("frame?run=a&probe=0&epoch=99999999999999999999", 400),
        ("frame?run=..%2F..%2Fetc&probe=0&epoch=0", 404),
        ("frame?run=%00&probe=0&epoch=0", 400),
        ("probes?run=nope", 404),
        ("probes", 400),
        ("datamap?run=nope", 404),
        ("datamap", 400),
    ],
)
def test_bad_requests_answer_4xx_without_a_traceback(server, query, code):
    base, _, _ = server
    status, _, body = get(f"{base}/data/plugin/cam/{query}")
    assert status == code, body[:300]
    assert b"Traceback" not in body and b'File "' not in body


def test_an_unreadable_record_is_a_404_not_a_crash(server, tmp_path):
    base, logs, _ = server
    broken = logs / "broken" / "cam"
    broken.mkdir(parents=True)
    (broken / "record.json").write_text('{"format": "cam-callback-record", "version": 1}')
    (broken / "probes.npz").write_bytes(b"not a zip")
    try:
        time.sleep(2.5)  # past the discovery cache
        status, _, body = get(base + "/data/plugin/cam/probes?run=broken")
        assert status == 404 and b"unreadable" in body and b"Traceback" not in body
        status, _, body = get(base + "/data/plugin/cam/runs")
        runs = {r["name"]: r for r in json.loads(body)["runs"]}
        assert status == 200 and "error" in runs["broken"] and runs["a"]["epochs"]
    finally:
        import shutil

        shutil.rmtree(logs / "broken")


# ---------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _plugin_frame(page):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "plugin_entry.html" in frame.url and "name=cam" in frame.url:
                frame.wait_for_selector("body[data-ready='1']", timeout=30000)
                return frame
        time.sleep(0.2)
    raise AssertionError(f"no CAM iframe among {[f.url for f in page.frames]}")


def _loaded(frame):
    """Waits until every frame image has loaded; returns their src and a pixel checksum."""
    frame.wait_for_function(
        "Array.from(document.querySelectorAll('img.frame'))"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30000,
    )
    return frame.evaluate(
        """() => Array.from(document.querySelectorAll('.card:not(.hidden) img.frame')).map(i => {
          const c = document.createElement('canvas');
          c.width = i.naturalWidth; c.height = i.naturalHeight;
          const g = c.getContext('2d'); g.drawImage(i, 0, 0);
          const d = g.getImageData(0, 0, c.width, c.height).data;
          let s = 0; for (let k = 0; k < d.length; k += 7) s = (s * 31 + d[k]) % 1000000007;
          return [i.closest('.card').dataset.index, new URL(i.src).search, s];
        })"""
    )


def _visible(frame):
    return frame.evaluate(
        "Array.from(document.querySelectorAll('.card:not(.hidden)')).map(c => +c.dataset.index)"
    )


def _set_epoch(frame, pos):
    frame.evaluate(
        "p => { const s = document.getElementById('epoch'); s.value = String(p);"
        " s.dispatchEvent(new Event('input')); }",
        pos,
    )


def test_dashboard_in_chromium(server, browser):
    base, logs, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, requests = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "/plugin/cam" in m.text else None,
    )
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/#cam")
    # The tab is listed in TensorBoard's header and is the active dashboard.
    page.wait_for_selector("text=CAM", timeout=60000)
    frame = _plugin_frame(page)
    frame.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    assert frame.evaluate("document.getElementById('run-a').value") == "a"
    run = load_run(logs / "a")
    n_epochs = len(run.epochs)
    assert frame.evaluate("+document.getElementById('epoch').max") == n_epochs - 1
    assert len(_visible(frame)) == 6

    # Every epoch's frames load, and each slider move changes every probe's frame.
    seen = []
    for pos in range(n_epochs):
        _set_epoch(frame, pos)
        label = frame.inner_text("#epoch-label")
        assert label == ("before training" if pos == 0 else f"epoch {run.epochs[pos]}")
        shot = _loaded(frame)
        assert len(shot) == 6
        assert all(f"epoch={run.epochs[pos]}" in src for _, src, _ in shot)
        seen.append({i: s for i, _, s in shot})
    for before, after in zip(seen, seen[1:], strict=False):
        assert all(before[i] != after[i] for i in before), (before, after)
    # The current epoch is marked on each probability curve.
    _set_epoch(frame, 1)
    cx = frame.evaluate(
        "Array.from(document.querySelectorAll('.curve circle')).map(c => +c.getAttribute('cx'))"
    )
    assert len(cx) == 6 and len(set(cx)) == 1 and cx[0] > 2

    # Play moves the slider by itself; pause stops it.
    frame.click("#play")
    frame.wait_for_function("document.body.dataset.epoch !== '0'", timeout=5000)
    frame.click("#play")
    assert frame.inner_text("#play") == "Play"

    # Filters and sorting, with the hostile class names shown as text, never as markup.
    rows = report.probe_rows(run, 0.5)
    names = frame.evaluate(
        "Array.from(document.querySelectorAll('#class-filter option')).map(o => o.textContent)"
    )
    assert sorted(names[1:]) == sorted(HOSTILE)
    flag_options = frame.evaluate(
        "Array.from(document.querySelectorAll('#flag-filter option')).map(o => o.value)"
    )
    from cam_callback.metrics import FLAG_NAMES

    assert flag_options == ["", "any", *FLAG_NAMES]
    labels = frame.evaluate(
        "Array.from(document.querySelectorAll('#flag-filter option')).map(o => o.textContent)"
    )
    assert labels[2:] == [report.flag_label(n) for n in FLAG_NAMES]
    assert not any("_" in t for t in labels) and len(set(labels)) == len(labels)
    assert frame.evaluate("window.__pwned") is None
    assert frame.evaluate("document.querySelectorAll('img[src=x], .card b b').length") == 0
    frame.select_option("#class-filter", HOSTILE[0])
    assert sorted(_visible(frame)) == [i for i in range(6) if i % 3 == 0]
    frame.select_option("#class-filter", "")
    frame.select_option("#flag-filter", "on_cue")
    on_cue = [r["index"] for r in rows if "on_cue" in r["flags"]]
    assert on_cue and sorted(_visible(frame)) == on_cue
    assert frame.inner_text("#count").strip() == f"{len(on_cue)} of 6 probes"
    badge = frame.inner_text(f".card[data-index='{on_cue[0]}'] .badge.on_cue")
    assert badge == rows[on_cue[0]]["badges"]["on_cue"] and badge.endswith("x")
    frame.select_option("#flag-filter", "")
    frame.select_option("#sort", "attention")
    assert _visible(frame) == [
        r["index"] for r in sorted(rows, key=lambda r: (r["attention"], r["index"]))
    ]
    frame.select_option("#sort", "doubt")
    assert _visible(frame) == [
        r["index"] for r in sorted(rows, key=lambda r: (r["priority"], r["index"]))
    ]

    # Two runs of the same probes side by side, at the same epoch position.
    options = frame.evaluate(
        "Array.from(document.querySelectorAll('#run-b option'))"
        ".map(o => [o.value, o.disabled, o.textContent])"
    )
    # "other" recorded other probes: listed, not choosable, with the reason.
    assert options == [
        ["", False, "nothing"],
        ["b", False, "b"],
        ["other", True, "other (other probes: frames cannot be paired)"],
    ]
    frame.select_option("#run-b", "b")
    frame.wait_for_function("document.querySelectorAll('img.frame.b').length === 6")
    _set_epoch(frame, 2)
    shot = _loaded(frame)
    b_epochs = load_run(logs / "b").epochs
    srcs = [src for _, src, _ in shot]
    assert sum("run=b" in s and f"epoch={b_epochs[2]}" in s for s in srcs) == 6
    assert sum("run=a" in s and f"epoch={run.epochs[2]}" in s for s in srcs) == 6
    # Issue 31: beside a second run, captions wrap instead of being cut, the two p(true)
    # curves have a legend naming the runs, and the second run's flags are shown too.
    cut = frame.evaluate(
        "Array.from(document.querySelectorAll('.card figcaption'))"
        ".filter(c => c.scrollWidth > c.clientWidth || c.textContent.includes('…')).length"
    )
    assert cut == 0
    legends = frame.evaluate(
        "Array.from(document.querySelectorAll('.card .legend')).map(l => l.textContent)"
    )
    assert legends == ["ab"] * 6
    rows_b = report.probe_rows(load_run(logs / "b"), 0.5)
    shown_b = frame.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('.card')).map(c => "
        "[c.dataset.index, Array.from(c.querySelectorAll('.badges.b .badge'))"
        ".map(b => b.className.split(' ')[1])]))"
    )
    assert shown_b == {str(r["index"]): r["flags"] for r in rows_b}
    assert any(shown_b.values())
    whens = frame.evaluate(
        "Array.from(document.querySelectorAll('.badges.b .when')).map(w => w.textContent)"
    )
    assert whens and set(whens) == {"b, at the end of training: "}

    # Each frame's caption is text, following the slider; flags say they describe the end.
    frame.select_option("#run-b", "")
    _set_epoch(frame, 0)
    # The cards are drawn again when "beside" changes: wait for that, not a fixed time.
    frame.wait_for_function(
        "document.querySelectorAll('img.frame.b').length === 0 && "
        "Array.from(document.querySelectorAll('.card figcaption'))"
        ".every(c => c.textContent.startsWith('before training'))"
    )
    captions = frame.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('.card')).map(c => "
        "[c.dataset.index, [c.querySelector('figcaption').textContent, "
        "c.querySelector('.badges').className, c.querySelector('.badges').textContent]]))"
    )
    names = run.class_names
    for i in range(6):
        p = run.probabilities[0, i]
        want = (
            f"before training · true: {names[run.labels[i]]} · pred: {names[p.argmax()]} "
            f"{p.max():.2f} · map: {names[run.targets[0, i]]}"
        )
        assert captions[str(i)][0] == want
        if rows[i]["flags"]:
            assert captions[str(i)][1] == "badges a stale"
            assert captions[str(i)][2].startswith("at the end of training: ")
    _set_epoch(frame, n_epochs - 1)
    assert frame.evaluate("document.querySelectorAll('.badges.stale').length") == 0
    # Frames are shown at their own size where the card is wide enough: never upscaled.
    _loaded(frame)  # the slider moved: the last epoch's frames are loading
    sizes = frame.evaluate(
        "Array.from(document.querySelectorAll('img.frame')).map(i => [i.naturalWidth, i.width])"
    )
    assert sizes and all(w == nat for nat, w in sizes), sizes

    # The data map: one point per probe, coloured by its first flag, a click picks the card.
    from cam_callback.report.datamap import FLAG_COLOURS

    frame.wait_for_function(  # fetched from its own route
        "document.querySelectorAll('#datamap svg.datamap a').length === 6", timeout=20000
    )
    points = frame.evaluate(
        "Array.from(document.querySelectorAll('#datamap svg.datamap a')).map(a => "
        "[+a.dataset.probe, a.querySelector('circle').getAttribute('class'), "
        "getComputedStyle(a.querySelector('circle')).fill])"
    )
    assert sorted(p[0] for p in points) == list(range(6))
    for i, cls, fill in points:
        first = rows[i]["flags"][0] if rows[i]["flags"] else "none"
        assert cls == f"pt {first}"
        hexed = FLAG_COLOURS[first]
        assert fill == "rgb({}, {}, {})".format(*(int(hexed[k : k + 2], 16) for k in (1, 3, 5)))
    frame.select_option("#flag-filter", "on_cue")
    away = next(r["index"] for r in rows if "on_cue" not in r["flags"])
    frame.click(f"#datamap a[data-probe='{away}'] circle", force=True)
    picked = frame.evaluate(
        "Array.from(document.querySelectorAll('.card.picked:not(.hidden)')).map(c => c.id)"
    )
    assert picked == [f"probe-{away:03d}"]
    frame.select_option("#flag-filter", "")

    # Live: an epoch written while the page is open appears, and the slider follows it.
    frame.select_option("#run-b", "")
    _set_epoch(frame, n_epochs - 1)
    _append_epoch(logs / "a", run.epochs[-1] + 1)
    frame.wait_for_function(f"+document.getElementById('epoch').max === {n_epochs}", timeout=20000)
    frame.wait_for_function(
        f"document.body.dataset.epoch === '{run.epochs[-1] + 1}'", timeout=10000
    )
    _loaded(frame)

    # Nothing from the network: every request of the page went to this server.
    assert requests and all(u.startswith(base) or u.startswith("data:") for u in requests), [
        u for u in requests if not u.startswith(base)
    ]
    assert errors == []
    page.close()


# ---------------------------------------------------------------------- hostile logdirs, in-process


def _client(logdir):
    from tensorboard.backend import application
    from werkzeug.test import Client

    return Client(application.TensorBoardWSGI([CAMPlugin(_Context(str(logdir)))]))


def _get(client, route, **args):
    r = client.get(f"/data/plugin/cam/{route}", query_string=args)
    return r.status_code, r.data


def _break(cam: Path, how: str) -> None:
    """Damage a record as the issue found them: a flipped header, a FIFO, /dev/zero."""
    if how == "json":
        (cam / "record.json").write_text('{"format": "cam-callback-record", "n_probes": "six"}')
    elif how == "fifo":
        (cam / "probes.npz").unlink()
        os.mkfifo(cam / "probes.npz")
    else:
        (cam / "probes.npz").unlink()
        os.symlink("/dev/zero", cam / "probes.npz")


@pytest.mark.timeout(60)  # a FIFO opened by a request thread would block it for good
def test_a_broken_run_is_listed_with_its_reason_and_hides_no_other(tmp_path):
    for name in ("aaa_json", "aab_fifo", "aac_zero"):
        make_record(tmp_path / name, n_epochs=1)
        _break(tmp_path / name / "cam", name[4:])
    make_record(tmp_path / "b", n_epochs=2)
    make_record(tmp_path / "c", n_epochs=3, baseline=True)
    client = _client(tmp_path)
    status, body = _get(client, "runs")
    runs = {r["name"]: r for r in json.loads(body)["runs"]}
    assert status == 200 and list(runs) == ["aaa_json", "aab_fifo", "aac_zero", "b", "c"]
    assert runs["b"]["epochs"] == [0, 1] and runs["c"]["epochs"] == [-1, 0, 1, 2]
    said = {
        "aaa_json": "record.json: `n_probes` must be an int",
        "aab_fifo": "probes.npz: is a FIFO (named pipe), not a regular file",
        "aac_zero": "probes.npz: is a symbolic link, not a regular file",
    }
    for name, reason in said.items():
        assert "error" not in runs["b"] and reason in runs[name]["error"], runs[name]
        assert runs[name]["error"].startswith(f"the record of run '{name}' is unreadable: ")
        for route, args in (("probes", {}), ("frame", {"probe": "0", "epoch": "0"})):
            status, body = _get(client, route, run=name, **args)
            assert status == 404 and reason in body.decode() and b"Traceback" not in body


def test_load_run_and_the_plugin_agree_on_symlinks(tmp_path):
    """No symlink inside a record is followed: a dangling epoch link costs that epoch in both;
    a record.json linked to a good copy is refused by both."""
    make_record(tmp_path / "a", n_epochs=3)
    epoch = tmp_path / "a" / "cam" / "epochs" / "epoch_000001.npz"
    epoch.unlink()
    os.symlink(tmp_path / "gone.npz", epoch)
    make_record(tmp_path / "b", n_epochs=2)
    meta = tmp_path / "b" / "cam" / "record.json"
    os.replace(meta, tmp_path / "record.json")
    os.symlink(tmp_path / "record.json", meta)
    with pytest.warns(UserWarning, match="epoch_000001.npz: is a symbolic link"):
        assert load_run(tmp_path / "a").epochs == [0, 2]
    with pytest.raises(ValueError, match="record.json: is a symbolic link"):
        load_run(tmp_path / "b")
    client = _client(tmp_path)
    with pytest.warns(UserWarning, match="epoch_000001.npz: is a symbolic link"):
        runs = {r["name"]: r for r in json.loads(_get(client, "runs")[1])["runs"]}
    assert runs["a"]["epochs"] == [0, 2] and "error" not in runs["a"]
    assert "record.json: is a symbolic link" in runs["b"]["error"]
    assert _get(client, "frame", run="a", probe="0", epoch="1")[0] == 404
    assert _get(client, "frame", run="a", probe="0", epoch="2")[0] == 200


def test_frame_renderers_and_png_frames_stay_within_their_caps(tmp_path, monkeypatch):
    """A long session keeps at most RENDERERS renderers alive and FRAME_CACHE_BYTES of PNG,
    and frames drawn again after eviction are the same bytes."""
    import gc
    import weakref

    from cam_callback.tensorboard_plugin import store as module

    live = weakref.WeakSet()

    class Counted(module.FrameRenderer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            live.add(self)

    make_record(tmp_path / "a", n_probes=12, n_epochs=2)
    monkeypatch.setattr(module, "FrameRenderer", Counted)
    monkeypatch.setattr(module, "RENDERERS", 4)
    client = _client(tmp_path)
    first = _get(client, "frame", run="a", probe="0", epoch="0")[1]
    monkeypatch.setattr(module, "FRAME_CACHE_BYTES", 3 * len(first))
    pngs = {}
    for probe in range(12):
        for epoch in (0, 1):
            status, png = _get(client, "frame", run="a", probe=str(probe), epoch=str(epoch))
            assert status == 200
            pngs[probe, epoch] = png
        gc.collect()
        assert len(live) <= 4
    assert _get(client, "frame", run="a", probe="0", epoch="0")[1] == first == pngs[0, 0]


def test_probes_mark_a_non_finite_prediction_as_no_class(tmp_path):
    make_record(tmp_path / "a", n_probes=6, n_epochs=2)
    last = tmp_path / "a" / "cam" / "epochs" / "epoch_000001.npz"
    with np.load(last) as f:
        arrays = dict(f)
    arrays["probabilities"][:3] = np.nan
    np.savez(last, **arrays)
    probes = json.loads(_get(_client(tmp_path), "probes", run="a")[1])["probes"]
    assert [p["pred"][1] for p in probes[:3]] == [-1, -1, -1]
    assert all(p["pred"][1] >= 0 for p in probes[3:])


def test_a_wide_probe_frame_is_drawn_within_a_frame(tmp_path):
    make_record(tmp_path / "a", n_probes=3, n_epochs=1)
    probes = tmp_path / "a" / "cam" / "probes.npz"
    with np.load(probes) as f:
        labels = f["labels"]
    np.savez(probes, images=np.zeros((3, 1, 16384, 3), np.uint8), labels=labels)
    status, png = _get(_client(tmp_path), "frame", run="a", probe="1", epoch="0")
    from io import BytesIO

    from PIL import Image

    assert status == 200 and Image.open(BytesIO(png)).size == (2 * 1024 + 198, 160)


def test_a_broken_first_run_hides_no_run_in_chromium(server, browser):
    """The issue's case: the alphabetically first run's record.json is damaged. Every readable
    run is listed and the first of them shown; the broken one is marked with its reason, and
    choosing it says why on the page and clears the cards of the run shown before."""
    import shutil

    base, logs, _ = server
    broken = logs / "0_damaged" / "cam"
    broken.mkdir(parents=True)
    (broken / "record.json").write_text('{"format": "cam-callback-record", "n_probes": "x"')
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    crashes = []
    page.on("pageerror", lambda exc: crashes.append(str(exc)))
    try:
        time.sleep(2.5)  # past the discovery cache
        page.goto(base + "/#cam")
        page.wait_for_selector("text=CAM", timeout=60000)
        frame = _plugin_frame(page)
        options = frame.evaluate(
            "Array.from(document.querySelectorAll('#run-a option'))"
            ".map(o => [o.value, o.textContent, o.title])"
        )
        assert [o[0] for o in options] == ["0_damaged", "a", "b", "other"]
        damaged = options[0]
        assert damaged[1] == "0_damaged (unreadable)" and "record.json" in damaged[2]
        assert frame.evaluate("document.getElementById('run-a').value") == "a"
        assert len(_visible(frame)) == 6
        _loaded(frame)
        listed = frame.inner_text("#broken")
        assert "0_damaged" in listed and "not readable JSON" in listed

        frame.select_option("#run-a", "0_damaged")
        frame.wait_for_function(
            "document.getElementById('status').textContent.includes('cannot be shown')"
        )
        status = frame.inner_text("#status")
        assert status.startswith("Run 0_damaged cannot be shown: the record of run")
        assert "not readable JSON" in status
        assert frame.evaluate("document.querySelectorAll('.card').length") == 0
        assert frame.evaluate("document.getElementById('run-a').value") == "0_damaged"
        frame.wait_for_timeout(2500)  # a poll later, the choice and the message stay
        assert frame.inner_text("#status") == status

        frame.select_option("#run-a", "other")
        frame.wait_for_function("document.querySelectorAll('.card').length === 3")
        assert "cannot be shown" not in frame.inner_text("#status")
        _loaded(frame)
        assert crashes == []
    finally:
        page.close()
        shutil.rmtree(logs / "0_damaged")
        time.sleep(2.5)  # the other tests see the logdir as it was


def test_a_record_in_the_logdir_itself_is_named_after_its_folder(tmp_path):
    """`make tensorboard` serves runs/spurious, whose record is runs/spurious/cam: the run is
    "spurious", never ".", in the listing and every route."""
    logdir = make_record(tmp_path / "spurious", n_probes=3, n_epochs=2)
    client = _client(logdir)
    status, body = _get(client, "runs")
    runs = json.loads(body)["runs"]
    assert status == 200 and [r["name"] for r in runs] == ["spurious"]
    assert _get(client, "probes", run="spurious")[0] == 200
    assert _get(client, "frame", run="spurious", probe="0", epoch="1")[0] == 200
    status, body = _get(client, "datamap", run="spurious")
    data = json.loads(body)
    assert status == 200 and data["svg"].count("<circle") == 3 and data["missing"] == 0
    run = load_run(logdir)
    rows = report.probe_rows(run, 0.5)
    points = report.datamap_points(run, {r["index"]: r["flags"] for r in rows})
    # The page's SVG, byte for byte.
    assert data["svg"] == report.datamap_svg(points, {r["index"]: r["label_name"] for r in rows})


# ---------------------------------------------------------------------- big logdirs (issue 31)


def test_the_run_list_opens_no_npz_and_the_probes_route_does(tmp_path, monkeypatch):
    """500 runs must list from their small files: a spy on the one .npz reader counts opens."""
    from cam_callback.record import reader

    for name in ("a", "b", "c"):
        make_record(tmp_path / name, n_epochs=2, baseline=name == "c")
    opened = []
    real = reader.read_npz
    monkeypatch.setattr(reader, "read_npz", lambda file, *a: opened.append(file) or real(file, *a))
    client = _client(tmp_path)
    runs = json.loads(_get(client, "runs")[1])["runs"]
    assert [r["epochs"] for r in runs] == [[0, 1], [0, 1], [-1, 0, 1]]
    assert [r["n_probes"] for r in runs] == [6, 6, 6] and opened == []
    assert _get(client, "probes", run="b")[0] == 200
    assert sorted(Path(f).name for f in opened) == ["epoch_000000.npz", "epoch_000001.npz"] + [
        "probes.npz"
    ]


def test_the_run_cache_keeps_at_most_its_byte_bound(tmp_path, monkeypatch):
    """Runs read in full stay within RUN_CACHE_BYTES, least recently used first out; one run
    larger than the bound is kept alone while it is the last one asked for."""
    from cam_callback.tensorboard_plugin import store as module

    for name in ("a", "b", "c", "d"):
        make_record(tmp_path / name, n_epochs=2)
    plugin = CAMPlugin(_Context(str(tmp_path)))
    kept = plugin._store
    one = kept.entry("a").nbytes
    monkeypatch.setattr(module, "RUN_CACHE_BYTES", int(2.5 * one))
    for name in ("b", "c", "a", "d"):
        kept.entry(name)
        assert kept.cached_bytes <= 2.5 * one
    assert list(kept._runs) == ["a", "d"]
    assert kept.cached_bytes == sum(e.nbytes for e in kept._runs.values())
    kept.rows(kept.entry("a"))  # its rows count too: "d" no longer fits beside it
    assert list(kept._runs) == ["a"] and kept.cached_bytes == kept._runs["a"].nbytes > one
    monkeypatch.setattr(module, "RUN_CACHE_BYTES", one // 2)
    kept.entry("b")
    assert list(kept._runs) == ["b"] and kept.cached_bytes == one


def test_class_names_reach_the_tab_cleaned_as_on_the_page(tmp_path):
    """U+202E and newlines in class names are removed, as the review page does."""
    make_record(tmp_path / "a", n_epochs=1, class_names=["ca\u202et", "do\ng", "bird"])
    client = _client(tmp_path)
    runs = json.loads(_get(client, "runs")[1])["runs"]
    probes = json.loads(_get(client, "probes", run="a")[1])
    assert runs[0]["class_names"] == probes["class_names"] == ["cat", "dog", "bird"]
    assert {p["label_name"] for p in probes["probes"]} == {"cat", "dog", "bird"}
