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


def test_breaks_inside_loops_branches_and_checkpoints():
    """A break inside lax.scan / fori_loop / cond / jax.checkpoint is an error at its line (or the
    loop's), not a "saturated" warning, and a wrong jax.custom_jvp rule is WRONG_GRADIENT at the
    rule; the same losses without the fault are healthy."""
    sys.path.insert(0, CORPUS)
    try:
        import jax_control_flow
        from markers import expected_findings
    finally:
        sys.path.remove(CORPUS)
    path = os.path.join(CORPUS, "jax_control_flow.py")
    expected = expected_findings(jax_control_flow)
    assert len(expected) == 5
    for name, findings in expected.items():
        ((code, line),) = findings
        result = run("-m", "losses", "doctor", f"{path}:{name}", "--framework", "jax")
        assert result.returncode == 1, (name, result.stdout + result.stderr[-3000:])
        assert f"ERROR {code} at {path}:{line}" in result.stdout, (name, result.stdout)
    for name in ("healthy_scan", "healthy_fori_loop", "healthy_cond", "healthy_custom_jvp"):
        result = run("-m", "losses", "doctor", f"{path}:{name}", "--framework", "jax")
        assert result.returncode == 0 and "OK" in result.stdout, (name, result.stdout + result.stderr[-3000:])
