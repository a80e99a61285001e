"""Nothing fails silently (PyTorch): every segmentation loss (Dice, focal, Dice + cross-entropy, Dice +
focal, Lovász-softmax, Lovász hinge) on random finite and non-finite inputs, dtypes, layouts, options
and weight maps, on every execution path.

- finite in → finite loss and gradient, and every path computes the same values, those of the
  reference; the one documented exception: the focal loss's ``"mean"`` over no valid position is
  NaN (as ``torch.nn.functional.cross_entropy``);
- a NaN or ±inf in the input or in a float target → a non-finite loss, and a non-finite gradient
  for every element of the row that holds it (its image; the batch with ``per_image=False``) and
  for no other element; for the focal loss, a sum of independent terms, at its element (and at most
  the other classes of its position);
- bad input → a ``ValueError`` / ``TypeError`` whose message names the argument;
- a batch of 0 images or 0 positions → the documented result, on every path.

Paths: the fused C kernel (``LOSSES_KERNELS=auto`` on CPU tensors; the Lovász losses: NumPy's sort)
and the portable PyTorch path (``torch``) here; the Triton kernels under ``TRITON_INTERPRET=1`` in a
child process (the test at the end runs this file again there, with fewer examples, for the losses
that have a Triton path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from penalized_mae_cases import check_float32_range, float32_range_cases
from robustness_cases import (
    LOSSES,
    bad_inputs,
    finite_cases,
    matches_reference_in,
    non_finite_gradient,
    non_finite_values,
    poisoned_cases,
    reference_loss,
    valid_weights,
)
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch.functional import (
    dice_ce_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
    penalized_mae,
    soft_round,
    soft_step,
    tversky_loss,
)

IN_TRITON_CHILD = os.environ.get("LOSSES_ROBUSTNESS_TRITON_CHILD") == "1"
PATHS = ["triton"] if IN_TRITON_CHILD else ["auto", "torch"]
# On CUDA and under the Triton interpreter the losses with a term and the Lovász losses take the
# portable path, which the parent process checks already.
# The Lovász losses have no Triton path (they sort, as on the CPU).
LOSSES_HERE = ("dice", "focal", "dice_ce", "dice_focal") if IN_TRITON_CHILD else LOSSES
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
FUNCTIONS = {
    "dice": dice_loss,
    "focal": focal_loss,
    "dice_ce": dice_ce_loss,
    "dice_focal": dice_focal_loss,
    "lovasz_softmax": lovasz_softmax_loss,
    "lovasz_hinge": lovasz_hinge_loss,
}
# The profile's examples shared among the losses: a third of them for each of the six (at least 2).
_EXAMPLES = settings.default.max_examples
PER_LOSS = settings(max_examples=min(_EXAMPLES, max(2, math.ceil(2 * _EXAMPLES / len(LOSSES_HERE)))))
# Every kind of bad input of every loss, each with a few random values.
PER_BAD_INPUT = settings(max_examples=max(1, _EXAMPLES // 10))


@contextlib.contextmanager
def kernels(choice: str):
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = choice
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("LOSSES_KERNELS", None)
        else:
            os.environ["LOSSES_KERNELS"] = previous


def as_input(logits: np.ndarray, dtype: torch.dtype, layout: str) -> torch.Tensor:
    x = torch.as_tensor(logits).to(dtype)
    if layout == "channels_last":  # the channels innermost in memory (torch.channels_last for 4D)
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    elif layout == "strided":  # a view of every other element of a larger tensor
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x.detach().requires_grad_(True)


def loss_and_grad(path, case, dtype="float32", layout="contiguous", reduction="mean"):
    x = as_input(case.logits, DTYPES[dtype], layout)
    t = torch.as_tensor(case.target)
    options = dict(case.options)
    if case.weight is not None:
        options["weight"] = torch.as_tensor(case.weight, dtype=torch.float32)
    with kernels(path):
        loss = FUNCTIONS[case.loss](x, t, reduction=reduction, **options)
        (grad,) = torch.autograd.grad(loss, x, torch.ones_like(loss))
    assert grad.dtype == x.dtype and grad.shape == x.shape
    return loss.detach().double().numpy(), grad.double().numpy()


def test_the_c_kernel_is_among_the_paths():
    if not IN_TRITON_CHILD:
        assert cpu_kernels.available(), cpu_kernels.build_error()


def nothing_to_average(case, reduction):
    """The documented NaN for finite input: the PyTorch focal loss's mean over no valid position."""
    return case.loss == "focal" and reduction == "mean" and valid_weights(case).sum() == 0


@pytest.mark.parametrize("loss", LOSSES_HERE)
@PER_LOSS
@given(data=st.data(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_finite_inputs_give_finite_results_on_every_path_and_the_paths_agree(loss, data, reduction):
    case, dtype, layout = data.draw(finite_cases(loss))
    results = {path: loss_and_grad(path, case, dtype, layout, reduction) for path in PATHS}
    for path, (value, grad) in results.items():
        if nothing_to_average(case, reduction):  # NaN, and so is its gradient
            assert np.isnan(value).all() and np.isnan(grad).all(), (path, value)
            continue
        assert np.isfinite(value).all(), (path, value)
        assert np.isfinite(grad).all(), path
        if dtype == "float16":  # saturated, never overflowed
            assert np.abs(grad).max() <= 65504.0
    # Every path against the reference on the same input in float64 (what float32 computation
    # approximates), where float32 and float64 agree by design.
    if matches_reference_in(case, dtype):
        values = np.asarray(torch.as_tensor(case.logits).to(DTYPES[dtype]).double())
        expected = reference_loss(case, values, reduction)
        for path, (value, _) in results.items():
            np.testing.assert_allclose(value, np.reshape(expected, value.shape), rtol=2e-5, atol=2e-6, err_msg=path)
    if len(results) > 1:
        (loss_a, grad_a), (loss_b, grad_b) = results.values()
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4, atol=1e-5)
        scale = max(1.0, float(np.nan_to_num(np.abs(grad_b)).max()))
        tolerance = 1e-2 if dtype in ("float16", "bfloat16") else 1e-4
        np.testing.assert_allclose(grad_a, grad_b, rtol=tolerance, atol=tolerance * 1e-2 * scale)


@pytest.mark.parametrize("loss", LOSSES_HERE)
@PER_LOSS
@given(
    data=st.data(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    dtype=st.sampled_from(["float32", "float64", "float16"]),
)
def test_a_non_finite_value_comes_out_in_the_loss_and_the_gradient_where_it_entered(loss, data, reduction, dtype):
    case, where, index = data.draw(poisoned_cases(loss))
    must, may = non_finite_gradient(case, index)
    if nothing_to_average(case, reduction):  # NaN everywhere for finite input already
        may = np.ones_like(may)
    for path in PATHS:
        value, grad = loss_and_grad(path, case, dtype, reduction=reduction)
        if reduction == "none" and value.ndim:
            expected = non_finite_values(case, index, per_sample=False)
            np.testing.assert_array_equal(~np.isfinite(value), expected, err_msg=f"{path}: {where} {index}")
        else:
            assert not np.isfinite(value).all(), (path, value)
        assert not np.isfinite(grad[must]).any(), (path, where, index)
        assert np.isfinite(grad[~may]).all(), (path, where, index)


def bad_input_params():
    for loss, name, build, error, text in bad_inputs(LOSSES_HERE):
        yield pytest.param(loss, build, error, text, id=f"{loss}: {name}")


@pytest.mark.parametrize("loss, build, error, text", list(bad_input_params()))
@PER_BAD_INPUT
@given(seed=st.integers(0, 2**32 - 1))
def test_bad_input_is_a_clear_error_naming_the_argument(loss, build, error, text, seed):
    logits, target, options, weight = build(np.random.default_rng(seed))
    if weight is not None:
        options = {**options, "weight": torch.as_tensor(weight, dtype=torch.float32)}
    for path in PATHS:
        with kernels(path), pytest.raises(error, match=text):
            FUNCTIONS[loss](torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(target), **options)


@pytest.mark.parametrize("loss", LOSSES_HERE)
def test_prediction_and_target_on_different_devices(loss):
    channels = 1 if loss == "lovasz_hinge" else 3
    with pytest.raises(ValueError, match=r"same device.*input on cpu.*target on meta"):
        FUNCTIONS[loss](torch.randn(2, channels, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long, device="meta"))


def empty_params():
    for loss in LOSSES_HERE:
        for shape in [(0, 4, 4), (2, 0, 4)]:
            yield pytest.param(loss, shape, id=f"{loss}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loss, shape", list(empty_params()))
def test_empty_inputs(loss, shape, path):
    """Per-image losses of 0 images: an empty tensor, its sum 0 and its mean NaN (as
    torch.nn.functional); 0 positions: every class empty in prediction and target (loss 0). The
    focal loss: its terms (none of them), their sum 0 and their mean over no position NaN."""
    channels = 1 if loss == "lovasz_hinge" else 3
    x = torch.zeros((shape[0], channels, *shape[1:]), requires_grad=True)
    labels = torch.zeros(shape, dtype=torch.long)
    fn = FUNCTIONS[loss]
    with kernels(path):
        none = fn(x, labels, reduction="none")
        total = fn(x, labels, reduction="sum")
        mean = fn(x, labels)
        (grad,) = torch.autograd.grad(mean + total, x)
        if loss != "focal":
            batch = fn(x, labels, per_image=False)
            (batch_grad,) = torch.autograd.grad(batch, x)
            assert batch.item() == 0.0 and batch_grad.shape == x.shape
    assert total.item() == 0.0 and grad.shape == x.shape
    if loss == "focal":
        assert none.shape == labels.shape and np.isnan(mean.item())
    else:
        assert none.shape == (shape[0],) and (none == 0).all()
        assert np.isnan(mean.item()) if shape[0] == 0 else mean.item() == 0.0


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_float16_gradient_keeps_an_infinity_from_a_non_finite_input(value, path):
    """Saturation at ±65504 is for finite input only: an infinite soft target makes the focal term's
    gradient infinite at its element, and in float16 it stays so (it came back as a finite ∓65504)."""
    x = torch.full((1, 1, 1), 0.6, dtype=torch.float16, requires_grad=True)
    with kernels(path):
        loss = focal_loss(x, torch.full((1, 1, 1), value), mode="binary", from_logits=False, gamma=0.0)
        (grad,) = torch.autograd.grad(loss, x)
    assert grad.dtype == torch.float16 and torch.isinf(grad).all(), grad


@pytest.mark.skipif(
    IN_TRITON_CHILD or importlib.util.find_spec("triton") is None,
    reason="runs the file again under the Triton interpreter",
)
def test_the_triton_kernels_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", LOSSES_KERNELS="triton", LOSSES_ROBUSTNESS_TRITON_CHILD="1")
    if os.environ.get("CI"):
        env["HYPOTHESIS_PROFILE"] = "ci-backends"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[1],
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


CHANGING_FLOAT_OPTIONS = {
    "penalized_mae delta": (lambda x, y, v: penalized_mae(x.flatten(), y.flatten(), delta=v), (0.5, 0.7, 0.9)),
    "penalized_mae penalty": (lambda x, y, v: penalized_mae(x.flatten(), y.flatten(), penalty=v), (0.0, 0.7, 2.5)),
    "soft_round alpha": (lambda x, y, v: soft_round(x, v).sum(), (2.0, 3.0, 4.0)),
    "straight-through soft_step alpha": (lambda x, y, v: soft_step(x, v, straight_through=True).sum(), (2.0, 3.0, 4.0)),
    "focal gamma": (lambda x, y, v: focal_loss(x, y, mode="binary", gamma=v), (1.0, 1.5, 2.5)),
    "tversky alpha": (lambda x, y, v: tversky_loss(x, y, mode="binary", alpha=v, beta=1 - v), (0.3, 0.4, 0.6)),
}


@pytest.mark.skipif(IN_TRITON_CHILD, reason="compiles the CPU paths")
@pytest.mark.parametrize("case", list(CHANGING_FLOAT_OPTIONS))
def test_a_compiled_loss_takes_a_float_option_that_changes_between_calls(case):
    """Dynamo turns a float argument that changes between calls into a symbolic float: the option
    checks must stay traceable on it (math.isfinite and hasattr were not), with fullgraph=True."""
    loss, values = CHANGING_FLOAT_OPTIONS[case]
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(2, 1, 4, 4, generator=generator) > 0.5).double()
    for value in values:
        expected, expected_grad = loss(x, y, value), torch.autograd.grad(loss(x, y, value), x)[0]
        got = compiled(x, y, value)
        (got_grad,) = torch.autograd.grad(got, x)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got_grad, expected_grad)


@given(case=float32_range_cases())
def test_penalized_mae_beyond_float32s_range_is_inf_never_nan_on_every_path(case):
    """Finite float32 input anywhere in the range (errors that overflow, penalty 0 among them):
    per-element terms beyond the range are +inf and never NaN, and the mean of finite terms is
    finite, also where their float32 sum would overflow."""
    prediction, target, delta, penalty = case
    for path in PATHS:
        x = torch.tensor(prediction, requires_grad=True)
        with kernels(path):
            per_element = penalized_mae(x.detach(), torch.tensor(target), delta, penalty, reduction="none")
            mean = penalized_mae(x, torch.tensor(target), delta, penalty)
            (grad,) = torch.autograd.grad(mean, x)
        check_float32_range(prediction, target, delta, penalty, per_element.numpy(), mean.item(), grad.numpy(), path)


def test_penalized_mae_mean_of_terms_whose_sum_overflows_is_finite():
    x = torch.full((2**16,), 1e17, requires_grad=True)  # terms of 1e34, their sum 6.6e38
    for path in PATHS:
        with kernels(path):
            mean = penalized_mae(x, torch.zeros_like(x), delta=1.0, penalty=1.0)
            (grad,) = torch.autograd.grad(mean, x)
            total = penalized_mae(x.detach(), torch.zeros_like(x), delta=1.0, penalty=1.0, reduction="sum")
        torch.testing.assert_close(mean.item(), 1e34, rtol=1e-5, atol=0)
        torch.testing.assert_close(grad, torch.full_like(x, 2e17 / 2**16), rtol=1e-5, atol=0)
        assert torch.isposinf(total), (path, total)  # the sum itself is beyond the range


def test_a_focal_sum_beyond_float32s_range_is_inf_on_every_path():
    """Terms of 3e37 (logits of -3e37 for positives), 18 of them: their float32 sum is beyond the range. Every
    path gives +inf, as a float32 sum does; the C kernel's float64 total raised a RuntimeError
    ("value cannot be converted to type float without overflow") when rounded to float32."""
    x = torch.full((2, 1, 3, 3), -3e37, requires_grad=True)
    for path in PATHS:
        with kernels(path):
            loss = focal_loss(x, torch.ones(2, 1, 3, 3), mode="binary", gamma=0.0, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        assert torch.isposinf(loss), (path, loss)
        assert torch.isfinite(grad).all(), path


def test_the_mean_of_per_image_losses_whose_sum_overflows_is_finite():
    """Two images with Lovász hinge losses of 3e38 (logits of -3e38 on the foreground): the mean,
    3e38, is in float32's range, the float32 sum of the two is not. It was inf on every path."""
    x = torch.full((2, 1, 2, 2), -3e38, requires_grad=True)
    labels = torch.ones(2, 2, 2, dtype=torch.long)
    for path in PATHS:
        with kernels(path):
            per_image = lovasz_hinge_loss(x.detach(), labels, reduction="none")
            mean = lovasz_hinge_loss(x, labels)
            (grad,) = torch.autograd.grad(mean, x)
        assert torch.isfinite(per_image).all(), (path, per_image)
        torch.testing.assert_close(mean, per_image.mean(dtype=torch.float64).float(), msg=path)
        assert torch.isfinite(grad).all(), path
