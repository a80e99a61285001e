"""The PyTorch and Keras surrogates agree with each other and with the reference; the docs page runs."""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest
import torch
from keras import ops

import losses.keras
import losses.torch
import reference
from losses import _surrogates as spec
from losses.testing import value_and_grad
from surrogate_cases import NAMES, grid

ROOT = pathlib.Path(__file__).resolve().parents[1]
X = np.concatenate([grid(1e30), np.linspace(-3.0, 3.0, 241) + 1e-3])


def torch_value_and_grad(name, x, alpha, straight_through):
    t = torch.from_numpy(x).requires_grad_(True)
    y = getattr(losses.torch, name)(t, alpha, straight_through=straight_through)
    (g,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), g.numpy()


def keras_value_and_grad(name, x, alpha, straight_through):
    fn = getattr(losses.keras, name)
    value = ops.convert_to_numpy(fn(ops.convert_to_tensor(x), alpha, straight_through=straight_through))
    _, grad = value_and_grad(lambda t: ops.sum(fn(t, alpha, straight_through=straight_through)), [x], framework="keras")
    return value, grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("alpha", [spec.ALPHA_MIN, 1.0, spec.DEFAULT_ALPHA, 1e3, spec.ALPHA_MAX])
@pytest.mark.parametrize("straight_through", [False, True])
def test_frontends_agree_with_each_other_and_the_reference(name, dtype, alpha, straight_through):
    x = X.astype(dtype)
    x = x[np.abs(x) < 1e6] if dtype == "float32" else x  # float32 resolves no fraction above 2**23
    tv, tg = torch_value_and_grad(name, x, alpha, straight_through)
    kv, kg = keras_value_and_grad(name, x, alpha, straight_through)
    assert tv.dtype == kv.dtype == np.dtype(dtype)
    x64 = x.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    if straight_through:
        for ours in (tv, kv):
            np.testing.assert_array_equal(ours, reference.HARD[name](x64))
    else:
        low, high = rounding_band(lambda v: reference.surrogate(name, v, alpha), x64, eps)
        assert_in_band(tv, kv, low, high, x)
    low, high = rounding_band(lambda v: reference.surrogate_derivative(name, v, alpha), x64, eps)
    assert_in_band(tg, kg, low, high, x)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("straight_through", [False, True])
def test_non_finite_inputs_give_the_same_result_in_both_frontends(name, straight_through):
    x = np.array([np.nan, np.inf, -np.inf, 0.3])
    tv, tg = torch_value_and_grad(name, x, 3.0, straight_through)
    kv, kg = keras_value_and_grad(name, x, 3.0, straight_through)
    np.testing.assert_allclose(tv, kv, rtol=1e-12)  # NaN where the other has NaN, the same infinities
    np.testing.assert_allclose(tg, kg, rtol=1e-12)
    assert np.isnan(tv[0]) and np.isnan(tg[0])


def assert_in_band(torch_result, keras_result, low, high, x):
    for ours in (torch_result, keras_result):
        bad = np.flatnonzero((ours < low) | (ours > high))
        assert bad.size == 0, [(x[i], ours[i], low[i], high[i]) for i in bad[:3]]
    assert np.all(np.abs(torch_result - keras_result) <= high - low)  # so they agree with each other too


def rounding_band(f, x, eps):
    """The range of f over x +- 4 eps (1 + |x|), widened by 16 eps relative: what rounding x and
    intermediates of its size in the working precision can do. Near a steep part of a surrogate
    that range is what separates float32 from float64, not an error of either frontend."""
    delta = 4 * eps * (1.0 + np.abs(x))
    candidates = np.stack([f(x - delta), f(x), f(x + delta)])
    slack = 16 * eps * (np.abs(candidates).max(0) + np.abs(candidates).max())
    return candidates.min(0) - slack, candidates.max(0) + slack


def test_same_signature_and_defaults_in_both_frontends():
    import inspect

    for name in NAMES:
        torch_sig = inspect.signature(getattr(losses.torch, name))
        keras_sig = inspect.signature(getattr(losses.keras, name))
        assert list(torch_sig.parameters) == list(keras_sig.parameters) == ["x", "alpha", "straight_through"]
        for p in ("alpha", "straight_through"):
            assert torch_sig.parameters[p].default == keras_sig.parameters[p].default
        assert torch_sig.parameters["alpha"].default == spec.DEFAULT_ALPHA
        assert (
            getattr(losses.torch, name).__doc__.split("Example:")[0]
            == getattr(losses.keras, name).__doc__.split("Example:")[0]
        )


def python_blocks(markdown: str) -> list[str]:
    """The page's python code blocks, each padded with newlines so tracebacks give the page's line."""
    return [
        "\n" * markdown[: m.start(1)].count("\n") + m.group(1)
        for m in re.finditer(r"^```python\n(.*?)^```", markdown, flags=re.M | re.S)
    ]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the page's example is written for TensorFlow")
def test_docs_page_code_runs_and_its_gradients_are_nonzero():
    blocks = python_blocks((ROOT / "docs" / "surrogates.md").read_text())
    assert len(blocks) >= 8
    namespace: dict = {}
    for block in blocks:  # each block asserts what the page claims (None before, non-zero after)
        exec(compile(block, "docs/surrogates.md", "exec"), namespace)
    assert "soft_floor_loss" in namespace and "soft_threshold_loss" in namespace


def test_docs_figure_is_committed_and_drawn_by_the_script():
    assert (ROOT / "docs" / "img" / "surrogates.png").stat().st_size > 10_000
    script = (ROOT / "docs" / "plot_surrogates.py").read_text()
    assert "surrogates.png" in script and "img/surrogates.png" in (ROOT / "docs" / "surrogates.md").read_text()


# Where x + shift crosses a power of two (x in (-8, -7.5) for soft_floor, in (7.5, 8) for soft_ceil),
# x + shift rounds to the coarser spacing of the next binade: the distance to the cell's middle must
# come from x itself, or the tanh's argument is off by up to alpha·ulp(x)/2 (7e-6 of the gradient).
_ACROSS_A_POWER_OF_TWO = {"soft_floor": (-8.0, -7.5), "soft_ceil": (7.5, 8.0)}


@pytest.mark.parametrize("name", sorted(_ACROSS_A_POWER_OF_TWO))
@pytest.mark.parametrize("kernels", ["auto", "torch", "keras"])
def test_the_rounding_family_keeps_float32_precision_where_x_plus_its_shift_crosses_a_power_of_two(
    name, kernels, monkeypatch
):
    low, high = _ACROSS_A_POWER_OF_TWO[name]
    x = np.linspace(low, high, 1001)[1:-1].astype(np.float32)
    exact = x.astype(np.float64)
    alpha = 10.0
    if kernels == "keras":
        value, grad = keras_value_and_grad(name, x, alpha, False)
    else:
        monkeypatch.setenv("LOSSES_KERNELS", kernels)
        value, grad = torch_value_and_grad(name, x, alpha, False)
    np.testing.assert_allclose(value, reference.surrogate(name, exact, alpha), rtol=2e-7, atol=0)
    expected_grad = reference.surrogate_derivative(name, exact, alpha)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-6 * expected_grad.max())


# Above 2^22, float32 holds no fraction finer than 1/2 (above 2^23 none): x + shift would round,
# to even, and pick the cell of x's neighbour (a derivative at the cell's edge, 5 at alpha = 10,
# instead of its middle, 4e-8, or the reverse): the cell comes from floor(x) and x - floor(x).
_NO_FRACTION = np.array(
    [4194304.25, 4194304.5, 4194304.75, 8388607.5, 8388608.0, 8388609.0, 1e7, 16777216.0, 3e7, -8388609.0, -1e7],
    dtype=np.float32,
)


@pytest.mark.parametrize("name", ["soft_round", "soft_floor", "soft_ceil"])
@pytest.mark.parametrize("kernels", ["auto", "torch", "keras"])
@pytest.mark.parametrize("straight_through", [False, True])
def test_the_rounding_family_picks_the_cell_of_x_where_float32_has_no_fraction(
    name, kernels, straight_through, monkeypatch
):
    x = _NO_FRACTION
    exact = x.astype(np.float64)
    alpha = 10.0
    if kernels == "keras":
        value, grad = keras_value_and_grad(name, x, alpha, straight_through)
    else:
        monkeypatch.setenv("LOSSES_KERNELS", kernels)
        value, grad = torch_value_and_grad(name, x, alpha, straight_through)
    # Keras takes the derivative as 1 - tanh² (XLA's cheap tanh), 5e-4 off at the middle of a cell
    rtol = 1e-3 if kernels == "keras" else 1e-5
    np.testing.assert_allclose(grad, reference.surrogate_derivative(name, exact, alpha), rtol=rtol, atol=0)
    if not straight_through:  # the value to float32's spacing at x
        np.testing.assert_allclose(value, reference.surrogate(name, exact, alpha), rtol=1.2e-7, atol=0)
