"""The elementwise C kernels (``losses/torch/_kernels/cpu_elementwise.c``): penalized MAE and the
surrogates on CPU tensors, against the float64 reference, the portable path and finite differences."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import reference
from losses import _surrogates as spec
from losses.testing import GradientMismatch, check_gradient
from losses.torch._kernels import _clib, cpu_elementwise
from losses.torch.functional import penalized_mae
from surrogate_cases import NAMES, alphas, grid

import losses.torch

pytestmark = pytest.mark.skipif(_clib.library() is None, reason=f"no C library: {_clib.build_error()}")

FUNCTIONS = {name: getattr(losses.torch, name) for name in NAMES}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
CHUNK = cpu_elementwise.CHUNK
# One element, a ragged chunk, across one and two chunk boundaries, and enough for two threads.
SIZES = [1, 37, CHUNK - 1, CHUNK + 3, 2 * _clib.MIN_ELEMENTS_PER_THREAD + 17]


@contextlib.contextmanager
def kernels(choice: str):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOSSES_KERNELS", choice)
        yield


def surrogate_value_and_grad(name, x, alpha, straight_through, weights=None):
    """The value and the gradient of sum(weights · value) (of sum(value) without weights)."""
    leaf = x.detach().clone().requires_grad_(True)
    value = FUNCTIONS[name](leaf, alpha, straight_through=straight_through)
    total = value.sum() if weights is None else (value * weights).sum()
    (grad,) = torch.autograd.grad(total, leaf)
    return value.detach(), grad, type(value.grad_fn).__name__


def pmae_value_and_grad(x, t, delta, penalty, reduction, weights=None):
    leaf = x.detach().clone().requires_grad_(True)
    target = t.detach().clone().requires_grad_(True)
    loss = penalized_mae(leaf, target, delta, penalty, reduction)
    total = loss.sum() if weights is None else (loss * weights).sum()
    grad, grad_target = torch.autograd.grad(total, (leaf, target))
    return loss.detach(), grad, grad_target, type(loss.grad_fn).__name__


def inputs(size, dtype, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=size) * scale).to(dtype)


def tolerances(dtype):
    """(rtol of values computed in float32 or float64, rtol of gradients stored in ``dtype``)."""
    value = 1e-12 if dtype == torch.float64 else 2e-6
    grad = {torch.float64: 1e-11, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    return value, grad


# ------------------------------------------------------------------------------------------------
# Against the reference and the portable path
# ------------------------------------------------------------------------------------------------


@given(
    st.sampled_from(NAMES),
    st.booleans(),
    st.sampled_from(DTYPES),
    st.sampled_from(SIZES),
    alphas,
    st.integers(0, 2**31),
)
def test_surrogates_match_the_reference_and_the_portable_path(name, straight_through, dtype, size, alpha, seed):
    x = inputs(size, dtype, seed)
    weights = torch.from_numpy(np.random.default_rng(seed + 1).uniform(0.5, 2.0, size)).to(
        torch.float64 if dtype == torch.float64 else torch.float32
    )
    value, grad, kind = surrogate_value_and_grad(name, x, alpha, straight_through, weights)
    assert kind == "_FusedBackward"
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and grad.dtype == dtype
    exact = x.double().numpy()
    expected = reference.HARD[name](exact) if straight_through else reference.surrogate(name, exact, alpha)
    expected_grad = weights.double().numpy() * reference.surrogate_derivative(name, exact, alpha)
    value_rtol, grad_rtol = tolerances(dtype)
    scale = max(alpha * spec.round_scale(alpha) if "round" in name or "floor" in name or "ceil" in name else alpha, 1)
    np.testing.assert_allclose(value.double().numpy(), expected, rtol=value_rtol, atol=value_rtol * 10)
    np.testing.assert_allclose(grad.double().numpy(), expected_grad, rtol=grad_rtol, atol=grad_rtol * scale)
    with kernels("torch"):
        portable, portable_grad, portable_kind = surrogate_value_and_grad(name, x, alpha, straight_through, weights)
    assert portable_kind != "_FusedBackward"
    torch.testing.assert_close(value, portable, rtol=value_rtol, atol=value_rtol * 10)
    torch.testing.assert_close(grad.double(), portable_grad.double(), rtol=grad_rtol, atol=grad_rtol * scale)


@given(
    st.sampled_from(["mean", "sum", "none"]),
    st.sampled_from(DTYPES),
    st.sampled_from(SIZES),
    st.floats(0.0, 3.0),
    st.floats(0.0, 2.0),
    st.integers(0, 2**31),
)
def test_penalized_mae_matches_the_reference_and_the_portable_path(reduction, dtype, size, delta, penalty, seed):
    x, t = inputs(size, dtype, seed), inputs(size, dtype, seed + 1, scale=1.0)
    weights = (
        None
        if reduction != "none"
        else torch.rand(size, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    )
    loss, grad, grad_target, kind = pmae_value_and_grad(x, t, delta, penalty, reduction, weights)
    assert kind == "_FusedCpuPenalizedMAEBackward"
    assert grad.dtype == dtype and torch.equal(grad_target, -grad)
    xd, td = x.double().numpy(), t.double().numpy()
    expected = reference.penalized_mae(xd, td, delta, penalty, reduction)
    expected_grad = reference.penalized_mae_grad(xd, td, delta, penalty, reduction)
    if weights is not None:
        expected_grad = expected_grad * weights.double().numpy()
    value_rtol, grad_rtol = tolerances(dtype)
    np.testing.assert_allclose(loss.double().numpy(), expected, rtol=value_rtol, atol=value_rtol)
    np.testing.assert_allclose(
        grad.double().numpy(), expected_grad, rtol=grad_rtol, atol=grad_rtol * np.abs(expected_grad).max()
    )
    with kernels("torch"):
        portable, portable_grad, _, portable_kind = pmae_value_and_grad(x, t, delta, penalty, reduction, weights)
    assert portable_kind != kind
    torch.testing.assert_close(loss, portable, rtol=value_rtol, atol=value_rtol)
    torch.testing.assert_close(
        grad.double(),
        portable_grad.double(),
        rtol=grad_rtol,
        atol=grad_rtol * float(portable_grad.double().abs().max()),
    )


def test_non_contiguous_inputs():
    base = inputs((64, 515), torch.float32, 3)
    for x in (base.t(), base[:, ::2], base.reshape(4, 16, 515).permute(0, 2, 1)):
        assert not x.is_contiguous()
        value, grad, _ = surrogate_value_and_grad("soft_ceil", x, 4.0, False)
        assert value.shape == x.shape and grad.shape == x.shape
        np.testing.assert_allclose(value.numpy(), reference.soft_ceil(x.double().numpy(), 4.0), rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(
            grad.numpy(), reference.soft_ceil_derivative(x.double().numpy(), 4.0), rtol=2e-6, atol=2e-5
        )
        t = torch.zeros_like(x)
        loss, grad, _, _ = pmae_value_and_grad(x, t, 1.0, 0.5, "sum")
        np.testing.assert_allclose(
            loss.item(), reference.penalized_mae(x.double().numpy(), 0.0, reduction="sum"), rtol=1e-6
        )
        np.testing.assert_allclose(grad.numpy(), reference.penalized_mae_grad(x.double().numpy(), 0.0, reduction="sum"))


def test_the_number_of_threads_changes_nothing():
    x, t = inputs(3 * _clib.MIN_ELEMENTS_PER_THREAD + 5, torch.float32, 4), inputs(3 * 65536 + 5, torch.float32, 5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(
                (
                    surrogate_value_and_grad("soft_round", x, 7.0, False)[:2],
                    pmae_value_and_grad(x, t, 0.5, 1.0, "mean")[:2],
                )
            )
    finally:
        torch.set_num_threads(before)
    for (value, grad), (loss, loss_grad) in results[1:]:
        assert torch.equal(value, results[0][0][0]) and torch.equal(grad, results[0][0][1])
        assert torch.equal(loss, results[0][1][0]) and torch.equal(loss_grad, results[0][1][1])


# ------------------------------------------------------------------------------------------------
# Gradients: finite differences in float64, and the negative control
# ------------------------------------------------------------------------------------------------


def test_float64_gradients_match_finite_differences():
    x = np.array([0.3, 1.7, -2.45, 0.05, 4.2, -0.6])
    for name in NAMES:
        for straight_through in (False, True):

            def fn(t, n=name, s=straight_through):
                return (FUNCTIONS[n](t, 3.0, straight_through=s) * torch.arange(1.0, 7.0, dtype=torch.float64)).sum()

            def soft(t, n=name):
                return (FUNCTIONS[n](t, 3.0) * torch.arange(1.0, 7.0, dtype=torch.float64)).sum()

            from surrogate_cases import check_straight_through_gradient

            check_straight_through_gradient(fn, soft, x, "torch", rtol=1e-6, atol=1e-8)
    for reduction in ("mean", "sum", "none"):
        w = np.linspace(0.5, 2.0, 6)
        check_gradient(
            lambda a, b, c, reduction=reduction: (penalized_mae(a, b, 0.8, 0.7, reduction) * c).sum(),
            x,
            np.zeros(6),
            w,
            framework="torch",
        )
        check_gradient(
            lambda a, b, c, reduction=reduction: (penalized_mae(a, b, 0.8, 0.7, reduction) * c).sum(),
            x,
            np.zeros(6),
            w,
            argnum=1,
            framework="torch",
        )


def test_negative_control_a_gradient_left_unscaled_fails(monkeypatch):
    """The checks above fail when the backward forgets the upstream gradient: the surrogates' and
    the unreduced penalized MAE's (the derivative recomputed as if the upstream were 1) and the
    reduced penalized MAE's (the derivative of the forward left unscaled)."""
    gradient = cpu_elementwise.gradient
    monkeypatch.setattr(
        cpu_elementwise,
        "gradient",
        lambda function, parameters, x, target, upstream, overwrite=False: gradient(
            function, parameters, x, target, torch.ones((), dtype=upstream.dtype)
        ),
    )
    monkeypatch.setattr(cpu_elementwise, "scale_in_place", lambda grad, upstream: grad)
    x = np.array([0.3, 1.7, -2.45])
    weights = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    for straight_through in (False, True):
        with pytest.raises(GradientMismatch):
            check_gradient(
                lambda t, s=straight_through: (FUNCTIONS["soft_step"](t, 3.0, straight_through=s) * weights).sum(),
                x,
                framework="torch",
            )
    with pytest.raises(GradientMismatch):
        check_gradient(
            lambda a, b: (penalized_mae(a, b, reduction="none") * weights).sum(), x, np.zeros(3), framework="torch"
        )
    with pytest.raises(GradientMismatch):
        check_gradient(lambda a, b: 3.0 * penalized_mae(a, b), x, np.zeros(3), framework="torch")


def test_the_gradient_takes_the_buffer_of_an_upstream_nobody_else_holds():
    """The gradient of a mean is made by autograd for the next backward alone: the gradient is
    written over it, so that a step needs no second input-sized buffer."""
    x = inputs(1000, torch.float32, 8).requires_grad_(True)
    calls = [
        (name, lambda t, n=name, s=s: FUNCTIONS[n](t, 3.0, straight_through=s)) for name in NAMES for s in (False, True)
    ]
    calls.append(("penalized_mae", lambda t: penalized_mae(t, torch.zeros(1000), 0.5, 0.7, "none")))
    for name, call in calls:
        upstream = []
        y = call(x)
        y.register_hook(lambda g, seen=upstream: seen.append(g.data_ptr()))  # keeps no reference to it
        (grad,) = torch.autograd.grad(y.mean(), x)
        assert grad.data_ptr() == upstream[0], name
        expected = (
            reference.penalized_mae_grad(x.detach().double().numpy(), 0.0, 0.5, 0.7, "none")
            if name == "penalized_mae"
            else reference.surrogate_derivative(name, x.detach().double().numpy(), 3.0)
        )
        np.testing.assert_allclose(grad.numpy(), expected / 1000, rtol=2e-6, atol=2e-9)


def check_upstreams_held_elsewhere_are_left_alone():
    """An upstream gradient that something else holds (the caller, a hook, a view, another
    backward) keeps its values, and every gradient is right."""
    n = 300
    x = inputs(n, torch.float32, 9).requires_grad_(True)
    exact = x.detach().double().numpy()
    derivative = torch.from_numpy(reference.surrogate_derivative("soft_round", exact, 3.0)).float()

    def soft_round(t):
        return losses.torch.soft_round(t, 3.0)

    given = torch.full((n,), 0.5)
    (grad,) = torch.autograd.grad(soft_round(x), x, given)
    assert torch.equal(given, torch.full((n,), 0.5))
    torch.testing.assert_close(grad, 0.5 * derivative)
    for keep in (lambda g: g, lambda g: g.detach(), lambda g: g.view(3, n // 3), lambda g: g.untyped_storage()):
        kept = []
        y = soft_round(x)
        y.register_hook(lambda g, keep=keep, kept=kept: kept.append(keep(g)))
        (grad,) = torch.autograd.grad(y.mean(), x)
        values = kept[0] if isinstance(kept[0], torch.Tensor) else torch.empty(0).set_(kept[0], 0, (n,))
        assert torch.equal(values.flatten(), torch.full((n,), 1.0 / n))
        torch.testing.assert_close(grad, derivative / n)
    y = soft_round(x)
    y.retain_grad()
    y.mean().backward()
    assert torch.equal(y.grad, torch.full((n,), 1.0 / n))
    torch.testing.assert_close(x.grad, derivative / n)
    x.grad = None
    # One upstream tensor for two backwards (that of a sum), and views of one (that of cat).
    (grad,) = torch.autograd.grad((soft_round(x) + 2.0 * soft_round(x) + soft_round(x)).mean(), x)
    torch.testing.assert_close(grad, 4.0 * derivative / n)
    (grad,) = torch.autograd.grad(torch.cat([soft_round(x), soft_round(x)]).mean(), x)
    torch.testing.assert_close(grad, derivative / n)


def test_upstreams_held_elsewhere_are_left_alone():
    check_upstreams_held_elsewhere_are_left_alone()


def test_negative_control_overwriting_every_upstream_fails(monkeypatch):
    monkeypatch.setattr(cpu_elementwise, "overwritable", lambda upstream: True)
    with pytest.raises(AssertionError):
        check_upstreams_held_elsewhere_are_left_alone()


def test_a_second_backward_and_second_derivatives():
    x = torch.tensor([0.3, 1.7, -2.45, 0.05], dtype=torch.float64, requires_grad=True)
    y = losses.torch.soft_round(x, 3.0)
    first = torch.autograd.grad(y.sum(), x, retain_graph=True)[0]
    again = torch.autograd.grad(2.0 * y.sum(), x)[0]  # the first backward handed out its buffer
    torch.testing.assert_close(again, 2.0 * first)
    assert torch.autograd.gradgradcheck(lambda t: losses.torch.soft_round(t, 3.0), (x,))
    e = torch.tensor([-3.0, -0.5, 0.25, 2.0], dtype=torch.float64, requires_grad=True)
    loss = penalized_mae(e, torch.zeros(4, dtype=torch.float64), 1.0, 0.5)
    assert "Fused" in type(loss.grad_fn).__name__
    (grad,) = torch.autograd.grad(loss, e, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), e)
    torch.testing.assert_close(second, torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64) / 4)
    again = torch.autograd.grad(penalized_mae(e, torch.zeros(4, dtype=torch.float64)), e, retain_graph=True)[0]
    torch.testing.assert_close(again, grad.detach())


@pytest.mark.parametrize("name", NAMES)
def test_the_value_is_a_tensor_of_its_own_that_takes_in_place_ops(name):
    # A value returned as a view of a larger buffer could not be modified in place (autograd forbids
    # in-place ops on a custom Function's view outputs); 2^18 elements is above any small-size path.
    x = torch.linspace(-3.0, 3.0, 1 << 18, requires_grad=True)
    for straight_through in (False, True):
        y = getattr(losses.torch, name)(x, 3.0, straight_through=straight_through)
        assert y._base is None and y.untyped_storage().nbytes() == y.numel() * y.element_size()
        y.mul_(2.0)
        (grad,) = torch.autograd.grad(y.sum(), x)
        expected = torch.autograd.grad(
            2.0 * getattr(losses.torch, name)(x, 3.0, straight_through=straight_through).sum(), x
        )[0]
        torch.testing.assert_close(grad, expected)


def test_transforms_take_the_portable_path():
    x = torch.tensor([0.3, 1.7, -2.45], dtype=torch.float64)
    expected = torch.from_numpy(reference.soft_floor_derivative(x.numpy(), 3.0))
    grad = torch.func.grad(lambda t: losses.torch.soft_floor(t, 3.0, straight_through=True).sum())(x)
    torch.testing.assert_close(grad, expected)
    per_row = torch.vmap(lambda t: penalized_mae(t, torch.zeros(3, dtype=torch.float64)))(x.reshape(1, 3))
    np.testing.assert_allclose(per_row.numpy(), [reference.penalized_mae(x.numpy(), 0.0)])
    _, tangent = torch.func.jvp(lambda t: losses.torch.soft_floor(t, 3.0), (x,), (torch.ones(3, dtype=torch.float64),))
    torch.testing.assert_close(tangent, expected)
    with torch.autograd.forward_ad.dual_level():  # forward-mode AD outside torch.func
        dual = torch.autograd.forward_ad.make_dual(x, torch.ones(3, dtype=torch.float64))
        out = torch.autograd.forward_ad.unpack_dual(losses.torch.soft_floor(dual, 3.0))
        torch.testing.assert_close(out.tangent, expected)


# ------------------------------------------------------------------------------------------------
# Straight-through exactness, finiteness, non-finite propagation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_straight_through_value_is_exactly_the_hard_function(dtype):
    tiny = torch.finfo(dtype).tiny  # and subnormals below it: every load of every dtype is exact
    x = torch.from_numpy(
        np.concatenate(
            [
                grid(torch.finfo(dtype).max),
                np.linspace(-4, 4, 97),
                [-0.0, -0.3, 2.5, -2.5, 1e-30, tiny, -tiny / 3, tiny / 64],
            ]
        )
    ).to(dtype)
    hard = {
        "soft_round": torch.round,
        "soft_floor": torch.floor,
        "soft_ceil": torch.ceil,
        "soft_step": lambda v: (torch.sign(v) + 1) / 2,
        "soft_sign": torch.sign,
    }
    for name in NAMES:
        value, grad, _ = surrogate_value_and_grad(name, x, 3.0, True)
        expected = hard[name](x).to(value.dtype)
        bits = torch.int64 if value.dtype == torch.float64 else torch.int32
        assert torch.equal(value.view(bits), expected.view(bits)), name
        torch.testing.assert_close(grad, surrogate_value_and_grad(name, x, 3.0, False)[1], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, 1.0, spec.ALPHA_MAX])
def test_finite_inputs_give_finite_values_and_gradients(dtype, alpha):
    x = torch.from_numpy(grid(torch.finfo(dtype).max)).to(dtype)
    for name in NAMES:
        for straight_through in (False, True):
            value, grad, _ = surrogate_value_and_grad(name, x, alpha, straight_through)
            assert torch.isfinite(value).all() and torch.isfinite(grad).all(), (name, straight_through)
    big = torch.tensor([torch.finfo(dtype).max, -torch.finfo(dtype).max, 0.0, 1.0], dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        loss, grad, _, _ = pmae_value_and_grad(big / 2, -big / 4, 0.5, 0.0, reduction)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_inputs_come_out_as_on_the_portable_path(dtype):
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.5, -1.25], dtype=dtype)
    for name in NAMES:
        for straight_through in (False, True):
            value, grad, _ = surrogate_value_and_grad(name, special, 3.0, straight_through)
            assert torch.isnan(value[0]) and torch.isnan(grad[0]), (name, straight_through)
            with kernels("torch"):
                portable, portable_grad, _ = surrogate_value_and_grad(name, special, 3.0, straight_through)
            # at ±inf exactly the limits (sigmoid(-inf) = 0, not a tiny number), or NaN where the formula has none
            torch.testing.assert_close(value[:3], portable[:3], equal_nan=True, rtol=0, atol=0)
            torch.testing.assert_close(value, portable, equal_nan=True, rtol=2e-6, atol=2e-6)
            torch.testing.assert_close(grad.double(), portable_grad.double(), equal_nan=True, rtol=1e-2, atol=1e-6)
    target = torch.tensor([0.0, 0.0, 0.0, float("nan"), float("inf")], dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        for x, t in ((special, torch.zeros_like(special)), (torch.zeros_like(special), target)):
            loss, grad, _, _ = pmae_value_and_grad(x, t, 1.0, 0.5, reduction)
            assert not torch.isfinite(loss).all()
            with kernels("torch"):
                portable, portable_grad, _, _ = pmae_value_and_grad(x, t, 1.0, 0.5, reduction)
            torch.testing.assert_close(loss, portable, equal_nan=True)
            torch.testing.assert_close(grad, portable_grad, equal_nan=True)
            bad = ~torch.isfinite(x - t)
            assert not torch.isfinite(grad[bad]).any()


def test_relative_precision_near_zero():
    """tanh near 0 from its odd polynomial: the quotient (1 - e) / (1 + e) would lose the digits there."""
    x = torch.tensor([1e-7, -3e-6, 2e-5, 4e-4, 0.01, 0.3], dtype=torch.float32)
    value, grad, _ = surrogate_value_and_grad("soft_sign", x, 1.0, False)
    np.testing.assert_allclose(value.numpy(), np.tanh(x.double().numpy() / 2), rtol=1e-6, atol=0)


def test_the_exponential_is_accurate_to_float32_precision():
    """soft_step(x) = sigmoid(x) = e^x·(1 - e^x + ...) for x < 0 carries the kernel's e^x: over a
    dense grid (every position of the polynomial's reduced argument) it stays within 3e-7 of float64
    (measured: at most 1.9e-7). A wrong high-order coefficient of the polynomial moved it by up to
    5e-7, under the tolerances of the comparisons above."""
    x = torch.linspace(-30.0, -1.0, 200001, dtype=torch.float32)
    with torch.no_grad():
        value = losses.torch.soft_step(x, 1.0)
    expected = reference.soft_step(x.double().numpy(), 1.0)
    np.testing.assert_allclose(value.double().numpy(), expected, rtol=3e-7, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_gradients_round_to_nearest_even(dtype):
    """Gradients written in float16 / bfloat16 by the kernels equal torch's own rounding of float32."""
    x = inputs(CHUNK + 3, dtype, 7, scale=40.0)
    x = torch.cat([x, torch.tensor([6e-8, 1e-5, 6e4, -6e4], dtype=torch.float32).to(dtype)])
    t = torch.zeros_like(x)
    for reduction, penalty in (("sum", 0.37), ("mean", 3.0)):
        _, grad, _, _ = pmae_value_and_grad(x, t, 0.5, penalty, reduction)
        _, expected, _, _ = pmae_value_and_grad(x.float(), t.float(), 0.5, penalty, reduction)
        assert torch.equal(grad, expected.to(dtype))
    leaf = x.clone().requires_grad_(True)
    y = losses.torch.soft_round(leaf, 3.0)
    torch.autograd.grad(y.sum(), leaf, retain_graph=True)
    (again,) = torch.autograd.grad(y, leaf, torch.full_like(y, 0.37))  # recomputed: written by the kernel
    expected = surrogate_value_and_grad("soft_round", x.float(), 3.0, False, torch.full_like(y, 0.37))[1]
    assert torch.equal(again, expected.to(dtype))


def test_without_gradient_the_value_alone_is_computed():
    x = inputs(1000, torch.float32, 6)
    with torch.no_grad():
        value = losses.torch.soft_sign(x, 2.0)
        loss = penalized_mae(x, torch.zeros(1000), reduction="sum")
    np.testing.assert_allclose(value.numpy(), reference.soft_sign(x.double().numpy(), 2.0), rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(
        loss.item(), reference.penalized_mae(x.double().numpy(), 0.0, reduction="sum"), rtol=1e-6
    )
