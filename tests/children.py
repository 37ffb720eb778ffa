"""Training in a child process (tests/_child_fit.py): run one to the end, or SIGKILL it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

CHILD_FIT = Path(__file__).parent / "_child_fit.py"


def run_child(mode, log_dir):
    """Runs ``_child_fit.py MODE LOG_DIR`` to the end and returns its stdout."""
    out = subprocess.run(
        [sys.executable, str(CHILD_FIT), mode, str(log_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def kill_child_at(mode, log_dir, marker):
    """Runs ``_child_fit.py MODE LOG_DIR`` until it prints a line starting with ``marker``,
    then SIGKILLs it: no handler, no ``finally`` and no ``on_train_end`` runs there."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD_FIT), mode, str(log_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        for line in child.stdout:
            if line.startswith(marker):
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
