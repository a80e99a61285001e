"""The general form of the overlap losses on Triton: one launch from the stats to the loss and its derivative.

:func:`losses._overlap.overlap_loss` is some thirty small PyTorch ops forward and as many backward;
on a GPU each costs a launch from the host, which at training sizes is most of the time of a step.
``finalize_kernel`` computes, in one launch, the per-row loss of ``overlap_loss`` (every member of
the family and every option), the derivative of each row's loss with respect to the sums of each
class (``grad_stats``, saved for the backward) and the "mean"/"sum" of the rows.

Two entry points:

- ``overlap_from_stats_triton(stats, class_weights, form)``: the formula alone, differentiable in
  ``stats`` (backward: ``grad_stats * grad_output[:, None, None]``);
- ``overlap_loss_triton(input, target, weight, class_weights, options, reduction)``: the whole loss.
  Eagerly, one autograd node: stats kernel, finalize kernel; backward, one gradient pass that
  multiplies by the upstream gradient itself. Under ``torch.compile`` the stats op and the
  finalize op are chained (custom ops the compiler keeps as opaque nodes).

Class selection is a weight of 0 for every unselected class (``OverlapOptions.full_weights``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from typing import TYPE_CHECKING, Any

import torch

from losses._overlap import DENOMINATOR_MIN, LOG_CLAMP, NUM_STATS, VALID_COUNT, Form, OverlapOptions
from losses._validation import TORCH_REDUCTIONS, check_choice
from losses.torch._checks import is_label_map
from losses.torch._ops import composed_gradient
from losses.torch._kernels import device_guard, next_pow2, triton_module
from losses.torch._kernels.overlap_stats import (
    SECOND_DERIVATIVE_ERROR,
    StatsOptions,
    TermArgs,
    overlap_stats_triton,
    stats,
    stats_backward,
    stats_with_term,
)

if TYPE_CHECKING:
    from losses.torch._term_core import TermLoss

# One program holds a (BLOCK_S, C_PAD) tile of the stats; beyond this many classes the portable
# formula is used.
MAX_CLASSES = 1024
_TILE = 2048


def finalize_supports(num_rows: int, num_classes: int) -> bool:
    """Whether the finalize kernel takes stats of ``num_rows`` rows and ``num_classes`` classes."""
    return num_rows > 0 and 0 < num_classes <= MAX_CLASSES


def _finalize(
    stats: torch.Tensor,
    weights: torch.Tensor,
    form: Form,
    red_scale: float,
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss (S,), red_scale * loss.sum() (), grad_stats (S, C, NUM_STATS)), float32, written into
    ``outputs`` when given (the same three tensors), else into new tensors."""
    with device_guard(stats):
        kernels = triton_module("_triton_overlap_finalize")
        st = stats if stats.dtype == torch.float32 and stats.is_contiguous() else stats.float().contiguous()
        w = weights if weights.dtype == torch.float32 and weights.is_contiguous() else weights.float().contiguous()
        rows, classes = st.shape[0], st.shape[1]
        if outputs is None:
            outputs = (
                torch.empty(rows, dtype=torch.float32, device=st.device),
                torch.empty((), dtype=torch.float32, device=st.device),
                torch.empty_like(st),
            )
        loss, red, grad_stats = outputs
        c_pad = max(2, next_pow2(classes))
        block_s = max(1, min(next_pow2(max(rows, 1)), _TILE // c_pad))
        kernels.finalize_kernel[(1,)](
            st,
            w,
            loss,
            red,
            grad_stats,
            rows,
            classes,
            float(form.tp_weight),
            float(form.fp_weight),
            float(form.fn_weight),
            float(form.gamma),
            float(form.weight_power),
            float(form.smooth_nr),
            float(form.smooth_dr),
            float(red_scale),
            LOG_CLAMP,
            DENOMINATOR_MIN,
            SQUARED=bool(form.squared),
            SOFT=form.soft_intersection,
            TRANSFORM=kernels.TRANSFORM_CODES.index(form.transform),
            POOLING=kernels.POOLING_CODES.index(form.pooling),
            EMPTY=kernels.EMPTY_CODES.index(form.empty_target),
            C_PAD=c_pad,
            BLOCK_S=block_s,
            num_warps=4,
        )
        return loss, red, grad_stats


# ------------------------------------------------------------------------------------------------
# The formula alone, differentiable in the stats
# ------------------------------------------------------------------------------------------------


class _Finalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, stats: torch.Tensor, weights: torch.Tensor, form: Form) -> torch.Tensor:
        loss, _, grad_stats = _finalize(stats, weights, form, 1.0)
        ctx.save_for_backward(grad_stats)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if torch.is_grad_enabled():  # grad_stats is the formula's gradient, not a function of the sums
            raise RuntimeError(SECOND_DERIVATIVE_ERROR)
        (grad_stats,) = ctx.saved_tensors
        return grad_stats * grad[:, None, None], None, None


# The custom op takes the form as plain values (its fields, in order).
@torch.library.custom_op("losses::overlap_finalize_triton", mutates_args=())
def _finalize_op(
    stats: torch.Tensor,
    weights: torch.Tensor,
    tp_weight: float,
    fp_weight: float,
    fn_weight: float,
    squared: bool,
    soft_labels: bool,
    transform: str,
    gamma: float,
    pooling: str,
    weight_power: float,
    empty_target: str,
    smooth_nr: float,
    smooth_dr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    form = Form(
        tp_weight,
        fp_weight,
        fn_weight,
        squared,
        soft_labels,
        transform,
        gamma,
        pooling,
        weight_power,
        empty_target,
        smooth_nr,
        smooth_dr,
    )
    loss, _, grad_stats = _finalize(stats, weights, form, 1.0)
    return loss, grad_stats


@_finalize_op.register_fake
def _(stats: torch.Tensor, weights: torch.Tensor, *form: object) -> tuple[torch.Tensor, torch.Tensor]:
    return (stats.new_empty((stats.shape[0],), dtype=torch.float32), stats.new_empty(stats.shape, dtype=torch.float32))


def _finalize_setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    ctx.save_for_backward(output[1])


def _finalize_backward(
    ctx: Any, grad_loss: torch.Tensor, grad_grad_stats: torch.Tensor | None
) -> tuple[torch.Tensor | None, ...]:
    (grad_stats,) = ctx.saved_tensors
    return (grad_stats * grad_loss[:, None, None],) + (None,) * 13


_finalize_op.register_autograd(_finalize_backward, setup_context=_finalize_setup_context)


def overlap_from_stats_triton(stats: torch.Tensor, class_weights: torch.Tensor, form: Form) -> torch.Tensor:
    """:func:`losses._overlap.overlap_loss` on Triton: the loss ``(S,)`` (float32) of stats ``(S, C, NUM_STATS)``.

    ``class_weights`` has one weight per class of ``stats`` (0 leaves a class out). Call it only
    where ``finalize_supports`` is True; option checks are the caller's.
    """
    if torch.compiler.is_compiling():
        return _finalize_op(stats, class_weights, *astuple(form))[0]
    return _Finalize.apply(stats, class_weights, form)


# ------------------------------------------------------------------------------------------------
# The whole loss: stats, formula, reduction; backward in the gradient pass
# ------------------------------------------------------------------------------------------------


class _OverlapLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        class_weights: torch.Tensor,
        options: OverlapOptions,
        reduction: str,
    ) -> torch.Tensor:
        stats_options = StatsOptions.of(options)
        rows = input.shape[0] if options.per_image else 1
        n_grad = rows * input.shape[1] * NUM_STATS
        n_grad_pad = -(-n_grad // 4) * 4
        per_row = options.per_image and reduction == "none"
        # grad_stats and whichever of the per-row loss and its reduction is not returned share
        # the stats kernel's buffer: three allocations fewer per step (host time at training
        # sizes). The returned tensor is allocated on its own, so that it is no view.
        st, spare = stats(input, target, weight, stats_options, n_grad_pad + (1 if per_row else rows))
        assert spare is not None  # asked for: spare > 0
        grad_stats = spare[:n_grad].view(st.shape)
        if per_row:
            outputs = (torch.empty(rows, dtype=torch.float32, device=input.device), spare[n_grad_pad], grad_stats)
        else:
            outputs = (spare[n_grad_pad:], torch.empty((), dtype=torch.float32, device=input.device), grad_stats)
        mean = reduction == "mean" and options.per_image
        loss, red, grad_stats = _finalize(st, class_weights, options.form, 1.0 / rows if mean else 1.0, outputs)
        ctx.save_for_backward(input, target, weight, grad_stats)
        ctx.options, ctx.overlap, ctx.reduction = stats_options, options, reduction
        # Row s of grad_stats is scaled by grad_output[s * stride] * mult in the gradient pass.
        ctx.scale = (1 if per_row else 0, 1.0 / rows if mean else 1.0)
        return loss if per_row else red

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        input, target, weight, grad_stats = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled():  # create_graph=True: a second derivative, from the composed loss
            from losses.torch._overlap_core import composed_loss

            label_map = is_label_map(input, target, ctx.overlap.mode)
            grad_input = composed_gradient(
                lambda: composed_loss(input, target, weight, ctx.overlap, ctx.reduction, label_map, sync=False),
                input,
                grad,
            )
            return grad_input, None, None, None, None, None
        if grad.dtype != torch.float32 or not grad.is_contiguous():
            grad = grad.to(torch.float32).contiguous()
        grad_input = stats_backward(grad_stats, input, target, weight, ctx.options, grad, *ctx.scale)
        return grad_input, None, None, None, None, None


def overlap_loss_triton(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    class_weights: torch.Tensor,
    options: OverlapOptions,
    reduction: str,
) -> torch.Tensor:
    """The loss on the kernels: shape ``(B,)`` for ``reduction="none"`` with ``per_image``, else ``()``.

    ``class_weights`` (float32, on the input's device) has one weight per channel, 0 for unselected
    classes (``OverlapOptions.full_weights``). Call it only where ``overlap_kernel_supports`` and
    ``finalize_supports`` are True; option and value checks are the caller's.
    """
    check_choice("reduction", reduction, TORCH_REDUCTIONS)
    if torch.compiler.is_compiling():
        st = overlap_stats_triton(
            input,
            target,
            weight,
            mode=options.mode,
            from_logits=options.from_logits,
            ignore_index=options.ignore_index,
            per_image=options.per_image,
        )
        loss = overlap_from_stats_triton(st, class_weights, options.form)
        if not options.per_image:
            return loss.squeeze(0)
        reduce: dict[str, Callable[[], torch.Tensor]] = {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}
        return reduce[reduction]()
    return _OverlapLoss.apply(input, target, weight, class_weights, options, reduction)


# ------------------------------------------------------------------------------------------------
# An overlap loss with a cross-entropy / focal term, or the term alone (eager only)
# ------------------------------------------------------------------------------------------------


class _TermLoss(torch.autograd.Function):
    """``spec`` (``losses.torch._term_core.TermLoss``): the term's sums come from the stats pass, the
    overlap rows from the finalize kernel, and the backward is one gradient pass for both."""

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        class_weights: torch.Tensor,
        spec: TermLoss,
        reduction: str,
    ) -> torch.Tensor:
        options = spec.overlap
        stats_options = StatsOptions.of(options)
        term = TermArgs.of(spec.term, input.shape[1], input.device)
        st, term_sums = stats_with_term(input, target, weight, stats_options, term)
        term_sum = term_sums[..., 0].sum(1)
        # The term's weight: per element (binary, multilabel) summed over the classes; per position
        # (multiclass) the same in every class.
        count = term_sums[:, 0, 1] if options.mode == "multiclass" else term_sums[..., 1].sum(1)
        if not options.per_image:
            term_sum, count = term_sum.sum(0, keepdim=True), count.sum(0, keepdim=True)
        # NaN for a row that read a NaN or ±inf (its counts are NaN), where the term's limit is finite.
        term_sum = term_sum + 0.0 * st[..., VALID_COUNT].sum(1)
        has_valid = count > 0
        safe_count = torch.where(has_valid, count, 1.0)
        if spec.normalization == "sum":
            value, slope = term_sum, torch.ones_like(count)
        elif spec.normalization == "mean":  # a mean over nothing is NaN, and so is its gradient
            value, slope = term_sum / count, 1.0 / count
        else:  # a row without a valid position adds 0 (NaN where a NaN entered it)
            value = torch.where(has_valid, term_sum / safe_count, term_sum * 0.0)
            slope = torch.where(has_valid, 1.0 / safe_count, 0.0)
        rows = spec.lambda_term * value
        grad_stats = None
        if spec.lambda_overlap != 0:
            loss, _, grad_stats = _finalize(st, class_weights, options.form, 1.0)
            rows = rows + spec.lambda_overlap * loss
        ctx.save_for_backward(input, target, weight, grad_stats, slope)
        ctx.spec, ctx.term, ctx.options, ctx.reduction = spec, term, stats_options, reduction
        if reduction == "none":
            return rows if options.per_image else rows[0]
        return rows.mean() if reduction == "mean" else rows.sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        input, target, weight, grad_stats, slope = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled():  # create_graph=True: a second derivative, from the composed loss
            from losses.torch._term_core import composed_term_loss

            label_map = is_label_map(input, target, ctx.spec.overlap.mode)
            grad_input = composed_gradient(
                lambda: composed_term_loss(input, target, weight, ctx.spec, ctx.reduction, label_map, sync=False),
                input,
                grad,
            )
            return grad_input, None, None, None, None, None
        spec, rows = ctx.spec, slope.shape[0]
        upstream = grad.to(torch.float32).expand(rows) if grad.dim() == 0 else grad.to(torch.float32)
        if ctx.reduction == "mean":
            upstream = upstream / rows
        term_scale = spec.lambda_term * upstream * slope
        if not spec.overlap.per_image:
            term_scale = term_scale.expand(input.shape[0])
        if grad_stats is None:
            coefficients = torch.zeros((rows, input.shape[1], NUM_STATS), dtype=torch.float32, device=input.device)
        else:
            coefficients = grad_stats * (spec.lambda_overlap * upstream)[:, None, None]
        grad_input = stats_backward(
            coefficients, input, target, weight, ctx.options, term=ctx.term, term_scale=term_scale.contiguous()
        )
        return grad_input, None, None, None, None, None


def term_loss_triton(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    class_weights: torch.Tensor,
    spec: TermLoss,
    reduction: str,
) -> torch.Tensor:
    """An overlap loss with a cross-entropy / focal term (``losses.torch._term_core.TermLoss``) on the
    kernels, eagerly: shape ``(B,)`` for ``reduction="none"`` with ``per_image``, else ``()``."""
    return _TermLoss.apply(input, target, weight, class_weights, spec, reduction)


__all__ = ["finalize_supports", "overlap_from_stats_triton", "overlap_loss_triton", "term_loss_triton"]
