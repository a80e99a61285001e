"""The elementwise Triton kernels (``_triton_elementwise.py``), run by Triton's interpreter on CPU
tensors, against the float64 reference.

As in ``test_torch_kernels.py``, Triton decides when it is first imported whether its functions
are interpreted, so this file runs itself in a subprocess with ``TRITON_INTERPRET=1`` and
``LOSSES_KERNELS=triton``. Sizes cross the block of 4096 elements.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

IN_CHILD = os.environ.get("LOSSES_ELEMENTWISE_TRITON_CHILD") == "1"
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_elementwise_kernels_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", LOSSES_KERNELS="triton", LOSSES_ELEMENTWISE_TRITON_CHILD="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


torch = pytest.importorskip("torch")

import reference  # noqa: E402
from surrogate_cases import NAMES  # noqa: E402

import losses.torch  # noqa: E402
from losses.torch._kernels import elementwise  # noqa: E402
from losses.torch.functional import penalized_mae  # noqa: E402

SIZE = 2 * 4096 + 37
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GRAD_RTOL = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def value_and_grad(name, x, alpha, straight_through, upstream=None):
    leaf = x.detach().clone().requires_grad_(True)
    value = getattr(losses.torch, name)(leaf, alpha, straight_through=straight_through)
    (grad,) = torch.autograd.grad(value, leaf, torch.ones_like(value) if upstream is None else upstream)
    return value.detach(), grad, type(value.grad_fn).__name__


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("straight_through", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_surrogates_match_the_reference(name, straight_through, dtype):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(3, SIZE // 3, generator=gen) * 3).to(dtype).t()  # not contiguous
    upstream = torch.rand(x.shape, generator=gen) + 0.5
    value, grad, kind = value_and_grad(name, x, 4.0, straight_through, upstream)
    assert kind == "_FusedBackward" and value.dtype == torch.float32 and grad.dtype == dtype
    exact = x.double().numpy()
    expected = reference.HARD[name](exact) if straight_through else reference.surrogate(name, exact, 4.0)
    np.testing.assert_allclose(value.double().numpy(), expected, rtol=2e-6, atol=2e-6)
    expected_grad = upstream.double().numpy() * reference.surrogate_derivative(name, exact, 4.0)
    np.testing.assert_allclose(grad.double().numpy(), expected_grad, rtol=GRAD_RTOL[dtype], atol=GRAD_RTOL[dtype] * 4)


def test_one_upstream_value_broadcast_and_a_second_backward():
    x = torch.linspace(-3, 3, SIZE).requires_grad_(True)
    y = losses.torch.soft_step(x, 2.0)
    expected = torch.from_numpy(reference.soft_step_derivative(x.detach().double().numpy(), 2.0)).float()
    (first,) = torch.autograd.grad(y.sum(), x, retain_graph=True)  # upstream 1: the derivative as it is
    (mean,) = torch.autograd.grad(y.mean(), x, retain_graph=True)  # the first backward handed out its buffer
    (scaled,) = torch.autograd.grad(y.sum() * 3.0, x)
    torch.testing.assert_close(first, expected, rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(mean, expected / SIZE, rtol=2e-6, atol=1e-10)
    torch.testing.assert_close(scaled, 3.0 * expected, rtol=2e-6, atol=1e-7)
    # the gradient pass on its own, with a broadcast and a full upstream
    parameters = (2.0, 0.0, 0.0)
    for upstream in (torch.tensor(0.5).expand(SIZE), torch.full((SIZE,), 0.5)):
        got = elementwise.gradient("soft_step", parameters, x.detach(), None, upstream)
        torch.testing.assert_close(got, expected / 2, rtol=2e-6, atol=1e-7)


def test_non_finite_values_come_out():
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.3, 2.5])
    for name in NAMES:
        for straight_through in (False, True):
            value, grad, _ = value_and_grad(name, special, 3.0, straight_through)
            assert torch.isnan(value[0]) and torch.isnan(grad[0]), (name, straight_through)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("LOSSES_KERNELS", "torch")
                portable, portable_grad, _ = value_and_grad(name, special, 3.0, straight_through)
            torch.testing.assert_close(value, portable, equal_nan=True, rtol=2e-6, atol=2e-6)
            torch.testing.assert_close(grad, portable_grad, equal_nan=True, rtol=2e-6, atol=2e-6)
    for reduction in ("mean", "sum", "none"):
        x = special.clone().requires_grad_(True)
        loss = penalized_mae(x, torch.zeros(6), reduction=reduction)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        assert not torch.isfinite(loss).all() and torch.isnan(grad[0]) and torch.isinf(grad[1:3]).all()


def test_negative_control_a_derivative_of_the_wrong_function_fails():
    """The comparison above fails when the kernels apply another function's derivative."""
    x = torch.linspace(-2, 2, 4101)
    right = elementwise.gradient("soft_sign", (3.0, 0.0, 0.0), x, None, torch.tensor(1.0))
    wrong = elementwise.gradient("soft_step", (3.0, 0.0, 0.0), x, None, torch.tensor(1.0))
    expected = torch.from_numpy(reference.soft_sign_derivative(x.double().numpy(), 3.0)).float()
    torch.testing.assert_close(right, expected, rtol=2e-6, atol=1e-6)
    assert not torch.allclose(wrong, expected, rtol=1e-3, atol=1e-3)


# The main process runs only the subprocess test above; the subprocess runs everything else.
for _name in [n for n in list(globals()) if n.startswith("test_")]:
    if (_name == "test_elementwise_kernels_under_the_triton_interpreter") == IN_CHILD:
        del globals()[_name]
