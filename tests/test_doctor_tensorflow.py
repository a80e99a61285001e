"""The gradient-flow doctor on TensorFlow / Keras (TensorFlow backend): every broken loss of the
corpus is diagnosed with the right code at the right line; correct losses give a clean report."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("the TensorFlow doctor runs Keras on the TensorFlow backend", allow_module_level=True)

from doctor_corpus import tf_broken, tf_healthy, tf_models  # noqa: E402
from doctor_corpus.markers import expected_findings, healthy_functions  # noqa: E402

from losses.doctor import diagnose, diagnose_model  # noqa: E402
from losses.testing import GradientFlowError, assert_gradient_flow  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = expected_findings(tf_broken)


def inputs(module, name, seed=0):
    pred_shape, true_shape = getattr(module, "SHAPES", {}).get(name, ((8, 4), (8, 4)))
    rng = np.random.default_rng(seed)
    y_pred = rng.uniform(0.05, 0.95, size=pred_shape).astype(np.float32)
    y_true = (rng.uniform(size=true_shape) > 0.5).astype(np.float32)
    return tf.constant(y_true), tf.constant(y_pred)


def found(report):
    return {(f.code, f.line) for f in report.findings if f.file and os.path.samefile(f.file, tf_broken.__file__)}


def test_corpus_covers_every_failure_of_the_seed_articles():
    codes = {code for expected in BROKEN.values() for code, _ in expected}
    # Tensors are immutable in TensorFlow: no INPLACE case.
    assert codes == {"DISCONNECTED", "ZERO_GRADIENT", "NON_FINITE", "BROADCAST", "SWAPPED_ARGUMENTS"}
    assert len(BROKEN) >= 17


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_loss_is_diagnosed_at_its_line(name):
    y_true, y_pred = inputs(tf_broken, name)
    fn = getattr(tf_broken, name)
    report = diagnose(fn() if isinstance(fn, type) else fn, y_true, y_pred)
    assert found(report) == BROKEN[name], report.to_text()
    assert len(report.findings) == len(BROKEN[name]), report.to_text()
    # partial_* losses still train part of the prediction: a warning; every other one is an error.
    assert report.ok == name.startswith("partial_")


@pytest.mark.parametrize("name", healthy_functions(tf_healthy))
def test_healthy_loss_gives_a_clean_report(name):
    fn = getattr(tf_healthy, name)
    fn = fn() if isinstance(fn, type) else fn
    y_true, y_pred = inputs(tf_healthy, name)
    report = diagnose(fn, y_true, y_pred)
    assert report.findings == [], report.to_text()
    assert report.ok and report.grad_norm > 0 and report.zero_fraction < 1


def test_diagnosis_leaves_tensorflow_as_it_found_it():
    from tensorflow.python.framework import ops

    before = dict(vars(ops._EagerTensorBase))
    eager = tf.config.functions_run_eagerly()
    profiler = sys.getprofile()
    diagnose(tf_broken.numpy_floor, *inputs(tf_broken, "numpy_floor"))
    assert dict(vars(ops._EagerTensorBase)) == before
    assert tf.config.functions_run_eagerly() == eager
    assert sys.getprofile() is profiler
    x = tf.constant([1.5])
    assert float(np.floor(x)[0]) == 1.0


def test_tf_function_losses_are_diagnosed_eagerly():
    report = diagnose(tf.function(tf_broken.rounded), *inputs(tf_broken, "rounded"))
    assert report.codes == ["ZERO_GRADIENT"]


def test_diagnose_model_names_the_frozen_layer_at_its_line():
    model = tf_models.frozen_model()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    report = diagnose_model(model, tf_models.mse, x, y)
    (finding,) = report.findings
    ((_, line),) = expected_findings(tf_models, "frozen")["Encoder"]
    assert finding.code == "NO_GRADIENT_VARIABLES" and finding.severity == "warning"
    assert "encoder" in finding.message and finding.line == line
    assert report.ok


def test_diagnose_model_explains_no_gradients_provided():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.zeros((5, 4), np.float32)
    report = diagnose_model(model, tf_broken.ignores_prediction, x, np.ones((5, 2), np.float32))
    assert report.codes == ["DISCONNECTED", "NO_GRADIENT_VARIABLES"]
    assert "No gradients provided" in report.findings[1].message
    assert report.findings[1].line == report.findings[0].line


def test_assert_gradient_flow_on_keras_losses():
    assert_gradient_flow(tf_healthy.mse, framework="tensorflow")
    with pytest.raises(GradientFlowError, match="DISCONNECTED"):
        assert_gradient_flow(tf_broken.stop_gradient, framework="tensorflow")


def test_cli_on_tensorflow_files():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "losses", "doctor", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    result = run(f"{tf_broken.__file__}:stop_gradient", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    ((code, line),) = BROKEN["stop_gradient"]
    assert data["framework"] == "tensorflow"
    assert [(f["code"], f["line"]) for f in data["findings"]] == [(code, line)]


def test_cli_on_a_healthy_keras_loss(capsys):
    from losses.__main__ import main

    assert main(["doctor", f"{tf_healthy.__file__}:huber"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["doctor", f"{tf_healthy.__file__}:KerasLossClass", "--framework", "tensorflow"]) == 0


def _package_keras_losses():
    import inspect

    import losses.keras as frontend

    return sorted(name for name, fn in vars(frontend).items()
                  if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__.startswith("losses."))


@pytest.mark.parametrize("name", _package_keras_losses() or ["(none yet)"])
def test_package_keras_losses_and_surrogates_give_a_clean_report(name):
    import inspect

    import losses.keras as frontend

    if name == "(none yet)":
        pytest.skip("losses.keras defines no loss in this build")
    fn = getattr(frontend, name)
    params = list(inspect.signature(fn).parameters)
    rng = np.random.default_rng(0)
    y_pred = tf.constant(rng.uniform(0.05, 0.95, size=(2, 4, 4, 3)).astype(np.float32))
    y_true = tf.constant((rng.uniform(size=(2, 4, 4, 3)) > 0.5).astype(np.float32))
    if params[:2] == ["y_true", "y_pred"]:
        loss_fn = fn
    else:  # a surrogate f(x, alpha, ...): its weighted sum as a loss
        def loss_fn(y_true, y_pred):
            return tf.reduce_sum(fn(y_pred * 3) * y_true)
    try:
        report = diagnose(loss_fn, y_true, y_pred)
    except (TypeError, ValueError) as error:
        pytest.skip(f"{name} needs other inputs than the generic ones: {error}")
    assert report.findings == [], report.to_text()


def test_demo_broken_then_repaired_keras_loss(monkeypatch):
    import losses.keras
    from losses.doctor._demo import run_doctor_demo

    def soft_round(x, alpha):
        m = keras.ops.floor(x) + 0.5
        return m + keras.ops.tanh(alpha * (x - m)) / (2 * keras.ops.tanh(alpha / 2))

    if not hasattr(losses.keras, "soft_round"):
        monkeypatch.setattr(losses.keras, "soft_round", soft_round, raising=False)
    lines = []
    assert run_doctor_demo(lines.append, frameworks=["keras"]) == 0
    text = "\n".join(lines)
    assert text.count("ERROR ZERO_GRADIENT") == 1 and text.count("OK: the gradient reaches") == 1


def test_diagnose_model_with_a_loss_that_fails_reports_the_loss():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    x = np.zeros((10, 4), np.float32)
    report = diagnose_model(model, tf_broken.shape_10x10_vs_10x5, x, np.ones((10, 5), np.float32))
    assert report.codes == ["BROADCAST"]
