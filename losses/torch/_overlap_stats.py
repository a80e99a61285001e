"""The per-class sums of the overlap losses from PyTorch ops: the portable path, differentiable."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from losses._overlap import (
    ABS_DIFF,
    INTERSECTION,
    NUM_STATS,
    PRED_SQUARES,
    PRED_SUM,
    TARGET_SQUARES,
    TARGET_SUM,
    VALID_COUNT,
    OverlapOptions,
)
from losses.torch._checks import check_values, matches
from losses.torch._ops import compute_dtype, upcast


def _sums(x: Tensor, valid: Tensor | None) -> Tensor:
    """Σ over the last axis of x, counting only valid positions; x is (B, C, N), valid (B, 1 or C, N) or None."""
    return (x if valid is None else x * valid).sum(-1)


def overlap_stats_torch(
    input: Tensor, target: Tensor, weight: Tensor | None, options: OverlapOptions, label_map: bool
) -> Tensor:
    """The per-class sums ``(S, C, NUM_STATS)`` of :mod:`losses._overlap`, differentiable through
    ``input`` (and a float ``target`` or ``weight`` that requires grad).

    Every sum of an image that holds a NaN or an infinity (in the input, or in a float target) is
    NaN, so that its loss and the gradient of all its elements are NaN, as on the fused paths.
    """
    check_values(input, target, weight, options, label_map)
    dtype = compute_dtype(input.dtype)
    batch, num_classes = input.shape[:2]
    positions = math.prod(input.shape[2:])  # not -1: a batch of 0 images has no size to infer it from
    logits = upcast(input).reshape(batch, num_classes, positions)
    if options.from_logits:
        probs = torch.softmax(logits, 1) if options.mode == "multiclass" else torch.sigmoid(logits)
    else:
        probs = logits
    needed = options.needed_stats()
    zeros = probs.new_zeros(batch, num_classes)
    columns = [zeros] * NUM_STATS
    ignore = options.ignore_index
    weights = None if weight is None else weight.reshape(batch, 1, positions).to(dtype)

    if label_map and options.mode == "multiclass":
        labels = target.reshape(batch, positions).long()
        ignored = matches(labels, ignore)
        safe_labels = labels if ignored is None else torch.where(ignored, 0, labels)
        valid = None if ignored is None else (~ignored).to(dtype)
        if weights is not None:
            valid = weights[:, 0] if valid is None else valid * weights[:, 0]
        # Σ over positions labelled c of p_c, gathered and scattered by label: no one-hot tensor.
        picked = probs.gather(1, safe_labels.unsqueeze(1)).squeeze(1)
        ones = torch.ones_like(picked) if valid is None else valid
        if valid is not None:
            picked = picked * valid
        counts = zeros.scatter_add(1, safe_labels, ones)
        intersection = zeros.scatter_add(1, safe_labels, picked)
        columns[INTERSECTION] = intersection
        columns[TARGET_SUM] = counts
        columns[TARGET_SQUARES] = counts
        valid3 = None if valid is None else valid.unsqueeze(1)
        if PRED_SUM in needed or ABS_DIFF in needed:
            columns[PRED_SUM] = _sums(probs, valid3)
        if PRED_SQUARES in needed:
            columns[PRED_SQUARES] = _sums(probs * probs, valid3)
        if ABS_DIFF in needed:
            # For one-hot g: Σ|p − g| = Σp + Σg − 2·Σp·g.
            columns[ABS_DIFF] = columns[PRED_SUM] + counts - 2 * intersection
        if VALID_COUNT in needed:
            count = torch.full_like(zeros, positions) if valid is None else valid.sum(-1, keepdim=True).expand_as(zeros)
            columns[VALID_COUNT] = count
    else:
        if label_map:  # binary label map: the target probability of the single class is the label
            labels = target.reshape(batch, 1, positions)
        else:
            labels = target.reshape(batch, num_classes, positions)
        truth = labels.to(dtype)
        ignored = matches(labels, ignore)
        valid = None
        if ignored is not None:
            valid = (~ignored).to(dtype)
            truth = torch.where(ignored, 0.0, truth)
        if weights is not None:
            valid = weights if valid is None else valid * weights
        if INTERSECTION in needed:
            columns[INTERSECTION] = _sums(probs * truth, valid)
        if PRED_SUM in needed:
            columns[PRED_SUM] = _sums(probs, valid)
        columns[TARGET_SUM] = _sums(truth, valid).expand(batch, num_classes)
        if PRED_SQUARES in needed:
            columns[PRED_SQUARES] = _sums(probs * probs, valid)
        if TARGET_SQUARES in needed:
            columns[TARGET_SQUARES] = _sums(truth * truth, valid).expand(batch, num_classes)
        if ABS_DIFF in needed:
            columns[ABS_DIFF] = _sums((probs - truth).abs(), valid)
        if VALID_COUNT in needed:
            count = torch.full_like(zeros, positions) if valid is None else valid.sum(-1).expand(batch, num_classes)
            columns[VALID_COUNT] = count
    stats = torch.stack(columns, -1)
    # 0 for finite values and NaN otherwise; 0·x, not a test, so that autograd carries the NaN too.
    guard = (logits * 0).sum((1, 2))
    if not label_map and target.is_floating_point():
        guard = guard + (target.reshape(batch, num_classes * positions).to(dtype) * 0).sum(1)
    stats = stats + guard[:, None, None]
    if not options.per_image:
        stats = stats.sum(0, keepdim=True)
    return stats
