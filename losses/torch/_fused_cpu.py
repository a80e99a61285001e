"""The overlap losses on CPU tensors in two fused passes of the C library, as one autograd node."""

from __future__ import annotations

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
    NumpyOps,
    OverlapOptions,
    overlap_loss,
)
from losses.torch._checks import check_values
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch._ops import cast_gradient

# The sums of the "basic" passes: only these, and nothing ignored or weighted.
_BASIC_STATS = frozenset({INTERSECTION, PRED_SUM, TARGET_SUM, VALID_COUNT})
_GRADIENT_STATS = [INTERSECTION, PRED_SUM, PRED_SQUARES, ABS_DIFF]  # the coefficients the gradient pass reads


class FusedCpuOverlap(torch.autograd.Function):
    """The whole loss on the CPU: one fused pass for the sums (``_kernels/cpu_overlap.c``), the
    general form and its derivative on the small ``(S, C, NUM_STATS)`` sums in NumPy
    (:func:`losses._overlap.overlap_loss`), and one fused pass for the gradient."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor, weight: Tensor | None, options: OverlapOptions,
                reduction: str, label_map: bool) -> Tensor:
        prepared = cpu_kernels.Prepared(input, target, options.mode, options.from_logits, options.ignore_index,
                                        label_map, weight)
        partials = prepared.stats(options.needed_stats() <= _BASIC_STATS)  # NumPy float64 (B, C, NUM_PARTIALS)
        if partials[..., cpu_kernels.OUT_OF_RANGE].any():
            check_values(input, target, weight, options, label_map)  # raises, with details
            raise RuntimeError("the fused CPU pass counted values out of range that the check did not find")
        stats = partials[..., :NUM_STATS]
        # An image with a NaN or an infinity: NaN sums, as on the portable path.
        stats[partials[..., cpu_kernels.NON_FINITE].sum(1) > 0] = np.nan
        one_hot_labels = label_map and options.mode == "multiclass"
        if one_hot_labels:  # as on the portable path: for one-hot g, Σ|p − g| = Σp + Σg − 2·Σp·g
            stats[..., ABS_DIFF] = stats[..., PRED_SUM] + stats[..., TARGET_SUM] - 2 * stats[..., INTERSECTION]
        if not options.per_image:
            stats = stats.sum(0, keepdims=True)
        # A row with a NaN sum in any class (also one left out by `classes`) has a NaN loss.
        stats[np.isnan(stats).any(axis=(1, 2))] = np.nan
        rows, grad_stats = overlap_loss(NumpyOps, stats, np.asarray(options.full_weights(input.shape[1])),
                                        options.form, with_grad=True)
        # The images whose gradient is NaN: those of a NaN row (every image when the row is the batch).
        not_finite = ~np.isfinite(rows)
        ctx.nan_images = not_finite if options.per_image else np.repeat(not_finite, input.shape[0])
        ctx.prepared, ctx.grad_stats, ctx.one_hot_labels = prepared, grad_stats, one_hot_labels
        ctx.options, ctx.reduction, ctx.label_map, ctx.input_dtype = options, reduction, label_map, input.dtype
        ctx.save_for_backward(input, target, weight)
        if reduction == "none":
            return torch.from_numpy(np.asarray(rows if options.per_image else rows[0], dtype=np.float32))
        return torch.full((), float(rows.mean() if reduction == "mean" else rows.sum()), dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        input, target, weight = ctx.saved_tensors  # checks that none was modified in place since
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        if torch.is_grad_enabled() or ctx.prepared is None:
            # create_graph=True (a second derivative), or a second backward through the same graph
            # (retain_graph=True) after the first used up the probabilities: the composed loss.
            from losses.torch._overlap_core import composed_loss

            with torch.enable_grad():
                loss = composed_loss(input, target, weight, ctx.options, ctx.reduction, ctx.label_map, sync=False)
                (grad,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
            return grad, None, None, None, None, None
        grad_stats = ctx.grad_stats
        upstream = grad_output.detach().double().numpy()
        if ctx.reduction == "mean":
            upstream = upstream / grad_stats.shape[0]
        scale = np.broadcast_to(upstream, grad_stats.shape[:1])[:, None, None]
        coefficients = grad_stats[..., _GRADIENT_STATS] * scale
        if ctx.one_hot_labels:  # the Σ|p − g| of one-hot labels is Σp + Σg − 2·Σp·g
            coefficients[..., 1] += coefficients[..., 3]
            coefficients[..., 0] -= 2 * coefficients[..., 3]
            coefficients[..., 3] = 0.0
        prepared, ctx.prepared = ctx.prepared, None
        grad = prepared.gradient(np.broadcast_to(coefficients, (prepared.batch, *coefficients.shape[1:])))
        if ctx.nan_images.any():
            grad[torch.from_numpy(ctx.nan_images)] = float("nan")
        return cast_gradient(grad.view(input.shape), ctx.input_dtype), None, None, None, None, None
