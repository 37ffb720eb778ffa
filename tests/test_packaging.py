"""The package as a user installs it: an sdist and a wheel that PyPI would accept, and the
wheel in a fresh environment with JAX and no TensorFlow, running README's ten-line snippet."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend already installed here, nothing fetched.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    return out


def test_sdist_and_wheel_pass_twine_check_and_hold_the_plugin(dist):
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    done = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)])
    assert done.stdout.count("PASSED") == 2
    names = zipfile.ZipFile(wheels[0]).namelist()
    for static in (ROOT / "cam_callback/tensorboard_plugin/static").iterdir():
        assert f"cam_callback/tensorboard_plugin/static/{static.name}" in names
    assert "cam_callback/py.typed" in names
    meta = (
        zipfile.ZipFile(wheels[0])
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert not any("tensorflow" in r for r in base), base  # TensorFlow is an extra
    assert any("tensorflow" in r and 'extra == "tensorflow"' in r for r in requires)


@pytest.mark.timeout(900)
def test_wheel_installs_without_tensorflow_and_runs_the_readme_snippet_on_jax(dist, tmp_path):
    # Nothing of this checkout on the path: pip would take it for an installed cam-callback.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["KERAS_BACKEND"] = "jax"
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])  # no system site-packages: a fresh env
    py = str(venv / "bin" / "python")
    wheel = next(dist.glob("*.whl"))
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, f"{wheel}[jax]"], cwd=tmp_path, env=env)
    section = README[README.index("## The API in ten lines") :]
    start = section.index("```python") + len("```python")
    snippet = section[start : section.index("```", start)]
    check = (
        "\nimport importlib.util, sys\n"
        "assert importlib.util.find_spec('tensorflow') is None, 'tensorflow is installed'\n"
        "assert 'tensorflow' not in sys.modules\n"
        "assert cam_callback.__file__.startswith(sys.prefix), cam_callback.__file__\n"
        "assert keras.backend.backend() == 'jax'\n"
        "assert list(run.epochs) == [-1, 0, 1, 2] and run.heatmaps.shape[:2] == (4, len(probes))\n"
        "print('ok', res.heatmaps.shape)\n"
    )
    (tmp_path / "snippet.py").write_text(snippet + check)
    # Run outside the checkout, so the installed wheel is imported, not the source tree.
    done = _run([py, "snippet.py"], cwd=tmp_path, env=env, timeout=600)
    assert done.stdout.strip().splitlines()[-1].startswith("ok (8,")
