"""Smooth surrogates (PyTorch): finite differences, limits, straight-through forms, finiteness."""

from __future__ import annotations

import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import reference
from losses import _surrogates as spec
from losses.testing import GradientMismatch, check_gradient
from losses.torch import _surrogates as impl
from surrogate_cases import (
    NAMES,
    alphas,
    check_straight_through_gradient,
    clear_of_c1_points,
    grid,
    jump_distance,
    lattice_distance,
    xs,
)

import losses.torch
import losses.torch.functional

ROOT = pathlib.Path(__file__).resolve().parents[1]
FUNCTIONS = {name: getattr(losses.torch, name) for name in NAMES}
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
TORCH_HARD = {
    "soft_round": torch.round,
    "soft_floor": torch.floor,
    "soft_ceil": torch.ceil,
    "soft_step": impl._hard_step,
    "soft_sign": torch.sign,
}


def summed(name, alpha, straight_through=False):
    return lambda t: FUNCTIONS[name](t, alpha, straight_through=straight_through).sum()


def grad_of(name, x, alpha, straight_through):
    x = x.detach().clone().requires_grad_(True)
    FUNCTIONS[name](x, alpha, straight_through=straight_through).sum().backward()
    return x.grad


def test_exported_from_both_namespaces():
    for name in NAMES:
        assert getattr(losses.torch, name) is getattr(losses.torch.functional, name)
        assert name in losses.torch.__all__ and name in losses.torch.functional.__all__


# ------------------------------------------------------------------------------------------------
# Gradients against central differences (float64), and the negative control
# ------------------------------------------------------------------------------------------------


@given(st.sampled_from(NAMES), xs, alphas)
@example("soft_round", np.array([0.3, 2.7, -4.2]), 1000.0)
@example("soft_floor", np.array([0.1, -0.9]), spec.ALPHA_MIN)
def test_soft_gradient_matches_finite_differences(name, x, alpha):
    if not clear_of_c1_points(name, x):
        x = x + 0.25  # moves x off the C1 points, which are a lattice with spacing 1
    check_gradient(summed(name, alpha), x, framework="torch")


@given(st.sampled_from(NAMES), xs, alphas)
def test_straight_through_backward_matches_finite_differences_of_the_surrogate(name, x, alpha):
    if not clear_of_c1_points(name, x):
        x = x + 0.25
    check_straight_through_gradient(summed(name, alpha, True), summed(name, alpha), x, "torch")


def _round_derivative_missing_scale(y, alpha):
    r = y - (torch.floor(y) + 0.5)
    return alpha * impl._sech2(alpha * r)  # forgets 1 / (2 tanh(alpha / 2))


def _step_derivative_missing_alpha(x, alpha):
    return torch.sigmoid(alpha * x) * torch.sigmoid(-alpha * x)  # forgets the chain rule's alpha


def _round_hard(x, alpha):
    return torch.round(x)


def _step_hard(x, alpha):
    return impl._hard_step(x)


@pytest.mark.parametrize("alpha", [0.1, 10.0])
def test_negative_control_a_wrong_backward_fails_the_same_check(alpha):
    x = np.array([0.3, 1.8, -2.4])

    def wrong_round(t):
        return impl._WithDerivative.apply(t, _round_hard, _round_derivative_missing_scale, alpha).sum()

    def wrong_step(t):
        return impl._WithDerivative.apply(t, _step_hard, _step_derivative_missing_alpha, alpha).sum()

    with pytest.raises(GradientMismatch):
        check_straight_through_gradient(wrong_round, summed("soft_round", alpha), x, "torch")
    with pytest.raises(GradientMismatch):
        check_straight_through_gradient(wrong_step, summed("soft_step", alpha), x, "torch")
    # the machinery itself is right: with the true derivative the same check passes
    right = lambda t: impl._WithDerivative.apply(t, _round_hard, impl._round_derivative, alpha).sum()  # noqa: E731
    check_straight_through_gradient(right, summed("soft_round", alpha), x, "torch")


# ------------------------------------------------------------------------------------------------
# Against the reference, and the C1 points
# ------------------------------------------------------------------------------------------------


def assert_matches_reference(name, x, alpha, straight_through):
    t = torch.from_numpy(x)
    value = FUNCTIONS[name](t, alpha, straight_through=straight_through)
    expected = reference.HARD[name](x) if straight_through else reference.surrogate(name, x, alpha)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        grad_of(name, t, alpha, straight_through).numpy(),
        reference.surrogate_derivative(name, x, alpha),
        rtol=1e-9,
        atol=1e-12,
    )


@given(st.sampled_from(NAMES), xs, alphas, st.booleans())
def test_value_and_gradient_match_reference_in_float64(name, x, alpha, straight_through):
    assert_matches_reference(name, x, alpha, straight_through)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("straight_through", [False, True])
def test_portable_path_matches_reference_in_float64(name, straight_through, monkeypatch):
    # The path of torch.func transforms, torch.compile and machines without a C compiler.
    monkeypatch.setattr(impl, "_kernel_backend", lambda x: None)
    x = np.concatenate([np.linspace(-3.3, 3.3, 67), [-1.5, -0.5, 0.0, 0.5, 2.5, 0.49, 0.51]])
    for alpha in (0.5, 10.0):
        assert_matches_reference(name, x, alpha, straight_through)


@pytest.mark.parametrize("name", ["soft_step", "soft_sign", "soft_floor", "soft_round"])
def test_portable_path_keeps_the_derivative_tails_in_float32(name, monkeypatch):
    """alpha·x of 10 and 20 in float32: the derivative to float32's relative precision on the portable
    path too (autograd through the value took s·(1 − s) from a rounded s: 0 instead of 2e-5)."""
    monkeypatch.setattr(impl, "_kernel_backend", lambda x: None)
    x = torch.tensor([1e-3, 2e-3, -2e-3, 0.5 + 1e-3, 0.5 + 2e-3], requires_grad=True)
    expected = reference.surrogate_derivative(name, x.detach().double().numpy(), 1e4)
    (gradient,) = torch.autograd.grad(FUNCTIONS[name](x, 1e4).sum(), x)
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-5, atol=1e-12)


def test_portable_path_computes_low_precision_in_float32(monkeypatch):
    monkeypatch.setattr(impl, "_kernel_backend", lambda x: None)
    x = torch.tensor([0.3, 1.7, -2.2], dtype=torch.float16)
    for name in NAMES:
        value = FUNCTIONS[name](x, 10.0)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, FUNCTIONS[name](x.float(), 10.0), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("straight_through", [False, True])
def test_gradient_with_create_graph_and_a_second_backward(name, straight_through):
    # create_graph=True takes a differentiable derivative; retain_graph=True a second backward.
    x = np.array([0.2, 0.7, 1.3, -2.6, 3.05])  # clear of the jumps of the second derivative
    alpha = 3.0
    expected = reference.surrogate_derivative(name, x, alpha)
    t = torch.from_numpy(x).requires_grad_(True)
    (gradient,) = torch.autograd.grad(
        FUNCTIONS[name](t, alpha, straight_through=straight_through).sum(), t, create_graph=True
    )
    np.testing.assert_allclose(gradient.detach().numpy(), expected, rtol=1e-9, atol=1e-12)
    (second,) = torch.autograd.grad(gradient.sum(), t)
    h = 1e-6
    central = (
        reference.surrogate_derivative(name, x + h, alpha) - reference.surrogate_derivative(name, x - h, alpha)
    ) / (2 * h)
    np.testing.assert_allclose(second.numpy(), central, rtol=1e-5, atol=1e-6)
    upstream = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    value = FUNCTIONS[name](t, alpha, straight_through=straight_through)
    value.backward(upstream, retain_graph=True)
    value.backward(upstream)
    np.testing.assert_allclose(t.grad.numpy(), 2 * upstream.numpy() * expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["soft_round", "soft_floor", "soft_ceil"])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 10.0, 100.0])
def test_continuous_and_c1_where_floor_changes_branch(name, alpha):
    offset = reference.C1_POINTS[name]
    points = np.arange(-3.0, 4.0) + offset
    for straight_through in (False, True):
        # the value is continuous (the soft form only: the hard one jumps elsewhere, not here)
        if not straight_through:
            for delta in (1e-9, -1e-9):
                near = FUNCTIONS[name](torch.from_numpy(points + delta), alpha).numpy()
                at = FUNCTIONS[name](torch.from_numpy(points), alpha).numpy()
                np.testing.assert_allclose(near, at, atol=1e-8 * max(1.0, alpha))
        # the documented derivative alpha / sinh(alpha), the same from both sides
        documented = alpha / math.sinh(alpha)
        for delta in (0.0, 1e-12, -1e-12):
            g = grad_of(name, torch.from_numpy(points + delta), alpha, straight_through).numpy()
            np.testing.assert_allclose(g, documented, rtol=1e-9, atol=1e-14 * alpha)


# ------------------------------------------------------------------------------------------------
# Limits and identities
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [20.0, 100.0, 1e3, spec.ALPHA_MAX])
def test_large_alpha_approaches_the_hard_function(name, alpha):
    jumps = np.arange(-4.0, 5.0) + (reference.JUMPS[name] or 0.0)
    x = np.concatenate([np.linspace(-5.0, 5.0, 4001), jumps + 1 / alpha, jumps - 2 / alpha])
    d = jump_distance(name, x)
    x, d = x[d > 0], d[d > 0]
    value = FUNCTIONS[name](torch.from_numpy(x), alpha).numpy()
    # the documented bounds: exp(-2 alpha d) for the rounding family, 1 * or 2 * exp(-alpha d)
    bound = {"soft_step": np.exp(-alpha * d), "soft_sign": 2 * np.exp(-alpha * d)}.get(name, np.exp(-2 * alpha * d))
    error = np.abs(value - reference.HARD[name](x))
    assert np.all(error <= bound + 1e-15 * np.maximum(1.0, np.abs(x)))
    # and the bound is not vacuous: the surrogate is not the hard function at small distances
    assert error.max() > 1e-6


@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, 0.01, 0.1, 1.0])
def test_small_alpha_approaches_the_smooth_end(alpha):
    x = np.linspace(-5.0, 5.0, 4001)
    t = torch.from_numpy(x)
    slack = 1e-14 * np.maximum(1.0, np.abs(x))
    for name, shift in (("soft_round", 0.0), ("soft_floor", -0.5), ("soft_ceil", 0.5)):
        error = np.abs(FUNCTIONS[name](t, alpha).numpy() - (x + shift))
        assert np.all(error <= alpha**2 / 48 + slack), name
    z = alpha * x
    assert np.all(np.abs(FUNCTIONS["soft_step"](t, alpha).numpy() - (0.5 + z / 4)) <= np.abs(z) ** 3 / 48 + 1e-15)
    assert np.all(np.abs(FUNCTIONS["soft_sign"](t, alpha).numpy() - z / 2) <= np.abs(z) ** 3 / 24 + 1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(x=xs, alpha=alphas)
def test_floor_and_ceil_are_shifted_round_exactly_where_the_shift_is_exact(dtype, x, alpha):
    """soft_floor(x) = soft_round(x − 1/2) bit for bit where x − 1/2 is exact in the dtype (elsewhere
    soft_floor is the more precise: it does not round x − 1/2); soft_ceil likewise."""
    t = torch.from_numpy(x).to(dtype)
    soft_round = losses.torch.soft_round
    for shift, function in ((-0.5, losses.torch.soft_floor), (0.5, losses.torch.soft_ceil)):
        shifted = t + shift
        exact = torch.tensor(reference.exact_sums(t.double().numpy(), shifted.double().numpy(), shift))
        assert torch.equal(function(t, alpha)[exact], soft_round(shifted, alpha)[exact])


# ------------------------------------------------------------------------------------------------
# Straight-through forms
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_straight_through_forward_is_the_hard_function_bit_for_bit(name, dtype):
    x = torch.from_numpy(np.concatenate([grid(torch.finfo(dtype).max), np.linspace(-4, 4, 97)])).to(dtype)
    value = FUNCTIONS[name](x, 3.0, straight_through=True)
    hard = TORCH_HARD[name](x).to(value.dtype)  # the hard value is exact in any float dtype
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.equal(
        value.view(torch.int32 if value.dtype == torch.float32 else torch.int64),
        hard.view(torch.int32 if value.dtype == torch.float32 else torch.int64),
    )
    np.testing.assert_array_equal(value.double().numpy(), reference.HARD[name](x.double().numpy()))


@pytest.mark.parametrize("name", NAMES)
@given(x=xs, alpha=alphas)
def test_straight_through_gradient_equals_the_soft_gradient(name, x, alpha):
    t = torch.from_numpy(x)
    np.testing.assert_allclose(
        grad_of(name, t, alpha, True).numpy(), grad_of(name, t, alpha, False).numpy(), rtol=1e-12, atol=1e-13 * alpha
    )


# ------------------------------------------------------------------------------------------------
# Finiteness and dtypes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, 1.0, spec.DEFAULT_ALPHA, spec.ALPHA_MAX])
@pytest.mark.parametrize("straight_through", [False, True])
def test_values_and_gradients_are_finite_on_the_grid(name, dtype, alpha, straight_through):
    x = torch.from_numpy(grid(torch.finfo(dtype).max)).to(dtype).requires_grad_(True)
    value = FUNCTIONS[name](x, alpha, straight_through=straight_through)
    value.sum().backward()
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert x.grad.dtype == dtype
    assert torch.isfinite(value).all(), value
    assert torch.isfinite(x.grad).all(), x.grad


def test_low_precision_is_computed_in_float32():
    x = torch.tensor([0.3, 1.7, -2.2])
    for name in NAMES:
        expected = FUNCTIONS[name](x, 4.0)
        assert torch.equal(FUNCTIONS[name](x.half(), 4.0), FUNCTIONS[name](x.half().float(), 4.0))
        assert FUNCTIONS[name](x.bfloat16(), 4.0).dtype == torch.float32
        assert expected.dtype == torch.float32


# ------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise_clear_errors(name):
    fn, x = FUNCTIONS[name], torch.tensor([0.5])
    for alpha in (0.0, -1.0, spec.ALPHA_MIN / 2, spec.ALPHA_MAX * 2, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            fn(x, alpha)
    for alpha in ("10", None, True, torch.tensor(10.0)):
        with pytest.raises(TypeError, match="alpha"):
            fn(x, alpha)
    with pytest.raises(TypeError, match="straight_through"):
        fn(x, 10.0, straight_through=1)
    with pytest.raises(TypeError, match="x must"):
        fn([0.5], 10.0)
    with pytest.raises(TypeError, match="floating-point"):
        fn(torch.tensor([1, 2]), 10.0)
    assert torch.equal(fn(x), fn(x, spec.DEFAULT_ALPHA, straight_through=False))
    assert torch.equal(fn(x, 10), fn(x, 10.0))
    assert torch.equal(fn(x, np.float32(10.0)), fn(x, 10.0))  # a NumPy scalar is a number, not a tensor


def test_alpha_range_is_the_documented_one():
    # The docstrings promise [0.001, 10000]: both ends accepted, anything beyond rejected.
    x = torch.tensor([0.25])
    for alpha in (0.001, 1e4):
        assert torch.isfinite(losses.torch.soft_round(x, alpha)).all()
    for alpha in (0.000999, 10001.0):
        with pytest.raises(ValueError, match=r"alpha must be in \[0.001, 10000\]"):
            losses.torch.soft_round(x, alpha)


def test_tensor_alpha_error_says_how_to_anneal():
    # A tensor alpha is the likely mistake of annealing it inside a graph: the error says what to do.
    for alpha in (torch.tensor(10.0), np.array(10.0)):
        with pytest.raises(
            TypeError, match="alpha must be a Python float.*to anneal it, call the function with a new float"
        ):
            losses.torch.soft_step(torch.tensor([0.25]), alpha)


# ------------------------------------------------------------------------------------------------
# torch.func and torch.compile
# ------------------------------------------------------------------------------------------------

# torch.func and torch.compile load torch._dynamo and Triton, whose bundled LLVM aborts the process
# when TensorFlow's was loaded first (as it is once any Keras test is collected); so these run in
# a fresh interpreter.
TRANSFORMS_CHECK = """
import torch
import losses.torch as lt

x = torch.tensor([0.2, 0.5, 1.7, -2.6], dtype=torch.float64)
for name in ("soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign"):
    fn = getattr(lt, name)
    t = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(fn(t, 3.0).sum(), t)
    f = lambda v: fn(v, 3.0, straight_through=True).sum()
    torch.testing.assert_close(torch.func.grad(f)(x), expected)
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(f))(x.reshape(4, 1)).reshape(4), expected)
    # forward mode: the hard value, and the surrogate's derivative times the tangent
    tangent = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    value, jvp = torch.func.jvp(lambda v: fn(v, 3.0, straight_through=True), (x,), (tangent,))
    torch.testing.assert_close(value, fn(x, 3.0, straight_through=True))
    torch.testing.assert_close(jvp, expected * tangent)

def g(v):
    return lt.soft_floor(v, 10.0, straight_through=True) * 2.0

compiled = torch.compile(g, fullgraph=True, backend="eager")  # tracing, not code generation, is checked
t = torch.tensor([0.2, 1.0, 1.7], dtype=torch.float64, requires_grad=True)
y = compiled(t)
y.sum().backward()
torch.testing.assert_close(y, torch.tensor([0.0, 2.0, 2.0], dtype=torch.float64))
u = t.detach().clone().requires_grad_(True)
lt.soft_floor(u, 10.0).sum().backward()
torch.testing.assert_close(t.grad, 2.0 * u.grad)
print("ok")
"""


def test_straight_through_under_torch_func_and_torch_compile():
    result = subprocess.run(
        [sys.executable, "-c", TRANSFORMS_CHECK], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_lattice_distance_helper():
    np.testing.assert_allclose(lattice_distance([0.0, 0.4, 0.5, 0.6, -1.1], 0.0), [0.0, 0.4, 0.5, 0.4, 0.1])
