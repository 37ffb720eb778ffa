"""Fuzz worker, run by tests/test_fuzz.py under a memory cap (RLIMIT_AS).

Usage: ``python _child_fuzz.py CASES.json``. Each case names a logdir holding a damaged
run ``aaa`` and an intact run ``zzz`` of the same probes. Every reader runs on it:
``load_run``, the four CLI commands (in this process, as ``cam-callback`` runs them) and
every route of the TensorBoard plugin. One JSON line per case: the outcomes, and the
problems, which must be none: a traceback, a 500, an exception other than the one-line
``RecordError``, a frame larger than a frame, a hang past CASE_SECONDS.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import resource
import signal
import sys
import traceback
import warnings
from pathlib import Path

from PIL import Image
from tensorboard.backend import application
from werkzeug.test import Client

from cam_callback import cli
from cam_callback.record import RecordError, load_run
from cam_callback.tensorboard_plugin import CAMPlugin

CASE_SECONDS = 20
# (height, width) of any frame, as docs/record.md states: a caption of at most 72 px (two
# lines of 28-px text) over images at most 256 px high and 1,024 wide, twice, and a bar panel
# of at most 308 px.
FRAME_LIMIT = (72 + 256, 2 * 1024 + 308)
# The CLI's last-resort handler prints the exception's class first: never expected here.
CATCH_ALL = re.compile(r"^cam-callback: error: [A-Z]\w*: ")
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the newline


class Hang(BaseException):
    """A case ran past CASE_SECONDS; a BaseException, so no handler under test swallows it."""


def on_alarm(signum, frame):
    raise Hang(f"no answer within {CASE_SECONDS} s")


class Context:
    def __init__(self, logdir: str) -> None:
        self.logdir = logdir


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text


def load(run_dir: Path, problems: list[str]):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            run = load_run(run_dir)
        except (RecordError, FileNotFoundError) as exc:
            if not one_line(str(exc)) or str(run_dir) not in str(exc):
                problems.append(f"load_run: error not one line naming the file: {exc!r:.300}")
            return None
    for w in seen:
        if not one_line(str(w.message)):
            problems.append(f"load_run: warning not one line: {w.message!s:.300}")
    if run.heatmaps.shape[0] != len(run.epochs) or run.probabilities.shape[0] != len(run.epochs):
        problems.append(f"load_run: {len(run.epochs)} epochs, arrays {run.heatmaps.shape}")
    return run


def cli_run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(args)
    return rc, out.getvalue(), err.getvalue()


def check_cli(name: str, args: list[str], must_work: bool, problems: list[str]) -> str:
    rc, out, err = cli_run(args)
    errors = [line for line in err.splitlines() if line.startswith("cam-callback: error:")]
    if "Traceback" in err or "Traceback" in out:
        problems.append(f"{name}: a traceback: {err[-400:]}")
    elif rc not in (0, 1) or (rc == 1 and len(errors) != 1) or (rc == 0 and errors):
        problems.append(f"{name}: exit {rc} with {len(errors)} error lines: {err[-400:]}")
    elif any(CATCH_ALL.match(line) for line in errors):
        problems.append(f"{name}: an unforeseen exception: {errors[0][:300]}")
    elif must_work and rc != 0:
        problems.append(f"{name}: load_run read the run, the command did not: {err[-300:]}")
    if CONTROL.search(out):
        problems.append(f"{name}: control characters on stdout: {out[:300]!r}")
    return "ok" if rc == 0 else "error"


def check_plugin(logdir: Path, run, intact_epochs: list[int], problems: list[str]) -> str:
    client = Client(application.TensorBoardWSGI([CAMPlugin(Context(str(logdir)))]))

    def get(route: str, **args):
        try:
            r = client.get(f"/data/plugin/cam/{route}", query_string=args)
        except Exception as exc:  # what TensorBoard would answer 500 to
            problems.append(f"/{route} {args}: 500 ({type(exc).__name__}: {exc!s:.200})")
            return None
        if r.status_code not in (200, 400, 404) or b"Traceback" in r.data:
            problems.append(f"/{route} {args}: {r.status_code} {r.data[:200]!r}")
        return r

    for static in ("index.js", "style.css"):
        get(static)
    r = get("runs")
    if r is None or r.status_code != 200:
        return "500"
    runs = {x["name"]: x for x in json.loads(r.data)["runs"]}
    if runs.get("zzz", {}).get("epochs") != intact_epochs:
        problems.append(f"/runs: the intact run is hidden or wrong: {runs.get('zzz')!r:.200}")
    listed = runs.get("aaa")
    # The run list reads record.json and lstat only (issue 31: 500 runs): damage inside an
    # .npz is found when the run is opened, so the list may hold an epoch load_run skips, and
    # a run load_run refuses may be listed; opening it (/probes) then agrees with load_run.
    if run is not None and (listed is None or not set(run.epochs) <= set(listed["epochs"])):
        problems.append(f"/runs: aaa listed as {listed!r:.200}, load_run read {run.epochs}")
    opened = get("probes", run="aaa")
    if opened is not None and run is not None:
        if opened.status_code != 200 or json.loads(opened.data)["epochs"] != run.epochs:
            problems.append(f"/probes of aaa: {opened.data[:200]!r}, load_run read {run.epochs}")
    if opened is not None and run is None and opened.status_code != 404:
        problems.append(f"/probes of aaa unreadable by load_run: {opened.status_code}")
    outcome = "listed" if listed and not listed.get("error") else "marked"
    for name in runs:
        r = get("probes", run=name)
        if r is None or r.status_code != 200:
            continue
        data = json.loads(r.data)
        n = len(data["probes"])
        for probe in sorted({0, max(0, n - 1)}):
            for epoch in sorted(set(data["epochs"][:1] + data["epochs"][-1:])):
                r = get("frame", run=name, probe=str(probe), epoch=str(epoch))
                if r is not None and r.status_code == 200:
                    w, h = Image.open(io.BytesIO(r.data)).size
                    if h > FRAME_LIMIT[0] or w > FRAME_LIMIT[1]:
                        problems.append(f"/frame of {name}: {w}x{h} px drawn")
    get("probes", run="aaa")
    get("frame", run="aaa", probe="0", epoch="0")
    return outcome


def run_case(case: dict) -> dict:
    logdir = Path(case["logdir"])
    out = Path(case["out"])
    aaa, zzz = str(logdir / "aaa"), str(logdir / "zzz")
    problems: list[str] = []
    outcomes: dict[str, str] = {}
    signal.alarm(CASE_SECONDS)
    try:
        run = load(logdir / "aaa", problems)
        outcomes["load"] = "data" if run is not None else "error"
        expect = case.get("expect", {})
        if "load" in expect and outcomes["load"] != expect["load"]:
            problems.append(f"load_run: {outcomes['load']}, expected {expect['load']}")
        if run is not None and "epochs" in expect and run.epochs != expect["epochs"]:
            problems.append(f"load_run: epochs {run.epochs}, expected {expect['epochs']}")
        works = run is not None and bool(run.epochs)
        outcomes["info"] = check_cli("info", ["info", aaa], run is not None, problems)
        outcomes["render"] = check_cli(
            "render", ["render", aaa, "--out", str(out / "gif")], works, problems
        )
        page = out / "page" / "index.html"
        outcomes["report"] = check_cli(
            "report", ["report", aaa, "--out", str(page)], works, problems
        )
        if expect.get("evaluation_damaged") and works:
            if "evaluation.json is damaged" not in page.read_text():
                problems.append("report: the page does not say evaluation.json is damaged")
        outcomes["compare"] = check_cli(
            "compare", ["compare", aaa, zzz, "--out", str(out / "cmp")], works, problems
        )
        outcomes["plugin"] = check_plugin(logdir, run, case["intact_epochs"], problems)
    except Hang as exc:
        problems.append(f"hang: {exc}")
    except Exception as exc:  # noqa: BLE001 - every escape is a finding
        tail = traceback.format_exc().strip().splitlines()[-3:]
        problems.append(f"escaped: {type(exc).__name__}: {exc!s:.200} | {' | '.join(tail)}")
    finally:
        signal.alarm(0)
    return {"id": case["id"], "kind": case["kind"], "outcomes": outcomes, "problems": problems}


def main() -> None:
    signal.signal(signal.SIGALRM, on_alarm)
    cases = json.loads(Path(sys.argv[1]).read_text())
    for case in cases:
        print(json.dumps(run_case(case)), flush=True)
    # VmHWM is this process's own peak: ru_maxrss keeps the parent's peak across fork and
    # exec, so under a large pytest process it reads the parent, not the readers.
    status = Path("/proc/self/status").read_text()
    peak = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) / 1024
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    print(json.dumps({"peak_rss_mb": round(peak, 1), "rlimit_as": limit}), flush=True)


if __name__ == "__main__":
    main()
