"""The doctor's framework-free parts: the report and its renderings, the argument order of a loss,
and which stack frames count as the user's code."""

import json
import os

import pytest

from losses.doctor import CODES, Finding, Report
from losses.doctor._report import break_finding, infer_order, is_library_file, user_site


def test_codes_are_the_public_contract():
    assert set(CODES) == {"DISCONNECTED", "ZERO_GRADIENT", "NON_FINITE", "BROADCAST", "SWAPPED_ARGUMENTS",
                          "INPLACE", "NO_GRADIENT_VARIABLES"}


def test_report_renders_text_and_strict_json():
    report = Report("torch", "my_loss", value=float("nan"), grad_norm=float("inf"), zero_fraction=0.5,
                    pred_shape=(8, 1), true_shape=(8,))
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


@pytest.mark.parametrize("signature, framework, order", [
    ("y_true, y_pred", "torch", "y_true, y_pred"),
    ("y_pred, y_true", "tensorflow", "y_pred, y_true"),
    ("input, target", "tensorflow", "y_pred, y_true"),
    ("logits, labels", "torch", "y_pred, y_true"),
    ("target, output", "torch", "y_true, y_pred"),
    ("predictions, targets", "torch", "y_pred, y_true"),
    ("a, b", "torch", "y_pred, y_true"),
    ("a, b", "tensorflow", "y_true, y_pred"),
])
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
