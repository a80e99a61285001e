"""A cross-entropy or focal term on PyTorch tensors, alone (``FocalLoss``) or beside an overlap loss
(``DiceCELoss``, ``DiceFocalLoss``): the per-position terms, which path runs, and the loss on each.

The definitions are in :mod:`losses._cross_entropy`. Logarithms come from ``log_softmax`` and
``logsigmoid`` of the logits, so a finite input gives a finite loss also where a probability
underflows to 0.

Paths (:func:`choose_term_path`), as for the overlap losses (:mod:`losses.torch._overlap_core`):

- ``"cpu"``: CPU tensors with logits and label maps (or binary / multilabel targets): the fused
  passes of the C library, the term summed in the pass of the overlap sums and its gradient added
  in the gradient pass (:class:`losses.torch._fused_cpu.FusedCpuTerm`);
- ``"triton"``: CUDA tensors with Triton, eagerly, with the same inputs: the term summed in the
  stats kernel, the overlap rows from the formula kernel, one gradient kernel for both
  (:func:`losses.torch._kernels.overlap_finalize.term_loss_triton`);
- ``"portable"``: PyTorch ops and autograd, everywhere else.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from losses._cross_entropy import PROBABILITY_MIN, FocalOptions, PairOptions
from losses._overlap import OverlapOptions
from losses.torch._checks import check_values, check_weight_values, matches
from losses.torch._distributed import all_reduce_sum, distributed, reduce_across_ranks
from losses.torch._fused_cpu import FusedCpuTerm
from losses.torch._kernels.overlap_finalize import term_loss_triton
from losses.torch._ops import compute_dtype, constant, non_finite_mark, reduce, upcast
from losses.torch._overlap_core import Path, choose_path, row_losses


def _power(base: Tensor, gamma: float) -> Tensor:
    """``base^γ`` for base in [0, 1], with the gradient of the limit (0) where base = 0 and γ < 1."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma == 1:
        return base
    zero = base <= 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, base) ** gamma)


def focal_terms(
    input: Tensor, target: Tensor, weight: Tensor | None, options: FocalOptions, label_map: bool
) -> tuple[Tensor, Tensor]:
    """``(v·ℓ, v)``: the weighted focal terms and the weight of each, shape ``(B, N)`` (multiclass:
    per position) or ``(B, C, N)`` (binary, multilabel: per element), where N is the number of
    positions. Differentiable through ``input`` (and a float target that requires grad)."""
    dtype = compute_dtype(input.dtype)
    batch, num_classes = input.shape[:2]
    positions = math.prod(input.shape[2:])
    x = upcast(input).reshape(batch, num_classes, positions)
    factors = constant(options.class_factors(num_classes), dtype, x.device)[:, None]  # (C, 1)
    smoothing = options.label_smoothing
    if options.mode == "multiclass":
        log_p = torch.log_softmax(x, 1) if options.from_logits else torch.log(x.clamp_min(PROBABILITY_MIN))
        p = log_p.exp()
        per_class = -factors * _power(1 - p, options.gamma) * log_p  # (B, C, N): the term of each class
        if label_map:
            labels = target.reshape(batch, positions).long()
            ignored = matches(labels, options.ignore_index)
            safe = labels if ignored is None else torch.where(ignored, 0, labels)
            terms = (1 - smoothing) * per_class.gather(1, safe[:, None]).squeeze(1)
            if smoothing:
                terms = terms + smoothing / num_classes * per_class.sum(1)
            valid = torch.ones_like(terms) if ignored is None else (~ignored).to(dtype)
        else:
            q = target.reshape(batch, num_classes, positions).to(dtype)
            ignored = matches(q, options.ignore_index)
            valid_elements = None if ignored is None else ~ignored
            if valid_elements is not None:
                q = torch.where(valid_elements, q, 0.0)
            q = (1 - smoothing) * q + smoothing / num_classes
            terms = (q * per_class).sum(1)
            valid = torch.ones_like(terms) if valid_elements is None else valid_elements.all(1).to(dtype)
    else:
        t = target.reshape(batch, 1 if label_map else num_classes, positions)
        ignored = matches(t, options.ignore_index)
        t = t.to(dtype)
        if ignored is not None:
            t = torch.where(ignored, 0.0, t)
        t = (1 - smoothing) * t + smoothing / 2
        if options.from_logits:
            log_p, log_not_p = torch.nn.functional.logsigmoid(x), torch.nn.functional.logsigmoid(-x)
            p = torch.sigmoid(x)
        else:
            p = x
            log_p, log_not_p = torch.log(x.clamp_min(PROBABILITY_MIN)), torch.log((1 - x).clamp_min(PROBABILITY_MIN))
        ce = -(t * log_p + (1 - t) * log_not_p)
        miss = p * (1 - t) + (1 - p) * t  # 1 − p_t
        terms = factors * _power(miss, options.gamma) * ce
        alpha = options.positive_weight
        if alpha is not None:
            terms = (alpha * t + (1 - alpha) * (1 - t)) * terms
        valid = torch.ones_like(terms) if ignored is None else (~ignored).to(dtype).expand_as(terms)
    # A NaN or ±inf logit makes its term NaN, and its gradient NaN (a loss scaler reads the gradients).
    mark = non_finite_mark(x)
    terms = terms + (mark.sum(1) if options.mode == "multiclass" else mark)
    if weight is not None:
        shape = (batch, positions) if options.mode == "multiclass" else (batch, 1, positions)
        valid = valid * weight.reshape(shape).to(dtype)
    return valid * terms, valid


@dataclass(frozen=True)
class TermLoss:
    """Per row (each image, or the batch with ``per_image=False``):
    ``λ_overlap·L_overlap + λ_term·T``, with T the term's ``Σ v·ℓ / Σ v`` (``normalization="row"``: 0
    for a row without a valid position, as its overlap loss; ``"mean"``: NaN there, as
    ``torch.nn.functional.cross_entropy``) or ``Σ v·ℓ`` (``"sum"``). With ``λ_overlap = 0`` the
    overlap loss is not computed; ``overlap`` still says the mode, logits, ``ignore_index`` and rows."""

    overlap: OverlapOptions
    term: FocalOptions
    lambda_overlap: float = 0.0
    lambda_term: float = 1.0
    normalization: str = "row"

    @classmethod
    def pair(cls, pair: PairOptions) -> TermLoss:
        return cls(pair.overlap, pair.term, pair.lambda_overlap, pair.lambda_term, "row")

    @classmethod
    def focal(cls, options: FocalOptions, reduction: str) -> TermLoss:
        """The term alone over the whole batch, reduced by ``"mean"`` or ``"sum"``."""
        # Eagerly cached; the compiler traces the call (a cache it would ignore, with a warning to the user).
        rows = _rows_of(options) if torch.compiler.is_compiling() else _cached_rows_of(options)
        return cls(rows, options, 0.0, 1.0, reduction)


def _rows_of(options: FocalOptions) -> OverlapOptions:
    """The overlap options that drive the shared passes for the term alone: one row, the batch."""
    return OverlapOptions.create(
        "dice", mode=options.mode, from_logits=options.from_logits, ignore_index=options.ignore_index, per_image=False
    )


_cached_rows_of = functools.lru_cache(maxsize=64)(_rows_of)


def choose_term_path(input: Tensor, target: Tensor, weight: Tensor | None, spec: TermLoss, label_map: bool) -> Path:
    """The path of a loss with a term (see the module docstring)."""
    path = choose_path(input, target, weight, spec.overlap, label_map)
    if path.name == "portable":
        return path
    if not spec.term.from_logits:
        return Path("portable", "from_logits=False: the fused cross-entropy term reads logits")
    if spec.term.mode == "multiclass" and not label_map:
        return Path("portable", "per-class multiclass targets: the fused cross-entropy term reads label maps")
    if path.name == "triton-stats":
        return Path("portable", path.reason + "; the term is fused only with the formula kernel")
    if path.name == "triton" and torch.compiler.is_compiling():
        return Path("portable", "under torch.compile (the portable path compiles)")
    return path


def term_loss(
    input: Tensor, target: Tensor, weight: Tensor | None, spec: TermLoss, reduction: str, label_map: bool
) -> Tensor:
    """The loss of ``spec`` on checked inputs: shape ``()``, or ``(B,)`` for ``reduction="none"`` with
    ``per_image``."""
    path = choose_term_path(input, target, weight, spec, label_map)
    if weight is not None and path.name in ("cpu", "triton"):
        check_weight_values(weight)
    if path.name == "cpu":
        return FusedCpuTerm.apply(input, target, weight, spec, reduction, label_map)
    if path.name == "triton":
        if input.device.type == "cpu":  # the interpreter: the detailed ValueError (CUDA asserts on the device)
            check_values(input, target, weight, spec.term, label_map)
        weights = constant(spec.overlap.full_weights(input.shape[1]), torch.float32, input.device)
        return term_loss_triton(input, target, weight, weights, spec, reduction)
    sync = spec.overlap.sync_across_ranks and distributed()
    return composed_term_loss(input, target, weight, spec, reduction, label_map, sync)


def composed_term_loss(
    input: Tensor, target: Tensor, weight: Tensor | None, spec: TermLoss, reduction: str, label_map: bool, sync: bool
) -> Tensor:
    """The loss of ``spec`` from PyTorch ops, differentiated by autograd."""
    options = spec.overlap
    # The inputs are checked before the term indexes by the labels: by the overlap sums, or alone.
    if spec.lambda_overlap != 0:
        overlap_rows = row_losses(input, target, weight, options, label_map, sync)
    else:
        check_values(input, target, weight, spec.term, label_map)
    terms, valid = focal_terms(input, target, weight, spec.term, label_map)
    term_sum, count = terms.flatten(1).sum(1), valid.flatten(1).sum(1)
    if not options.per_image:
        term_sum, count = term_sum.sum(0, keepdim=True), count.sum(0, keepdim=True)
        if sync:
            term_sum, count = all_reduce_sum(torch.stack([term_sum, count])).unbind(0)
    if spec.normalization == "sum":
        term = term_sum
    elif spec.normalization == "mean":
        term = term_sum / count
    else:  # a row without a valid position has nothing to learn from: 0 (NaN where a NaN entered it)
        term = torch.where(count > 0, term_sum / torch.where(count > 0, count, 1.0), term_sum * 0.0)
    per_row = spec.lambda_term * term
    if spec.lambda_overlap != 0:
        per_row = per_row + spec.lambda_overlap * overlap_rows
    if not options.per_image:
        return per_row.squeeze(0)
    if sync and reduction != "none":
        return reduce_across_ranks(per_row, reduction)
    return reduce(per_row, reduction)
