"""Elementwise functions and their derivatives on CPU tensors: ``cpu_elementwise.c`` in the C library.

Every function (penalized MAE and the smooth surrogates) is one definition in C that computes the
value and the derivative together; the kernels here run it over a tensor in one pass each:
:func:`value` (the forward), :func:`gradient` (the backward: upstream · derivative, recomputed from
the saved input, so that no input-sized buffer lives from the forward to the backward; written over
the upstream gradient when nothing else holds that, see :func:`overwritable`) and :func:`loss_sum`
(a loss reduced to its sum in the pass that writes its derivative: the backward then only scales
it, :func:`scale_in_place`). float32, float64, float16 and bfloat16 inputs are read as they are
and computed in float32 (float64 in double); values come out in float32 (float64), gradients in
the input's dtype. Build, cache and threads: :mod:`losses.torch._kernels._clib`.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

import numpy as np
import torch

from losses.torch._kernels import _clib, broadcast_value, transforms_active
from losses.torch._ops import compute_dtype

C_SOURCE = _clib.Source("cpu_elementwise.c")
# Elements per task. Fixed, so that the partial sums, and their order, do not depend on the threads.
CHUNK = 32768

_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}
DTYPES = tuple(_SUFFIX)
STORES_DERIVATIVE = False  # the backward recomputes it from the input (see gradient)


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
    x = x.contiguous()
    target = None if target is None else target.contiguous()
    out = torch.empty(x.shape, dtype=compute_dtype(x.dtype))
    _run(f"{kernel}_v_{_SUFFIX[x.dtype]}", _args(x, target, parameters, value=out.data_ptr()))
    return out


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
    overwrite: bool = False,
) -> torch.Tensor:
    """``upstream · function'(x)`` (a loss: the derivative at ``x - target``), in x's dtype and shape.

    An ``upstream`` that is one value broadcast (the gradient of a sum or mean) is read once. With
    ``overwrite`` (nothing else holds ``upstream``), the gradient is written over it where it is a
    contiguous tensor of x's dtype and shape.
    """
    x = x.contiguous()
    target = None if target is None else target.contiguous()
    if broadcast_value(upstream):
        grad = torch.empty(x.shape, dtype=x.dtype)
        args = _args(x, target, parameters, grad=grad.data_ptr(), scale=upstream[(0,) * upstream.dim()].item())
    else:
        if overwrite and upstream.dtype == x.dtype and upstream.shape == x.shape and upstream.is_contiguous():
            grad = upstream  # the kernel reads each element before it writes it
        else:
            upstream = upstream.to(compute_dtype(x.dtype)).expand(x.shape).contiguous()
            grad = torch.empty(x.shape, dtype=x.dtype)
        args = _args(x, target, parameters, grad=grad.data_ptr(), upstream=upstream.data_ptr())
    _run(f"{function}_g_{_SUFFIX[x.dtype]}", args)
    return grad


def overwritable(upstream: torch.Tensor) -> bool:
    """Whether a backward may write its result over ``upstream``, its upstream gradient: nothing else
    holds the tensor, its Python object or its memory (as for the gradient of a mean, which autograd
    makes for this backward alone), so that nobody can see the change. A backward calls it first,
    directly with its argument, before it makes any other reference to it: the Python references
    are counted against those of the same call in a probe (:func:`_sole_holders`).

    Without it the gradient would be one more input-sized buffer beside the upstream one.
    """
    sole = _sole_holders()
    return (
        sole is not None
        and type(upstream) is torch.Tensor
        and not upstream.requires_grad
        and upstream.device.type == "cpu"
        and _holders(upstream) == sole
    )


def _holders(tensor: torch.Tensor) -> tuple[int, int, int, int]:
    """(C++ handles of the tensor, Python references to it, Python references to its storage,
    tensors and handles of the storage); ``Tensor._use_count`` as in ``torch.utils.swap_tensors``."""
    storage = tensor.untyped_storage()
    return (
        tensor._use_count(),  # type: ignore[attr-defined]  # private, untyped
        sys.getrefcount(tensor),
        sys.getrefcount(storage),
        torch._C._storage_Use_Count(storage._cdata),
    )


def _holders_from_backward(tensor: torch.Tensor) -> tuple[int, int, int, int]:
    return _holders(tensor)  # one frame, as overwritable's


class _Probe(torch.autograd.Function):
    """Records what :func:`_holders` counts for the upstream gradient its backward is passed."""

    seen: list[tuple[int, int, int, int]] = []

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        _Probe.seen.append(_holders_from_backward(grad))
        return grad


@functools.cache
def _sole_holders() -> tuple[int, int, int, int] | None:
    """What :func:`_holders` counts for a gradient that only the backward it is passed to holds: the
    gradient of a mean, seen by a probe's backward. None where the count is not available."""
    _Probe.seen.clear()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.zeros(2, requires_grad=True)
            torch.autograd.grad(_Probe.apply(x).mean(), x)
    except (AttributeError, RuntimeError):  # a torch without these counts
        return None
    return _Probe.seen[0] if _Probe.seen else None


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
