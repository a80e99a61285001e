"""Small tensor helpers of the PyTorch losses: the ops namespace of the framework-free formulas,
cached constants, the computation dtype and the float16 cast of gradients."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from losses._validation import TORCH_REDUCTIONS

FLOAT16_MAX = torch.finfo(torch.float16).max


class TorchOps:
    """The tensor namespace :func:`losses._overlap.overlap_loss` expects, for PyTorch tensors."""

    where = staticmethod(torch.where)
    log = staticmethod(torch.log)
    pow = staticmethod(torch.pow)
    zeros_like = staticmethod(torch.zeros_like)
    stack = staticmethod(torch.stack)
    logical_and = staticmethod(torch.logical_and)
    logical_or = staticmethod(torch.logical_or)

    @staticmethod
    def maximum(x: Tensor, value: float) -> Tensor:
        return x.clamp_min(value)  # keeps NaN

    @staticmethod
    def sum(x: Tensor, axis: int, keepdims: bool = False) -> Tensor:
        return x.sum(axis, keepdim=keepdims)

    @staticmethod
    def min(x: Tensor, axis: int, keepdims: bool = False) -> Tensor:
        return x.amin(axis, keepdim=keepdims)

    @staticmethod
    def stop_gradient(x: Tensor) -> Tensor:
        return x.detach()


@functools.lru_cache(maxsize=64)
def _cached_constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small tensor of Python values on ``device``.

    Eagerly, cached: a small host list copied to the GPU at every step would synchronise. Under
    torch.compile the tensor becomes a constant of the graph.
    """
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=dtype, device=device)
    return _cached_constant(values, dtype, device)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def cast_gradient(grad: Tensor, dtype: torch.dtype) -> Tensor:
    """``grad`` (float32) in ``dtype``, saturating at float16's largest value instead of overflowing.

    A loss's gradient can exceed 65504 (1/smooth_dr per position on an empty target); cast to
    float16 it would become inf and make AMP skip every step. NaN and ±inf stay as they are: finite
    input gives a finite float32 gradient, so an infinity here comes from a non-finite input, and
    the loss scaler must see it.
    """
    if dtype == torch.float16:
        grad = torch.where(grad.isinf(), grad, grad.clamp(-FLOAT16_MAX, FLOAT16_MAX))
    return grad.to(dtype)


class _SaturatingUpcast(torch.autograd.Function):
    """float16 to float32, whose backward casts the gradient back with :func:`cast_gradient`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return input.to(torch.float32)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return cast_gradient(grad, torch.float16)


# The Functions with their forward-mode rule (torch.func.jvp) apart: torch.compile cannot trace a
# Function that defines jvp, so under it the ones without are taken.


class _SaturatingUpcastForwardMode(_SaturatingUpcast):
    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        return tangent.to(torch.float32)


def upcast(input: Tensor) -> Tensor:
    """``input`` in its computation dtype (:func:`compute_dtype`), float16 through :func:`cast_gradient`'s rule."""
    if input.dtype == torch.float16:
        compiling = torch.compiler.is_compiling()
        return (_SaturatingUpcast if compiling else _SaturatingUpcastForwardMode).apply(input)
    return input.to(compute_dtype(input.dtype))


class _NonFiniteMark(torch.autograd.Function):
    """0 where ``x`` is finite and NaN where not, with a gradient that is NaN where ``x`` is not finite
    (and exactly 0 elsewhere). Added to a loss term, it makes the term and the gradient of the
    non-finite input NaN, which a loss scaler reads from the gradients."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.where(torch.isfinite(x), 0.0, math.nan).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (mark,) = ctx.saved_tensors
        return grad * 0 + mark


class _NonFiniteMarkForwardMode(_NonFiniteMark):
    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        return torch.zeros_like(tangent)


def non_finite_mark(x: Tensor) -> Tensor:
    """0 where ``x`` is finite, NaN where not; its gradient likewise (see :class:`_NonFiniteMark`)."""
    return (_NonFiniteMark if torch.compiler.is_compiling() else _NonFiniteMarkForwardMode).apply(x)


def composed_gradient(composed: Callable[[], Tensor], input: Tensor, grad_output: Tensor) -> Tensor:
    """The gradient of ``composed()`` (the loss again, from PyTorch ops) with respect to ``input``,
    itself differentiable: the backward of a fused loss under ``create_graph=True``, whose kernels'
    gradient is not differentiable."""
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(composed(), input, grad_output, create_graph=True)
    return grad


def sum_with_axis(values: Tensor) -> Tensor:
    """The sum of ``values`` as a tensor of shape ``(1,)``, for arithmetic with Python floats before
    the final ``squeeze(0)``: PyTorch's forward-mode rule for a 0-dim tensor times (or divided by) a
    Python float gives a float64 tangent (``torch.func.jvp``, ``jacfwd``) for a float32 loss, but
    keeps the dtype of a tensor with an axis."""
    return values.reshape(-1).sum(0, keepdim=True)


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """``"mean"``, ``"sum"`` or ``"none"`` of per-item losses (the mean of nothing is NaN, as in torch)."""
    if reduction == "mean":
        # Per-image losses in float32's range have their mean in range, but not always their float32
        # sum (two Lovász hinge losses of 3e38, from logits of 3e38): where the sum overflows, divide
        # first (the C kernel's float64 total gives the same). 0 items: 0 / 0, NaN.
        total = sum_with_axis(loss)
        count = float(loss.numel())
        return torch.where(total.isfinite(), total / count, sum_with_axis(loss.reshape(-1) / count)).squeeze(0)
    if reduction == "sum":
        return loss.sum()
    return loss


__all__ = [
    "FLOAT16_MAX",
    "TORCH_REDUCTIONS",
    "TorchOps",
    "cast_gradient",
    "composed_gradient",
    "compute_dtype",
    "constant",
    "non_finite_mark",
    "reduce",
    "sum_with_axis",
    "upcast",
]
