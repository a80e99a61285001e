"""Re-runs every Keras test file on the other Keras backends, each in a fresh process.

The Keras backend is fixed when keras is first imported, so the main pytest process covers
TensorFlow and these subprocesses cover torch and JAX (when installed).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
KERAS_TEST_FILES = sorted(str(p) for p in TESTS.glob("test_keras_*.py") if p.name != pathlib.Path(__file__).name)


@pytest.mark.skipif(os.environ.get("LOSSES_KERAS_BACKEND_RUN") == "1", reason="already inside a backend run")
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_suite_passes_on_backend(backend):
    if importlib.util.find_spec(backend) is None or importlib.util.find_spec("keras") is None:
        pytest.skip(f"{backend} is not installed")
    assert KERAS_TEST_FILES, "no Keras test files found"
    env = {**os.environ, "KERAS_BACKEND": backend, "LOSSES_KERAS_BACKEND_RUN": "1"}
    if os.environ.get("CI"):
        env["HYPOTHESIS_PROFILE"] = "ci-backends"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", *KERAS_TEST_FILES],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env=env,
        timeout=1500,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, (
        f"KERAS_BACKEND={backend}: {summary}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    )
    assert " passed" in summary, summary
