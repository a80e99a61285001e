r"""An overlap loss plus a cross-entropy or focal term over the same positions: ``DiceCELoss``,
``DiceFocalLoss`` (PyTorch, channels first).

Per image (per batch with ``per_image=False``)::

    loss = λ_overlap · L_overlap + λ_term · Σ v·ℓ / Σ v

with ``L_overlap`` any member of the overlap family (``overlap="dice"``, the default, or
``"jaccard"``, ``"tversky"``, ``"focal_tversky"``, ``"generalized_dice"``, with that member's own
options in ``overlap_options``) and ℓ the cross-entropy (``gamma = 0``) or focal term of
:mod:`losses._cross_entropy`, over the same valid positions: one ``ignore_index``, one weight map
(``weight``), one rule for ``class_weights`` (class c's weight multiplies its overlap loss in the
class mean and its cross-entropy terms). ``classes`` selects the classes of the overlap term only;
the cross-entropy covers every class, as a softmax does. A row (image, or batch) without a valid
position adds 0, as its overlap loss does.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from losses._cross_entropy import PairOptions
from losses._validation import ClassIndices, ClassWeights, TORCH_REDUCTIONS, check_choice
from losses.torch._checks import check_inputs, checked_options
from losses.torch._overlap_core import loss as overlap_loss
from losses.torch._term_core import TermLoss, term_loss


def pair_loss(input: Tensor, target: Tensor, weight: Tensor | None, pair: PairOptions, reduction: str) -> Tensor:
    """The pair's loss: shape ``()``, or ``(B,)`` for ``reduction="none"`` with ``per_image``."""
    label_map = check_inputs(input, target, weight, pair.overlap)
    pair = pair.for_target(label_map)
    pair.term.check_num_classes(input.shape[1])
    pair.overlap.full_weights(input.shape[1])  # raises when no selected class has a weight
    if pair.lambda_term == 0:  # the overlap loss alone, on its own passes (computing the term would only add 0)
        return pair.lambda_overlap * overlap_loss(input, target, weight, pair.overlap, reduction)
    # Eagerly cached; the compiler traces the call (a cache it would ignore, with a warning to the user).
    spec = TermLoss.pair(pair) if torch.compiler.is_compiling() else _term_loss(pair)
    return term_loss(input, target, weight, spec, reduction, label_map)


@functools.lru_cache(maxsize=64)
def _term_loss(pair: PairOptions) -> TermLoss:
    return TermLoss.pair(pair)


def _functional(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    reduction: str,
    lambdas: tuple[float, float],
    lambda_names: tuple[str, str],
    overlap: str,
    overlap_options: dict[str, Any] | None,
    common: dict[str, Any],
    term: dict[str, Any],
) -> Tensor:
    reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
    pair = checked_options(PairOptions.create, overlap, common, overlap_options, *lambdas, lambda_names, **term)
    return pair_loss(input, target, weight, pair, reduction)


def dice_ce_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    overlap: str = "dice",
    overlap_options: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    squared: bool = False,
    log_loss: bool = False,
    soft_labels: bool = False,
    per_image: bool = True,
    classes: ClassIndices | None = None,
    class_weights: ClassWeights | None = None,
    ignore_index: int | None = None,
    empty_target: str = "smooth",
    average: str = "macro",
    sync_across_ranks: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Dice (or another overlap loss) plus cross-entropy: ``λ_dice·L_overlap + λ_ce·CE`` per image.

    nnU-Net's ``DC_and_CE_loss`` (``do_bg=False``, smooth 1e-5) is this with
    ``classes=[1, ..., C - 1]`` and ``per_image=not batch_dice``, minus 1 (it adds −Dice rather
    than 1 − Dice); with its ignore label, ``per_image=False`` (its cross-entropy is a mean over the
    batch). MONAI's ``DiceCELoss(softmax=True, to_onehot_y=True, batch=b)`` is this with
    ``per_image=not b``; with C > 1 channels its cross-entropy is the softmax one even with
    ``sigmoid=True``. Class weights: MONAI's ``weight`` multiplies each class's Dice loss before an
    unweighted class mean and makes its cross-entropy PyTorch's weighted mean ``Σ w_y·ℓ / Σ w_y``;
    here ``class_weights`` is one rule for both terms (a weighted class mean ``Σ w·L / Σ w`` of the
    overlap losses, and ``w_y·ℓ`` averaged over the valid positions).

    Per image (per batch with ``per_image=False``), ``CE = Σ v·ℓ / Σ v`` over the valid positions,
    v the weight map and ℓ the cross-entropy term of :func:`focal_loss` with ``gamma=0``.

    Args:
        input: predictions ``(B, C, *spatial)`` (``C = 1`` in binary mode), logits
            (``from_logits=True``) or probabilities; float16, bfloat16, float32 or float64 (low
            precision is computed in float32).
        target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (binary: 0
            or 1; multiclass: ``[0, C)``; never expanded to one-hot), or per-class targets of
            ``input``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``, finite
            and ``>= 0``, for both terms.
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_ce: the weight of the cross-entropy term (``>= 0``; not both 0).
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the cross-entropy term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term (e.g. ``[1, 2]`` without
            the background); None: every class. The cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target (``Σg = 0``) contributes: ``"smooth"``
            the smoothed formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction
            ``Σp / Σv``, whose gradient ``1/Σv`` never vanishes.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Returns:
        The loss: a scalar for ``reduction="mean"`` or ``"sum"``, the loss of each image ``(B,)``
        for ``"none"`` (``()`` with ``per_image=False``).

    Raises:
        TypeError: ``input``, ``target`` or ``weight`` is not a tensor, ``input`` is not
            floating-point, an option has the wrong type, or ``overlap_options`` names an option
            the chosen member does not take.
        ValueError: shapes that do not match (never broadcast), both lambdas 0, an option out of
            its range (the message names it), or, on the CPU, a label, target, probability or
            weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import dice_ce_loss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]])      # (B=1, C=2, 1, 2)
    >>> round(dice_ce_loss(logits, torch.tensor([[[0, 1]]])).item(), 4)
    0.096
    """
    common = dict(
        mode=mode,
        from_logits=from_logits,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        squared=squared,
        log_loss=log_loss,
        soft_labels=soft_labels,
        per_image=per_image,
        classes=classes,
        class_weights=class_weights,
        ignore_index=ignore_index,
        empty_target=empty_target,
        average=average,
        sync_across_ranks=sync_across_ranks,
    )
    return _functional(
        input,
        target,
        weight,
        reduction,
        (lambda_dice, lambda_ce),
        ("lambda_dice", "lambda_ce"),
        overlap,
        overlap_options,
        common,
        dict(gamma=0.0, label_smoothing=label_smoothing),
    )


def dice_focal_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    gamma: float = 2.0,
    alpha: float | ClassWeights | None = None,
    overlap: str = "dice",
    overlap_options: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    squared: bool = False,
    log_loss: bool = False,
    soft_labels: bool = False,
    per_image: bool = True,
    classes: ClassIndices | None = None,
    class_weights: ClassWeights | None = None,
    ignore_index: int | None = None,
    empty_target: str = "smooth",
    average: str = "macro",
    sync_across_ranks: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Dice (or another overlap loss) plus focal loss: ``λ_dice·L_overlap + λ_focal·focal`` per image.

    ``gamma`` and ``alpha`` are those of :func:`focal_loss`; the other options as :func:`dice_ce_loss`.
    MONAI's ``DiceFocalLoss`` takes its focal term from a sigmoid of each channel even with
    ``softmax=True`` (one class against the rest): it matches this loss in binary and multilabel
    modes.

    Args:
        input: predictions ``(B, C, *spatial)`` (``C = 1`` in binary mode), logits
            (``from_logits=True``) or probabilities; float16, bfloat16, float32 or float64 (low
            precision is computed in float32).
        target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (binary: 0
            or 1; multiclass: ``[0, C)``; never expanded to one-hot), or per-class targets of
            ``input``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``, finite
            and ``>= 0``, for both terms.
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_focal: the weight of the focal term (``>= 0``; not both 0).
        gamma: the focusing exponent (``>= 0``).
        alpha: binary/multilabel: the weight in [0, 1] of the positives; multiclass: one weight
            per class; None: no weighting.
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the focal term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term (e.g. ``[1, 2]`` without
            the background); None: every class. The cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target (``Σg = 0``) contributes: ``"smooth"``
            the smoothed formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction
            ``Σp / Σv``, whose gradient ``1/Σv`` never vanishes.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Returns:
        The loss: a scalar for ``reduction="mean"`` or ``"sum"``, the loss of each image ``(B,)``
        for ``"none"`` (``()`` with ``per_image=False``).

    Raises:
        TypeError: ``input``, ``target`` or ``weight`` is not a tensor, ``input`` is not
            floating-point, an option has the wrong type, or ``overlap_options`` names an option
            the chosen member does not take.
        ValueError: shapes that do not match (never broadcast), both lambdas 0, an option out of
            its range (the message names it), or, on the CPU, a label, target, probability or
            weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import dice_focal_loss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]])
    >>> round(dice_focal_loss(logits, torch.tensor([[[0, 1]]])).item(), 4)
    0.0475
    """
    common = dict(
        mode=mode,
        from_logits=from_logits,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        squared=squared,
        log_loss=log_loss,
        soft_labels=soft_labels,
        per_image=per_image,
        classes=classes,
        class_weights=class_weights,
        ignore_index=ignore_index,
        empty_target=empty_target,
        average=average,
        sync_across_ranks=sync_across_ranks,
    )
    return _functional(
        input,
        target,
        weight,
        reduction,
        (lambda_dice, lambda_focal),
        ("lambda_dice", "lambda_focal"),
        overlap,
        overlap_options,
        common,
        dict(gamma=gamma, alpha=alpha, label_smoothing=label_smoothing),
    )


class _PairLoss(nn.Module):
    def __init__(self, reduction: str, pair: PairOptions) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = pair

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The loss of ``input`` against ``target``, with the options given to the constructor.

        Args:
            input: logits ``(B, C, *spatial)`` (``C = 1`` in binary mode; probabilities with
                ``from_logits=False``).
            target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices, or
                per-class targets of ``input``'s shape.
            weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``,
                finite and ``>= 0``, for both terms.

        Returns:
            The loss: a scalar for ``reduction="mean"`` or ``"sum"``, the loss of each image
            ``(B,)`` for ``"none"`` (``()`` with ``per_image=False``).

        Raises:
            TypeError: ``input``, ``target`` or ``weight`` is not a tensor, or ``input`` is not
                floating-point.
            ValueError: shapes that do not match (never broadcast), a channel count that does not
                fit the options, or, on the CPU, a label, target, probability or weight out of its
                range.
        """
        return pair_loss(input, target, weight, self.options, self.reduction)

    def extra_repr(self) -> str:
        pair = self.options
        changed = [f"overlap={pair.overlap.loss!r}"] + [f"{k}={v!r}" for k, v in pair.overlap.changed().items()]
        changed += [f"lambdas=({pair.lambda_overlap}, {pair.lambda_term})", f"term={pair.term.to_dict()}"]
        if self.reduction != "mean":
            changed.append(f"reduction={self.reduction!r}")
        return ", ".join(changed)


class DiceCELoss(_PairLoss):
    """Dice (or another overlap loss) plus cross-entropy as an ``nn.Module``:
    ``λ_dice·L_overlap + λ_ce·mean(ℓ)`` per image, over the same valid positions.

    ℓ is the cross-entropy term of :class:`FocalLoss` with ``gamma=0``; one ``ignore_index``, one
    weight map and one rule for ``class_weights`` hold for both terms.
    ``forward(input, target, weight=None)`` computes it (its arguments are those of
    :meth:`DiceLoss.forward`).

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_ce: the weight of the cross-entropy term (``>= 0``).
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only, e.g. ``{"alpha": 0.3, "beta": 0.7}``.
        label_smoothing: ε in [0, 1) of the cross-entropy term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg²``, Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term (e.g. ``[1, 2]`` without
            the background); None: every class. The cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target (``Σg = 0``) contributes: ``"smooth"``
            the smoothed formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction
            ``Σp / Σv``, whose gradient ``1/Σv`` never vanishes.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Raises:
        TypeError: an option of the wrong type, or ``overlap_options`` naming an option the
            chosen member does not take.
        ValueError: an option value out of its range (the message names the option), or both lambdas 0.

    Example:

    >>> import torch
    >>> from losses.torch import DiceCELoss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]])      # (B=1, C=2, 1, 2)
    >>> round(DiceCELoss()(logits, torch.tensor([[[0, 1]]])).item(), 4)
    0.096
    """

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        overlap: str = "dice",
        overlap_options: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        from_logits: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        squared: bool = False,
        log_loss: bool = False,
        soft_labels: bool = False,
        per_image: bool = True,
        classes: ClassIndices | None = None,
        class_weights: ClassWeights | None = None,
        ignore_index: int | None = None,
        empty_target: str = "smooth",
        average: str = "macro",
        sync_across_ranks: bool = False,
        reduction: str = "mean",
    ) -> None:
        common = dict(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=squared,
            log_loss=log_loss,
            soft_labels=soft_labels,
            per_image=per_image,
            classes=classes,
            class_weights=class_weights,
            ignore_index=ignore_index,
            empty_target=empty_target,
            average=average,
            sync_across_ranks=sync_across_ranks,
        )
        super().__init__(
            reduction,
            PairOptions.create(
                overlap,
                common,
                overlap_options,
                lambda_dice,
                lambda_ce,
                ("lambda_dice", "lambda_ce"),
                gamma=0.0,
                label_smoothing=label_smoothing,
            ),
        )


class DiceFocalLoss(_PairLoss):
    """Dice (or another overlap loss) plus focal loss as an ``nn.Module``:
    ``λ_dice·L_overlap + λ_focal·mean(ℓ)`` per image, over the same valid positions.

    ℓ is the term of :class:`FocalLoss`; one ``ignore_index``, one weight map and one rule for
    ``class_weights`` hold for both terms. ``forward(input, target, weight=None)`` computes it
    (its arguments are those of :meth:`DiceLoss.forward`).

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_focal: the weight of the focal term (``>= 0``).
        gamma: the focusing exponent (``>= 0``).
        alpha: binary/multilabel: the weight in [0, 1] of the positives; multiclass: one weight
            per class; None: no weighting.
        overlap: the member of the overlap family (as for :class:`DiceCELoss`).
        overlap_options: options of that member only.
        label_smoothing: ε in [0, 1) of the focal term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg²``, Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term (e.g. ``[1, 2]`` without
            the background); None: every class. The cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target (``Σg = 0``) contributes: ``"smooth"``
            the smoothed formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction
            ``Σp / Σv``, whose gradient ``1/Σv`` never vanishes.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Raises:
        TypeError: an option of the wrong type, or ``overlap_options`` naming an option the
            chosen member does not take.
        ValueError: an option value out of its range (the message names the option), or both lambdas 0.

    Example:

    >>> import torch
    >>> from losses.torch import DiceFocalLoss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[-1.0, 2.0]]]])      # (B=1, C=2, 1, 2)
    >>> round(DiceFocalLoss()(logits, torch.tensor([[[0, 1]]])).item(), 4)
    0.0475
    """

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        gamma: float = 2.0,
        alpha: float | ClassWeights | None = None,
        overlap: str = "dice",
        overlap_options: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        from_logits: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        squared: bool = False,
        log_loss: bool = False,
        soft_labels: bool = False,
        per_image: bool = True,
        classes: ClassIndices | None = None,
        class_weights: ClassWeights | None = None,
        ignore_index: int | None = None,
        empty_target: str = "smooth",
        average: str = "macro",
        sync_across_ranks: bool = False,
        reduction: str = "mean",
    ) -> None:
        common = dict(
            mode=mode,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=squared,
            log_loss=log_loss,
            soft_labels=soft_labels,
            per_image=per_image,
            classes=classes,
            class_weights=class_weights,
            ignore_index=ignore_index,
            empty_target=empty_target,
            average=average,
            sync_across_ranks=sync_across_ranks,
        )
        super().__init__(
            reduction,
            PairOptions.create(
                overlap,
                common,
                overlap_options,
                lambda_dice,
                lambda_focal,
                ("lambda_dice", "lambda_focal"),
                gamma=gamma,
                alpha=alpha,
                label_smoothing=label_smoothing,
            ),
        )
