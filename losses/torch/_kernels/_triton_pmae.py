"""Triton kernels of the penalized MAE: one pass that writes the loss and the gradient.

Loaded through ``losses.torch._kernels.triton_module`` only; importing it imports ``triton``.
"""

from __future__ import annotations

from losses.torch._kernels import interpreting
from losses.torch._kernels._triton_base import jit, tl

INTERPRET = interpreting()  # the setting this module was (re)loaded for

REDUCE_BLOCK = 4096


@jit
def pmae_forward_kernel(
    x_ptr, t_ptr, loss_ptr, grad_ptr, partial_ptr, n, delta, penalty, grad_scale,
    WRITE_GRAD: tl.constexpr, ELEMENTWISE: tl.constexpr, BLOCK: tl.constexpr,
):
    # Each program handles BLOCK elements and writes either their losses (ELEMENTWISE) or one
    # partial sum; the partial sums are added in a fixed order by sum_kernel (no float atomics).
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    t = tl.load(t_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    e = x - t
    over = tl.maximum(tl.abs(e) - delta, 0.0)
    loss = tl.where(inside, tl.abs(e) + penalty * over * over, 0.0)
    if ELEMENTWISE:
        tl.store(loss_ptr + offs, loss, mask=inside)
    else:
        tl.store(partial_ptr + pid, tl.sum(loss, axis=0))
    if WRITE_GRAD:
        sign = tl.where(e > 0, 1.0, tl.where(e < 0, -1.0, 0.0))
        grad = sign * (1.0 + 2.0 * penalty * over) * grad_scale
        tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=inside)


@jit
def sum_kernel(partial_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    # One program: a fixed summation order, hence the same float32 result on every run.
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(partial_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0) * scale)


@jit
def scale_unless_one_kernel(grad_ptr, factor_ptr, n, BLOCK: tl.constexpr):
    # In place grad *= factor, decided on the device: when the factor is 1 (the usual
    # loss.backward()) the programs return at once and no element is read or written.
    factor = tl.load(factor_ptr).to(tl.float32)
    if factor != 1.0:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        g = tl.load(grad_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        tl.store(grad_ptr + offs, (g * factor).to(grad_ptr.dtype.element_ty), mask=inside)
