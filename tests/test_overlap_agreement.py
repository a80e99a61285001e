"""The PyTorch and Keras frontends of the overlap family give the same values and gradients on the same inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings

import reference
from dice_cases import dice_cases, overlap_cases

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

import losses.keras  # noqa: E402
import losses.torch  # noqa: E402
from losses.testing import value_and_grad  # noqa: E402


@settings(max_examples=10)
@given(dice_cases())
def test_torch_and_keras_agree_in_float32(case):
    logits, target, options = case
    logits = logits.astype(np.float32)
    x = torch.tensor(logits, requires_grad=True)
    torch_loss = losses.torch.functional.dice_loss(x, torch.as_tensor(target), reduction="none", **options)
    torch_loss.sum().backward()
    y_pred = np.moveaxis(logits, 1, -1)
    y_true = np.moveaxis(target, 1, -1) if np.ndim(target) == np.ndim(logits) else target
    per_sample = np.asarray(ops.convert_to_numpy(losses.keras.dice_loss(y_true, y_pred, **options)))
    np.testing.assert_allclose(
        per_sample, np.broadcast_to(torch_loss.detach().numpy(), per_sample.shape), rtol=1e-5, atol=1e-6
    )
    if options["per_image"]:
        _, keras_grad = value_and_grad(
            lambda p: ops.sum(losses.keras.dice_loss(y_true, p, **options)), [y_pred], framework="keras"
        )
        np.testing.assert_allclose(keras_grad, np.moveaxis(x.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-6)


@settings(max_examples=10)
@given(overlap_cases())
def test_every_member_agrees_between_torch_and_keras_in_float32(case):
    member, logits, target, options, weight = case
    logits = logits.astype(np.float32)
    name = f"{member}_loss"
    x = torch.tensor(logits, requires_grad=True)
    w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    torch_loss = getattr(losses.torch.functional, name)(
        x, torch.as_tensor(target), weight=w, reduction="none", **options
    )
    torch_loss.sum().backward()
    y_pred = np.moveaxis(logits, 1, -1)
    y_true = np.moveaxis(target, 1, -1) if np.ndim(target) == np.ndim(logits) else target
    keras_fn = getattr(losses.keras, name)
    per_sample = np.asarray(ops.convert_to_numpy(keras_fn(y_true, y_pred, weight=weight, **options)))
    np.testing.assert_allclose(
        per_sample, np.broadcast_to(torch_loss.detach().numpy(), per_sample.shape), rtol=2e-5, atol=2e-6
    )
    if options["per_image"]:
        _, keras_grad = value_and_grad(
            lambda p: ops.sum(keras_fn(y_true, p, weight=weight, **options)), [y_pred], framework="keras"
        )
        np.testing.assert_allclose(keras_grad, np.moveaxis(x.grad.numpy(), 1, -1), rtol=1e-3, atol=1e-5)


# One position, label 0, probabilities (0.529, 0.471): class 1 has a score of about 2e-5, and under
# log_loss its gradient is 1/(2·Σp) ≈ 1.06. The soft form's gradient is the difference of two terms of
# about 5e4 (from Σp and from Σ|p − g|), exact only to float32's spacing there (4e-3).
_TINY_SCORE_OPTIONS = dict(mode="multiclass", from_logits=False, log_loss=True, soft_labels=True, per_image=True)
_TINY_SCORE_PROBS = np.array([[[0.52896634], [0.47103366]]])  # (B, C, N)


def _reference_gradient(probs, target):
    step = 1e-7
    grad = np.zeros_like(probs)
    for index in np.ndindex(probs.shape):
        shift = np.zeros_like(probs)
        shift[index] = step
        plus = reference.dice_loss(probs + shift, target, reduction="sum", **_TINY_SCORE_OPTIONS)
        minus = reference.dice_loss(probs - shift, target, reduction="sum", **_TINY_SCORE_OPTIONS)
        grad[index] = (plus - minus) / (2 * step)
    return grad


def _torch_gradient(probs, target, kernels):
    x = torch.tensor(probs, dtype=torch.float32, requires_grad=True)
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = kernels
    try:
        loss = losses.torch.functional.dice_loss(x, torch.as_tensor(target), reduction="sum", **_TINY_SCORE_OPTIONS)
    finally:
        if previous is None:
            del os.environ["LOSSES_KERNELS"]
        else:
            os.environ["LOSSES_KERNELS"] = previous
    (grad,) = torch.autograd.grad(loss, x)
    return grad.double().numpy()


def _keras_gradient(probs, target):
    y_true = np.moveaxis(target, 1, -1) if target.ndim == probs.ndim else target
    _, grad = value_and_grad(
        lambda p: ops.sum(losses.keras.dice_loss(y_true, p, **_TINY_SCORE_OPTIONS)),
        [np.moveaxis(probs, 1, -1).astype(np.float32)],
        framework="keras",
    )
    return np.moveaxis(np.asarray(grad, dtype=np.float64), -1, 1)


def test_soft_labels_on_a_label_map_keep_float32_precision_on_every_path():
    labels = np.array([[0]])
    expected = _reference_gradient(_TINY_SCORE_PROBS, labels)
    gradients = {
        "torch C kernel": _torch_gradient(_TINY_SCORE_PROBS, labels, "auto"),
        "torch portable": _torch_gradient(_TINY_SCORE_PROBS, labels, "torch"),
        "keras": _keras_gradient(_TINY_SCORE_PROBS, labels),
    }
    for path, grad in gradients.items():
        np.testing.assert_allclose(grad, expected, rtol=1e-5, err_msg=path)


def test_soft_labels_on_a_soft_target_lose_that_precision():
    """The control: the same input with the one-hot target as probabilities takes the soft form,
    whose gradient is three digits off, so the input above does exercise the cancellation."""
    one_hot = np.array([[[1.0], [0.0]]])
    expected = _reference_gradient(_TINY_SCORE_PROBS, one_hot)
    error = np.abs(_torch_gradient(_TINY_SCORE_PROBS, one_hot, "torch") - expected).max()
    assert error > 1e-4 * np.abs(expected).max()
