"""Synthetic run records written with RecordWriter: no TensorFlow, fast."""

from __future__ import annotations

import functools
import struct
import zipfile
import zlib

import numpy as np

from cam_callback.metrics import epoch_metrics
from cam_callback.record import RecordWriter


def make_record(
    log_dir,
    n_probes=6,
    n_epochs=5,
    n_classes=3,
    size=32,
    hw=6,
    seed=0,
    fingerprint="f00d",
    labels=True,
    mask_kind="object",
    class_names=None,
    baseline=False,
    masks=False,
    score="probability",
):
    """A record whose probes drift from wrong to right; returns the log_dir.

    ``baseline`` also records the state before training (epoch -1); ``masks`` gives
    every probe a mask over its left quarter, whose share of attention grows for
    the probes of class 0.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.stack(
        [
            np.stack([(xx * 255 // size), (yy * 255 // size), np.full_like(xx, 40 * i)], -1)
            for i in range(n_probes)
        ]
    ).astype(np.uint8)
    y = np.arange(n_probes) % n_classes
    w = RecordWriter(log_dir)
    w.open(
        {
            "layer": "conv2",
            "method": "gradcam",
            "fingerprint": fingerprint,
            "n_probes": n_probes,
            "n_classes": n_classes,
            "map_shape": [hw, hw],
            "class_names": class_names or [f"class_{c}" for c in range(n_classes)],
            "mask_kind": mask_kind,
            "score": score,
        },
        images=images,
        labels=y if labels else None,
        masks=_left_quarter(n_probes, size) if masks else None,
    )
    previous = first = None
    for e in range(-1 if baseline else 0, n_epochs):
        maps = rng.random((n_probes, hw, hw)).astype(np.float32)
        if masks:  # class 0 looks more and more at its mask
            maps[y == 0, :, : hw // 4] += 2.0 * (e + 1) / n_epochs
        maps /= maps.max(axis=(1, 2), keepdims=True)
        probs = rng.dirichlet(np.ones(n_classes), n_probes)
        if e == n_epochs - 1:  # probes 0 and 1 end right and sure, probe 2 ends wrong
            probs[0] = np.eye(n_classes)[y[0]] * 0.9 + 0.1 / n_classes
            probs[1] = np.eye(n_classes)[y[1]] * 0.9 + 0.1 / n_classes
            probs[2] = np.eye(n_classes)[(y[2] + 1) % n_classes] * 0.9 + 0.1 / n_classes
        values = epoch_metrics(
            maps,
            probs,
            labels=y if labels else None,
            previous=previous,
            first=first,
            masks=_left_quarter(n_probes, size) if masks else None,
        )
        w.write_epoch(
            e, heatmaps=maps, probabilities=probs, targets=probs.argmax(1), metrics=values
        )
        previous = maps
        first = maps if first is None else first
    return log_dir


def _left_quarter(n, size):
    m = np.zeros((n, size, size), bool)
    m[:, :, : size // 4] = True
    return m


# ---------------------------------------------------------------------- crafted files


def npz_members(path) -> dict[str, bytes]:
    """The raw bytes of each member of an .npz (its .npy files)."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_members(path, members: dict[str, bytes]) -> None:
    """An .npz of these raw members, stored, with correct CRCs: only the .npy inside is
    damaged, never the zip around it."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy_header(shape, descr="<f4", fortran=False) -> bytes:
    """A version 1.0 .npy header as numpy writes it, padded to 64 bytes."""
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple(shape)!r}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")


def raw_zip(entries) -> bytes:
    """A zip built by hand, so sizes and methods can lie.

    ``entries``: dicts with ``name``, ``data`` (the bytes stored, already compressed for
    method 8), ``method`` (0 stored, 8 deflated), ``crc``, ``file_size`` (claimed size
    once inflated) and optionally ``compress_size`` (claimed, default the true length).
    """
    body, central = bytearray(), bytearray()
    for e in entries:
        name = e["name"].encode()
        size = e.get("compress_size", len(e["data"]))
        fields = (e["method"], 0, 0, e["crc"] & 0xFFFFFFFF, size, e["file_size"], len(name))
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + name + e["data"]
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0, offset
        )
        central += name
    n = len(entries)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(body), 0)
    return bytes(body + central + end)


_ZEROS = 16 * 2**20


@functools.lru_cache(maxsize=1)
def _deflated_zeros() -> bytes:
    """16 MiB of zeros as raw deflate ending in a full flush: repeatable back to back."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes(_ZEROS)) + c.flush(zlib.Z_FULL_FLUSH)


def deflate_bomb(name: str, shape, descr="|u1") -> dict:
    """A ``raw_zip`` entry: an .npy of zeros of ``shape`` (a multiple of 16 MiB of data),
    deflated about 1,000 times. Its CRC is left wrong: a reader finds that out only after
    inflating everything, which is the attack."""
    header = npy_header(shape, descr)
    nbytes = int(np.prod(shape)) * np.dtype(descr).itemsize
    assert nbytes % _ZEROS == 0, nbytes
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = head + _deflated_zeros() * (nbytes // _ZEROS) + end.compress(b"") + end.flush()
    return {"name": name, "data": data, "method": 8, "crc": 0, "file_size": len(header) + nbytes}
