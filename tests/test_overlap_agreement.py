"""The PyTorch and Keras frontends of the overlap family give the same values and gradients on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

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
