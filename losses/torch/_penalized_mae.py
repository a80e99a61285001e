r"""Penalized MAE for PyTorch, with a hand-written backward.

The math (formula, derivative, subgradients, berHu) is in :mod:`losses._penalized_mae`.

Three paths compute the same loss. CUDA tensors: one Triton pass writes the loss and the gradient
(``_kernels/penalized_mae.py``). CPU tensors: one pass of the C library does the same
(``_kernels/cpu_elementwise.c``, :class:`_FusedCpuPenalizedMAE`); the backward only scales that
gradient, in place, and skips even that when the upstream gradient is 1 (with ``"none"`` the
forward writes the loss alone and the backward the gradient, from the inputs). Elsewhere (no compiler,
``LOSSES_KERNELS=torch``, inside ``torch.compile`` and torch.func transforms, and for second
derivatives) the portable path below.

Implementation notes (portable path). The forward computes the loss and, when a gradient will be
needed, the derivative factor ``ℓ'(e) = sign(e) · (1 + 2·penalty·max(|e| - delta, 0))``, written over ``e``
(for ``"mean"`` and ``"sum"`` at most two input-sized tensors live at once, one after the
forward). That factor is the only input-sized tensor kept for the backward, which is then a
single multiplication. The factor is also a (hidden) second output of the ``autograd.Function``,
so that the backward is itself differentiable: double backward, ``jacrev(jacrev(f))`` and
``gradgradcheck`` work and give the second derivative ``2·penalty·[|e| > delta]``.

When nothing requires a gradient (inference, ``torch.no_grad``, ``torch.func.jvp`` alone) the loss
is computed from plain framework ops without the factor, so forward-mode AD of the loss works.
Forward-over-reverse (``torch.func.hessian``, ``jacfwd(jacrev(f))``) raises ``NotImplementedError``:
the ``autograd.Function`` has no custom ``jvp``, which would break ``torch.compile(fullgraph=True)``;
use ``jacrev(jacrev(f))`` instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from losses._penalized_mae import DEFAULT_DELTA, DEFAULT_PENALTY, check_penalized_mae_options
from losses._validation import TORCH_REDUCTIONS, check_choice, check_same_shape, describe, floating_dtype_error
from losses.torch._kernels import cpu_elementwise, transforms_active, use_triton
from losses.torch._kernels.penalized_mae import penalized_mae_triton
from losses.torch._ops import compute_dtype, sum_with_axis


def _penalized_mae_forward(
    input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str, with_factor: bool
) -> tuple[Tensor, Tensor | None]:
    """``(loss, factor)``, ``factor = ℓ'(e)`` (or ``None``), with few input-sized tensors.

    Two input-sized tensors are live at most: ``|e|`` (reduced, for ``"mean"`` and ``"sum"``) is
    turned in place into the root of the penalty term, ``sqrt(penalty · scale) · excess``, the
    factor is written over ``e``, and the root is squared in place. So no step overflows before
    the result does: the penalty term is the square of a number in range, and for the mean the
    terms are scaled before they are summed, by the power of two ``scale`` nearest above 1/N
    (exact: the excess is then the unscaled one, scaled), so that a mean of terms or of a sum
    beyond float32's range is finite where it is in range. ``Σ|e|`` is taken unscaled where it is
    finite (scaling would round errors below 1e-31 into subnormal numbers). A penalty that rounds
    to 0 in the computation dtype skips the penalty terms, which would be ``0 · inf = NaN`` where
    ``e`` overflowed. Sums use ``Tensor.sum`` (pairwise, accurate in float32), not norms, which
    accumulate 4M float32 terms to a ~1e-4 relative error.
    """
    e = input - target
    magnitude = torch.abs(e)
    count = e.numel()
    scale = 2.0 ** -math.ceil(math.log2(count)) if reduction == "mean" and count > 1 else 1.0
    if reduction != "none":
        loss = sum_with_axis(magnitude)
        if scale != 1.0:
            scaled = sum_with_axis(magnitude.mul_(scale))
            loss = torch.where(loss.isfinite(), loss / count, scaled * (1.0 / (scale * count)))
    # Penalties up to 2^-150 round to 0 in float32.
    root = None
    if penalty > (0.0 if e.dtype == torch.float64 else 2.0**-150):
        root = (magnitude - delta) if reduction == "none" else magnitude.sub_(delta * scale)
        root.clamp_(min=0.0).mul_(math.sqrt(penalty / scale))
    factor = None
    if with_factor:
        # sign(e) · (1 + 2·penalty·excess) = sign(e) · (1 + 2·sqrt(penalty / scale) · root), over e;
        # sign(0) = 0.
        factor = e.sign_()
        if root is not None:
            factor.addcmul_(factor, root, value=2.0 * math.sqrt(penalty / scale))
    if reduction == "none":
        return magnitude if root is None else magnitude.addcmul_(root, root), factor
    if root is not None:
        loss = loss + sum_with_axis(root.square_()) * (1.0 / (scale * count) if scale != 1.0 else 1.0)
    if reduction == "mean" and scale == 1.0:
        loss = loss / count  # one element, or none: the mean of nothing is NaN, as in torch.nn.functional
    return loss.squeeze(0), factor


class _PenalizedMAEFunction(torch.autograd.Function):
    """``(loss, factor)`` of the penalized MAE; ``factor = ℓ'(e)`` is saved for the backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str
    ) -> tuple[Tensor, Tensor | None]:
        return _penalized_mae_forward(input, target, delta, penalty, reduction, with_factor=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor | None]) -> None:
        _, _, _, penalty, reduction = inputs
        _, factor = output
        ctx.save_for_backward(factor)
        ctx.set_materialize_grads(False)  # no zero-filled input-sized gradient for the unused factor
        ctx.penalty = penalty
        ctx.reduction = reduction

    @staticmethod
    def backward(
        ctx: Any, grad_loss: Tensor | None, grad_factor: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        (factor,) = ctx.saved_tensors
        grad = None
        if grad_loss is not None:
            if ctx.reduction == "mean":
                grad_loss = grad_loss / max(factor.numel(), 1)
            grad = factor * grad_loss
        if grad_factor is not None:
            # Only reached when differentiating a gradient: d factor / d e = 2·penalty·[|e| > delta],
            # and |factor| > 1 exactly where |e| > delta, up to rounding (for penalty = 0 it is 0).
            curvature = torch.where(factor.abs() > 1, 2.0 * ctx.penalty, 0.0).to(factor.dtype)
            second = grad_factor * curvature
            grad = second if grad is None else grad + second
        if grad is None:
            return None, None, None, None, None
        grad_input = grad if ctx.needs_input_grad[0] else None
        grad_target = -grad if ctx.needs_input_grad[1] else None
        return grad_input, grad_target, None, None, None


def differentiable_gradient(
    input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str, grad_output: Tensor
) -> Tensor:
    """The gradient with respect to ``input`` as the fused passes' backward gives it, but from the
    portable path's factor, itself differentiable: their backward under ``create_graph=True``."""
    computed = compute_dtype(input.dtype)
    _, factor = _PenalizedMAEFunction.apply(input.to(computed), target.to(computed), delta, penalty, reduction)
    return (factor * (grad_output / input.numel() if reduction == "mean" else grad_output)).to(input.dtype)


def _penalized_mae_autograd(input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str) -> Tensor:
    """The loss for validated arguments (same shapes, floating ``input``, checked options)."""
    dtype = compute_dtype(input.dtype)
    input = input.to(dtype)
    target = target.to(dtype)
    if torch.is_grad_enabled() and (input.requires_grad or target.requires_grad):
        loss, _ = _PenalizedMAEFunction.apply(input, target, delta, penalty, reduction)
        return loss
    # Nothing to differentiate: skip the derivative factor.
    loss, _ = _penalized_mae_forward(input, target, delta, penalty, reduction, with_factor=False)
    return loss


class _FusedCpuPenalizedMAE(torch.autograd.Function):
    """The loss on CPU tensors in one pass of the C library that also writes the gradient (for
    ``"mean"``, already divided by N); the backward only scales it, in place (nothing to do when the
    upstream gradient is 1). For ``"none"`` the pass writes the per-element loss, and the backward
    computes the gradient from the inputs (over the upstream gradient when nothing else holds it)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str) -> Tensor:
        parameters = (delta, penalty, 0.0)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        if reduction == "none":
            loss, ctx.grad = cpu_elementwise.value("penalized_mae", parameters, input, target), None
        else:
            scale = 1.0 / input.numel() if reduction == "mean" else 1.0
            total, ctx.grad = cpu_elementwise.loss_sum(
                "penalized_mae", parameters, input, target, scale if need_grad else None
            )
            loss = torch.tensor(total * scale, dtype=compute_dtype(input.dtype))
        ctx.options = (delta, penalty, reduction)
        ctx.save_for_backward(input, target)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        overwrite = cpu_elementwise.overwritable(grad_output)  # first: see overwritable
        input, target = ctx.saved_tensors
        delta, penalty, reduction = ctx.options
        if torch.is_grad_enabled():
            grad = differentiable_gradient(input, target, delta, penalty, reduction, grad_output)
        else:
            grad, ctx.grad = ctx.grad, None  # handed out as the gradient
            if grad is None:  # "none", or a second backward through the graph (retain_graph=True)
                upstream = grad_output / input.numel() if reduction == "mean" else grad_output
                grad = cpu_elementwise.gradient(
                    "penalized_mae", (delta, penalty, 0.0), input, target, upstream, overwrite
                )
            else:
                grad = cpu_elementwise.scale_in_place(grad, grad_output).to(input.dtype)
        grad_input = grad if ctx.needs_input_grad[0] else None
        grad_target = -grad if ctx.needs_input_grad[1] else None
        return grad_input, grad_target, None, None, None


def _penalized_mae_fused_cpu(input: Tensor, target: Tensor, delta: float, penalty: float, reduction: str) -> Tensor:
    if target.dtype != input.dtype:  # the kernels read both in one dtype: the computation's
        input, target = input.to(compute_dtype(input.dtype)), target.to(compute_dtype(input.dtype))
    if torch.is_grad_enabled() and (input.requires_grad or target.requires_grad):
        return _FusedCpuPenalizedMAE.apply(input, target, delta, penalty, reduction)
    parameters = (delta, penalty, 0.0)
    if reduction == "none":
        return cpu_elementwise.value("penalized_mae", parameters, input, target)
    total, _ = cpu_elementwise.loss_sum("penalized_mae", parameters, input, target, None)
    return torch.tensor(total / input.numel() if reduction == "mean" else total, dtype=compute_dtype(input.dtype))


def _check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {describe(value)}")
    return value


def penalized_mae(
    input: Tensor,
    target: Tensor,
    delta: float = DEFAULT_DELTA,
    penalty: float = DEFAULT_PENALTY,
    reduction: str = "mean",
) -> Tensor:
    r"""Mean absolute error plus a quadratic penalty on errors larger than ``delta``.

    Per element, with ``e = input - target``::

        loss = |e| + penalty * max(|e| - delta, 0) ** 2
        d loss / d input = sign(e) * (1 + 2 * penalty * max(|e| - delta, 0))   (sign(0) = 0)

    The backward is written by hand (one multiplication by a factor computed in the forward) and
    is itself differentiable. At ``e = 0`` the gradient is the subgradient 0; at ``|e| = delta``
    it is ``sign(e)``, the derivative from both sides. With ``penalty = 1 / (2 * delta)`` this is
    the reverse Huber (berHu) loss. Details: :mod:`losses._penalized_mae`.

    Args:
        input: predictions, any shape, a floating dtype. float16 and bfloat16 are computed in
            float32 and give a float32 loss.
        target: same shape as ``input`` (never broadcast); converted to the computation dtype.
        delta: threshold ``>= 0`` beyond which the quadratic penalty starts. Default 1.0.
        penalty: weight ``>= 0`` of the quadratic penalty. Default 0.5.
        reduction: ``"mean"`` (over every element; NaN for an empty input, the mean of nothing as in
            ``torch.nn.functional``), ``"sum"`` (0 for an empty input), or
            ``"none"`` (the per-element loss, shape of ``input``).

    Returns:
        A scalar for ``"mean"`` and ``"sum"``, else a tensor shaped like ``input``. A NaN or an
        infinity in either input gives a non-finite loss, and a non-finite gradient where the
        gradient depends on it (as in ``torch.nn.functional``).

    Raises:
        TypeError: ``input`` or ``target`` is not a tensor, ``input`` is not floating-point,
            ``target`` is complex, or ``delta`` / ``penalty`` is not a real number.
        ValueError: ``target``'s shape differs from ``input``'s (never broadcast), ``delta`` or
            ``penalty`` is negative or not finite, or ``reduction`` is not one of the three.

    Works under ``torch.compile(fullgraph=True)``, ``torch.func.grad`` and ``torch.vmap``.

    Example:

    >>> import torch
    >>> from losses.torch.functional import penalized_mae
    >>> prediction = torch.tensor([0.5, -2.0, 3.0], requires_grad=True)
    >>> loss = penalized_mae(prediction, torch.zeros(3))  # (0.5 + 2.5 + 5.0) / 3
    >>> loss
    tensor(2.6667, grad_fn=<...>)
    >>> loss.backward()
    >>> prediction.grad  # sign(e) * (1 + 2 * 0.5 * max(|e| - 1, 0)) / 3
    tensor([ 0.3333, -0.6667,  1.0000])
    """
    _check_tensor("input", input)
    _check_tensor("target", target)
    if not input.is_floating_point():
        raise floating_dtype_error("input", input.dtype)
    if target.is_complex():
        raise TypeError(f"target must have a real dtype (floating, integer or bool); got {target.dtype}")
    check_same_shape("input", input.shape, "target", target.shape)
    delta, penalty = check_penalized_mae_options(delta, penalty)
    check_choice("reduction", reduction, TORCH_REDUCTIONS)
    if input.dtype != torch.float64 and input.numel() > 0 and not transforms_active() and use_triton(input, target):
        return penalized_mae_triton(input, target, delta, penalty, reduction)
    if input.device.type == "cpu" and target.device.type == "cpu" and cpu_elementwise.supports(input):
        return _penalized_mae_fused_cpu(input, target, delta, penalty, reduction)
    return _penalized_mae_autograd(input, target, delta, penalty, reduction)


class PenalizedMAELoss(nn.Module):
    r"""Mean absolute error plus a quadratic penalty on errors larger than ``delta``.

    Per element, with ``e = input - target``::

        loss = |e| + penalty * max(|e| - delta, 0) ** 2

    Gradient ``sign(e) * (1 + 2 * penalty * max(|e| - delta, 0))`` with ``sign(0) = 0``, written by
    hand; see :func:`losses.torch.functional.penalized_mae` for shapes, dtypes and details. With
    ``penalty = 1 / (2 * delta)`` it is the reverse Huber (berHu) loss.

    Args:
        delta: threshold ``>= 0`` beyond which the quadratic penalty starts. Default 1.0.
        penalty: weight ``>= 0`` of the quadratic penalty. Default 0.5.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. Default ``"mean"``.

    Shapes: ``input`` any shape, ``target`` the same shape; the output is a scalar, or shaped like
    ``input`` for ``reduction="none"``.

    Raises:
        TypeError: ``delta`` or ``penalty`` is not a real number.
        ValueError: ``delta`` or ``penalty`` is negative or not finite, or ``reduction`` is not one
            of the three.

    Example:

    >>> import torch
    >>> from losses.torch import PenalizedMAELoss
    >>> criterion = PenalizedMAELoss(delta=1.0, penalty=0.5, reduction="sum")
    >>> criterion(torch.tensor([[0.5, -2.0], [3.0, 0.0]]), torch.zeros(2, 2))
    tensor(8.)
    """

    def __init__(self, delta: float = DEFAULT_DELTA, penalty: float = DEFAULT_PENALTY, reduction: str = "mean") -> None:
        super().__init__()
        self.delta, self.penalty = check_penalized_mae_options(delta, penalty)
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against ``target``: :func:`losses.torch.functional.penalized_mae`.

        Args:
            input: predictions, any shape, a floating dtype.
            target: same shape as ``input`` (never broadcast).

        Returns:
            A scalar for ``"mean"`` and ``"sum"``, else a tensor shaped like ``input``.

        Raises:
            TypeError: ``input`` or ``target`` is not a tensor, ``input`` is not floating-point, or
                ``target`` is complex.
            ValueError: ``target``'s shape differs from ``input``'s.
        """
        return penalized_mae(input, target, self.delta, self.penalty, self.reduction)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, penalty={self.penalty}, reduction={self.reduction!r}"
