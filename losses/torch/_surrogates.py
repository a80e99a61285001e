"""Smooth surrogates of round, floor, ceil, step and sign for PyTorch, with straight-through forms.

The formulas, the range of ``alpha`` and the docstrings live in :mod:`losses._surrogates`, shared
with the Keras frontend. The straight-through forms are one ``torch.autograd.Function`` whose
backward is the surrogate's derivative, written out (not autodiff of the surrogate, and not the
``x + (hard - x).detach()`` trick, which would evaluate the surrogate in the forward pass too).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from losses import _surrogates as _spec
from losses._validation import describe, floating_dtype_error

__all__ = ["soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign"]

_KEPT_DTYPES = (torch.float32, torch.float64)


def _prepare(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {describe(x)}")
    if not x.is_floating_point():
        raise floating_dtype_error("x", x.dtype)
    return x if x.dtype in _KEPT_DTYPES else x.float()


def _sech2(y: torch.Tensor) -> torch.Tensor:
    # 1 - tanh(y)**2 written with sigmoids: no cancellation in the tails, exactly 1 at 0.
    return 4.0 * torch.sigmoid(2.0 * y) * torch.sigmoid(-2.0 * y)


# Values (autodiff gives the soft forms' gradients) and derivatives (the straight-through backward).

def _round_value(y: torch.Tensor, alpha: float) -> torch.Tensor:
    m = torch.floor(y) + 0.5
    return m + torch.tanh(alpha * (y - m)) * _spec.round_scale(alpha)


def _round_derivative(y: torch.Tensor, alpha: float) -> torch.Tensor:
    r = y - (torch.floor(y) + 0.5)
    return _sech2(alpha * r) * (alpha * _spec.round_scale(alpha))


def _floor_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return _round_derivative(x - 0.5, alpha)


def _ceil_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return _round_derivative(x + 0.5, alpha)


def _step_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    z = alpha * x
    return alpha * torch.sigmoid(z) * torch.sigmoid(-z)


def _sign_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return 2.0 * _step_derivative(x, alpha)


def _hard_step(x: torch.Tensor) -> torch.Tensor:
    # (sign + 1) / 2 is exact: 0, 1/2 or 1, with step(0) = 1/2 like the surrogate at 0.
    return (torch.sign(x) + 1.0) * 0.5


class _StraightThrough(torch.autograd.Function):
    """Forward ``hard(x)``, backward ``grad * derivative(x, alpha)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, hard: Callable, derivative: Callable, alpha: float) -> torch.Tensor:
        return hard(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, derivative, alpha = inputs
        ctx.save_for_backward(x)
        ctx.derivative = derivative
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x, ctx.alpha), None, None, None


def _straight_through(x: torch.Tensor, hard: Callable, derivative: Callable, alpha: float) -> torch.Tensor:
    return _StraightThrough.apply(x, hard, derivative, alpha)


def soft_round(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, torch.round, _round_derivative, alpha)
    return _round_value(x, alpha)


def soft_floor(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, torch.floor, _floor_derivative, alpha)
    return _round_value(x - 0.5, alpha)


def soft_ceil(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, torch.ceil, _ceil_derivative, alpha)
    return _round_value(x + 0.5, alpha)


def soft_step(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, _hard_step, _step_derivative, alpha)
    return torch.sigmoid(alpha * x)


def soft_sign(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, torch.sign, _sign_derivative, alpha)
    # tanh(z / 2) equals 2 * sigmoid(z) - 1 without its cancellation near 0.
    return torch.tanh(0.5 * alpha * x)


_EXAMPLES = {
    "soft_round": """
    Example:

    >>> import torch
    >>> from losses.torch import soft_round
    >>> x = torch.tensor([0.2, 0.5, 1.7], requires_grad=True)
    >>> soft_round(x, alpha=10.0)
    tensor([0.0024, 0.5000, 1.9821], grad_fn=<AddBackward0>)
    >>> y = soft_round(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0., 0., 2.], grad_fn=<_StraightThroughBackward>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.0493, 5.0005, 0.3533])
""",
    "soft_floor": """
    Example:

    >>> import torch
    >>> from losses.torch import soft_floor
    >>> x = torch.tensor([0.2, 1.0, 1.7], requires_grad=True)
    >>> soft_floor(x, alpha=10.0)
    tensor([-0.0179,  0.5000,  1.0024], grad_fn=<AddBackward0>)
    >>> y = soft_floor(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0., 1., 1.], grad_fn=<_StraightThroughBackward>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.3533, 5.0005, 0.0493])
""",
    "soft_ceil": """
    Example:

    >>> import torch
    >>> from losses.torch import soft_ceil
    >>> x = torch.tensor([0.2, 1.0, 1.7], requires_grad=True)
    >>> soft_ceil(x, alpha=10.0)
    tensor([0.9821, 1.5000, 2.0024], grad_fn=<AddBackward0>)
    >>> soft_ceil(x, alpha=10.0, straight_through=True)
    tensor([1., 1., 2.], grad_fn=<_StraightThroughBackward>)
""",
    "soft_step": """
    Example:

    >>> import torch
    >>> from losses.torch import soft_step
    >>> x = torch.tensor([-0.5, 0.0, 0.1], requires_grad=True)
    >>> soft_step(x, alpha=10.0)
    tensor([0.0067, 0.5000, 0.7311], grad_fn=<SigmoidBackward0>)
    >>> y = soft_step(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0.0000, 0.5000, 1.0000], grad_fn=<_StraightThroughBackward>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.0665, 2.5000, 1.9661])
""",
    "soft_sign": """
    Example:

    >>> import torch
    >>> from losses.torch import soft_sign
    >>> x = torch.tensor([-0.5, 0.0, 0.1], requires_grad=True)
    >>> soft_sign(x, alpha=10.0)
    tensor([-0.9866,  0.0000,  0.4621], grad_fn=<TanhBackward0>)
    >>> soft_sign(x, alpha=10.0, straight_through=True)
    tensor([-1.,  0.,  1.], grad_fn=<_StraightThroughBackward>)
""",
}

for _function in (soft_round, soft_floor, soft_ceil, soft_step, soft_sign):
    _function.__doc__ = _spec.docstring(_function.__name__, _EXAMPLES[_function.__name__])
del _function
