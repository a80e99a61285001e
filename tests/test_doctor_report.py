"""The doctor's framework-free parts: the report and its renderings, the argument order of a loss,
and which stack frames count as the user's code."""

import json
import os

import numpy as np
import pytest

from losses.doctor import CODES, Finding, Report
from losses.doctor._gradcheck import check_directions
from losses.doctor._report import (
    HostNumber,
    break_finding,
    function_site,
    infer_order,
    is_library_file,
    output_labels,
    user_site,
    wrong_gradient_finding,
)


def test_codes_are_the_public_contract():
    assert set(CODES) == {
        "DISCONNECTED",
        "ZERO_GRADIENT",
        "NON_FINITE",
        "BROADCAST",
        "SWAPPED_ARGUMENTS",
        "INPLACE",
        "NO_GRADIENT_VARIABLES",
        "WRONG_GRADIENT",
        "DEAD_TERM",
    }


def test_report_renders_text_and_strict_json():
    report = Report(
        "torch",
        "my_loss",
        value=float("nan"),
        grad_norm=float("inf"),
        zero_fraction=0.5,
        pred_shape=(8, 1),
        true_shape=(8,),
    )
    report.add(Finding("BROADCAST", "error", "shapes differ", "make them equal", "/x/loss.py", 12))
    report.add(Finding("BROADCAST", "error", "same place again", "make them equal", "/x/loss.py", 12))
    report.add(Finding("ZERO_GRADIENT", "warning", "flat here", "try other inputs"))
    assert report.codes == ["BROADCAST", "ZERO_GRADIENT"]  # one finding per code and line
    assert not report.ok
    data = json.loads(report.to_json())  # strict JSON: no NaN token
    assert data["value"] == "nan" and data["grad_norm"] == "inf" and data["ok"] is False
    assert data["findings"][0]["location"] == "/x/loss.py:12" and data["findings"][1]["location"] is None
    text = str(report)
    assert "ERROR BROADCAST at /x/loss.py:12" in text and "fix: make them equal" in text
    assert "WARNING ZERO_GRADIENT at (no line of your code)" in text


def test_a_report_with_only_warnings_is_ok():
    report = Report("tensorflow", "f")
    assert report.ok and "OK" in report.to_text()
    report.add(Finding("NO_GRADIENT_VARIABLES", "warning", "frozen", "unfreeze"))
    assert report.ok


@pytest.mark.parametrize(
    "signature, framework, order",
    [
        ("y_true, y_pred", "torch", "y_true, y_pred"),
        ("y_pred, y_true", "tensorflow", "y_pred, y_true"),
        ("input, target", "tensorflow", "y_pred, y_true"),
        ("logits, labels", "torch", "y_pred, y_true"),
        ("target, output", "torch", "y_true, y_pred"),
        ("predictions, targets", "torch", "y_pred, y_true"),
        ("a, b", "torch", "y_pred, y_true"),
        ("a, b", "tensorflow", "y_true, y_pred"),
    ],
)
def test_argument_order_from_parameter_names(signature, framework, order):
    fn = eval(f"lambda {signature}: 0")
    assert infer_order(fn, framework)[0] == order


def test_argument_order_of_loss_objects_and_override():
    class TorchStyle:
        def forward(self, input, target):
            return 0

        __call__ = forward

    class KerasStyle:
        def call(self, y_true, y_pred):
            return 0

    assert infer_order(TorchStyle(), "tensorflow") == ("y_pred, y_true", True)
    assert infer_order(KerasStyle(), "torch") == ("y_true, y_pred", True)
    assert infer_order(KerasStyle(), "torch", "y_pred, y_true") == ("y_pred, y_true", False)
    with pytest.raises(ValueError, match="order must be one of"):
        infer_order(KerasStyle(), "torch", "pred first")


def test_user_frames_are_outside_the_frameworks_and_this_package():
    import losses

    assert is_library_file(os.path.join(os.path.dirname(losses.__file__), "doctor", "_torch.py"))
    assert is_library_file(os.__file__)
    assert not is_library_file(__file__)
    assert not is_library_file("<stdin>")
    assert is_library_file("<frozen importlib._bootstrap>")
    site = user_site()
    assert site[0] == __file__ and isinstance(site[1], int)


def test_break_findings_name_the_surrogate_of_each_frontend():
    torch_fix = break_finding("round", "round", "torch", ("f.py", 3))
    keras_fix = break_finding("round", "tf op Round", "tensorflow", ("f.py", 3))
    assert "losses.torch.soft_round" in torch_fix.fix and "losses.keras.soft_round" in keras_fix.fix
    assert torch_fix.code == "ZERO_GRADIENT" and torch_fix.location == "f.py:3"
    assert break_finding("detach", "detach", "torch", (None, None)).code == "DISCONNECTED"


def test_a_finding_in_a_framework_file_loses_its_line():
    import losses

    report = Report("torch", "f")
    report.add(
        Finding("NON_FINITE", "error", "m", "f", os.path.join(os.path.dirname(losses.__file__), "_overlap.py"), 3)
    )
    assert report.findings[0].file is None and report.findings[0].line is None


# check_directions: the finite-difference judge of hand-written gradients, on NumPy functions.
X = [np.array([[0.3, -1.2, 2.0], [0.7, 1.1, -0.4]])]


def _value(xs):
    return float(np.sum(np.sin(xs[0]) * xs[0]))


def _gradient(factor=1.0):
    return lambda xs: [factor * (np.cos(xs[0]) * xs[0] + np.sin(xs[0]))]


def test_check_directions_passes_a_right_gradient_and_names_a_wrong_factor():
    assert not check_directions(_value, _gradient(), X).wrong
    verdict = check_directions(_value, _gradient(32.0), X)
    assert verdict.wrong and verdict.factor == pytest.approx(32.0, rel=1e-3)
    assert "32× too large" in wrong_gradient_finding("f", ("f.py", 1), verdict).message
    flipped = check_directions(_value, _gradient(-1.0), X)
    assert flipped.wrong and "sign flipped" in wrong_gradient_finding("f", ("f.py", 1), flipped).message
    small = check_directions(_value, _gradient(0.25), X)
    assert "4× too small" in wrong_gradient_finding("f", ("f.py", 1), small).message
    wrong_formula = check_directions(_value, lambda xs: [np.cos(xs[0])], X)
    assert wrong_formula.wrong and wrong_formula.factor is None


def test_check_directions_leaves_straight_through_and_kinks_alone():
    # A piecewise-constant forward with a surrogate backward: flat along every direction.
    assert check_directions(lambda xs: float(np.sum(np.round(xs[0]))), lambda xs: [np.ones_like(xs[0])], X) is None
    # |x| at a kink: the directions that cross it are skipped, the others agree.
    kinked = [np.array([0.0, 1.0, -2.0])]
    assert not check_directions(lambda xs: float(np.sum(np.abs(xs[0]))), lambda xs: [np.sign(xs[0])], kinked).wrong


def test_check_directions_in_low_precision():
    # A function that computes in float32 whatever its input: no false alarm, a wrong factor still seen.
    def value32(xs):
        return float(np.sum(np.sin(xs[0].astype(np.float32)) * xs[0].astype(np.float32)))

    assert not check_directions(value32, _gradient(), X).wrong
    assert check_directions(value32, _gradient(3.0), X).wrong


def test_host_number_keeps_its_mark_through_arithmetic():
    number = HostNumber(2.0, ("host", "item", ("f.py", 3)))
    scaled = 0.1 * number + 1 - number / 4
    assert isinstance(scaled, HostNumber) and scaled.cause == number.cause and scaled == pytest.approx(0.7)
    assert float(scaled) == pytest.approx(0.7) and type(float(scaled)) is float


def test_function_site_is_the_def_line_past_decorators():
    def decorator(f):
        return f

    @decorator
    @decorator
    def backward(ctx, grad):
        return grad

    path, line = function_site(backward)
    assert path == __file__ and open(path).read().splitlines()[line - 1].strip().startswith("def backward")


def test_output_labels_name_the_outputs_of_a_model():
    assert output_labels({"logits": 1, "aux": (2, 3)}) == {
        "logits": "outputs['logits']",
        "aux": ("outputs['aux'][0]", "outputs['aux'][1]"),
    }
    assert output_labels(5) == "outputs"
