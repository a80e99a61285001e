"""Elementwise functions and their derivatives on CPU tensors: ``cpu_elementwise.c`` in the C library.

Every function (penalized MAE and the smooth surrogates) is one definition in C that computes the
value and the derivative together; the kernels here run it over a tensor in one pass each:
:func:`value_and_derivative` (the forward of what will be differentiated: the backward then only
scales the derivative, :func:`scale_in_place`), :func:`loss_sum` (a loss reduced to its sum in the
pass that writes its derivative), :func:`value` (no gradient needed) and :func:`gradient`
(upstream · derivative, for a second backward through the same graph). float32, float64, float16 and bfloat16 inputs are read as they are and
computed in float32 (float64 in double); values come out in float32 (float64), gradients in the
input's dtype. Build, cache and threads: :mod:`losses.torch._kernels._clib`.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from losses.torch._kernels import _clib, broadcast_value, transforms_active
from losses.torch._ops import compute_dtype

C_SOURCE = _clib.Source("cpu_elementwise.c")
# Elements per task. Fixed, so that the partial sums, and their order, do not depend on the threads.
CHUNK = 32768

_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}
DTYPES = tuple(_SUFFIX)


class _Args(ctypes.Structure):
    """``struct Elementwise`` of cpu_elementwise.c."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("target", ctypes.c_void_p),
        ("value", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("upstream", ctypes.c_void_p),
        ("partial", ctypes.c_void_p),
        ("n", ctypes.c_int64),
        ("chunk", ctypes.c_int64),
        ("p0", ctypes.c_double),
        ("p1", ctypes.c_double),
        ("p2", ctypes.c_double),
        ("scale", ctypes.c_double),
    ]


def supports(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors: on the CPU, of one dtype they read, not empty, and
    outside ``torch.compile`` (which cannot trace a ctypes call), torch.func transforms and forward-mode AD."""
    present = [t for t in tensors if t is not None]
    first = present[0]
    return (
        first.dtype in _SUFFIX
        and first.numel() > 0
        and all(t.device.type == "cpu" and t.dtype == first.dtype for t in present)
        and not torch.compiler.is_compiling()
        and not transforms_active()
        and _clib.available()
    )


def _run(kernel: str, args: _Args) -> None:
    tasks = -(-args.n // CHUNK)
    _clib.run(kernel, args, tasks, _clib.threads_for(tasks, args.n))


def _args(
    x: torch.Tensor, target: torch.Tensor | None, parameters: tuple[float, float, float], **fields: float | None
) -> _Args:
    return _Args(
        x=x.data_ptr(),
        target=None if target is None else target.data_ptr(),
        n=x.numel(),
        chunk=CHUNK,
        p0=parameters[0],
        p1=parameters[1],
        p2=parameters[2],
        **fields,
    )


def value(
    kernel: str, parameters: tuple[float, float, float], x: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """``kernel`` (a function, or a straight-through form's hard value) of each element of ``x``
    (a loss: of ``x - target``), float32 or float64, x's shape."""
    return _values(kernel, parameters, x, target, with_derivative=False)[0]


def value_and_derivative(
    kernel: str, parameters: tuple[float, float, float], x: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`value` and, written in the same pass, the derivative (both float32 or float64)."""
    value, derivative = _values(kernel, parameters, x, target, with_derivative=True)
    assert derivative is not None  # asked for
    return value, derivative


def _values(
    kernel: str,
    parameters: tuple[float, float, float],
    x: torch.Tensor,
    target: torch.Tensor | None,
    with_derivative: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = x.contiguous()
    target = None if target is None else target.contiguous()
    out = torch.empty(x.shape, dtype=compute_dtype(x.dtype))
    derivative = torch.empty_like(out) if with_derivative else None
    args = _args(
        x,
        target,
        parameters,
        value=out.data_ptr(),
        scale=1.0,
        grad=None if derivative is None else derivative.data_ptr(),
    )
    _run(f"{kernel}_{'vd' if with_derivative else 'v'}_{_SUFFIX[x.dtype]}", args)
    return out, derivative


def scale_in_place(grad: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """``grad *= upstream``; nothing to do for an upstream that is 1 broadcast (a sum's gradient)."""
    if broadcast_value(upstream):
        factor = upstream[(0,) * upstream.dim()].item()
        return grad if factor == 1.0 else grad.mul_(factor)
    return grad.mul_(upstream)


def gradient(
    function: str,
    parameters: tuple[float, float, float],
    x: torch.Tensor,
    target: torch.Tensor | None,
    upstream: torch.Tensor,
) -> torch.Tensor:
    """``upstream · function'(x)`` (a loss: the derivative at ``x - target``), in x's dtype and shape.

    An ``upstream`` that is one value broadcast (the gradient of a sum or mean) is read once.
    """
    x = x.contiguous()
    target = None if target is None else target.contiguous()
    grad = torch.empty(x.shape, dtype=x.dtype)
    if broadcast_value(upstream):
        args = _args(x, target, parameters, grad=grad.data_ptr(), scale=upstream[(0,) * upstream.dim()].item())
    else:
        upstream = upstream.to(compute_dtype(x.dtype)).expand(x.shape).contiguous()
        args = _args(x, target, parameters, grad=grad.data_ptr(), upstream=upstream.data_ptr())
    _run(f"{function}_g_{_SUFFIX[x.dtype]}", args)
    return grad


def loss_sum(
    function: str,
    parameters: tuple[float, float, float],
    x: torch.Tensor,
    target: torch.Tensor,
    grad_scale: float | None,
) -> tuple[float, torch.Tensor | None]:
    """``(Σ function(x - target), grad_scale · function'(x - target))`` in one pass; the gradient
    (x's dtype) only when ``grad_scale`` is given. The sum is added in float64, in a fixed order."""
    x, target = x.contiguous(), target.contiguous()
    partial = np.empty(-(-x.numel() // CHUNK), dtype=np.float64)
    grad = None if grad_scale is None else torch.empty(x.shape, dtype=x.dtype)
    args = _args(
        x,
        target,
        parameters,
        partial=partial.ctypes.data,
        grad=None if grad is None else grad.data_ptr(),
        scale=1.0 if grad_scale is None else grad_scale,
    )
    _run(f"{function}_s_{_SUFFIX[x.dtype]}", args)
    return float(partial.sum()), grad
