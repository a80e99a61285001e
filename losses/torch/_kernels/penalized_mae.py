"""Penalized MAE on Triton: one pass computes the loss and the gradient; the backward only scales.

Per element, with e = input - target::

    loss = |e| + penalty * max(|e| - delta, 0)**2
    dloss/dinput = sign(e) * (1 + 2 * penalty * max(|e| - delta, 0)),   sign(0) = 0

(one definition in ``_triton_elementwise.py``, shared with the surrogates' kernels). The forward reads input and target once and writes the gradient (pre-scaled by 1/N for the
mean) next to the loss: 12 bytes per float32 element for forward and backward together. The
loss sum is made of per-block partial sums added in a fixed order, so it is the same on every
run. The backward multiplies the saved gradient by ``grad_output`` on the device: in eager mode
in place, and not at all when ``grad_output`` is 1 (decided by the kernel, so no host sync);
under ``torch.compile`` by an ordinary multiplication the compiler can fuse.
"""

from __future__ import annotations

import struct
from typing import Any

import torch

from losses._validation import TORCH_REDUCTIONS, check_choice
from losses.torch._kernels import device_guard, triton_module
from losses.torch._kernels.elementwise import scale_in_place

# Launch shapes, measured on an H100 (benchmarks/gpu_kernels.py).
BLOCK, WARPS = 4096, 8


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _forward(
    input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the fused pass; returns (loss, gradient w.r.t. input or None)."""
    with device_guard(input):
        return _launch_forward(input, target, delta, penalty, reduction, need_grad)


def _launch_forward(
    input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    # Kept to few PyTorch calls: at small sizes each one is host time that the device waits for.
    kernels = triton_module("_triton_elementwise")
    x = input if input.is_contiguous() else input.contiguous()
    t = target if target.is_contiguous() else target.contiguous()
    n = x.numel()
    grid = (max(1, -(-n // BLOCK)),)
    elementwise = reduction == "none"
    grad_scale = 1.0 / n if (reduction == "mean" and n > 0) else 1.0
    grad = torch.empty_like(x) if need_grad else None
    if elementwise:
        loss = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        partial = loss
    else:
        loss = torch.empty((), dtype=torch.float32, device=x.device)
        partial = torch.empty(grid[0], dtype=torch.float64, device=x.device)
    if n > 0:
        kernels.loss_kernel[grid](
            x,
            t,
            loss,
            x if grad is None else grad,
            partial,
            n,
            # as float32 holds them, which the compiled kernel receives and the interpreter does not
            _float32(delta),
            _float32(penalty),
            0.0,
            grad_scale,
            FUNCTION=kernels.FUNCTIONS["penalized_mae"],
            WRITE_GRAD=need_grad,
            ELEMENTWISE=elementwise,
            BLOCK=BLOCK,
            num_warps=WARPS,
        )
    if not elementwise:
        if n > 0:
            out_scale = 1.0 / n if reduction == "mean" else 1.0
            kernels.sum_kernel[(1,)](partial, loss, grid[0], out_scale, BLOCK=kernels.REDUCE_BLOCK, num_warps=8)
        else:
            # The mean of nothing is NaN, as in torch.mean; the sum of nothing is 0.
            loss.fill_(float("nan") if reduction == "mean" else 0.0)
    return loss, grad


class _PenalizedMAE(torch.autograd.Function):
    """The eager path: fewer Python layers than a custom op, and the gradient scaled in place."""

    @staticmethod
    def forward(
        ctx: Any, input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str
    ) -> torch.Tensor:
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        loss, grad = _forward(input, target, delta, penalty, reduction, need_grad)
        ctx.grad = grad
        ctx.options = (delta, penalty, reduction)
        ctx.save_for_backward(input, target)
        return loss

    @staticmethod
    def backward(
        ctx: Any, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        grad = ctx.grad
        ctx.grad = None
        if torch.is_grad_enabled():  # create_graph=True: the saved gradient is not differentiable
            from losses.torch._penalized_mae import differentiable_gradient

            input, target = ctx.saved_tensors
            delta, penalty, reduction = ctx.options
            grad = differentiable_gradient(input, target, delta, penalty, reduction, grad_output)
            grad_target = -grad if ctx.needs_input_grad[1] else None
            return grad if ctx.needs_input_grad[0] else None, grad_target, None, None, None
        if grad is None:
            # A second backward through the same graph (retain_graph=True): the first one handed
            # its buffer to the caller, so compute the gradient again.
            input, target = ctx.saved_tensors
            delta, penalty, reduction = ctx.options
            _, grad = _forward(input, target, delta, penalty, reduction, need_grad=True)
        grad_input = scale_in_place(grad, grad_output)
        grad_target = -grad_input if ctx.needs_input_grad[1] else None
        return grad_input if ctx.needs_input_grad[0] else None, grad_target, None, None, None


# torch.compile path: a custom op the compiler treats as one opaque node, with its autograd.
@torch.library.custom_op("losses::penalized_mae_triton", mutates_args=())
def _penalized_mae_op(
    input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    loss, grad = _forward(input, target, delta, penalty, reduction, need_grad)
    return loss, input.new_empty(0) if grad is None else grad


@_penalized_mae_op.register_fake
def _(
    input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    loss = input.new_empty(input.shape if reduction == "none" else (), dtype=torch.float32)
    grad = torch.empty_like(input, memory_format=torch.contiguous_format) if need_grad else input.new_empty(0)
    return loss, grad


def _op_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])


def _op_backward(
    ctx: Any, grad_output: torch.Tensor, _grad_of_grad: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, None, None, None, None]:
    (grad,) = ctx.saved_tensors
    grad_input = grad * grad_output.to(grad.dtype)
    return grad_input, -grad_input, None, None, None, None


_penalized_mae_op.register_autograd(_op_backward, setup_context=_op_setup_context)


def penalized_mae_triton(
    input: torch.Tensor, target: torch.Tensor, delta: float, penalty: float, reduction: str
) -> torch.Tensor:
    """The penalized MAE of same-shaped floating tensors through the fused kernel.

    ``reduction``: ``"mean"`` (sum / N), ``"sum"``, or ``"none"`` (float32, the input's shape).
    Differentiable with respect to both tensors (grad_target = -grad_input). The loss is float32;
    gradients have the dtype of ``input``. Option checks are the caller's.
    """
    check_choice("reduction", reduction, TORCH_REDUCTIONS)
    if target.dtype != input.dtype:  # both read in the computation's dtype, as on the other paths
        input, target = input.to(torch.float32), target.to(torch.float32)
    if torch.compiler.is_compiling():
        need_grad = torch.is_grad_enabled() and (input.requires_grad or target.requires_grad)
        loss, _ = _penalized_mae_op(input, target, float(delta), float(penalty), reduction, need_grad)
        return loss
    return _PenalizedMAE.apply(input, target, float(delta), float(penalty), reduction)


__all__ = ["penalized_mae_triton"]
