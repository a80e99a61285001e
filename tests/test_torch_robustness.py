"""Nothing fails silently (PyTorch): random finite and non-finite inputs, dtypes, layouts and options
on every execution path.

- finite in → finite loss and gradient, and every path computes the same values;
- a NaN or ±inf in the input or in a float target → a non-finite loss, and a non-finite gradient
  for every element of the image that holds it (every element, when the sums are over the batch),
  while the other images keep the finite values of the clean run;
- bad input → a ``ValueError`` / ``TypeError`` whose message names the argument;
- a batch of 0 images or 0 positions → the documented result, on every path.

Paths: the fused C kernel (``LOSSES_KERNELS=auto`` on CPU tensors) and the portable PyTorch path
(``torch``) here; the Triton kernels under ``TRITON_INTERPRET=1`` in a child process (the test at
the end runs this file again there, with fewer examples).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from robustness_cases import bad_inputs, finite_cases, poisoned_cases
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch.functional import dice_loss

IN_TRITON_CHILD = os.environ.get("LOSSES_ROBUSTNESS_TRITON_CHILD") == "1"
PATHS = ["triton"] if IN_TRITON_CHILD else ["auto", "torch"]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    if layout == "channels_last" and x.dim() == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":  # a view of every other element of a larger tensor
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x.detach().requires_grad_(True)


def loss_and_grad(path, logits, target, options, dtype="float32", layout="contiguous", reduction="mean"):
    x = as_input(logits, DTYPES[dtype], layout)
    t = torch.as_tensor(target)
    with kernels(path):
        loss = dice_loss(x, t, reduction=reduction, **options)
        (grad,) = torch.autograd.grad(loss, x, torch.ones_like(loss))
    return loss.detach().double().numpy(), grad.double().numpy()


def test_the_c_kernel_is_among_the_paths():
    if not IN_TRITON_CHILD:
        assert cpu_kernels.available(), cpu_kernels.build_error()


@given(finite_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_finite_inputs_give_finite_results_on_every_path_and_the_paths_agree(case, reduction):
    logits, target, options, dtype, layout = case
    results = {path: loss_and_grad(path, logits, target, options, dtype, layout, reduction) for path in PATHS}
    for path, (loss, grad) in results.items():
        assert np.isfinite(loss).all(), (path, loss)
        assert np.isfinite(grad).all(), path
        if dtype == "float16":  # saturated, never overflowed
            assert np.abs(grad).max() <= 65504.0
    # Every path against the portable path on the same input in float64 (what float32 computation
    # approximates), except where float32 and float64 differ by design: probabilities that underflow
    # to exactly 0 in one and not the other, with no smoothing.
    extreme = options["smooth_dr"] == 0.0 or np.abs(logits).max() > 50
    if dtype in ("float32", "float64") and not extreme and not (options["soft_labels"] and options["log_loss"]):
        values = np.asarray(torch.as_tensor(logits).to(DTYPES[dtype]).double())
        expected = reference.dice_loss(values, target, reduction, **options)
        for path, (loss, _) in results.items():
            np.testing.assert_allclose(loss, expected, rtol=2e-5, atol=2e-6, err_msg=path)
    if len(results) > 1:
        (loss_a, grad_a), (loss_b, grad_b) = results.values()
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4, atol=1e-5)
        scale = max(1.0, float(np.abs(grad_b).max()))
        tolerance = 1e-2 if dtype in ("float16", "bfloat16") else 1e-4
        np.testing.assert_allclose(grad_a, grad_b, rtol=tolerance, atol=tolerance * 1e-2 * scale)


@given(poisoned_cases(), st.sampled_from(["mean", "sum", "none"]), st.sampled_from(["float32", "float64", "float16"]))
def test_a_non_finite_value_comes_out_in_the_loss_and_the_gradient_of_its_image(case, reduction, dtype):
    logits, target, options, image = case
    clean_images = [b for b in range(logits.shape[0]) if b != image]
    for path in PATHS:
        loss, grad = loss_and_grad(path, logits, target, options, dtype, reduction=reduction)
        if reduction == "none" and options["per_image"]:
            assert not np.isfinite(loss[image]), (path, loss)
            assert np.isfinite(loss[clean_images]).all(), (path, loss)
        else:
            assert not np.isfinite(loss).all(), (path, loss)
        poisoned = grad[image] if options["per_image"] else grad
        assert not np.isfinite(poisoned).any(), path
        if options["per_image"]:
            assert np.isfinite(grad[clean_images]).all(), path


@given(bad_inputs())
def test_bad_input_is_a_clear_error_naming_the_argument(bad):
    name, (logits, target, options), error, text = bad
    for path in PATHS:
        with kernels(path), pytest.raises(error, match=text):
            dice_loss(torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(target), **options)


def test_prediction_and_target_on_different_devices():
    with pytest.raises(ValueError, match=r"same device.*input on cpu.*target on meta"):
        dice_loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)])
def test_empty_inputs(path, shape):
    """Per-image losses of 0 images: an empty tensor, its sum 0 and its mean NaN (as
    torch.nn.functional); 0 positions: every class empty in prediction and target (loss 0)."""
    x = torch.zeros(shape, requires_grad=True)
    labels = torch.zeros((shape[0], *shape[2:]), dtype=torch.long)
    with kernels(path):
        none = dice_loss(x, labels, reduction="none")
        total = dice_loss(x, labels, reduction="sum")
        mean = dice_loss(x, labels)
        batch = dice_loss(x, labels, per_image=False)
        (grad,) = torch.autograd.grad(mean + total + batch, x)
    assert none.shape == (shape[0],) and (none == 0).all()
    assert total.item() == 0.0 and batch.item() == 0.0
    assert np.isnan(mean.item()) if shape[0] == 0 else mean.item() == 0.0
    assert grad.shape == shape


@pytest.mark.skipif(IN_TRITON_CHILD or importlib.util.find_spec("triton") is None,
                    reason="runs the file again under the Triton interpreter")
def test_the_triton_kernels_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", LOSSES_KERNELS="triton", LOSSES_ROBUSTNESS_TRITON_CHILD="1")
    if os.environ.get("CI"):
        env["HYPOTHESIS_PROFILE"] = "ci-backends"
    result = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                            capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1], env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
