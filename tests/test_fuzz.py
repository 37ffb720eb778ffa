"""A hostile-record fuzz: every reader ends in data, one error line or a 4xx, within caps.

Cases are drawn from a seed (``CAM_FUZZ_SEED`` picks another) in seven classes: npy
header byte flips (with the zip's CRCs kept right, so only the header parser stands),
raw byte flips, truncation, special files in place of any record file (FIFO, symlinks to
/dev/zero and /dev/urandom, a folder, a dangling symlink, a symlink to a good copy outside
the logdir, a sparse 3 GiB file, an empty file), deflate bombs and lying zip sizes, JSON
type swaps (record.json, flags.json, evaluation.json: wrong types, 10**400, deep nesting,
ANSI escapes) and sizes claimed larger than the data. Each case's damaged run sits beside
an intact one; ``tests/_child_fuzz.py`` runs ``load_run``, ``info``, ``render``,
``report``, ``compare`` and every plugin route on it in a subprocess whose address space
is capped (RLIMIT_AS), with a per-case alarm. TensorFlow is never imported there.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from records import (
    deflate_bomb,
    make_record,
    npy_header,
    npz_members,
    raw_zip,
    write_members,
)

from cam_callback.evaluation import Evaluation
from cam_callback.record import load_run, write_flags

HERE = Path(__file__).parent
MEMORY_CAP = 2**30  # the readers' whole address space; a bomb inflates to 1.5 GiB
SEED = int(os.environ.get("CAM_FUZZ_SEED", "1807"))
FILES = (
    "cam/record.json",
    "cam/probes.npz",
    "cam/flags.json",
    "evaluation.json",
    "cam/epochs/baseline.npz",
    "cam/epochs/epoch_000000.npz",
    "cam/epochs/epoch_000001.npz",
)
EPOCHS = {"baseline.npz": -1, "epoch_000000.npz": 0, "epoch_000001.npz": 1}
CLASSES = {  # class: cases drawn
    "header_flip": 20,
    "raw_flip": 8,
    "truncate": 6,
    "special": 22,
    "bomb": 8,
    "json_swap": 16,
    "size_claim": 12,
}
SPECIAL = ("fifo", "dev_zero", "dev_urandom", "directory", "dangling", "outside", "sparse", "empty")
# JSON values swapped in; the strings in RAW are replaced by raw JSON text after dumping.
RAW = {
    "@big@": "1" + "0" * 400,  # 10**400: an int no float holds
    "@huge@": "9" * 5000,  # past Python's 4300-digit int parsing limit
    "@deep@": "[" * 100_000 + "]" * 100_000,
    "@inf@": "1e400",
    "@nan@": "NaN",
}
SWAPS = [None, True, -1, 0, 2**70, 1.5, "x", [], {}, [1, 2], {"a": [None]}, "\x1b[31mRED\r\x07"]
SWAPS += list(RAW)


@pytest.fixture(autouse=True)
def _seed():  # conftest's seeds Keras; nothing here imports it
    yield


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_base(tmp_path_factory.mktemp("fuzzbase"))


def build_base(root: Path) -> Path:
    """Two runs of the same probes; ``aaa`` is copied and damaged per case. Maps of 24x24 so
    epoch members pass 4 KiB and numpy's header parser runs before the zip CRC is checked."""
    for name, seed in (("aaa", 0), ("zzz", 5)):
        log_dir = root / name
        make_record(
            log_dir,
            n_probes=3,
            n_epochs=2,
            size=32,
            hw=24,
            seed=seed,
            baseline=True,
            masks=True,
            fingerprint="same",
        )
        write_flags(load_run(log_dir))
        scores = {"gradcam": {"deletion_auc": 0.2}, "random": {"deletion_auc": 0.5}}
        Evaluation(scores, settings={"n_images": 3}).save(log_dir)
    return root


# ---------------------------------------------------------------------- mutations


def header_flip(run: Path, rng) -> tuple[str, dict]:
    file = run / FILES[rng.choice([1, 4, 5, 6])]
    members = npz_members(file)
    name = sorted(members)[rng.integers(len(members))]
    data = bytearray(members[name])
    length = int.from_bytes(data[8:10], "little")
    pos = int(rng.choice([8, 9])) if rng.random() < 0.3 else int(rng.integers(10 + length))
    data[pos] = (data[pos] + int(rng.integers(1, 256))) % 256
    members[name] = bytes(data)
    write_members(file, members)
    return f"{file.name}:{name} byte {pos} -> {data[pos]}", {}


def raw_flip(run: Path, rng) -> tuple[str, dict]:
    file = run / FILES[rng.integers(len(FILES))]
    data = bytearray(file.read_bytes())
    for pos in rng.integers(0, len(data), rng.integers(1, 5)):
        data[pos] ^= int(rng.integers(1, 256))
    file.write_bytes(bytes(data))
    return file.name, {}


def truncate(run: Path, rng) -> tuple[str, dict]:
    file = run / FILES[rng.integers(len(FILES))]
    data = file.read_bytes()
    file.write_bytes(data[: rng.integers(len(data))])
    return file.name, {}


def special(run: Path, rng) -> tuple[str, dict]:
    rel = (*FILES, "cam/epochs")[rng.integers(len(FILES) + 1)]
    kind = SPECIAL[rng.integers(len(SPECIAL))]
    if rel == "cam/epochs" and kind in ("sparse", "empty", "directory"):
        kind = "fifo"
    target = run / rel
    if kind == "outside":  # a good copy beside the logdir, linked in
        outside = run.parent.parent / "outside" / target.name
        outside.parent.mkdir(exist_ok=True)
        os.replace(target, outside)
    elif target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind in ("dev_zero", "dev_urandom"):
        os.symlink(f"/dev/{kind[4:]}", target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "dangling":
        os.symlink(run / "nothing-here", target)
    elif kind == "outside":
        os.symlink(outside, target)
    elif kind == "sparse":
        with open(target, "wb") as f:
            f.truncate(3 * 2**30)
    else:
        target.write_bytes(b"")
    # Symlinks inside a record are never followed: a good file linked in is refused too.
    expect: dict = {}
    if rel in ("cam/record.json", "cam/probes.npz"):
        expect = {"load": "error"}
    elif rel == "cam/epochs":
        expect = {"load": "data", "epochs": []}
    elif target.name in EPOCHS:
        expect = {"load": "data", "epochs": [e for e in (-1, 0, 1) if e != EPOCHS[target.name]]}
    elif rel == "evaluation.json":
        expect = {"load": "data", "evaluation_damaged": True}
    return f"{rel} -> {kind}", expect


def bomb(run: Path, rng) -> tuple[str, dict]:
    kind = ("probes", "epoch", "stored_lie", "deflate_lie", "members")[rng.integers(5)]
    cam = run / "cam"
    if kind == "probes":  # consistent with record.json: only the inflation ratio stands
        meta = json.loads((cam / "record.json").read_text())
        (cam / "record.json").write_text(json.dumps({**meta, "n_probes": 32}))
        entry = deflate_bomb("images.npy", (32, 4096, 4096, 3))
        (cam / "probes.npz").write_bytes(raw_zip([entry]))
        return kind, {"load": "error"}
    file = cam / "epochs" / ("epoch_000000.npz", "epoch_000001.npz")[rng.integers(2)]
    members = npz_members(file)
    entries = [
        {"name": k, "data": v, "method": 0, "crc": zlib.crc32(v), "file_size": len(v)}
        for k, v in members.items()
    ]
    if kind == "epoch":
        entries[0] = deflate_bomb("heatmaps.npy", (64, 1024, 1024), "<f4")
    elif kind == "stored_lie":  # claims far more than it stores
        entries[0]["file_size"] = len(entries[0]["data"]) * 1000
    elif kind == "deflate_lie":  # within the ratio, but the stream holds less
        entries[0] = {**deflate_bomb("heatmaps.npy", (4, 1024, 1024), "<f4")}
        entries[0]["file_size"] = len(entries[0]["data"]) * 50
    else:  # more members than any record has
        entries += [{**entries[-1], "name": f"metric_x{i}.npy"} for i in range(70)]
    file.write_bytes(raw_zip(entries))
    return f"{kind} in {file.name}", {"load": "data", "epochs": _without(file.name)}


def json_swap(run: Path, rng) -> tuple[str, dict]:
    file = run / ("cam/record.json", "cam/flags.json", "evaluation.json")[rng.integers(3)]
    data = json.loads(file.read_text())
    node, container, path = data, None, []
    for _ in range(rng.integers(1, 4)):  # one to three levels down
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[rng.integers(len(keys))]
        container, node = node, node[key]
        path.append(key)
        if not isinstance(node, (dict, list)):
            break
    value = SWAPS[rng.integers(len(SWAPS))]
    if container is None:
        data = value
    else:
        container[path[-1]] = value
    text = json.dumps(data)
    for token, raw in RAW.items():
        text = text.replace(json.dumps(token), raw)
    file.write_text(text)
    return f"{file.name} {path} = {value!r:.20}", {}


def size_claim(run: Path, rng) -> tuple[str, dict]:
    cam = run / "cam"
    kind = ("npy_shape", "meta", "central_dir", "wide", "entries")[rng.integers(5)]
    if kind == "npy_shape":  # the header claims more than the member holds
        file = cam / ("probes.npz", "epochs/epoch_000000.npz")[rng.integers(2)]
        members = npz_members(file)
        name = sorted(members)[rng.integers(len(members))]
        data = members[name]
        end = 10 + int.from_bytes(data[8:10], "little")
        shape = np.load(io.BytesIO(data)).shape or (1,)
        bigger = (shape[0] * int(rng.choice([2, 1000, 2**30])), *shape[1:])
        members[name] = npy_header(bigger, "<f4") + data[end:]
        write_members(file, members)
        return f"{file.name}:{name} claims {bigger}", {}
    if kind == "meta":
        meta = json.loads((cam / "record.json").read_text())
        key, value = [
            ("n_probes", 2**20),
            ("n_probes", 2**21),
            ("map_shape", [16384, 16384]),
            ("map_shape", [4096, 4096]),
            ("n_classes", 2**20),
        ][rng.integers(5)]
        (cam / "record.json").write_text(json.dumps({**meta, key: value}))
        return f"record.json {key}={value}", {}
    if kind == "central_dir":  # a member's size in the zip directory grows
        file = cam / "epochs/epoch_000001.npz"
        data = bytearray(file.read_bytes())
        at = data.rfind(b"PK\x01\x02")
        data[at + 24 : at + 28] = (2**31 - 1).to_bytes(4, "little")
        file.write_bytes(bytes(data))
        return "central directory claims 2 GiB", {"load": "data", "epochs": [-1, 0]}
    if kind == "entries":  # the end record claims 65,535 members
        file = cam / "probes.npz"
        data = bytearray(file.read_bytes())
        at = data.rfind(b"PK\x05\x06")
        data[at + 8 : at + 12] = b"\xff\xff\xff\xff"
        file.write_bytes(bytes(data))
        return "end record claims 65535 members", {"load": "error"}
    # 1 x 16384 px probes: honest data a frame must still be drawn within its size.
    with np.load(cam / "probes.npz") as f:
        labels = f["labels"]
    images = np.zeros((3, 1, 16384, 3), np.uint8)
    masks = np.ones((3, 1, 16384), bool)
    np.savez(cam / "probes.npz", images=images, labels=labels, masks=masks)
    return "1x16384 px images", {"load": "data", "epochs": [-1, 0, 1]}


def _without(name: str) -> list[int]:
    return [e for e in (-1, 0, 1) if e != EPOCHS[name]]


MUTATIONS = {
    "header_flip": header_flip,
    "raw_flip": raw_flip,
    "truncate": truncate,
    "special": special,
    "bomb": bomb,
    "json_swap": json_swap,
    "size_claim": size_claim,
}


def make_cases(base: Path, root: Path) -> list[dict]:
    rng = np.random.default_rng(SEED)
    intact = load_run(base / "zzz").epochs
    cases = []
    for kind, count in CLASSES.items():
        for _ in range(count):
            case = root / f"case{len(cases):03d}"
            logdir = case / "logs"
            shutil.copytree(base / "aaa", logdir / "aaa", symlinks=True)
            shutil.copytree(base / "zzz", logdir / "zzz", symlinks=True)
            what, expect = MUTATIONS[kind](logdir / "aaa", rng)
            cases.append(
                {
                    "id": len(cases),
                    "kind": kind,
                    "what": what,
                    "expect": expect,
                    "logdir": str(logdir),
                    "out": str(case / "out"),
                    "intact_epochs": intact,
                }
            )
    return cases


def capped_env(code: Path = HERE.parent) -> dict:
    """The child's environment: one BLAS thread, this tree's cam_callback (or ``code``'s)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(code), str(HERE), env.get("PYTHONPATH", "")])
    return env


def cap_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.timeout(240)
def test_every_reader_survives_hostile_records(base, tmp_path):
    cases = make_cases(base, tmp_path)
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, str(HERE / "_child_fuzz.py"), str(spec)],
        capture_output=True,
        text=True,
        env=capped_env(),
        preexec_fn=cap_memory,
        timeout=200,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, proc.stderr[-3000:]
    *results, summary = lines
    assert len(results) == len(cases) and summary["rlimit_as"] == MEMORY_CAP
    failures = [
        f"case {r['id']} {r['kind']} ({cases[r['id']]['what']}): {p}"
        for r in results
        for p in r["problems"]
    ]
    assert not failures, "\n".join(failures[:20])
    seen = Counter((r["kind"], r["outcomes"].get("load")) for r in results)
    # Each class ran, and damage that leaves a readable record is told from damage that does not.
    assert {k for k, _ in seen} == set(CLASSES)
    assert seen[("header_flip", "data")] > 0 and seen[("header_flip", "error")] > 0, seen
    assert sum(n for (_, o), n in seen.items() if o == "data") > 20, seen
    assert sum(n for (_, o), n in seen.items() if o == "error") > 20, seen
    assert summary["peak_rss_mb"] < MEMORY_CAP / 2**20
    print(f"\n{len(results)} cases, peak RSS {summary['peak_rss_mb']} MB, {dict(seen)}")
