"""Elementwise functions on Triton (CUDA): the surrogates' value and gradient passes.

The interface of :mod:`losses.torch._kernels.cpu_elementwise`, so that the PyTorch frontend runs
one ``autograd.Function`` on either: :func:`value` and :func:`gradient` (upstream · derivative),
and, as the C library's forward does not, :func:`value_and_derivative` (the value of a function,
or a straight-through form's hard value, and the derivative, in one pass) with
:func:`scale_in_place` as its backward: on the GPU the derivative is kept from the forward to the
backward (``STORES_DERIVATIVE``), which then skips its pass when the upstream gradient is 1. The kernels are in
``_triton_elementwise.py``, with penalized MAE's (see ``penalized_mae.py``). Values and
derivatives are float32, gradients in the input's dtype.
"""

from __future__ import annotations

from types import ModuleType

import torch

from losses.torch._kernels import broadcast_value, device_guard, transforms_active, triton_module, use_triton

# As penalized MAE's launch (measured on an H100 for it; one exp more per element here).
BLOCK, WARPS = 4096, 8
SCALE_BLOCK = 16384
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
STORES_DERIVATIVE = True  # value_and_derivative writes it in the forward; the backward scales it


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels take ``x`` (float64 keeps its precision on the portable path, and
    ``torch.compile`` compiles the portable path itself)."""
    return (
        x.dtype in DTYPES
        and x.numel() > 0
        and not torch.compiler.is_compiling()
        and not transforms_active()
        and use_triton(x)
    )


def _codes(kernels: ModuleType, kernel: str) -> tuple[int, int]:
    """(FUNCTION, HARD) of a kernel name: a function, or the hard value of a straight-through form
    (whose derivative is that of the surrogate it belongs to)."""
    if kernel in kernels.FUNCTIONS:
        return kernels.FUNCTIONS[kernel], kernels.HARD[None]
    surrogate = {
        "round": "soft_round",
        "floor": "soft_round",
        "ceil": "soft_round",
        "step": "soft_step",
        "sign": "soft_sign",
    }[kernel]
    return kernels.FUNCTIONS[surrogate], kernels.HARD[kernel]


def value(kernel: str, parameters: tuple[float, float, float], x: torch.Tensor) -> torch.Tensor:
    """``kernel`` of each element of ``x``, float32, x's shape (the surrogates only)."""
    return _values(kernel, parameters, x, with_derivative=False)[0]


def value_and_derivative(
    kernel: str, parameters: tuple[float, float, float], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`value` and, written in the same pass, the derivative (float32)."""
    value, derivative = _values(kernel, parameters, x, with_derivative=True)
    assert derivative is not None  # asked for
    return value, derivative


def _values(
    kernel: str, parameters: tuple[float, float, float], x: torch.Tensor, with_derivative: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    kernels = triton_module("_triton_elementwise")
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    derivative = torch.empty_like(out) if with_derivative else None
    function, hard = _codes(kernels, kernel)
    n = x.numel()
    with device_guard(x):
        kernels.value_kernel[(-(-n // BLOCK),)](
            x,
            out,
            out if derivative is None else derivative,
            n,
            *parameters,
            FUNCTION=function,
            HARD=hard,
            WRITE_DERIVATIVE=with_derivative,
            BLOCK=BLOCK,
            num_warps=WARPS,
        )
    return out, derivative


def scale_in_place(grad: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """``grad *= upstream``. An upstream that is one value broadcast is read on the device, and
    when it is 1 (the usual ``loss.backward()``) no element is read or written: no host sync."""
    if not broadcast_value(upstream):
        return grad.mul_(upstream)
    n = grad.numel()
    if n > 0:
        kernels = triton_module("_triton_elementwise")
        with device_guard(grad):
            kernels.scale_unless_one_kernel[(-(-n // SCALE_BLOCK),)](
                grad, upstream[(0,) * upstream.dim()], n, BLOCK=SCALE_BLOCK, num_warps=8
            )
    return grad


def gradient(
    kernel: str,
    parameters: tuple[float, float, float],
    x: torch.Tensor,
    target: torch.Tensor | None,
    upstream: torch.Tensor,
) -> torch.Tensor:
    """``upstream · kernel'(x)`` (of ``x - target`` for a loss), in x's dtype and shape; an upstream
    that is one value broadcast is read once, on the device."""
    kernels = triton_module("_triton_elementwise")
    x = x.contiguous()
    target = None if target is None else target.contiguous()
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    scalar = broadcast_value(upstream)
    upstream = upstream[(0,) * upstream.dim()] if scalar else upstream.expand(x.shape).contiguous()
    n = x.numel()
    with device_guard(x):
        kernels.gradient_kernel[(-(-n // BLOCK),)](
            x,
            x if target is None else target,
            upstream,
            grad,
            n,
            *parameters,
            FUNCTION=kernels.FUNCTIONS[kernel],
            HAS_TARGET=target is not None,
            UPSTREAM_SCALAR=scalar,
            BLOCK=BLOCK,
            num_warps=WARPS,
        )
    return grad
