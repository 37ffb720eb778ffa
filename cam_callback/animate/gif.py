"""GIF encoding: self-contained frame blocks, streamed to disk one epoch at a time.

A GIF is built from self-contained frame blocks (delay, own 256-colour
palette, LZW data), so the tracker can encode each frame as its epoch arrives
and append it to a file on disk (:class:`GifStream`); finishing the file is
writing one byte. Palettes come from Pillow's fast octree: quantizing with
imageio's default GIF writer is 30x slower than drawing.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cam_callback.animate.layout import sample_positions
from cam_callback.record import atomic_write_bytes

PARTIAL = ".partial"  # animations being built during training, inside the animations folder

GIF_TRAILER = b";"


def gif_header(width: int, height: int) -> bytes:
    """A GIF89a header for ``width x height`` frames that loops forever; no global palette.

    Example:
        >>> gif_header(4, 3)[:6]
        b'GIF89a'
    """
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return b"GIF89a" + screen + loop


def gif_frame(frame: np.ndarray, delay_ms: int, previous: np.ndarray | None = None) -> bytes:
    """One uint8 ``[H, W, 3]`` frame as a self-contained GIF block with its own palette.

    The block (graphic control, image descriptor, local palette, LZW data) can
    follow :func:`gif_header` or any other block of the same size, so frames
    are encoded one at a time as epochs arrive. Given the ``previous`` frame,
    pixels that did not change are left transparent, over it: the probe, the
    panel and most text stay put, and the GIF is about a third smaller.

    Example:
        >>> block = gif_frame(np.zeros((2, 2, 3), np.uint8), 250)
        >>> block[:3].hex()
        '21f904'
    """
    h, w = frame.shape[:2]
    # 255 colours: index 255 is free to mean "unchanged".
    pal = Image.fromarray(frame).quantize(255, method=Image.Quantize.FASTOCTREE)
    transparent = previous is not None and previous.shape == frame.shape
    if transparent:
        idx = np.asarray(pal).copy()
        same = frame == previous
        idx[same[..., 0] & same[..., 1] & same[..., 2]] = 255  # 7x faster than .all(-1)
        palette = pal.getpalette() or []
        pal = Image.fromarray(idx, "P")
        pal.putpalette(palette[:765] + [0] * (768 - len(palette[:765])))
    buf = io.BytesIO()
    pal.save(buf, format="GIF", interlace=False, optimize=False)
    data = buf.getvalue()
    # Pillow writes header, screen, global palette, [extensions], descriptor, LZW, trailer:
    # keep the palette and the LZW data, and move the palette into the frame's descriptor.
    packed, pos, table, bits = data[10], 13, b"", 0
    if packed & 0x80:
        bits = packed & 7
        size = 3 << (bits + 1)
        table, pos = data[pos : pos + size], pos + size
    while data[pos] == 0x21:  # skip extensions: label, then sub-blocks up to a 0 length
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    if data[pos] != 0x2C:
        raise RuntimeError(f"unexpected GIF block 0x{data[pos]:02x} from Pillow")
    local = data[pos + 9]
    interlaced = local & 0x40
    pos += 10
    if local & 0x80:
        bits = local & 7
        size = 3 << (bits + 1)
        table, pos = data[pos : pos + size], pos + size
    if transparent and len(table) < 768:
        raise RuntimeError("Pillow shrank the palette: index 255 would not be transparent")
    lzw = data[pos : data.rindex(GIF_TRAILER)]
    delay = max(1, int(round(delay_ms / 10)))  # GIF delays are in centiseconds
    # Disposal 1 (keep the frame under the next one), and the transparency flag when set.
    flags = 0x04 | (0x01 if transparent else 0x00)
    control = b"\x21\xf9\x04" + struct.pack("<BHBB", flags, delay, 255 if transparent else 0, 0)
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0x80 | interlaced | bits)
    return control + descriptor + table + lzw


def delay_ms(fps: float) -> int:
    """The delay between frames, in milliseconds, for ``fps`` frames per second.

    Example:
        >>> delay_ms(4.0)
        250
    """
    return int(round(1000 / fps))


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 4.0) -> bytes:
    """Encodes uint8 ``[H, W, 3]`` frames as a looping GIF, one palette per frame.

    Example:
        >>> gif_bytes([np.zeros((2, 2, 3), np.uint8)])[-1:]
        b';'
    """
    if not frames:
        raise ValueError("`frames` is empty: nothing to animate. Received: frames=[]")
    h, w = frames[0].shape[:2]
    delay = delay_ms(fps)
    blocks = [gif_frame(f, delay, frames[i - 1] if i else None) for i, f in enumerate(frames)]
    return gif_header(w, h) + b"".join(blocks) + GIF_TRAILER


def read_gif(source: str | os.PathLike | io.BytesIO) -> list[np.ndarray]:
    """Every frame of a GIF as uint8 RGB ``[H, W, 3]``, composited as a viewer shows it.

    Example:
        >>> len(read_gif(io.BytesIO(gif_bytes([np.zeros((2, 2, 3), np.uint8)] * 3))))
        3
    """
    with Image.open(source) as img:
        out = []
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            out.append(np.asarray(img.convert("RGB")))
    return out


class GifStream:
    """A GIF built on disk one frame at a time; memory does not grow with frames.

    Frames are appended to ``animations/.partial/<name>.part`` as encoded
    blocks; :meth:`finish` writes the trailer and renames the file into place,
    so it costs the same after 10 epochs as after 1,000. A run killed before
    that leaves the partial file, and the final name untouched.

    Args:
        path: The finished file, e.g. ``LOG_DIR/cam/animations/probe_000.gif``.
        fps: Frames per second.
        make_dirs: Create the missing folders at the first frame. ``False``: only
            the ``.partial`` folder, inside an existing ``path.parent`` (a run record
            deleted during training is never recreated in part).

    Example:
        >>> s = GifStream("out/probe_000.gif", fps=4)  # doctest: +SKIP
        >>> s.append(0, frame0); s.append(1, frame1)  # doctest: +SKIP
        >>> s.finish()  # doctest: +SKIP
        PosixPath('out/probe_000.gif')
    """

    def __init__(self, path: str | os.PathLike, fps: float = 4.0, make_dirs: bool = True) -> None:
        self.path = Path(path)
        self.make_dirs = make_dirs
        self.part = self.path.parent / PARTIAL / f"{self.path.name}.part"
        self.delay = delay_ms(fps)
        self.index: list[tuple[int, int, int]] = []  # (key, offset, length) of each block
        self._size = 0
        self._previous: np.ndarray | None = None  # the last frame: blocks only hold changes

    @property
    def keys(self) -> list[int]:
        """The keys (epochs) of the frames appended so far, in order."""
        return [k for k, _, _ in self.index]

    def append(self, key: int, frame: np.ndarray) -> None:
        """Encodes ``frame`` and appends it; ``key`` names it (its epoch)."""
        block = gif_frame(frame, self.delay, self._previous if self.index else None)
        if not self.index:
            self.part.parent.mkdir(parents=self.make_dirs, exist_ok=True)
            head = gif_header(frame.shape[1], frame.shape[0])
            with open(self.part, "wb") as f:
                f.write(head)
            self._size = len(head)
        with open(self.part, "ab") as f:  # open per frame: 512 probes would exhaust fds
            f.write(block)
        self.index.append((key, self._size, len(block)))
        self._size += len(block)
        self._previous = frame

    def frames(self) -> list[np.ndarray]:
        """The appended frames decoded back to RGB (for the MP4 made at the end)."""
        return read_gif(io.BytesIO(self.part.read_bytes()[: self._size] + GIF_TRAILER))

    def finish(self, max_frames: int | None = None) -> Path:
        """Completes the GIF at ``path``, keeping at most ``max_frames`` frames (evenly).

        Raises:
            ValueError: No frame was appended.
        """
        if not self.index:
            raise ValueError(f"no frame was appended to {self.path}: nothing to finish")
        keep = sample_positions(len(self.index), max_frames)
        if len(keep) < len(self.index):
            # Only when the epochs to keep were not known in advance. Blocks hold changes
            # against the frame before, so the kept frames are decoded and encoded again.
            decoded = self.frames()
            kept = [decoded[p] for p in keep]
            keys = [self.index[p][0] for p in keep]
            self.index, self._size, self._previous = [], 0, None
            for key, frame in zip(keys, kept, strict=True):
                self.append(key, frame)
        with open(self.part, "r+b") as f:
            f.seek(self._size)
            f.write(GIF_TRAILER)
            f.truncate()
        # No fsync: the record is the durable truth, and render rebuilds this from it.
        os.replace(self.part, self.path)
        self.index, self._previous = [], None
        return self.path

    def discard(self) -> None:
        """Deletes the partial file."""
        self.index, self._previous = [], None
        if self.part.exists():
            self.part.unlink()


def write_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Writes a looping GIF atomically.

    Example:
        >>> write_gif("probe.gif", [frame0, frame1], fps=2)  # doctest: +SKIP
    """
    path = Path(path)
    atomic_write_bytes(path, gif_bytes(frames, fps))
    return path
