"""Focal loss (and cross-entropy, at ``gamma=0``) for PyTorch: the public function and module.

The definitions are in :mod:`losses._cross_entropy`; the terms and the execution paths in
:mod:`losses.torch._term_core`.
"""

from __future__ import annotations


from torch import Tensor, nn

from losses._cross_entropy import FocalOptions
from losses._validation import ClassWeights, TORCH_REDUCTIONS, check_choice
from losses.torch._checks import check_inputs, check_values
from losses.torch._term_core import TermLoss, focal_terms, term_loss


def focal_loss_torch(
    input: Tensor, target: Tensor, weight: Tensor | None, options: FocalOptions, reduction: str
) -> Tensor:
    """The focal loss, reduced: ``"mean"`` (``Σ v·ℓ / Σ v``), ``"sum"``, or ``"none"`` (``v·ℓ`` of each
    position, ``(B, *spatial)``, or element, ``(B, C, *spatial)``)."""
    label_map = check_inputs(input, target, weight, options)
    if reduction != "none":
        return term_loss(input, target, weight, TermLoss.focal(options, reduction), "mean", label_map)
    check_values(input, target, weight, options, label_map)
    terms, _ = focal_terms(input, target, weight, options, label_map)
    shape = (input.shape[0], *input.shape[2:]) if options.mode == "multiclass" else tuple(input.shape)
    return terms.reshape(shape)


def focal_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    gamma: float = 2.0,
    alpha: float | ClassWeights | None = None,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    class_weights: ClassWeights | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Tensor:
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

    MONAI's ``FocalLoss(use_softmax=True)`` averages over the classes too (its mean is this one
    divided by C; its ``weight`` is not divided by the largest); its sigmoid focal loss is this one
    in multilabel mode, as is torchvision's ``sigmoid_focal_loss`` (whose ``alpha`` defaults to
    0.25, here to None). segmentation-models-pytorch's multiclass ``FocalLoss`` is a mean of
    one-class-against-the-rest sigmoid focal losses: this one in multilabel mode on the one-hot
    target. ``keras.losses.CategoricalFocalCrossentropy`` sums over the classes, as here.

    Returns:
        A scalar for ``reduction="mean"`` or ``"sum"``; for ``"none"`` the weighted term of each
        position ``(B, *spatial)`` (multiclass) or element ``(B, C, *spatial)`` (binary, multilabel).

    Raises:
        TypeError: ``input``, ``target`` or ``weight`` is not a tensor, ``input`` is not
            floating-point, or an option has the wrong type.
        ValueError: shapes that do not match (never broadcast), a channel count that does not fit
            ``mode`` (binary: 1, multiclass: at least 2), ``alpha`` or ``class_weights`` without one
            value per channel, an option out of its range (the message names it), or, on the CPU, a
            label, target, probability or weight out of its range.

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
    options = FocalOptions.create(
        mode=mode,
        from_logits=from_logits,
        gamma=gamma,
        alpha=alpha,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        ignore_index=ignore_index,
    )
    return focal_loss_torch(input, target, weight, options, reduction)


class FocalLoss(nn.Module):
    r"""Focal loss (Lin et al., 2017) as an ``nn.Module``; with ``gamma=0`` the cross-entropy.

    Multiclass (softmax over C), per position: ``ℓ = −Σ_c w_c·α_c·q_c·(1 − p_c)^γ·log p_c`` with q the
    label-smoothed one-hot label. Binary and multilabel (a sigmoid per element):
    ``ℓ = w_c·α_t·(1 − p_t)^γ·BCE(x, t)`` with ``p_t = p·t + (1 − p)·(1 − t)`` and
    ``α_t = α·t + (1 − α)·(1 − t)``. The options of :func:`losses.torch.functional.focal_loss`,
    checked once; ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``), ``"multiclass"`` (``C >= 2``, softmax) or ``"multilabel"``
            (a sigmoid per element; target of the input's shape).
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for
            the negatives); multiclass: None or one weight per class.
        from_logits: apply the sigmoid / softmax inside; False: the input is probabilities.
        label_smoothing: ε in [0, 1): multiclass ``q = (1 − ε)·q + ε/C``; sigmoid
            ``t = (1 − ε)·t + ε/2``.
        class_weights: one weight per channel, relative (divided by the largest), multiplying the
            terms of that class.
        ignore_index: a target value whose positions (elements, for per-class targets) count nowhere.
        reduction: ``"mean"`` (``Σ v·ℓ / Σ v`` over the valid positions, or elements), ``"sum"``, or
            ``"none"`` (the weighted term of each position, or element).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import FocalLoss
    >>> criterion = FocalLoss(mode="binary", alpha=0.25)
    >>> logits = torch.tensor([[[[2.0, -1.0]]]], requires_grad=True)   # (B=1, C=1, 1, 2)
    >>> loss = criterion(logits, torch.tensor([[[1, 0]]]))
    >>> round(loss.item(), 5)   # (0.25·0.119²·0.127 + 0.75·0.269²·0.313) / 2
    0.00872
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([1, 1, 1, 2])
    """

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        gamma: float = 2.0,
        alpha: float | ClassWeights | None = None,
        from_logits: bool = True,
        label_smoothing: float = 0.0,
        class_weights: ClassWeights | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = FocalOptions.create(
            mode=mode,
            from_logits=from_logits,
            gamma=gamma,
            alpha=alpha,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
            ignore_index=ignore_index,
        )

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The focal loss of ``input`` against ``target``, with the options given to the constructor.

        Args:
            input: logits (or probabilities with ``from_logits=False``) ``(B, C, *spatial)``.
            target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` (binary: 0/1), or
                per-class targets of the input's shape (probabilities in [0, 1]).
            weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``, >= 0.

        Returns:
            A scalar for ``reduction="mean"`` or ``"sum"``; for ``"none"`` the weighted term of
            each position ``(B, *spatial)`` (multiclass) or element ``(B, C, *spatial)``.

        Raises:
            TypeError: ``input``, ``target`` or ``weight`` is not a tensor, ``input`` is not
                floating-point, or an option has the wrong type.
            ValueError: shapes that do not match (never broadcast), a channel count that does not
                fit ``mode`` (binary: 1, multiclass: at least 2), ``alpha`` or ``class_weights``
                without one value per channel, or, on the CPU, a label, target, probability or
                weight out of its range.
        """
        return focal_loss_torch(input, target, weight, self.options, self.reduction)

    def extra_repr(self) -> str:
        o = self.options
        text = f"mode={o.mode!r}, gamma={o.gamma}, alpha={o.alpha!r}"
        defaults = FocalOptions()
        for name in ("label_smoothing", "class_weights", "ignore_index", "from_logits"):
            if getattr(o, name) != getattr(defaults, name):
                text += f", {name}={getattr(o, name)!r}"
        return f"{text}, reduction={self.reduction!r}"
