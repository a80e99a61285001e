"""Smooth surrogates (Keras 3, any backend): finite differences, limits, straight-through forms, finiteness."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

if os.environ.get("KERAS_BACKEND") == "jax":
    # Gradient checks run in float64, which JAX disables by default.
    import jax

    jax.config.update("jax_enable_x64", True)

import keras
from keras import ops

import reference
from losses import _surrogates as spec
from losses.keras import _surrogates as impl
from losses.testing import GradientMismatch, check_gradient, value_and_grad
from surrogate_cases import NAMES, alphas, check_straight_through_gradient, clear_of_c1_points, grid, jump_distance, xs

import losses.keras

BACKEND = keras.backend.backend()
FUNCTIONS = {name: getattr(losses.keras, name) for name in NAMES}
FLOAT_DTYPES = ["float16", "bfloat16", "float32", "float64"]
DTYPE_MAX = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": float(np.finfo(np.float32).max),
    "float64": float(np.finfo(np.float64).max),
}


def summed(name, alpha, straight_through=False, dtype=None):
    def fn(t):
        if dtype is not None:
            t = ops.cast(t, dtype)
        return ops.sum(FUNCTIONS[name](t, alpha, straight_through=straight_through))

    return fn


def numpy(tensor):
    return ops.convert_to_numpy(tensor)


def grad_of(name, x, alpha, straight_through):
    return value_and_grad(summed(name, alpha, straight_through), [np.asarray(x, dtype=np.float64)], framework="keras")[
        1
    ]


def test_exported():
    for name in NAMES:
        assert name in losses.keras.__all__
        assert getattr(losses.keras, name) is getattr(impl, name)


# ------------------------------------------------------------------------------------------------
# Gradients against central differences (float64), and the negative control
# ------------------------------------------------------------------------------------------------


@given(st.sampled_from(NAMES), xs, alphas)
@example("soft_round", np.array([0.3, 2.7, -4.2]), 1000.0)
@example("soft_floor", np.array([0.1, -0.9]), spec.ALPHA_MIN)
def test_soft_gradient_matches_finite_differences(name, x, alpha):
    if not clear_of_c1_points(name, x):
        x = x + 0.25  # moves x off the C1 points, which are a lattice with spacing 1
    check_gradient(summed(name, alpha), x, framework="keras")


@given(st.sampled_from(NAMES), xs, alphas)
def test_straight_through_backward_matches_finite_differences_of_the_surrogate(name, x, alpha):
    if not clear_of_c1_points(name, x):
        x = x + 0.25
    check_straight_through_gradient(summed(name, alpha, True), summed(name, alpha), x, "keras")


def _round_derivative_missing_scale(x, alpha, scale):
    return impl._round_derivative(x, alpha, ops.ones_like(scale))  # forgets 1 / (2 tanh(alpha / 2))


def _step_derivative_missing_alpha(x, alpha):
    z = ops.multiply(x, alpha)
    return ops.multiply(ops.sigmoid(z), ops.sigmoid(ops.negative(z)))  # forgets the chain rule's alpha


@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_negative_control_a_wrong_backward_fails_the_same_check(alpha):
    x = np.array([0.3, 1.8, -2.4])

    def with_derivative(t, hard, derivative, *option_values):
        return ops.sum(impl._with_gradient(t, hard, derivative, impl.options(t, *option_values)))

    round_options = (alpha, spec.round_scale(alpha))
    wrong_round = lambda t: with_derivative(t, ops.round, _round_derivative_missing_scale, *round_options)  # noqa: E731
    wrong_step = lambda t: with_derivative(t, impl._hard_step, _step_derivative_missing_alpha, alpha)  # noqa: E731
    with pytest.raises(GradientMismatch):
        check_straight_through_gradient(wrong_round, summed("soft_round", alpha), x, "keras")
    with pytest.raises(GradientMismatch):
        check_straight_through_gradient(wrong_step, summed("soft_step", alpha), x, "keras")
    # the machinery itself is right: with the true derivative the same check passes
    right = lambda t: with_derivative(t, ops.round, impl._round_derivative, *round_options)  # noqa: E731
    check_straight_through_gradient(right, summed("soft_round", alpha), x, "keras")


# ------------------------------------------------------------------------------------------------
# Against the reference, and the C1 points
# ------------------------------------------------------------------------------------------------


@given(st.sampled_from(NAMES), xs, alphas, st.booleans())
def test_value_and_gradient_match_reference_in_float64(name, x, alpha, straight_through):
    value = numpy(FUNCTIONS[name](ops.convert_to_tensor(x), alpha, straight_through=straight_through))
    assert value.dtype == np.float64
    expected = reference.HARD[name](x) if straight_through else reference.surrogate(name, x, alpha)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        grad_of(name, x, alpha, straight_through), reference.surrogate_derivative(name, x, alpha), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("name", ["soft_round", "soft_floor", "soft_ceil"])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 10.0, 100.0])
def test_continuous_and_c1_where_floor_changes_branch(name, alpha):
    points = np.arange(-3.0, 4.0) + reference.C1_POINTS[name]
    at = numpy(FUNCTIONS[name](ops.convert_to_tensor(points), alpha))
    for delta in (1e-9, -1e-9):
        near = numpy(FUNCTIONS[name](ops.convert_to_tensor(points + delta), alpha))
        np.testing.assert_allclose(near, at, atol=1e-8 * max(1.0, alpha))
    documented = alpha / math.sinh(alpha)
    for straight_through in (False, True):
        for delta in (0.0, 1e-12, -1e-12):
            np.testing.assert_allclose(
                grad_of(name, points + delta, alpha, straight_through), documented, rtol=1e-9, atol=1e-14 * alpha
            )


# ------------------------------------------------------------------------------------------------
# Limits and identities
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [20.0, spec.ALPHA_MAX])
def test_large_alpha_approaches_the_hard_function(name, alpha):
    jumps = np.arange(-4.0, 5.0) + (reference.JUMPS[name] or 0.0)
    x = np.concatenate([np.linspace(-5.0, 5.0, 1001), jumps + 1 / alpha, jumps - 2 / alpha])
    d = jump_distance(name, x)
    x, d = x[d > 0], d[d > 0]
    value = numpy(FUNCTIONS[name](ops.convert_to_tensor(x), alpha))
    bound = {"soft_step": np.exp(-alpha * d), "soft_sign": 2 * np.exp(-alpha * d)}.get(name, np.exp(-2 * alpha * d))
    error = np.abs(value - reference.HARD[name](x))
    assert np.all(error <= bound + 1e-15 * np.maximum(1.0, np.abs(x)))
    assert error.max() > 1e-6


@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, 1.0])
def test_small_alpha_approaches_the_smooth_end(alpha):
    x = np.linspace(-5.0, 5.0, 1001)
    t = ops.convert_to_tensor(x)
    slack = 1e-14 * np.maximum(1.0, np.abs(x))
    for name, shift in (("soft_round", 0.0), ("soft_floor", -0.5), ("soft_ceil", 0.5)):
        assert np.all(np.abs(numpy(FUNCTIONS[name](t, alpha)) - (x + shift)) <= alpha**2 / 48 + slack), name
    z = alpha * x
    assert np.all(np.abs(numpy(FUNCTIONS["soft_step"](t, alpha)) - (0.5 + z / 4)) <= np.abs(z) ** 3 / 48 + 1e-15)
    assert np.all(np.abs(numpy(FUNCTIONS["soft_sign"](t, alpha)) - z / 2) <= np.abs(z) ** 3 / 24 + 1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(x=xs, alpha=alphas)
def test_floor_and_ceil_are_shifted_round_exactly_where_the_shift_is_exact(dtype, x, alpha):
    """soft_floor(x) = soft_round(x − 1/2) bit for bit where x − 1/2 is exact in the dtype (elsewhere
    soft_floor is the more precise: it does not round x − 1/2); soft_ceil likewise."""
    values = x.astype(dtype)
    t = ops.convert_to_tensor(values)
    soft_round = losses.keras.soft_round
    for shift, function in ((-0.5, losses.keras.soft_floor), (0.5, losses.keras.soft_ceil)):
        shifted = values + values.dtype.type(shift)
        exact = reference.exact_sums(values, shifted, shift)
        np.testing.assert_array_equal(
            numpy(function(t, alpha))[exact], numpy(soft_round(ops.convert_to_tensor(shifted), alpha))[exact]
        )


# ------------------------------------------------------------------------------------------------
# Straight-through forms
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_straight_through_forward_is_the_hard_function_bit_for_bit(name, dtype):
    x = ops.cast(ops.convert_to_tensor(np.concatenate([grid(DTYPE_MAX[dtype]), np.linspace(-4, 4, 97)])), dtype)
    value = FUNCTIONS[name](x, 3.0, straight_through=True)
    kept = "float64" if dtype == "float64" else "float32"
    assert keras.backend.standardize_dtype(value.dtype) == kept
    # the hard value of any float is exact in the input's dtype, in float64, and so in the result's
    np.testing.assert_array_equal(numpy(value), reference.HARD[name](numpy(ops.cast(x, "float64"))))
    if kept == "float32":  # Keras's own floor and ceil compute float64 in float32 on JAX and torch
        own = {
            "soft_round": ops.round,
            "soft_floor": ops.floor,
            "soft_ceil": ops.ceil,
            "soft_step": lambda t: ops.multiply(ops.add(ops.sign(t), 1.0), 0.5),
            "soft_sign": ops.sign,
        }[name]
        hard = numpy(ops.cast(own(x), kept))
        np.testing.assert_array_equal(numpy(value).view(np.int32), hard.view(np.int32))  # signed zeros too


@pytest.mark.parametrize("name", NAMES)
@given(x=xs, alpha=alphas)
def test_straight_through_gradient_equals_the_soft_gradient(name, x, alpha):
    np.testing.assert_allclose(
        grad_of(name, x, alpha, True), grad_of(name, x, alpha, False), rtol=1e-12, atol=1e-13 * alpha
    )


# ------------------------------------------------------------------------------------------------
# Finiteness and dtypes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, spec.DEFAULT_ALPHA, spec.ALPHA_MAX])
@pytest.mark.parametrize("straight_through", [False, True])
def test_values_and_gradients_are_finite_on_the_grid(name, dtype, alpha, straight_through):
    x = grid(DTYPE_MAX[dtype])
    value = numpy(FUNCTIONS[name](ops.cast(ops.convert_to_tensor(x), dtype), alpha, straight_through=straight_through))
    assert np.all(np.isfinite(value)), value
    # the gradient passes through the dtype (the cast's own backward), as it does in a model
    total, grad = value_and_grad(summed(name, alpha, straight_through, dtype), [x], framework="keras")
    assert np.isfinite(total) and np.all(np.isfinite(grad)), grad


# At ±inf: the rounding family has no value (its formula gives NaN) but its hard form does; step and
# sign have their limits, with derivative 0 (as sigmoid and tanh do). NaN gives NaN everywhere.
AT_INFINITY = {  # name: (soft value at +inf, hard value at +inf, derivative at ±inf)
    "soft_round": (np.nan, np.inf, np.nan),
    "soft_floor": (np.nan, np.inf, np.nan),
    "soft_ceil": (np.nan, np.inf, np.nan),
    "soft_step": (1.0, 1.0, 0.0),
    "soft_sign": (1.0, 1.0, 0.0),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("straight_through", [False, True])
def test_non_finite_inputs(name, straight_through):
    x = np.array([np.nan, np.inf, -np.inf, 0.3])
    value = numpy(FUNCTIONS[name](x, 3.0, straight_through=straight_through))
    _, grad = value_and_grad(summed(name, 3.0, straight_through), [x], framework="keras")
    soft, hard, derivative = AT_INFINITY[name]
    at_inf = hard if straight_through else soft
    negative = {"soft_step": 0.0}.get(name, -at_inf)
    np.testing.assert_array_equal(value[:3], [np.nan, at_inf, negative])
    np.testing.assert_array_equal(grad[:3], [np.nan, derivative, derivative])
    assert np.isfinite(value[3]) and np.isfinite(grad[3])


def test_32_bit_tanh_and_floor_are_rebuilt_in_the_input_dtype(monkeypatch):
    """Where a backend returns float32 from tanh or floor of float64 (JAX's tanh, floor on JAX and
    torch), the surrogates build them from sigmoid and round, which keep the dtype."""
    from losses.keras import _elementwise

    real_tanh, real_floor = ops.tanh, ops.floor
    monkeypatch.setattr(impl.ops, "tanh", lambda y: real_tanh(ops.cast(y, "float32")))
    monkeypatch.setattr(impl.ops, "floor", lambda y: real_floor(ops.cast(y, "float32")))
    monkeypatch.setattr(_elementwise, "_TENSORFLOW", {})  # compiled functions are traced again, patched
    monkeypatch.setattr(_elementwise, "_JAX", {})
    x = np.array([0.3, 1.7, -2.45, 1e10 + 0.25, -3e300])
    assert keras.backend.standardize_dtype(ops.tanh(x).dtype) == "float32"  # the branch below is taken
    assert np.abs(numpy(ops.tanh(x[:3])) - np.tanh(x[:3])).max() > 1e-9  # and the 32-bit tanh is not enough
    tanh, floor = impl._tanh(ops.convert_to_tensor(x)), impl._floor(ops.convert_to_tensor(x))
    assert keras.backend.standardize_dtype(tanh.dtype) == keras.backend.standardize_dtype(floor.dtype) == "float64"
    np.testing.assert_allclose(numpy(tanh), np.tanh(x), rtol=1e-15, atol=1e-16)
    np.testing.assert_array_equal(numpy(floor), np.floor(x))
    if BACKEND != "torch":  # the torch backend runs the PyTorch frontend's surrogates, not these ops
        np.testing.assert_allclose(
            numpy(FUNCTIONS["soft_sign"](x[:3], 3.0)), reference.soft_sign(x[:3], 3.0), rtol=1e-12
        )
        np.testing.assert_allclose(numpy(FUNCTIONS["soft_floor"](x, 3.0)), reference.soft_floor(x, 3.0), rtol=1e-12)
        np.testing.assert_array_equal(numpy(FUNCTIONS["soft_floor"](x, 3.0, straight_through=True)), np.floor(x))


def test_rebuilt_tanh_keeps_float64_relative_precision_near_zero(monkeypatch):
    """The rebuilt tanh of a backend whose tanh returns float32 (JAX) is accurate to float64's
    relative precision near 0, where 2 sigmoid(2y) - 1 cancels to 1e-8 relative at 1e-8."""
    real_tanh = ops.tanh
    monkeypatch.setattr(impl.ops, "tanh", lambda y: real_tanh(ops.cast(y, "float32")))
    y = np.array([1e-300, -1e-12, 1e-8, -3e-5, 0.01, -0.7, 3.0, -19.0, 400.0, -np.inf, np.inf, np.nan, 0.0])
    tanh = numpy(impl._tanh(ops.convert_to_tensor(y)))
    np.testing.assert_allclose(tanh, np.tanh(y), rtol=4e-16, atol=0)
    number = ~np.isnan(y)  # the sign of every number, +0 included
    np.testing.assert_array_equal(np.signbit(tanh[number]), np.signbit(np.tanh(y[number])))


def test_low_precision_is_computed_in_float32():
    x = ops.convert_to_tensor(np.array([0.3, 1.7, -2.2], dtype=np.float32))
    for name in NAMES:
        half = FUNCTIONS[name](ops.cast(x, "float16"), 4.0)
        assert keras.backend.standardize_dtype(half.dtype) == "float32"
        np.testing.assert_array_equal(
            numpy(half), numpy(FUNCTIONS[name](ops.cast(ops.cast(x, "float16"), "float32"), 4.0))
        )
        assert keras.backend.standardize_dtype(FUNCTIONS[name](ops.cast(x, "bfloat16"), 4.0).dtype) == "float32"


# ------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise_clear_errors(name):
    fn, x = FUNCTIONS[name], np.array([0.5], dtype=np.float32)
    for alpha in (0.0, -1.0, spec.ALPHA_MIN / 2, spec.ALPHA_MAX * 2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            fn(x, alpha)
    for alpha in ("10", None, True, ops.convert_to_tensor(10.0)):
        with pytest.raises(TypeError, match="alpha"):
            fn(x, alpha)
    with pytest.raises(TypeError, match="straight_through"):
        fn(x, 10.0, straight_through=1)
    with pytest.raises(TypeError, match="floating-point"):
        fn(np.array([1, 2]), 10.0)
    np.testing.assert_array_equal(numpy(fn(x)), numpy(fn(x, spec.DEFAULT_ALPHA, straight_through=False)))


def test_symbolic_inputs_in_a_functional_model():
    inputs = keras.Input((3,))
    x = np.array([[0.2, 0.6, 1.4]], dtype="float32")
    soft = keras.Model(inputs, losses.keras.soft_round(inputs, 5.0))
    np.testing.assert_allclose(numpy(soft(x)), reference.soft_round(x, 5.0), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="Lambda"):
        losses.keras.soft_round(inputs, 5.0, straight_through=True)
    wrapped = keras.layers.Lambda(lambda t: losses.keras.soft_round(t, 5.0, straight_through=True))
    np.testing.assert_array_equal(numpy(keras.Model(inputs, wrapped(inputs))(x)), np.round(x))


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch frontend serves the torch backend only")
@pytest.mark.parametrize("straight_through", [False, True])
def test_torch_backend_concrete_tensors_take_the_pytorch_frontend(straight_through):
    """Documented: on the torch backend a concrete tensor gets the PyTorch frontend's function (its
    autograd node), not the Keras custom gradient; symbolic inputs are the test above."""
    import torch

    import losses.torch

    for name in NAMES:
        x = torch.tensor([0.2, 0.6, 1.4, -2.3], dtype=torch.float64, requires_grad=True)
        y = FUNCTIONS[name](x, 5.0, straight_through=straight_through)
        expected = getattr(losses.torch, name)(x, 5.0, straight_through=straight_through)
        assert type(y.grad_fn) is type(expected.grad_fn), (name, type(y.grad_fn), type(expected.grad_fn))
        assert torch.equal(y, expected)


# ------------------------------------------------------------------------------------------------
# Compiled graphs, per backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function and GradientTape are TensorFlow's")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_straight_through_inside_tf_function(jit_compile):
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = losses.keras.soft_floor(t, 10.0, straight_through=True)
            total = tf.reduce_sum(y)
        return y, tape.gradient(total, t)

    x = np.array([0.2, 1.0, 1.7])
    y, g = value_and_gradient(tf.constant(x))
    np.testing.assert_array_equal(y.numpy(), np.floor(x))
    np.testing.assert_allclose(g.numpy(), reference.soft_floor_derivative(x, 10.0), rtol=1e-12)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit is JAX's")
def test_straight_through_under_jax_jit():
    import jax

    f = jax.jit(jax.grad(summed("soft_floor", 10.0, straight_through=True)))
    x = np.array([0.2, 1.0, 1.7])
    np.testing.assert_allclose(np.asarray(f(x)), reference.soft_floor_derivative(x, 10.0), rtol=1e-12)
