"""DiceLoss (PyTorch) against the reference, finite differences, and its documented edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from dice_cases import IGNORE, dice_cases
from losses.testing import GradientMismatch, check_gradient
from torch.autograd.gradcheck import GradcheckError
from losses.torch import DiceLoss
from losses.torch.functional import dice_loss


def torch_dice(logits, target, reduction="mean", **options):
    return dice_loss(torch.as_tensor(logits), torch.as_tensor(target), reduction=reduction, **options)


@given(dice_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_matches_reference_in_float64(case, reduction):
    logits, target, options = case
    ours = torch_dice(logits, target, reduction, **options)
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(
        ours.numpy(), reference.dice_loss(logits, target, reduction, **options), rtol=1e-10, atol=1e-12
    )


@given(dice_cases())
def test_float32_matches_reference(case):
    logits, target, options = case
    # With soft labels the intersection (Σp + Σg − Σ|p − g|)/2 cancels in float32, and the log
    # turns that absolute error of a tiny Dice coefficient into an unbounded relative one: that
    # combination is checked in float64 only.
    assume(not (options["soft_labels"] and options["log_loss"]))
    ours = torch_dice(logits.astype(np.float32), target, "none", **options)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(
        ours.numpy(), reference.dice_loss(logits.astype(np.float32), target, "none", **options), rtol=2e-5, atol=2e-6
    )


def _clear_of_kinks(logits, target, options):
    """Soft labels use |p − g|, whose kink at p = g finite differences cannot cross."""
    if not options["soft_labels"]:
        return True
    p, g, v = reference.dice_probabilities_and_targets(
        logits, target, options["mode"], options["from_logits"], options["ignore_index"]
    )
    return bool(np.all(np.abs(p - g)[v > 0] > 1e-3))


@settings(max_examples=15)
@given(dice_cases(max_side=3), st.sampled_from(["mean", "sum", "none"]))
def test_gradient_matches_central_differences(case, reduction):
    logits, target, options = case

    assume(_clear_of_kinks(logits, target, options))
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    t = torch.as_tensor(target)
    assert torch.autograd.gradcheck(
        lambda x: dice_loss(x, t, reduction=reduction, **options), (x,), eps=1e-6, atol=1e-6, rtol=1e-4
    )


class _ForgetsSoftmaxJacobian(torch.autograd.Function):
    """A deliberately wrong backward: passes d(loss)/d(probabilities) on as if it were d(loss)/d(logits)."""

    @staticmethod
    def forward(ctx, logits, target):
        probs = torch.softmax(logits, 1)
        ctx.save_for_backward(probs, target)
        return dice_loss(probs, target, from_logits=False)

    @staticmethod
    def backward(ctx, grad_output):
        probs, target = ctx.saved_tensors
        with torch.enable_grad():
            p = probs.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(dice_loss(p, target, from_logits=False), p)
        return grad_output * grad, None


def test_negative_control_wrong_backward_fails_the_same_checks():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 4))
    target = torch.as_tensor(rng.integers(0, 3, (2, 4, 4)))
    # The correct function passes ...
    check_gradient(lambda x: dice_loss(x, target), logits)
    # ... the wrong backward computes the same value but fails both checkers.
    wrong = lambda x: _ForgetsSoftmaxJacobian.apply(x, target)  # noqa: E731
    x = torch.tensor(logits, requires_grad=True)
    torch.testing.assert_close(wrong(x), dice_loss(x, target))
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, logits)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(wrong, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


# --- empty targets ---------------------------------------------------------------------------

N_PIXELS = 16


def _empty_case(prediction_empty: bool, policy: str):
    """Binary, probabilities as input (from_logits=False): target empty; prediction empty or 0.9."""
    p = torch.full((1, 1, 4, 4), 0.0 if prediction_empty else 0.9, dtype=torch.float64, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    loss = dice_loss(p, target, mode="binary", from_logits=False, empty_target=policy)
    (grad,) = torch.autograd.grad(loss, p)
    return loss.item(), grad


# (policy, prediction empty?) -> (loss, gradient per pixel), with smooth_nr = smooth_dr = s = 1e-5,
# N = 16 pixels, p = 0.9 where the prediction is not empty. docs/overlap.md shows this table.
S = 1e-5
EMPTY_TARGET_TABLE = {
    ("smooth", True): (0.0, 1 / S),  # 1 − s/s; d/dp of 1 − s/(Σp + s) at Σp = 0 is s/s² = 1/s
    ("exclude", True): (0.0, 0.0),
    ("penalize", True): (0.0, 1 / N_PIXELS),
    ("smooth", False): (1 - S / (0.9 * N_PIXELS + S), S / (0.9 * N_PIXELS + S) ** 2),  # vanishing gradient
    ("exclude", False): (0.0, 0.0),
    ("penalize", False): (0.9, 1 / N_PIXELS),
}


@pytest.mark.parametrize("policy", ["smooth", "exclude", "penalize"])
@pytest.mark.parametrize("prediction_empty", [True, False], ids=["both-empty", "target-empty"])
def test_empty_target_table(policy, prediction_empty):
    loss, grad = _empty_case(prediction_empty, policy)
    expected_loss, expected_grad = EMPTY_TARGET_TABLE[(policy, prediction_empty)]
    assert loss == pytest.approx(expected_loss, abs=1e-12)
    torch.testing.assert_close(grad, torch.full_like(grad, expected_grad), rtol=1e-9, atol=1e-12)


def test_penalize_gradient_pushes_down_and_does_not_vanish_where_smooth_does():
    _, smooth = _empty_case(False, "smooth")
    _, penalize = _empty_case(False, "penalize")
    assert (penalize > 0).all(), "gradient descent must lower the prediction"
    assert penalize.min() > 1e4 * smooth.max(), "the smoothed formula's gradient vanishes; penalize's must not"
    # Through the sigmoid, with logits: still positive everywhere.
    logits = torch.full((1, 1, 4, 4), 3.0, requires_grad=True)
    dice_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long), mode="binary", empty_target="penalize").backward()
    assert (logits.grad > 0).all()


def test_exclude_with_every_class_empty_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.zeros(2, 3, 4, 4)
    loss = dice_loss(logits, target, mode="multilabel", empty_target="exclude")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


# --- ignore_index ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["label", "dense"])
@pytest.mark.parametrize("per_image", [True, False])
def test_ignored_pixels_get_zero_gradient_and_removing_them_changes_nothing(form, per_image):
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(2, 3, 5, 6)), requires_grad=True)
    if form == "label":
        target = torch.as_tensor(rng.integers(0, 3, (2, 5, 6)))
        target[..., -2:] = IGNORE
        kept = target[..., :-2]
    else:
        target = torch.as_tensor(rng.uniform(size=(2, 3, 5, 6)))
        target[..., -2:] = IGNORE
        kept = target[..., :-2]
    options = dict(mode="multiclass", ignore_index=IGNORE, per_image=per_image, squared=True, empty_target="penalize")
    loss = dice_loss(logits, target, **options)
    loss.backward()
    assert torch.count_nonzero(logits.grad[..., -2:]) == 0
    assert torch.count_nonzero(logits.grad[..., :-2]) > 0
    cropped = dice_loss(logits.detach()[..., :-2], kept, **options)
    torch.testing.assert_close(loss.detach(), cropped, rtol=1e-12, atol=1e-14)


# --- precision and extreme inputs ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_low_precision_inputs_give_float32_and_finite_gradients(dtype, mode):
    channels = 1 if mode == "binary" else 3
    logits = (torch.randn(2, channels, 8, 8) * 4).to(dtype).requires_grad_(True)
    target = torch.randint(0, 2 if mode == "binary" else 3, (2, 8, 8))
    if mode == "multilabel":
        target = torch.rand(2, channels, 8, 8).round()
    loss = dice_loss(logits, target, mode=mode, log_loss=True)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert logits.grad.dtype == dtype and torch.isfinite(logits.grad).all()
    reference_value = dice_loss(logits.detach().double(), target, mode=mode, log_loss=True)
    assert loss.item() == pytest.approx(reference_value.item(), rel=1e-5)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize(
    "options",
    [{}, {"log_loss": True, "smooth_nr": 0.0}, {"squared": True, "soft_labels": True}, {"empty_target": "penalize"}],
)
def test_extreme_logits_are_finite(mode, options):
    channels = 1 if mode == "binary" else 3
    logits = (torch.randint(0, 2, (2, channels, 6, 6)).float() * 2e4 - 1e4).requires_grad_(True)
    target = torch.randint(0, 2 if mode == "binary" else 3, (2, 6, 6))
    if mode == "multilabel":
        target = torch.rand(2, channels, 6, 6).round()
    loss = dice_loss(logits, target, mode=mode, **options)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --- bad input -------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"target has shape \(10, 5\).*input has shape \(10, 1, 10\)"):
        dice_loss(torch.randn(10, 1, 10), torch.zeros(10, 5), mode="binary")
    with pytest.raises(ValueError, match=r"target has shape \(2, 3, 4, 5\).*\(2, 3, 4, 4\)"):
        dice_loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\).*found \[3, 7\]"):
        dice_loss(torch.randn(1, 3, 2, 2), torch.tensor([[[0, 3], [7, 1]]]))
    with pytest.raises(ValueError, match=r"0 or 1.*found \[2\]"):
        dice_loss(torch.randn(1, 1, 2, 2), torch.tensor([[[0, 2], [1, 1]]]), mode="binary")
    with pytest.raises(ValueError, match=r"ignore_index=255; found \[-1\]"):
        dice_loss(torch.randn(1, 3, 2, 2), torch.tensor([[[0, 255], [-1, 1]]]), ignore_index=255)


def test_integer_predictions_are_a_type_error():
    with pytest.raises(TypeError, match="input must have a floating-point dtype.*torch.int64"):
        dice_loss(torch.ones(1, 3, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "binarie"}, "mode must be one of 'binary', 'multiclass', 'multilabel'; got 'binarie'"),
        ({"reduction": "avg"}, "reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
        ({"empty_target": "drop"}, "empty_target must be one of"),
        ({"smooth_nr": -1.0}, "smooth_nr must be >= 0"),
        ({"class_weights": [1.0, 2.0]}, r"class_weights must have one weight per channel of the input \(3\); got 2"),
        ({"classes": [0, 3]}, r"classes must lie in \[0, 3\)"),
        ({"classes": [1, 1]}, "classes must not repeat"),
        ({"from_logits": 1}, "from_logits must be True or False"),
    ],
)
def test_bad_options_name_the_argument(kwargs, message):
    error = TypeError if "from_logits" in kwargs else ValueError
    with pytest.raises(error, match=message):
        dice_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), **kwargs)


def test_remembered_options_are_checked_again_for_a_value_of_another_type():
    """The functional form remembers the checked options of plain values: a call with a value that
    equals a remembered one but has another type (1 == True, 0 == 0.0 == False) is checked anew."""
    logits, labels = torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    first = dice_loss(logits, labels, from_logits=True, per_image=False)
    with pytest.raises(TypeError, match="from_logits must be True or False; got 1"):
        dice_loss(logits, labels, from_logits=1, per_image=False)
    with pytest.raises(TypeError, match="per_image must be True or False; got 0"):
        dice_loss(logits, labels, from_logits=True, per_image=0)
    with pytest.raises(ValueError, match="smooth_nr must be >= 0"):
        dice_loss(logits, labels, smooth_nr=-1.0)
    torch.testing.assert_close(dice_loss(logits, labels, from_logits=True, per_image=False), first)


def test_channel_count_must_fit_the_mode():
    with pytest.raises(ValueError, match="exactly 1 channel in mode='binary'; got 3"):
        DiceLoss(mode="binary")(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 channels in mode='multiclass'"):
        DiceLoss(mode="multiclass")(torch.randn(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


# --- the module, compile, autocast, no one-hot --------------------------------------------------


def test_module_equals_functional_and_has_no_parameters():
    criterion = DiceLoss(mode="multiclass", class_weights=[1, 2, 3], reduction="sum")
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    torch.testing.assert_close(
        criterion(logits, labels), dice_loss(logits, labels, class_weights=[1, 2, 3], reduction="sum")
    )
    assert list(criterion.parameters()) == []
    assert "class_weights=[1.0, 2.0, 3.0]" in repr(criterion) and "reduction='sum'" in repr(criterion)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    criterion = DiceLoss(mode="multiclass", ignore_index=IGNORE, empty_target="penalize")
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager")
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, 0] = IGNORE
    loss = compiled(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(criterion(logits, labels), logits)
    torch.testing.assert_close(loss, criterion(logits, labels))
    torch.testing.assert_close(grad, expected_grad)


def test_autocast_bfloat16():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    images, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(images)
        loss = DiceLoss()(logits, labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


class _RecordShapes(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.outputs.append((func, tuple(t.shape), t.dtype))
        return out


def _one_hot_sized(records, batch, classes, spatial):
    shapes = {(batch, classes, *spatial), (batch, classes, int(np.prod(spatial))), (batch, *spatial, classes)}
    return [r for r in records if r[1] in shapes and not r[2].is_floating_point]


def test_label_maps_are_never_expanded_to_one_hot():
    logits = torch.randn(2, 5, 6, 7, requires_grad=True)
    labels = torch.randint(0, 5, (2, 6, 7))
    labels[0, 0] = IGNORE
    with _RecordShapes() as recorder:
        loss = dice_loss(logits, labels, ignore_index=IGNORE, squared=True, empty_target="penalize")
        loss.backward()
    assert _one_hot_sized(recorder.outputs, 2, 5, (6, 7)) == []
    # The check sees a one-hot when there is one:
    with _RecordShapes() as recorder:
        torch.nn.functional.one_hot(labels.clamp_max(4), 5).permute(0, 3, 1, 2)
    assert _one_hot_sized(recorder.outputs, 2, 5, (6, 7)) != []


# --- nothing silent: the specific cases behind the robustness suite ----------------------------

PATHS = ["auto", "torch"]  # the fused C kernel on CPU tensors, and the portable path


def _on_path(path, fn):
    import os

    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = path
    try:
        return fn()
    finally:
        os.environ.pop("LOSSES_KERNELS") if previous is None else os.environ.__setitem__("LOSSES_KERNELS", previous)


def _loss_and_grad(logits, target, **options):
    x = logits.detach().clone().requires_grad_(True)
    loss = dice_loss(x, target, **options)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_logits_beyond_the_float32_range_of_exp_agree_on_every_path(mode):
    """Logits ≤ −88 without smoothing: the probabilities underflow to 0 the same way on every path,
    so that an empty prediction on an empty target is the same perfect score (0/0 = 1) everywhere."""
    channels = 1 if mode == "binary" else 3
    logits = torch.full((2, channels, 4, 4), -95.0)
    if mode == "multiclass":
        logits[:, 0] = 20.0  # class 0 everywhere; classes 1, 2 at e^-115: exactly 0 in float32
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    results = [
        _on_path(p, lambda: _loss_and_grad(logits, labels, mode=mode, smooth_nr=0.0, smooth_dr=0.0)) for p in PATHS
    ]
    for loss, grad in results:
        assert loss.item() == 0.0 and torch.isfinite(grad).all()
    torch.testing.assert_close(results[0][1], results[1][1])


def test_ignore_index_beyond_62_bits_on_every_path():
    logits = torch.randn(1, 3, 2, 3)
    big = 2**62 + 1  # not a float64: 2**62 + 1 and 2**62 would compare equal there
    labels = torch.tensor([[[0, 1, 2], [big, big, big]]])
    for path in PATHS:
        # Ignoring the second row is cropping it away.
        torch.testing.assert_close(
            _on_path(path, lambda: dice_loss(logits, labels, ignore_index=big)),
            _on_path(path, lambda: dice_loss(logits[..., :1, :], labels[:, :1])),
        )
        with pytest.raises(ValueError, match=f"found \\[{big}\\]"):
            _on_path(path, lambda: dice_loss(logits, labels, ignore_index=2**62))


def test_huge_and_tiny_class_weights_are_normalised():
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    expected = dice_loss(logits, labels, class_weights=[1.0, 2.0, 3.0])
    for path in PATHS:
        for scale in (1e38, 1e-40):
            value = _on_path(
                path, lambda scale=scale: dice_loss(logits, labels, class_weights=[scale, 2 * scale, 3 * scale])
            )
            torch.testing.assert_close(value, expected)


def test_float16_gradient_saturates_instead_of_overflowing():
    """Probabilities exactly 0 on an empty target: the gradient is 1/smooth_dr = 1e5 per position,
    beyond float16's largest value; it comes back as 65504, not inf, on every path."""
    probs = torch.zeros(1, 1, 4, 4, dtype=torch.float16)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    for path in PATHS:
        _, grad = _on_path(path, lambda: _loss_and_grad(probs, labels, mode="binary", from_logits=False))
        assert grad.dtype == torch.float16 and torch.isfinite(grad).all() and grad.max().item() == 65504.0
    # Negative control: the float32 gradient is above float16's range.
    _, grad32 = _loss_and_grad(probs.float(), labels, mode="binary", from_logits=False)
    assert grad32.max().item() > 65504.0


def test_zero_smoothing_with_subnormal_probabilities_is_finite():
    probs = torch.full((1, 1, 4, 4), 1e-42)  # subnormal in float32
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    for path in PATHS:
        loss, grad = _on_path(
            path, lambda: _loss_and_grad(probs, labels, mode="binary", from_logits=False, smooth_nr=0.0, smooth_dr=0.0)
        )
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_a_soft_target_that_requires_grad_gets_its_gradient_on_every_path():
    logits = torch.randn(2, 3, 4, 4)
    soft = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    grads = []
    for path in PATHS:
        t = soft.clone().requires_grad_(True)
        loss = _on_path(path, lambda t=t: dice_loss(logits, t, soft_labels=True))
        (grad,) = torch.autograd.grad(loss, t)
        assert grad.abs().sum() > 0
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("transform", ["grad", "vmap", "jvp"])
def test_torch_func_transforms_on_every_path(transform):
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    fn = {
        "grad": lambda: torch.func.grad(lambda x: dice_loss(x, labels))(logits),
        "vmap": lambda: torch.func.vmap(lambda x, y: dice_loss(x[None], y[None]))(logits, labels),
        "jvp": lambda: torch.func.jvp(lambda x: dice_loss(x, labels), (logits,), (torch.ones_like(logits),))[1],
    }[transform]
    fused, portable = (_on_path(p, fn) for p in PATHS)
    torch.testing.assert_close(fused, portable)


def test_the_functional_form_compiles_with_fullgraph():
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda x, y: dice_loss(x, y, ignore_index=IGNORE, class_weights=[1.0, 2.0, 3.0]),
        fullgraph=True,
        backend="aot_eager",
    )
    logits, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    torch.testing.assert_close(
        compiled(logits, labels), dice_loss(logits, labels, ignore_index=IGNORE, class_weights=[1.0, 2.0, 3.0])
    )
