"""The overlap losses, and the cross-entropy / focal terms, on CPU tensors in two fused passes of the
C library, as one autograd node."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losses._overlap import (
    ABS_DIFF,
    INTERSECTION,
    NUM_STATS,
    PRED_SQUARES,
    PRED_SUM,
    TARGET_SUM,
    VALID_COUNT,
    Form,
    OverlapOptions,
)
from losses.torch._checks import check_values
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch._ops import cast_gradient, composed_gradient

# The sums of the "basic" passes: only these, and nothing ignored or weighted.
_BASIC_STATS = frozenset({INTERSECTION, PRED_SUM, TARGET_SUM, VALID_COUNT})
_GRADIENT_STATS = np.array([INTERSECTION, PRED_SUM, PRED_SQUARES, ABS_DIFF])  # the coefficients the gradient pass reads


@functools.lru_cache(maxsize=64)
def _host_options(options: OverlapOptions, num_classes: int) -> tuple[tuple[float, ...], Form, bool]:
    """What the host step reads of the options, once per options and number of classes: the class
    weights, the general form, and whether the basic stats pass gives every sum the loss reads."""
    return options.full_weights(num_classes), options.form, options.needed_stats() <= _BASIC_STATS


def _overlap_rows(
    partials: np.ndarray, options: OverlapOptions, num_classes: int, label_map: bool
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(rows, ∂rows/∂stats, one_hot_labels)`` of the overlap loss from the sums of the stats pass
    (NaN sums for an image with a NaN or an infinity, as on the portable path)."""
    stats = partials[..., :NUM_STATS]
    non_finite = partials[..., cpu_kernels.NON_FINITE].any()
    one_hot_labels = label_map and options.mode == "multiclass"
    if non_finite or one_hot_labels:
        stats = stats.copy()
    if non_finite:
        stats[partials[..., cpu_kernels.NON_FINITE].sum(1) > 0] = np.nan
    if one_hot_labels:  # as on the portable path: for one-hot g, Σ|p − g| = Σp + Σg − 2·Σp·g
        stats[..., ABS_DIFF] = stats[..., PRED_SUM] + stats[..., TARGET_SUM] - 2 * stats[..., INTERSECTION]
    if not options.per_image:
        stats = stats.sum(0, keepdims=True)
    # A row with a NaN sum in any class (also one left out by `classes`) has a NaN loss. Otherwise
    # every sum adds values >= 0 (out-of-range values have raised), so only those two steps make NaN.
    if non_finite or one_hot_labels:
        stats[np.isnan(stats).any(axis=(1, 2))] = np.nan
    weights, form, _ = _host_options(options, num_classes)
    rows, grad_stats = cpu_kernels.overlap_formula(stats, weights, form)
    return rows, grad_stats, one_hot_labels


def _overlap_coefficients(grad_stats: np.ndarray, row_scale: float | np.ndarray, one_hot_labels: bool) -> np.ndarray:
    """The (S, C, 4) coefficients of the gradient pass: ∂loss/∂ of Σp·g, Σv·p, Σv·p², Σv·|p − g|,
    from ∂rows/∂stats and ∂loss/∂rows."""
    scale = row_scale if isinstance(row_scale, float) else row_scale[:, None, None]
    coefficients = grad_stats[..., _GRADIENT_STATS] * scale
    if one_hot_labels:  # the Σ|p − g| of one-hot labels is Σp + Σg − 2·Σp·g
        coefficients[..., 1] += coefficients[..., 3]
        coefficients[..., 0] -= 2 * coefficients[..., 3]
        coefficients[..., 3] = 0.0
    return coefficients


def _row_upstream(grad_output: Tensor, reduction: str, rows: int) -> float | np.ndarray:
    """∂loss/∂row: one number, the same for every row, when the loss is a scalar; else one per
    row, ``(rows,)``."""
    if grad_output.dim() == 0:
        upstream = grad_output.item()
        return upstream / rows if reduction == "mean" else upstream
    return grad_output.detach().double().numpy()


def _reduced(rows: np.ndarray, reduction: str, per_image: bool) -> Tensor:
    if reduction == "none":
        return torch.from_numpy(np.asarray(rows if per_image else rows[0], dtype=np.float32))
    total = float(rows[0]) if rows.size == 1 else rows.sum()  # one row: no NumPy reduction (the same value)
    value = float(total / rows.size if reduction == "mean" else total)
    # Rounded from float64 as the portable path's float32 sum would: a value beyond float32's range
    # is ±inf (torch.full(..., dtype=float32) raises on it instead).
    return torch.tensor(value, dtype=torch.float64).to(torch.float32)


class FusedCpuOverlap(torch.autograd.Function):
    """The whole loss on the CPU: one fused pass for the sums (``_kernels/cpu_overlap.c``), the
    general form and its derivative on the small ``(S, C, NUM_STATS)`` sums
    (:func:`losses._overlap.overlap_loss`, in ``_kernels/cpu_formula.c``), and one fused pass for
    the gradient."""

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        target: Tensor,
        weight: Tensor | None,
        options: OverlapOptions,
        reduction: str,
        label_map: bool,
    ) -> Tensor:
        prepared = cpu_kernels.Prepared(
            input, target, options.mode, options.from_logits, options.ignore_index, label_map, weight
        )
        basic = _host_options(options, input.shape[1])[2]
        partials = prepared.stats(basic)  # NumPy float64 (B, C, NUM_PARTIALS)
        _raise_out_of_range(partials, input, target, weight, options, label_map)
        rows, grad_stats, one_hot_labels = _overlap_rows(partials, options, input.shape[1], label_map)
        # The images whose gradient is NaN (None when none is): those of a NaN row (every image
        # when the row is the batch).
        finite = np.isfinite(rows)
        ctx.nan_images = None
        if not finite.all():
            ctx.nan_images = ~finite if options.per_image else np.repeat(~finite, input.shape[0])
        ctx.prepared, ctx.grad_stats, ctx.one_hot_labels = prepared, grad_stats, one_hot_labels
        ctx.options, ctx.reduction, ctx.label_map, ctx.input_dtype = options, reduction, label_map, input.dtype
        ctx.save_for_backward(input, target, weight)
        return _reduced(rows, reduction, options.per_image)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        input, target, weight = ctx.saved_tensors  # checks that none was modified in place since
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled() or ctx.prepared is None:
            # create_graph=True (a second derivative), or a second backward through the same graph
            # (retain_graph=True) after the first used up the probabilities: the composed loss.
            from losses.torch._overlap_core import composed_loss

            grad = composed_gradient(
                lambda: composed_loss(input, target, weight, ctx.options, ctx.reduction, ctx.label_map, sync=False),
                input,
                grad_output,
            )
            return grad, None, None, None, None, None
        prepared, ctx.prepared = ctx.prepared, None
        row_scale = _row_upstream(grad_output, ctx.reduction, ctx.grad_stats.shape[0])
        grad = prepared.gradient(_overlap_coefficients(ctx.grad_stats, row_scale, ctx.one_hot_labels))
        if ctx.nan_images is not None:
            grad[torch.from_numpy(ctx.nan_images)] = float("nan")
        grad = grad.view(input.shape)
        if ctx.input_dtype != torch.float32:
            grad = cast_gradient(grad, ctx.input_dtype)
        return grad, None, None, None, None, None


class FusedCpuTerm(torch.autograd.Function):
    """A cross-entropy or focal term, alone or beside an overlap loss (``losses.torch._term_core.TermLoss``),
    in the same two fused passes: the term's sum per image in the stats pass, its gradient added in
    the gradient pass."""

    @staticmethod
    def forward(
        ctx: Any, input: Tensor, target: Tensor, weight: Tensor | None, spec: Any, reduction: str, label_map: bool
    ) -> Tensor:
        options, term = spec.overlap, spec.term
        prepared = cpu_kernels.Prepared(
            input, target, options.mode, options.from_logits, options.ignore_index, label_map, weight, term=term
        )
        partials = prepared.stats(spec.lambda_overlap == 0 or _host_options(options, input.shape[1])[2])
        _raise_out_of_range(partials, input, target, weight, term, label_map)
        overlap = None
        if spec.lambda_overlap != 0:
            overlap = _overlap_rows(partials, options, input.shape[1], label_map)
        rows, term_slope, nan_rows, ctx.non_finite_inputs = cpu_kernels.term_rows(
            prepared,
            options.per_image,
            spec.normalization,
            spec.lambda_term,
            None if overlap is None else overlap[0],
            spec.lambda_overlap,
        )
        # The gradient is NaN in the images of a NaN row (but for a term that is NaN only from its
        # input, which is NaN where that input is not finite); None where no image is.
        ctx.nan_images = nan_rows
        if nan_rows is not None and not options.per_image:
            ctx.nan_images = np.repeat(nan_rows, input.shape[0])
        ctx.prepared, ctx.overlap, ctx.term_slope = prepared, overlap, term_slope
        ctx.spec, ctx.reduction, ctx.label_map, ctx.input_dtype = spec, reduction, label_map, input.dtype
        ctx.save_for_backward(input, target, weight)
        return _reduced(rows, reduction, options.per_image)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        input, target, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled() or ctx.prepared is None:  # see FusedCpuOverlap.backward
            from losses.torch._term_core import composed_term_loss

            grad = composed_gradient(
                lambda: composed_term_loss(input, target, weight, ctx.spec, ctx.reduction, ctx.label_map, sync=False),
                input,
                grad_output,
            )
            return grad, None, None, None, None, None
        prepared, ctx.prepared = ctx.prepared, None
        spec = ctx.spec
        row_scale = _row_upstream(grad_output, ctx.reduction, ctx.term_slope.shape[0])
        term_scale = row_scale * ctx.term_slope  # (S,): the gradient pass spreads a batch row over its images
        if ctx.overlap is None:
            coefficients = np.zeros((prepared.batch, prepared.classes, 4))
        else:
            _, grad_stats, one_hot_labels = ctx.overlap
            coefficients = _overlap_coefficients(grad_stats, row_scale * spec.lambda_overlap, one_hot_labels)
        grad = prepared.gradient(coefficients, term_scale)
        if ctx.nan_images is not None:
            grad[torch.from_numpy(ctx.nan_images)] = float("nan")
        if ctx.non_finite_inputs is not None:
            _mark_non_finite(grad, prepared.x, ctx.non_finite_inputs, spec.term.mode == "multiclass")
        grad = grad.view(input.shape)
        if ctx.input_dtype != torch.float32:
            grad = cast_gradient(grad, ctx.input_dtype)
        return grad, None, None, None, None, None


def _mark_non_finite(grad: Tensor, x: Tensor, images: np.ndarray, per_position: bool) -> None:
    """NaN where the input is NaN or ±inf (multiclass: in every class of that position), as the portable
    path's gradient."""
    for b in np.flatnonzero(images):
        bad = ~torch.isfinite(x[b])
        if per_position:
            bad = bad.any(0, keepdim=True).expand_as(bad)
        grad[b][bad] = float("nan")


def _raise_out_of_range(
    partials: np.ndarray, input: Tensor, target: Tensor, weight: Tensor | None, options: Any, label_map: bool
) -> None:
    if partials[..., cpu_kernels.OUT_OF_RANGE].any():
        check_values(input, target, weight, options, label_map)  # raises, with details
        raise RuntimeError("the fused CPU pass counted values out of range that the check did not find")
