"""A child that writes a run record and stops inside one write, for the parent to SIGKILL.

usage: python _child_record.py LOG_DIR PHASE
  PHASE: create (the temporary is about to be made), data (half the bytes in the
  temporary), fsync, replace (just before the rename), dirsync (after the rename, before
  the folder's fsync)
Prints "STOP <phase>" when it has stopped; it then sleeps until killed.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cam_callback.record import RecordWriter  # noqa: E402

log_dir, phase = sys.argv[1], sys.argv[2]


def stop():
    print(f"STOP {phase}", flush=True)
    time.sleep(600)


def epoch(w, e):
    w.write_epoch(
        e,
        heatmaps=np.full((2, 2, 2), (e + 1) / 10, np.float32),
        probabilities=np.full((2, 3), 1 / 3),
        targets=np.array([0, 2]),
        metrics={"drift": np.array([e, e + 1.0])},
    )


w = RecordWriter(log_dir)
meta = {
    "layer": "conv2",
    "method": "gradcam",
    "fingerprint": "abc",
    "n_probes": 2,
    "n_classes": 3,
    "map_shape": [2, 2],
    "class_names": ["a", "b", "c"],
}
w.open(meta, images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, 2]))
epoch(w, 0)
epoch(w, 1)

real_fdopen, real_fsync, real_open = os.fdopen, os.fsync, os.open
if phase == "data":

    class Half:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            self.f.flush()
            real_fsync(self.f.fileno())
            stop()

        def __getattr__(self, name):
            return getattr(self.f, name)

    os.fdopen = lambda *a, **k: Half(real_fdopen(*a, **k))
elif phase == "fsync":
    os.fsync = lambda fd: stop()
elif phase == "create":

    def tmp_open(path, flags, *a, **k):
        if str(path).endswith(".tmp"):
            stop()
        return real_open(path, flags, *a, **k)

    os.open = tmp_open
elif phase == "replace":
    os.replace = lambda *a, **k: stop()
elif phase == "dirsync":

    def dir_open(path, flags, *a, **k):
        if os.path.isdir(path):
            stop()
        return real_open(path, flags, *a, **k)

    os.open = dir_open
else:
    raise SystemExit(f"unknown phase {phase}")
epoch(w, 2)
print("NOT STOPPED", flush=True)
