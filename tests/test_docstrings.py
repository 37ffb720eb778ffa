"""Every docstring example in the package runs and prints what it shows.

Public names carry an example; one that no longer matches the code misleads the reader
more than none, so each is run here as a doctest (``+SKIP`` marks the few that need a
trained model or a file).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import keras
import pytest

import cam_callback

# The other backends' adapters import their framework (torch alone takes 10 s to load).
OTHER_BACKENDS = {
    f"cam_callback.backends.{b}" for b in ("tensorflow", "jax", "torch")
} - {f"cam_callback.backends.{keras.backend.backend()}"}
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(cam_callback.__path__, prefix="cam_callback.")
    if m.name not in OTHER_BACKENDS
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(module, name, globs=vars(module).copy()):
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"{test.name}:\n" + "".join(failures)
