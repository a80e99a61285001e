"""Focal loss (and cross-entropy, at ``gamma=0``) for PyTorch: the per-position terms from PyTorch ops.

The definitions are in :mod:`losses._cross_entropy`. Logarithms come from ``log_softmax`` and
``logsigmoid`` of the logits, so a finite input gives a finite loss also where a probability
underflows to 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from losses._cross_entropy import PROBABILITY_MIN, FocalOptions
from losses._validation import TORCH_REDUCTIONS, check_choice
from losses.torch._checks import check_inputs, check_values, matches
from losses.torch._ops import compute_dtype, constant, non_finite_mark, upcast


def _power(base: Tensor, gamma: float) -> Tensor:
    """``base^γ`` for base in [0, 1], with the gradient of the limit (0) where base = 0 and γ < 1."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma == 1:
        return base
    zero = base <= 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, base) ** gamma)


def focal_terms(input: Tensor, target: Tensor, weight: Tensor | None, options: FocalOptions,
                label_map: bool) -> tuple[Tensor, Tensor]:
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
            valid = (torch.ones_like(terms) if valid_elements is None else valid_elements.all(1).to(dtype))
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


def focal_loss_torch(input: Tensor, target: Tensor, weight: Tensor | None, options: FocalOptions,
                     reduction: str) -> Tensor:
    """The focal loss, reduced: ``"mean"`` (``Σ v·ℓ / Σ v``), ``"sum"``, or ``"none"`` (``v·ℓ`` of each
    position, ``(B, *spatial)``, or element, ``(B, C, *spatial)``)."""
    label_map = check_inputs(input, target, weight, options)
    check_values(input, target, weight, options, label_map)
    terms, valid = focal_terms(input, target, weight, options, label_map)
    if reduction == "none":
        shape = (input.shape[0], *input.shape[2:]) if options.mode == "multiclass" else tuple(input.shape)
        return terms.reshape(shape)
    if reduction == "sum":
        return terms.sum()
    return terms.sum() / valid.sum()


def focal_loss(input: Tensor, target: Tensor, mode: str = "multiclass", *, weight: Tensor | None = None,
               gamma: float = 2.0, alpha: Any = None, from_logits: bool = True, label_smoothing: float = 0.0,
               class_weights: Any = None, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    r"""Focal loss (Lin et al., 2017); with ``gamma=0`` the cross-entropy.

    Multiclass (softmax over C), per position: ``ℓ = −Σ_c w_c·α_c·q_c·(1 − p_c)^γ·log p_c`` with q the
    label-smoothed one-hot label. Binary and multilabel (a sigmoid per element):
    ``ℓ = w_c·α_t·(1 − p_t)^γ·BCE(x, t)`` with ``p_t = p·t + (1 − p)·(1 − t)`` and
    ``α_t = α·t + (1 − α)·(1 − t)``.

    Args:
        input: logits (or probabilities with ``from_logits=False``) ``(B, C, *spatial)``.
        target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` (binary: 0/1), or per-class
            targets of the input's shape (probabilities in [0, 1]).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``, as for the overlap losses.
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``, >= 0.
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for the
            negatives), as torchvision's ``sigmoid_focal_loss`` (whose default is 0.25) and MONAI;
            multiclass: None or one weight per class (MONAI's float ``a`` is ``[1 − a, a, ...]``,
            Keras' ``CategoricalFocalCrossentropy(alpha=a)`` is ``[a] * C``).
        label_smoothing: ε in [0, 1): multiclass ``q = (1 − ε)·q + ε/C``; sigmoid
            ``t = (1 − ε)·t + ε/2`` (as Keras).
        class_weights: one weight per channel, relative (divided by the largest), multiplying the
            terms of that class.
        ignore_index: a target value whose positions (elements, for per-class targets) count nowhere.
        reduction: ``"mean"`` (``Σ v·ℓ / Σ v`` over the valid positions, or elements; NaN when there
            is none, as ``torch.nn.functional.cross_entropy``), ``"sum"``, or ``"none"``: the weighted
            term of each position ``(B, *spatial)`` (multiclass) or element ``(B, C, *spatial)``.

    MONAI's ``FocalLoss`` averages over the classes too (its mean is this one divided by C in
    multiclass mode); ``keras.losses.CategoricalFocalCrossentropy`` sums over the classes, as here.

    Example:

    >>> import torch
    >>> from losses.torch.functional import focal_loss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]])      # (B=1, C=2, 1, 2)
    >>> round(focal_loss(logits, torch.tensor([[[0, 1]]])).item(), 5)
    0.00011
    >>> round(focal_loss(logits, torch.tensor([[[0, 1]]]), gamma=0.0).item(), 4)   # cross-entropy
    0.0486
    """
    reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
    options = FocalOptions.create(mode=mode, from_logits=from_logits, gamma=gamma, alpha=alpha,
                                  label_smoothing=label_smoothing, class_weights=class_weights,
                                  ignore_index=ignore_index)
    return focal_loss_torch(input, target, weight, options, reduction)


class FocalLoss(nn.Module):
    """Focal loss as an ``nn.Module``: the options of :func:`losses.torch.functional.focal_loss`, held.

    ``forward(input, target, weight=None)``.

    Example:

    >>> import torch
    >>> from losses.torch import FocalLoss
    >>> criterion = FocalLoss(mode="binary", alpha=0.25)
    >>> logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    >>> criterion(logits, torch.randint(0, 2, (2, 8, 8))).backward()
    """

    def __init__(self, mode: str = "multiclass", *, gamma: float = 2.0, alpha: Any = None, from_logits: bool = True,
                 label_smoothing: float = 0.0, class_weights: Any = None, ignore_index: int | None = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = FocalOptions.create(mode=mode, from_logits=from_logits, gamma=gamma, alpha=alpha,
                                           label_smoothing=label_smoothing, class_weights=class_weights,
                                           ignore_index=ignore_index)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return focal_loss_torch(input, target, weight, self.options, self.reduction)

    def extra_repr(self) -> str:
        o = self.options
        return f"mode={o.mode!r}, gamma={o.gamma}, alpha={o.alpha!r}, reduction={self.reduction!r}"
