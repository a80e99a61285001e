r"""The overlap losses for PyTorch (channels first): Dice, Jaccard, Tversky, focal Tversky, generalized Dice.

Each loss is a function (``losses.torch.functional``) and an ``nn.Module`` holding its options;
both call :func:`losses.torch._overlap_core.loss`, which checks the inputs, chooses the execution
path and computes the general form of :mod:`losses._overlap`.

Arguments common to every member:

- ``input``: predictions ``(B, C, *spatial)``, logits (``from_logits=True``) or probabilities;
  float16, bfloat16, float32 or float64 (low precision is computed in float32).
- ``target``: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (binary: 0
  or 1; multiclass: ``[0, C)``; never expanded to one-hot), or per-class targets of the input's
  shape (one-hot, multi-hot or soft probabilities in [0, 1]).
- ``weight``: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``, finite
  and ``>= 0``, entering every sum (a weight of 0 is ``ignore_index`` for that position).
- ``mode``: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
  ``"multilabel"`` (independent sigmoids; target of the input's shape).
- ``from_logits``: apply the sigmoid / softmax (numerically stable) inside.
- ``smooth_nr``, ``smooth_dr``: added to the numerator and the denominator of the score (``>= 0``;
  ``smooth_nr <= smooth_dr``).
- ``soft_labels``: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to ``Σp·g`` for hard labels and
  minimised at ``p = g`` for soft targets (with ``squared``: ``(Σp² + Σg² − Σ(p − g)²) / 2 = Σp·g``,
  as MONAI).
- ``per_image``: sums per image and class, or (``False``) per class over the whole batch.
- ``classes``: the indices of the classes that enter the loss; ``class_weights``: one weight per
  channel (``Σ w·L / Σ w``).
- ``ignore_index``: a target value whose positions are left out of every sum (gradient exactly 0).
- ``sync_across_ranks``: the loss and gradient of the global batch under DistributedDataParallel.
- ``reduction``: ``"mean"`` or ``"sum"`` over images, or ``"none"`` (shape ``(B,)``; the batch loss,
  shape ``()``, with ``per_image=False``).

Values out of range raise a ``ValueError`` on the CPU and an asynchronous device assert on CUDA
(not checked under ``torch.compile`` and ``torch.func``). A NaN or ±inf in the input or a float
target gives a NaN loss for its image and a NaN gradient for all of it; finite input gives finite
results on every path. A batch of 0 images gives a ``(0,)`` loss, 0 for ``"sum"``, NaN for ``"mean"``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from losses._overlap import OverlapOptions
from losses._validation import ClassIndices, ClassWeights, TORCH_REDUCTIONS, check_choice
from losses.torch._checks import checked_options
from losses.torch._overlap_core import loss as _loss


def _functional(
    name: str, input: Tensor, target: Tensor, weight: Tensor | None, reduction: str, **options: Any
) -> Tensor:
    reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
    return _loss(input, target, weight, checked_options(OverlapOptions.create, name, **options), reduction)


class _OverlapLoss(nn.Module):
    """A member of the overlap family as an ``nn.Module``: its options, checked once."""

    name = ""

    def __init__(self, reduction: str, **options: Any) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = OverlapOptions.create(self.name, **options)

    def forward(self, input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The loss of ``input`` against ``target``, with the options given to the constructor.

        Args:
            input: predictions ``(B, C, *spatial)`` (``C = 1`` in binary mode), logits
                (``from_logits=True``) or probabilities; float16, bfloat16, float32 or float64
                (low precision is computed in float32).
            target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (binary:
                0 or 1; multiclass: ``[0, C)``; never expanded to one-hot), or per-class targets
                of ``input``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
            weight: an optional weight per position, ``(B, *spatial)`` or ``(B, 1, *spatial)``,
                finite and ``>= 0``, entering every sum (0 leaves the position out).

        Returns:
            The loss: a scalar for ``reduction="mean"`` or ``"sum"``, the loss of each image
            ``(B,)`` for ``"none"`` (``()`` with ``per_image=False``).

        Raises:
            TypeError: ``input`` or ``target`` is not a tensor, or ``input`` is not floating-point.
            ValueError: shapes that do not match (never broadcast), tensors on different devices,
                or, on the CPU, a label, target, probability or weight out of its range.
        """
        return _loss(input, target, weight, self.options, self.reduction)

    def extra_repr(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.options.changed().items()]
        if self.reduction != "mean":
            changed.append(f"reduction={self.reduction!r}")
        return ", ".join(changed)


# ------------------------------------------------------------------------------------------------
# Dice
# ------------------------------------------------------------------------------------------------


def dice_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
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
    r"""Dice loss: per class ``1 − (2·TP + smooth_nr) / (2·TP + FP + FN + smooth_dr)``, averaged over classes.

    With p the predicted probability and g the target, summed over the positions of each image,
    TP = Σp·g, FP = Σp − TP, FN = Σg − TP, so the loss is ``1 − (2·Σp·g + s_nr) / (Σp + Σg + s_dr)``.
    The functional form of :class:`losses.torch.DiceLoss`.

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
            and ``>= 0``, entering every sum (0 leaves the position out).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
            floating-point, or an option has the wrong type or is not taken by this loss.
        ValueError: shapes that do not match (never broadcast), tensors on different devices, an
            option out of its range (the message names it), or, on the CPU, a label, target,
            probability or weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import dice_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])   # (B=1, C=1, 2, 2)
    >>> mask = torch.tensor([[[1, 0], [0, 1]]])                    # label map (1, 2, 2)
    >>> round(dice_loss(logits, mask, mode="binary").item(), 4)
    0.018
    """
    return _functional(
        "dice",
        input,
        target,
        weight,
        reduction,
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


class _RatioLoss(_OverlapLoss):
    """The options of Dice and Jaccard, which are the same."""

    def __init__(
        self,
        mode: str = "multiclass",
        *,
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
        super().__init__(
            reduction,
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


class DiceLoss(_RatioLoss):
    """Dice loss as an ``nn.Module``: per class ``1 − (2·TP + smooth_nr) / (2·TP + FP + FN + smooth_dr)``.

    With p the predicted probability and g the target, summed over the positions of each image,
    TP = Σp·g, FP = Σp − TP, FN = Σg − TP, so the loss is ``1 − (2·Σp·g + s_nr) / (Σp + Σg + s_dr)``,
    averaged over the classes. ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg²``, Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
        TypeError: an option of the wrong type, or one this loss does not take.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import DiceLoss
    >>> criterion = DiceLoss(mode="multiclass", ignore_index=255)
    >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    >>> loss = criterion(logits, torch.randint(0, 3, (2, 8, 8)))
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([2, 3, 8, 8])
    """

    name = "dice"


# ------------------------------------------------------------------------------------------------
# Jaccard
# ------------------------------------------------------------------------------------------------


def jaccard_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
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
    r"""Jaccard (IoU) loss: per class ``1 − (TP + smooth_nr) / (TP + FP + FN + smooth_dr)``, averaged over classes.

    With TP = Σp·g this is ``1 − (Σp·g + s_nr) / (Σp + Σg − Σp·g + s_dr)``. MONAI's
    ``DiceLoss(jaccard=True, smooth_nr=s, smooth_dr=s)`` equals this loss with
    ``smooth_nr = smooth_dr = s/2``. The functional form of :class:`losses.torch.JaccardLoss`.

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
            and ``>= 0`` (0 leaves the position out).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg² − Σp·g``).
        log_loss: ``−log(J)`` instead of ``1 − J`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
            floating-point, or an option has the wrong type or is not taken by this loss.
        ValueError: shapes that do not match (never broadcast), tensors on different devices, an
            option out of its range (the message names it), or, on the CPU, a label, target,
            probability or weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import jaccard_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])
    >>> round(jaccard_loss(logits, torch.tensor([[[1, 0], [0, 1]]]), mode="binary").item(), 4)
    0.0353
    """
    return _functional(
        "jaccard",
        input,
        target,
        weight,
        reduction,
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


class JaccardLoss(_RatioLoss):
    """Jaccard (IoU) loss as an ``nn.Module``: per class ``1 − (TP + smooth_nr) / (TP + FP + FN + smooth_dr)``.

    TP, FP and FN as for :class:`DiceLoss`, averaged over the classes.
    ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg² − Σp·g``).
        log_loss: ``−log(J)`` instead of ``1 − J`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
        TypeError: an option of the wrong type, or one this loss does not take.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import JaccardLoss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])      # (B=1, C=1, 2, 2)
    >>> round(JaccardLoss(mode="binary")(logits, torch.tensor([[[1, 0], [0, 1]]])).item(), 4)
    0.0353
    """

    name = "jaccard"


# ------------------------------------------------------------------------------------------------
# Tversky
# ------------------------------------------------------------------------------------------------


def tversky_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
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
    r"""Tversky loss (Salehi et al., 2017): per class ``1 − (TP + s_nr) / (TP + α·FP + β·FN + s_dr)``.

    With TP = Σp·g, FP = Σp − TP, FN = Σg − TP: ``alpha`` weighs false positives and ``beta`` false
    negatives, as in MONAI, segmentation-models-pytorch and kornia (``keras.losses.Tversky``'s
    ``alpha`` weighs the false negatives: its ``Tversky(alpha=a, beta=b)`` is this loss with
    ``alpha=b, beta=a``). ``alpha = beta = 1/2`` is the Dice loss with doubled smoothing,
    ``alpha = beta = 1`` the Jaccard loss. The functional form of :class:`losses.torch.TverskyLoss`.

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
            and ``>= 0`` (0 leaves the position out).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        log_loss: ``−log(T)`` instead of ``1 − T`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
            floating-point, or an option has the wrong type or is not taken by this loss.
        ValueError: shapes that do not match (never broadcast), tensors on different devices, an
            option out of its range (the message names it), or, on the CPU, a label, target,
            probability or weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import tversky_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])
    >>> round(tversky_loss(logits, torch.tensor([[[1, 0], [0, 1]]]), mode="binary", alpha=0.3, beta=0.7).item(), 4)
    0.018
    """
    return _functional(
        "tversky",
        input,
        target,
        weight,
        reduction,
        mode=mode,
        alpha=alpha,
        beta=beta,
        from_logits=from_logits,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
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


class TverskyLoss(_OverlapLoss):
    """Tversky loss as an ``nn.Module``: per class ``1 − (TP + smooth_nr) / (TP + α·FP + β·FN + smooth_dr)``.

    TP, FP and FN as for :class:`DiceLoss`, averaged over the classes (Salehi et al., 2017).
    ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        log_loss: ``−log(T)`` instead of ``1 − T`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
        TypeError: an option of the wrong type, or one this loss does not take.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import TverskyLoss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])      # (B=1, C=1, 2, 2)
    >>> round(TverskyLoss(mode="binary", alpha=0.3, beta=0.7)(logits, torch.tensor([[[1, 0], [0, 1]]])).item(), 4)
    0.018
    """

    name = "tversky"

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        from_logits: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
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
        super().__init__(
            reduction,
            mode=mode,
            alpha=alpha,
            beta=beta,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
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


# ------------------------------------------------------------------------------------------------
# Focal Tversky
# ------------------------------------------------------------------------------------------------


def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
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
    r"""Focal Tversky loss (Abraham & Khan, 2019): per class ``(1 − T)^γ`` before the class average.

    ``T = (TP + s_nr) / (TP + α·FP + β·FN + s_dr)`` is the Tversky index of :func:`tversky_loss`;
    ``1 − T`` is clamped at 0 before the power (the gradient at 0 is 0). The defaults are the
    paper's recommendation in this package's convention: its α = 0.7 weighs the false negatives
    (our ``beta=0.7``, ``alpha=0.3``) and its exponent 1/γ with γ = 4/3 is our ``gamma=0.75``.
    ``gamma > 0``; below 1 the loss is steeper near a perfect score. segmentation-models-pytorch's
    ``TverskyLoss(gamma=g)`` applies the power after the class average instead. The functional
    form of :class:`losses.torch.FocalTverskyLoss`.

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
            and ``>= 0`` (0 leaves the position out).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        gamma: the exponent (``> 0``).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
            floating-point, or an option has the wrong type or is not taken by this loss.
        ValueError: shapes that do not match (never broadcast), tensors on different devices, an
            option out of its range (the message names it), or, on the CPU, a label, target,
            probability or weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import focal_tversky_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])
    >>> round(focal_tversky_loss(logits, torch.tensor([[[1, 0], [0, 1]]]), mode="binary").item(), 4)
    0.0491
    """
    return _functional(
        "focal_tversky",
        input,
        target,
        weight,
        reduction,
        mode=mode,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        from_logits=from_logits,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        soft_labels=soft_labels,
        per_image=per_image,
        classes=classes,
        class_weights=class_weights,
        ignore_index=ignore_index,
        empty_target=empty_target,
        average=average,
        sync_across_ranks=sync_across_ranks,
    )


class FocalTverskyLoss(_OverlapLoss):
    """Focal Tversky loss as an ``nn.Module``: per class ``max(1 − T, 0)^γ``, T the Tversky index.

    ``T = (TP + smooth_nr) / (TP + α·FP + β·FN + smooth_dr)`` as for :class:`TverskyLoss`; the power
    is taken per class, before the class average (Abraham & Khan, 2019, whose γ = 4/3 is this 1/γ).
    ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        gamma: the exponent (``> 0``).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
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
        TypeError: an option of the wrong type, or one this loss does not take.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import FocalTverskyLoss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])      # (B=1, C=1, 2, 2)
    >>> round(FocalTverskyLoss(mode="binary")(logits, torch.tensor([[[1, 0], [0, 1]]])).item(), 4)
    0.0491
    """

    name = "focal_tversky"

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        from_logits: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
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
        super().__init__(
            reduction,
            mode=mode,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            soft_labels=soft_labels,
            per_image=per_image,
            classes=classes,
            class_weights=class_weights,
            ignore_index=ignore_index,
            empty_target=empty_target,
            average=average,
            sync_across_ranks=sync_across_ranks,
        )


# ------------------------------------------------------------------------------------------------
# Generalized Dice
# ------------------------------------------------------------------------------------------------


def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    weight: Tensor | None = None,
    weight_type: str = "square",
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    soft_labels: bool = False,
    per_image: bool = True,
    classes: ClassIndices | None = None,
    class_weights: ClassWeights | None = None,
    ignore_index: int | None = None,
    sync_across_ranks: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Generalized Dice loss (Sudre et al., 2017): ``1 − (2·Σ_c w_c·TP_c + s_nr) / (Σ_c w_c·(Σp + Σg)_c + s_dr)``.

    One ratio of class-weighted sums per image (per batch with ``per_image=False``), with
    ``w_c = class_weights_c / G_c²`` (``weight_type="square"``), ``/ G_c`` (``"simple"``) or ``· 1``
    (``"uniform"``), ``G_c = Σg`` of class c. A class absent from the target would get an infinite
    weight: it gets the largest weight of the present classes instead, and an image with no class
    present only its smoothing (loss ``1 − s_nr/s_dr``), as in MONAI's ``GeneralizedDiceLoss``. The
    weights come from the target and are constants for the gradient. The functional form of
    :class:`losses.torch.GeneralizedDiceLoss`.

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
            and ``>= 0`` (0 leaves the position out).
        weight_type: ``"square"`` (``w_c = 1/G_c²``), ``"simple"`` (``1/G_c``) or ``"uniform"`` (1).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
        class_weights: one weight per channel, relative (divided by the largest), multiplying ``w_c``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Returns:
        The loss: a scalar for ``reduction="mean"`` or ``"sum"``, the loss of each image ``(B,)``
        for ``"none"`` (``()`` with ``per_image=False``).

    Raises:
        TypeError: ``input``, ``target`` or ``weight`` is not a tensor, ``input`` is not
            floating-point, or an option has the wrong type or is not taken by this loss.
        ValueError: shapes that do not match (never broadcast), tensors on different devices, an
            option out of its range (the message names it), or, on the CPU, a label, target,
            probability or weight out of its range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import generalized_dice_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]], [[[-4.0, 4.0], [4.0, -4.0]]]]).transpose(0, 1)
    >>> round(generalized_dice_loss(logits, torch.tensor([[[0, 1], [1, 0]]])).item(), 4)
    0.0003
    """
    return _functional(
        "generalized_dice",
        input,
        target,
        weight,
        reduction,
        mode=mode,
        weight_type=weight_type,
        from_logits=from_logits,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        soft_labels=soft_labels,
        per_image=per_image,
        classes=classes,
        class_weights=class_weights,
        ignore_index=ignore_index,
        sync_across_ranks=sync_across_ranks,
    )


class GeneralizedDiceLoss(_OverlapLoss):
    """Generalized Dice loss as an ``nn.Module``: ``1 − (2·Σ_c w_c·TP_c + s_nr) / (Σ_c w_c·(Σp + Σg)_c + s_dr)``.

    One ratio per image pooled over the classes (Sudre et al., 2017), with class weights from the
    target's class sums G_c. ``forward(input, target, weight=None)`` computes it.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the input's shape).
        weight_type: ``"square"`` (``w_c = 1/G_c²``), ``"simple"`` (``1/G_c``) or ``"uniform"`` (1).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: the input
            is probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss (e.g. ``[1, 2]`` without the
            background); None: every class.
        class_weights: one weight per channel, relative (divided by the largest), multiplying ``w_c``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        sync_across_ranks: under DistributedDataParallel, the loss and gradient of the global batch.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (one loss per image).

    Raises:
        TypeError: an option of the wrong type, or one this loss does not take.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import GeneralizedDiceLoss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]], [[[-4.0, 4.0], [4.0, -4.0]]]]).transpose(0, 1)
    >>> round(GeneralizedDiceLoss(weight_type="simple")(logits, torch.tensor([[[0, 1], [1, 0]]])).item(), 4)
    0.0003
    """

    name = "generalized_dice"

    def __init__(
        self,
        mode: str = "multiclass",
        *,
        weight_type: str = "square",
        from_logits: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        soft_labels: bool = False,
        per_image: bool = True,
        classes: ClassIndices | None = None,
        class_weights: ClassWeights | None = None,
        ignore_index: int | None = None,
        sync_across_ranks: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            reduction,
            mode=mode,
            weight_type=weight_type,
            from_logits=from_logits,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            soft_labels=soft_labels,
            per_image=per_image,
            classes=classes,
            class_weights=class_weights,
            ignore_index=ignore_index,
            sync_across_ranks=sync_across_ranks,
        )


__all__ = [
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "tversky_loss",
]
