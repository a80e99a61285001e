"""Penalized MAE: PyTorch, Keras and the float64 reference give the same values and gradients."""

import keras
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import reference
from losses.keras import PenalizedMAELoss as KerasPenalizedMAELoss
from losses.keras import penalized_mae as keras_penalized_mae
from losses.testing import value_and_grad
from losses.torch.functional import penalized_mae as torch_penalized_mae

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True, scope="module")
def float64_on_jax():
    if BACKEND != "jax":
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


@st.composite
def channels_first_cases(draw):
    """(prediction, target, delta, penalty), channels first (B, C, H, W), with large and small errors."""
    shape = draw(st.sampled_from([(2, 3, 4, 5), (1, 2, 3, 3), (3, 1, 2, 4)]))
    target = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3.0, 3.0)))
    error = draw(hnp.arrays(np.float64, shape, elements=st.floats(-6.0, 6.0)))
    delta = draw(st.floats(0.0, 3.0))
    penalty = draw(st.floats(0.0, 2.0))
    # No subnormal numbers: TensorFlow flushes them to zero on CPU, which turns sign(e) into 0.
    target, error = (np.where(np.abs(a) < 1e-6, 0.0, a) for a in (target, error))
    return target + error, target, delta, penalty


def to_channels_last(array):
    return np.moveaxis(array, 1, -1)


def keras_grad(fn, prediction, target):
    """Gradient of fn(y_true, y_pred) with respect to y_pred, channels last in, channels first out."""
    _, grad = value_and_grad(
        lambda p, t: fn(t, p), [to_channels_last(prediction), to_channels_last(target)], framework="keras"
    )
    return np.moveaxis(grad, -1, 1)


def torch_value_and_grad(prediction, target, dtype, **options):
    x = torch.tensor(prediction, dtype=dtype, requires_grad=True)
    loss = torch_penalized_mae(x, torch.tensor(target, dtype=dtype), **options)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
@given(case=channels_first_cases())
def test_mean_loss_and_gradient_agree(dtype, rtol, case):
    prediction, target, delta, penalty = case
    prediction, target = prediction.astype(dtype), target.astype(dtype)
    expected = reference.penalized_mae(prediction, target, delta, penalty, "mean")
    expected_grad = reference.penalized_mae_grad(prediction, target, delta, penalty, "mean")

    torch_loss, torch_grad = torch_value_and_grad(
        prediction, target, getattr(torch, dtype), delta=delta, penalty=penalty
    )
    # Equal-sized samples: the Keras batch mean of per-sample means is the mean over every element.
    keras_loss = KerasPenalizedMAELoss(delta, penalty, dtype=dtype)
    keras_value = keras_loss(to_channels_last(target), to_channels_last(prediction))
    grad = keras_grad(keras_loss, prediction, target)

    atol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(torch_loss, expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(keras_value)), expected, rtol=rtol, atol=atol)
    np.testing.assert_allclose(torch_grad, expected_grad, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=atol)
    np.testing.assert_allclose(torch_grad, grad, rtol=rtol, atol=atol)


@given(case=channels_first_cases())
def test_per_sample_and_per_element_agree(case):
    prediction, target, delta, penalty = case
    per_element, element_grad = torch_value_and_grad(
        prediction, target, torch.float64, delta=delta, penalty=penalty, reduction="none"
    )
    np.testing.assert_allclose(
        per_element, reference.penalized_mae(prediction, target, delta, penalty, "none"), rtol=1e-12
    )
    np.testing.assert_allclose(
        element_grad, reference.penalized_mae_grad(prediction, target, delta, penalty, "none"), rtol=1e-12
    )

    per_sample = keras_penalized_mae(to_channels_last(target), to_channels_last(prediction), delta, penalty)
    expected = reference.penalized_mae(prediction, target, delta, penalty, "per_sample")
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(per_sample)), expected, rtol=1e-12)
    np.testing.assert_allclose(per_element.reshape(len(per_element), -1).mean(axis=1), expected, rtol=1e-12)
    grad = keras_grad(lambda t, p: ops.sum(keras_penalized_mae(t, p, delta, penalty)), prediction, target)
    expected_grad = reference.penalized_mae_grad(prediction, target, delta, penalty, "per_sample")
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12)


def test_kink_subgradients_agree():
    target = np.array([[[1.0, -2.0, 0.5, 0.5, 3.0]]])  # (B=1, C=1, L=5)
    prediction = target + np.array([[[0.0, 0.0, 0.7, -0.7, 1e-3]]])
    expected = reference.penalized_mae_grad(prediction, target, 0.7, 1.5, "mean")
    _, torch_grad = torch_value_and_grad(prediction, target, torch.float64, delta=0.7, penalty=1.5)
    grad = keras_grad(KerasPenalizedMAELoss(0.7, 1.5, dtype="float64"), prediction, target)
    np.testing.assert_array_equal(torch_grad, expected)
    np.testing.assert_array_equal(grad, expected)
    np.testing.assert_array_equal(expected.ravel()[:4], [0.0, 0.0, 0.2, -0.2])


@pytest.mark.parametrize("shape", [(0, 4), (0,)])
def test_an_empty_batch_gives_the_same_result_in_both_frontends(shape):
    """The reduction of nothing, as in torch.nn.functional: the sum is 0, the mean NaN."""
    prediction, target = np.ones(shape), np.zeros(shape)
    for torch_reduction, keras_reductions, expected in (
        ("mean", ("sum_over_batch_size", "mean"), np.nan),
        ("sum", ("sum",), 0.0),
    ):
        loss, grad = torch_value_and_grad(prediction, target, torch.float32, reduction=torch_reduction)
        np.testing.assert_array_equal(loss, expected)
        assert grad.shape == shape
        for reduction in keras_reductions:
            value = KerasPenalizedMAELoss(reduction=reduction)(target.astype("float32"), prediction.astype("float32"))
            np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(value)), expected)
    assert tuple(keras_penalized_mae(target, prediction).shape) == (0,)


def test_non_finite_inputs_give_the_same_result_in_both_frontends():
    prediction = np.array([np.nan, np.inf, -np.inf, 2.5, 0.0, 1.0])
    target = np.array([0.0, 0.0, 1.0, np.inf, np.nan, 0.5])
    per_element, grad = torch_value_and_grad(prediction, target, torch.float64, reduction="none")
    keras_loss = np.asarray(ops.convert_to_numpy(keras_penalized_mae(target, prediction)))  # rank 1: per element
    _, keras_grad_ = value_and_grad(
        lambda p, t: ops.sum(keras_penalized_mae(t, p)), [prediction, target], framework="keras"
    )
    np.testing.assert_array_equal(per_element, keras_loss)
    np.testing.assert_array_equal(grad, keras_grad_)
    assert not np.isfinite(per_element[:5]).any() and not np.isfinite(grad[:5]).any()
    assert np.isfinite(per_element[5]) and np.isfinite(grad[5])
