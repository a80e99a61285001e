"""losses.testing's own gradient checker: it must pass right gradients and fail wrong ones."""

import numpy as np
import pytest

from losses.testing import GradientMismatch, check_gradient, numeric_gradient

torch = pytest.importorskip("torch")


def test_numeric_gradient_of_a_non_contiguous_input():
    x = np.moveaxis(np.arange(12.0).reshape(2, 3, 2), 1, -1)  # a strided view
    grad = numeric_gradient(lambda t: (t**2).sum(), [x])
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


class _ScaledSqrt(torch.autograd.Function):
    """sqrt(x) with a backward that multiplies the true derivative by ``factor``."""

    factor = 1.0

    @classmethod
    def build(cls, factor):
        return type("ScaledSqrt", (cls,), {"factor": factor})

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @classmethod
    def backward(cls, ctx, g):
        (x,) = ctx.saved_tensors
        return g * cls.factor / (2 * torch.sqrt(x))


def test_a_wrong_gradient_next_to_a_singularity_fails():
    # x - eps < 0: the central difference is NaN, which used to count as agreement.
    near, away = np.array([4e-7]), np.array([1.0])
    right, wrong = _ScaledSqrt.build(1.0), _ScaledSqrt.build(100.0)
    with pytest.raises(GradientMismatch, match="disagree at index"):
        check_gradient(lambda t: wrong.apply(t).sum(), near)
    check_gradient(lambda t: right.apply(t).sum(), away)
    with pytest.raises(GradientMismatch, match="disagree at index"):
        check_gradient(lambda t: wrong.apply(t).sum(), away)


def test_numeric_gradient_falls_back_to_the_finite_side():
    x = np.array([4e-7])
    grad = numeric_gradient(lambda t: torch.sqrt(t).sum(), [x])
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, (np.sqrt(x + 1e-6) - np.sqrt(x)) / 1e-6)


def test_a_gradient_that_cannot_be_checked_fails_and_says_so():
    class Cusp(torch.autograd.Function):  # finite at 0, NaN on both sides; a finite backward
        @staticmethod
        def forward(ctx, x):
            return torch.sqrt(-(x**2)).sum()

        @staticmethod
        def backward(ctx, g):
            return torch.zeros(1, dtype=torch.float64) * g

    with pytest.raises(GradientMismatch, match="cannot be checked here"):
        check_gradient(Cusp.apply, np.zeros(1))
