"""The Dice formula on Triton: one launch from the ``(S, C, 7)`` stats to the loss and its derivative.

``dice_from_stats`` (``losses._dice``) is some twenty small PyTorch ops forward and as many
backward; on a GPU each costs a launch from the host, which at training sizes is most of the
time of a Dice step. ``finalize_kernel`` computes, in one launch, the per-row loss of
``dice_from_stats`` (every option), the derivative of each row's loss with respect to the seven
sums of each class (``grad_stats``, saved for the backward) and the "mean"/"sum" of the rows.

Two entry points:

- ``dice_from_stats_triton(stats, class_weights, options)``: the formula alone, differentiable in
  ``stats`` (backward: ``grad_stats * grad_output[:, None, None]``);
- ``dice_loss_triton(input, target, weights, options, reduction)``: the whole loss. Eagerly, one
  autograd node: stats kernel, finalize kernel; backward, one gradient pass that multiplies by the
  upstream gradient itself. Under ``torch.compile`` the stats op and the finalize op are chained
  (custom ops the compiler keeps as opaque nodes).

Class selection is a weight of 0 for every unselected class (``DiceOptions.full_weights``): the
weighted mean over the selected classes is the same, and the gradient needs no index_select.
"""

from __future__ import annotations

import torch

from losses._dice import DENOMINATOR_MIN, EMPTY_TARGET_POLICIES, LOG_CLAMP, DiceOptions
from losses.torch._kernels import device_guard, triton_module
from losses.torch._kernels.dice import _stats, _stats_backward, _stats_with_spare, dice_stats_triton

# One program holds a (BLOCK_S, C_PAD) tile of the stats; beyond this many classes the portable
# formula is used.
MAX_CLASSES = 1024
_TILE = 2048
_REDUCTION_CODES = ("none", "mean", "sum")


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def finalize_supports(num_rows: int, num_classes: int) -> bool:
    """Whether the finalize kernel takes stats of ``num_rows`` rows and ``num_classes`` classes."""
    return num_rows > 0 and 0 < num_classes <= MAX_CLASSES


def _finalize(stats: torch.Tensor, weights: torch.Tensor, smooth_nr: float, smooth_dr: float, squared: bool,
              log_loss: bool, soft_labels: bool, empty_target: str, red_scale: float, outputs=None):
    """(loss (S,), red_scale * loss.sum() (), grad_stats (S, C, 7)), float32, written into
    ``outputs`` when given (the same three tensors), else into new tensors."""
    with device_guard(stats):
        kernels = triton_module("_triton_dice_finalize")
        st = stats if stats.dtype == torch.float32 and stats.is_contiguous() else stats.float().contiguous()
        w = weights if weights.dtype == torch.float32 and weights.is_contiguous() else weights.float().contiguous()
        rows, classes = st.shape[0], st.shape[1]
        if outputs is None:
            outputs = (torch.empty(rows, dtype=torch.float32, device=st.device),
                       torch.empty((), dtype=torch.float32, device=st.device), torch.empty_like(st))
        loss, red, grad_stats = outputs
        c_pad = max(2, _next_pow2(classes))
        block_s = max(1, min(_next_pow2(max(rows, 1)), _TILE // c_pad))
        kernels.finalize_kernel[(1,)](
            st, w, loss, red, grad_stats, rows, classes, float(smooth_nr), float(smooth_dr), float(red_scale),
            LOG_CLAMP, DENOMINATOR_MIN, SQUARED=bool(squared), LOG_LOSS=bool(log_loss), SOFT=bool(soft_labels),
            EMPTY=EMPTY_TARGET_POLICIES.index(empty_target), C_PAD=c_pad, BLOCK_S=block_s, num_warps=4,
        )
        return loss, red, grad_stats


def _formula(options: DiceOptions) -> tuple:
    return (options.smooth_nr, options.smooth_dr, options.squared, options.log_loss, options.soft_labels,
            options.empty_target)


# ------------------------------------------------------------------------------------------------
# The formula alone, differentiable in the stats
# ------------------------------------------------------------------------------------------------


class _DiceFinalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stats, weights, formula):
        loss, _, grad_stats = _finalize(stats, weights, *formula, 1.0)
        ctx.save_for_backward(grad_stats)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (grad_stats,) = ctx.saved_tensors
        return grad_stats * grad[:, None, None], None, None


@torch.library.custom_op("losses::dice_finalize_triton", mutates_args=())
def _dice_finalize_op(stats: torch.Tensor, weights: torch.Tensor, smooth_nr: float, smooth_dr: float, squared: bool,
                      log_loss: bool, soft_labels: bool, empty_target: str) -> tuple[torch.Tensor, torch.Tensor]:
    loss, _, grad_stats = _finalize(stats, weights, smooth_nr, smooth_dr, squared, log_loss, soft_labels,
                                    empty_target, 1.0)
    return loss, grad_stats


@_dice_finalize_op.register_fake
def _(stats, weights, smooth_nr, smooth_dr, squared, log_loss, soft_labels, empty_target):
    return (stats.new_empty((stats.shape[0],), dtype=torch.float32),
            stats.new_empty(stats.shape, dtype=torch.float32))


def _finalize_setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _finalize_backward(ctx, grad_loss, grad_grad_stats):
    (grad_stats,) = ctx.saved_tensors
    return grad_stats * grad_loss[:, None, None], None, None, None, None, None, None, None


_dice_finalize_op.register_autograd(_finalize_backward, setup_context=_finalize_setup_context)


def dice_from_stats_triton(stats: torch.Tensor, class_weights: torch.Tensor, options: DiceOptions) -> torch.Tensor:
    """``losses._dice.dice_from_stats`` on Triton: the loss ``(S,)`` (float32) of stats ``(S, C, 7)``.

    ``class_weights`` has one weight per class of ``stats`` (0 leaves a class out). Call it only
    where ``finalize_supports`` is True; option checks are the caller's.
    """
    if torch.compiler.is_compiling():
        return _dice_finalize_op(stats, class_weights, *_formula(options))[0]
    return _DiceFinalize.apply(stats, class_weights, _formula(options))


# ------------------------------------------------------------------------------------------------
# The whole loss: stats, formula, reduction; backward in the gradient pass
# ------------------------------------------------------------------------------------------------


class _DiceLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weights, options, reduction):
        rows = input.shape[0] if options.per_image else 1
        n_grad = rows * input.shape[1] * 7
        n_grad_pad = -(-n_grad // 4) * 4
        per_row = options.per_image and reduction == "none"
        # grad_stats and whichever of the per-row loss and its reduction is not returned share
        # the stats kernel's buffer: three allocations fewer per step (host time at training
        # sizes). The returned tensor is allocated on its own, so that it is no view.
        stats, spare = _stats_with_spare(input, target, options.mode, options.from_logits, options.ignore_index,
                                         options.per_image, n_grad_pad + (1 if per_row else rows))
        grad_stats = spare[:n_grad].view(stats.shape)
        if per_row:
            outputs = (torch.empty(rows, dtype=torch.float32, device=input.device), spare[n_grad_pad], grad_stats)
        else:
            outputs = (spare[n_grad_pad:], torch.empty((), dtype=torch.float32, device=input.device), grad_stats)
        mean = reduction == "mean" and options.per_image
        loss, red, grad_stats = _finalize(stats, weights, *_formula(options), 1.0 / rows if mean else 1.0, outputs)
        ctx.save_for_backward(input, target, grad_stats)
        ctx.options = options
        # Row s of grad_stats is scaled by grad_output[s * stride] * mult in the gradient pass.
        ctx.scale = (1 if per_row else 0, 1.0 / rows if mean else 1.0)
        return loss if per_row else red

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        input, target, grad_stats = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        o = ctx.options
        if grad.dtype != torch.float32 or not grad.is_contiguous():
            grad = grad.to(torch.float32).contiguous()
        grad_input = _stats_backward(grad_stats, input, target, o.mode, o.from_logits, o.ignore_index, o.per_image,
                                     grad, *ctx.scale)
        return grad_input, None, None, None, None


def dice_loss_triton(input: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, options: DiceOptions,
                     reduction: str) -> torch.Tensor:
    """The Dice loss on the kernels: shape ``(B,)`` for ``reduction="none"`` with ``per_image``, else ``()``.

    ``weights`` (float32, on the input's device) has one weight per channel, 0 for unselected
    classes (``DiceOptions.full_weights``). Call it only where ``dice_kernel_supports`` and
    ``finalize_supports`` are True; option and label checks are the caller's.
    """
    if reduction not in _REDUCTION_CODES:
        raise ValueError(f"reduction must be one of {_REDUCTION_CODES}; got {reduction!r}")
    if torch.compiler.is_compiling():
        stats = dice_stats_triton(input, target, mode=options.mode, from_logits=options.from_logits,
                                  ignore_index=options.ignore_index, per_image=options.per_image)
        loss = dice_from_stats_triton(stats, weights, options)
        if not options.per_image:
            return loss.squeeze(0)
        return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()
    return _DiceLoss.apply(input, target, weights, options, reduction)


__all__ = ["dice_from_stats_triton", "dice_loss_triton", "finalize_supports"]
