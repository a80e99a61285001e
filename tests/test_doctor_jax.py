"""The gradient-flow doctor on Keras 3 with the JAX backend, in a fresh process (the Keras backend
is fixed when keras is first imported): the keras.ops corpus is diagnosed with the right code at the
right line and the correct losses give clean reports; the command line takes --framework jax."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

if importlib.util.find_spec("jax") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("JAX and Keras are needed", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "doctor_corpus")
ENV = {**os.environ, "KERAS_BACKEND": "jax"}


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)


def test_keras_corpus_on_jax_scores_every_case():
    result = run(os.path.join(CORPUS, "score.py"), "--framework", "jax")
    summary = result.stdout.strip().splitlines()[0] if result.stdout.strip() else result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    cases = int(summary.split(" broken cases")[0].split()[-1])
    assert cases >= 20 and f"right code {cases}, right line {cases}" in summary and "false alarms 0" in summary


def test_cli_on_jax():
    broken = os.path.join(CORPUS, "keras_broken.py")
    result = run("-m", "losses", "doctor", f"{broken}:custom_gradient_without_1_over_n", "--framework", "jax")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "WRONG_GRADIENT" in result.stdout and "32× too large" in result.stdout
    healthy = os.path.join(CORPUS, "keras_healthy.py")
    result = run("-m", "losses", "doctor", f"{healthy}:focal_loss")  # the framework: Keras's backend
    assert result.returncode == 0 and "(jax;" in result.stdout, result.stdout + result.stderr[-3000:]
