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

from doctor_corpus import keras_broken, keras_healthy, score, tf_broken, tf_healthy, tf_models  # noqa: E402
from doctor_corpus.markers import expected_findings, healthy_functions  # noqa: E402

from losses.doctor import diagnose, diagnose_model  # noqa: E402
from losses.testing import GradientFlowError, assert_gradient_flow  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = expected_findings(tf_broken)
MODULES = {
    "tf_broken": tf_broken,
    "keras_broken": keras_broken,
    "tf_healthy": tf_healthy,
    "keras_healthy": keras_healthy,
}
BROKEN_CASES = [(m, n) for m in ("tf_broken", "keras_broken") for n in sorted(expected_findings(MODULES[m]))]
HEALTHY_CASES = [(m, n) for m in ("tf_healthy", "keras_healthy") for n in healthy_functions(MODULES[m])]
WARNING_CODES = {"DEAD_TERM"}  # the loss still trains: a warning


def inputs(module, name, seed=0):
    return tuple(score.to_framework(a, "tensorflow") for a in score.case_arrays(module, name, seed))


def found(report, module=tf_broken):
    return {(f.code, f.line) for f in report.findings if f.file and os.path.samefile(f.file, module.__file__)}


def test_corpus_covers_every_failure_of_the_seed_articles_and_of_the_issues():
    codes = {
        code
        for m in ("tf_broken", "keras_broken")
        for expected in expected_findings(MODULES[m]).values()
        for code, _ in expected
    }
    # Tensors are immutable in TensorFlow: no INPLACE case.
    assert codes == {
        "DISCONNECTED",
        "ZERO_GRADIENT",
        "NON_FINITE",
        "BROADCAST",
        "SWAPPED_ARGUMENTS",
        "WRONG_GRADIENT",
        "DEAD_TERM",
    }
    assert len(BROKEN_CASES) >= 50


@pytest.mark.parametrize("module, name", BROKEN_CASES)
def test_broken_loss_is_diagnosed_at_its_line(module, name):
    module = MODULES[module]
    expected = expected_findings(module)[name]
    report = score.diagnose_case(module, name, "tensorflow")
    assert found(report, module) == expected, report.to_text()
    assert len(report.findings) == len(expected), report.to_text()
    # partial_* losses and dead terms still train part of the prediction, and a saturated_* loss may
    # have a gradient at other inputs: warnings; the rest are errors.
    assert report.ok == (name.startswith(("partial_", "saturated_")) or {c for c, _ in expected} <= WARNING_CODES)


@pytest.mark.parametrize("module, name", HEALTHY_CASES)
def test_healthy_loss_gives_a_clean_report(module, name):
    report = score.diagnose_case(MODULES[module], name, "tensorflow")
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


def test_diagnose_model_reports_every_group_with_its_reason():
    model = tf_models.backbone_model()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    report = diagnose_model(model, tf_models.mse, x, np.zeros((5, 2), np.float32))
    ((_, frozen_line),) = expected_findings(tf_models, "frozen")["Backbone"]
    ((_, discarded_line),) = expected_findings(tf_models, "discarded")["Backbone"]
    ((_, weight_line),) = expected_findings(tf_models, "weight")["ScaledDense"]
    by_line = {}
    for f in report.findings:
        by_line.setdefault(f.line, []).append(f)
    frozen = by_line[frozen_line]  # two frozen layers called at one line: both reported
    assert len(frozen) == 2 and all(f.severity == "warning" and "frozen" in f.message for f in frozen)
    (discarded,) = by_line[discarded_line]
    assert "does not reach the prediction" in discarded.message
    (weight,) = by_line[weight_line]
    assert "scale" in weight.message and "never uses these weights" in weight.message
    assert len(report.findings) == 4, report.to_text()


@pytest.mark.parametrize("model, loss", [("TupleHeads", "first_output_mse"), ("DictHeads", "logits_mse")])
def test_diagnose_model_with_structured_outputs(model, loss):
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    report = diagnose_model(getattr(tf_models, model)(), getattr(tf_models, loss), x, np.zeros((5, 2), np.float32))
    ((code, line),) = expected_findings(tf_models, "ignored")[loss]
    (finding,) = report.findings
    assert finding.code == code and finding.line == line and finding.severity == "warning"
    assert ("outputs[1]" if model == "TupleHeads" else "outputs['embedding']") in finding.message


def test_wrong_custom_gradient_names_the_factor():
    report = score.diagnose_case(tf_broken, "custom_gradient_without_1_over_n", "tensorflow")
    assert "32× too large" in report.findings[0].message, report.to_text()
    report = score.diagnose_case(keras_broken, "custom_gradient_sign_flipped", "tensorflow")
    assert "sign flipped" in report.findings[0].message, report.to_text()


def test_keras_loss_with_a_host_number_term_runs():
    # Keras reads the dtype of a Python number; a number the doctor marked must pass as one.
    import keras

    from losses.doctor._report import HostNumber

    value = keras.ops.add(tf.constant([1.0, 2.0]), HostNumber(0.5, None) * 2)
    assert value.dtype == tf.float32 and np.allclose(value, [2.0, 3.0])


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
        return subprocess.run(
            [sys.executable, "-m", "losses", "doctor", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
        )

    result = run(f"{tf_broken.__file__}:stop_gradient", "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    ((code, line),) = BROKEN["stop_gradient"]
    assert data["framework"] == "tensorflow"
    assert [(f["code"], f["line"]) for f in data["findings"]] == [(code, line)]


def test_cli_refuses_keras_on_another_backend_than_its_own(capsys, tmp_path):
    from losses.__main__ import main

    (tmp_path / "keras_loss.py").write_text(
        "import keras\n\ndef loss(y_true, y_pred):\n    return keras.ops.mean(keras.ops.round(y_pred) - y_true)\n"
    )
    assert main(["doctor", f"{tmp_path / 'keras_loss.py'}:loss", "--framework", "jax"]) == 2
    err = capsys.readouterr().err
    assert "runs on tensorflow here; set KERAS_BACKEND=jax" in err
    assert main(["doctor", f"{tmp_path / 'keras_loss.py'}:loss"]) == 1  # Keras's backend: found from the imports
    assert "ZERO_GRADIENT" in capsys.readouterr().out


def test_cli_on_a_healthy_keras_loss(capsys):
    from losses.__main__ import main

    assert main(["doctor", f"{tf_healthy.__file__}:huber"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["doctor", f"{tf_healthy.__file__}:KerasLossClass", "--framework", "tensorflow"]) == 0


def _package_keras_losses():
    import inspect

    import losses.keras as frontend

    return sorted(
        name
        for name, fn in vars(frontend).items()
        if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__.startswith("losses.")
    )


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
    if name.startswith("lovasz"):  # label maps only; the hinge takes one logit per position
        classes = 1 if name == "lovasz_hinge_loss" else 3
        y_pred = tf.constant(rng.normal(size=(2, 4, 4, classes)).astype(np.float32))
        y_true = tf.constant(rng.integers(0, max(classes, 2), (2, 4, 4)))
    if params[:2] == ["y_true", "y_pred"]:
        loss_fns = [fn]
    else:  # a surrogate f(x, alpha, ...): its weighted sum as a loss, soft and straight-through
        loss_fns = [
            lambda y_true, y_pred, st=st: tf.reduce_sum(fn(y_pred * 3, straight_through=st) * y_true)
            for st in (False, True)
        ]
    for loss_fn in loss_fns:
        report = diagnose(loss_fn, y_true, y_pred)
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
