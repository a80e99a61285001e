"""losses.testing's own gradient checker: it must pass right gradients and fail wrong ones."""

import numpy as np
import pytest

from losses.testing import GradientMismatch, check_gradient, numeric_gradient

torch = pytest.importorskip("torch")


def test_numeric_gradient_of_a_non_contiguous_input():
    x = np.moveaxis(np.arange(12.0).reshape(2, 3, 2), 1, -1)  # a strided view
    grad = numeric_gradient(lambda t: (t ** 2).sum(), [x])
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-6)


def test_a_gradient_off_by_a_constant_factor_fails():
    class Half(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return g * 0.5 * torch.ones(3, dtype=torch.float64)

    check_gradient(lambda t: t.sum(), np.ones(3))
    with pytest.raises(GradientMismatch, match="disagree at index"):
        check_gradient(Half.apply, np.ones(3))


def test_a_nan_gradient_fails():
    with pytest.raises(GradientMismatch):
        check_gradient(lambda t: torch.where(t > 0, t, torch.sqrt(-t * 0 - 1)).sum(), np.array([1.0, 2.0]))
