r"""The Lovász losses for PyTorch (channels first): ``LovaszSoftmaxLoss`` and ``LovaszHingeLoss``.

The definitions, the closed form of the extension's weights, the handling of ignored positions and
of ties are in :mod:`losses._lovasz`. The inputs are checked as the overlap losses check theirs
(:mod:`losses.torch._checks`); the loss is then a sort per row and class and a weighted sum,
differentiated by autograd (the weights are constants).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from losses._lovasz import LovaszOptions, class_average, extension_weights
from losses._validation import TORCH_REDUCTIONS, check_choice, shape_text
from losses.torch._checks import check_inputs, check_values, matches, transformed
from losses.torch._kernels import kernels_choice
from losses.torch._ops import constant, reduce, upcast


def _count_dtype(x: Tensor) -> torch.dtype:
    return torch.int32 if x.shape[-1] < 2**31 else torch.int64


class _LovaszOps:
    """The tensor namespace of :func:`losses._lovasz.extension_weights` for PyTorch tensors."""

    where = staticmethod(torch.where)

    @staticmethod
    def cumsum(x: Tensor) -> Tensor:
        return torch.cumsum(x, -1, dtype=_count_dtype(x))

    @staticmethod
    def count(x: Tensor) -> Tensor:
        return x.sum(-1, keepdim=True, dtype=_count_dtype(x))

    @staticmethod
    def sum(x: Tensor) -> Tensor:
        return x.sum(-1)

    @staticmethod
    def cast(x: Tensor, dtype: torch.dtype) -> Tensor:
        return x.to(dtype)

    @staticmethod
    def maximum(x: Tensor, value: float) -> Tensor:
        return x.clamp_min(value)


def _sorts_on_host(errors: Tensor) -> bool:
    """Whether :func:`_descending_order` sorts with NumPy (float32 CPU tensors, eagerly)."""
    return (
        errors.device.type == "cpu"
        and errors.dtype == torch.float32
        and errors.shape[-1] < 2**32
        and kernels_choice() != "torch"
        and not torch.compiler.is_compiling()
        and not transformed(errors)
    )


def _descending_order(errors: Tensor) -> Tensor:
    """The indices that sort ``errors`` ``>= 0`` by decreasing value along the last axis, stably
    (among equal errors the earlier position first).

    On the CPU, NumPy's (vectorised) sort of 64-bit integers is several times faster than
    ``torch.sort`` of values with their indices: each key holds the error's bits (non-negative
    floats order as their bit patterns; the sign bit is dropped, so that −0.0 ties with 0.0),
    inverted for a decreasing order, above the position, which makes every key distinct and the
    order the stable one. NaN sorts first, as in ``torch.sort``.
    """
    if not _sorts_on_host(errors):
        return torch.sort(errors.detach(), dim=-1, descending=True, stable=True).indices
    bits = errors.detach().contiguous().view(torch.int32).numpy()
    keys = (np.int32(0x7FFFFFFF) - (bits & np.int32(0x7FFFFFFF))).astype(np.int64)
    keys <<= 32
    keys |= np.arange(errors.shape[-1], dtype=np.int64)
    keys.sort(axis=-1)
    keys &= np.int64(0xFFFFFFFF)
    return torch.from_numpy(keys)


def _labels(input: Tensor, target: Tensor, options: LovaszOptions) -> tuple[Tensor, Tensor | None]:
    """The label map ``(B, N)`` and where it is valid (None when nothing is ignored), checked."""
    label_map = check_inputs(input, target, None, options)
    if not label_map and options.loss == "lovasz_softmax":
        batch, _, *spatial = input.shape
        raise ValueError(
            f"target has shape {shape_text(target.shape)}; LovaszSoftmaxLoss takes a label map of "
            f"shape {shape_text((batch, *spatial))} or {shape_text((batch, 1, *spatial))} (class "
            "indices: the Lovász extension needs hard labels; turn one-hot targets into labels with "
            "argmax over the channels)"
        )
    # The hinge's (B, 1, *spatial) target is the input's shape: a label map of 0 and 1 all the same.
    check_values(input, target, None, options, label_map=True)
    labels = target.reshape(input.shape[0], math.prod(input.shape[2:]))
    ignored = matches(labels, options.ignore_index)
    return labels, None if ignored is None else ~ignored


def _rows(x: Tensor, per_image: bool) -> Tensor:
    """``(B, K, N)`` as the rows of the loss: ``(B, K, N)``, or ``(1, K, B·N)`` for the whole batch."""
    return x if per_image else x.transpose(0, 1).reshape(1, x.shape[1], x.shape[0] * x.shape[2])


def _lovasz(input: Tensor, target: Tensor, options: LovaszOptions, reduction: str) -> Tensor:
    labels, valid = _labels(input, target, options)
    batch, num_classes = input.shape[:2]
    x = upcast(input).reshape(batch, num_classes, labels.shape[1])
    dtype = x.dtype
    if options.loss == "lovasz_softmax":
        p = torch.softmax(x, 1) if options.from_logits else x
        foreground = labels[:, None, :] == torch.arange(num_classes, device=x.device)[None, :, None]
        if valid is not None:
            foreground &= valid[:, None, :]
        errors = (p - foreground.to(dtype)).abs()
    else:
        foreground = (labels == 1)[:, None, :]
        if valid is not None:
            foreground &= valid[:, None, :]
        errors = torch.relu(1.0 - x * (2.0 * foreground.to(dtype) - 1.0))
    background = ~foreground if valid is None else valid[:, None, :] & ~foreground
    errors, foreground, background = (_rows(t, options.per_image) for t in (errors, foreground, background))

    order = _descending_order(errors)
    errors_sorted = errors.gather(-1, order)
    weights = extension_weights(_LovaszOps, foreground.gather(-1, order), background.gather(-1, order), dtype)
    per_class = (errors_sorted * weights).sum(-1)  # (S, K)
    mask = options.class_mask(per_class.shape[1])
    selected = foreground.any(-1).to(dtype) if mask is None else constant(mask, dtype, x.device).expand_as(per_class)
    loss = class_average(_LovaszOps, per_class, selected)
    # 0 for a finite row, NaN for a row holding a NaN or ±inf. Its square adds 0 or NaN to the loss,
    # and its derivative 2·poison·0 is 0 or NaN at every element of the row.
    poison = (x * 0.0).sum((1, 2))
    poison = poison if options.per_image else poison.sum(0, keepdim=True)
    loss = loss + poison * poison
    return reduce(loss if options.per_image else loss.squeeze(0), reduction)


def _functional(loss: str, input: Tensor, target: Tensor, reduction: str, **options: Any) -> Tensor:
    reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
    return _lovasz(input, target, LovaszOptions.create(loss, **options), reduction)


def lovasz_softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    classes: Any = "present",
    per_image: bool = True,
    ignore_index: int | None = None,
    from_logits: bool = True,
    reduction: str = "mean",
) -> Tensor:
    r"""Lovász-softmax loss (Berman et al., 2018): the Lovász extension of each class's Jaccard loss
    at the errors ``|g − p|`` of the softmax probabilities, averaged over classes.

    Args:
        input: logits ``(B, C, *spatial)``, ``C >= 2`` (probabilities with ``from_logits=False``);
            float16, bfloat16, float32 or float64 (low precision is computed in float32).
        target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices in ``[0, C)``
            (integers, or whole numbers stored as floats).
        classes: ``"present"`` (the classes in the target of each row; an absent class contributes
            nothing), ``"all"`` (every class; an absent one contributes its largest probability) or
            a sequence of class indices (averaged whether present or not).
        per_image: one loss per image; ``False``: one loss for the batch, its positions sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        from_logits: apply the softmax over the channels inside.
        reduction: ``"mean"`` or ``"sum"`` over images, or ``"none"`` (``(B,)``; the batch loss,
            shape ``()``, with ``per_image=False``).

    segmentation-models-pytorch's ``LovaszLoss(mode="multiclass")`` is ``classes="present",
    per_image=False`` (its default); kornia's ``lovasz_softmax_loss`` is ``classes="all",
    per_image=True``. A row whose positions are all ignored has loss 0; a batch of 0 images gives
    a ``(0,)`` loss, 0 for ``"sum"``, NaN for ``"mean"``. See :mod:`losses._lovasz` for ties.

    Returns:
        The loss: a scalar for ``reduction="mean"`` or ``"sum"``, ``(B,)`` for ``"none"`` (``()``
        with ``per_image=False``).

    Raises:
        TypeError: ``input`` or ``target`` is not a tensor, ``input`` is not floating-point, or an
            option has the wrong type.
        ValueError: shapes that do not match (never broadcast), per-class (one-hot) targets instead of a label map,
            an option out of its range
            (the message names it), or, on the CPU, a label out of range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import lovasz_softmax_loss
    >>> logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 0.5]]]])   # (B=1, C=2, 1, 2)
    >>> labels = torch.tensor([[[0, 1]]])                          # (1, 1, 2)
    >>> round(lovasz_softmax_loss(logits, labels).item(), 4)
    0.1666
    """
    return _functional(
        "lovasz_softmax",
        input,
        target,
        reduction,
        classes=classes,
        per_image=per_image,
        ignore_index=ignore_index,
        from_logits=from_logits,
    )


def lovasz_hinge_loss(
    input: Tensor, target: Tensor, *, per_image: bool = True, ignore_index: int | None = None, reduction: str = "mean"
) -> Tensor:
    r"""Lovász hinge loss (Berman et al., 2018): the Lovász extension of the foreground's Jaccard loss
    at the hinge errors ``max(1 − z·(2g − 1), 0)`` of the logits ``z``.

    Args:
        input: logits ``(B, 1, *spatial)``.
        target: a binary label map ``(B, *spatial)`` or ``(B, 1, *spatial)``: 0 or 1 (integers, bool,
            or 0.0 / 1.0), or ``ignore_index``.
        per_image: one loss per image; ``False``: one loss for the batch.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, as :func:`lovasz_softmax_loss`.

    segmentation-models-pytorch's ``LovaszLoss(mode="binary")`` is ``per_image=False`` (its
    default); kornia's ``lovasz_hinge_loss`` is ``per_image=True``. An image without foreground
    has loss ``max(1 + z)`` over its positions, the hinge of its worst background logit.

    Returns:
        The loss: a scalar for ``reduction="mean"`` or ``"sum"``, ``(B,)`` for ``"none"`` (``()``
        with ``per_image=False``).

    Raises:
        TypeError: ``input`` or ``target`` is not a tensor, ``input`` is not floating-point, or an
            option has the wrong type.
        ValueError: shapes that do not match (never broadcast), an option out of its range
            (the message names it), or, on the CPU, a label out of range.

    Example:

    >>> import torch
    >>> from losses.torch.functional import lovasz_hinge_loss
    >>> logits = torch.tensor([[[[2.0, -1.0, 0.5]]]])   # (B=1, 1, 1, 3)
    >>> mask = torch.tensor([[[1, 0, 0]]])               # (1, 1, 3)
    >>> round(lovasz_hinge_loss(logits, mask).item(), 4)
    0.75
    """
    return _functional("lovasz_hinge", input, target, reduction, per_image=per_image, ignore_index=ignore_index)


class _LovaszLoss(nn.Module):
    name = ""

    def __init__(self, reduction: str, **options: Any) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = LovaszOptions.create(self.name, **options)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against the label map ``target``.

        Args:
            input: logits ``(B, C, *spatial)``, ``C >= 2`` (softmax; probabilities with
                ``from_logits=False``), or one logit per position ``(B, 1, *spatial)`` (hinge).
            target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (hinge:
                0 or 1); one-hot targets are a ``ValueError`` (take their argmax).

        Returns:
            The loss: a scalar for ``reduction="mean"`` or ``"sum"``, ``(B,)`` for ``"none"``.

        Raises:
            TypeError: ``input`` or ``target`` is not a tensor, or ``input`` is not floating-point.
            ValueError: shapes that do not match, or, on the CPU, a label out of range.
        """
        return _lovasz(input, target, self.options, self.reduction)

    def extra_repr(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.options.changed().items()]
        if self.reduction != "mean":
            changed.append(f"reduction={self.reduction!r}")
        return ", ".join(changed)


class LovaszSoftmaxLoss(_LovaszLoss):
    """Lovász-softmax loss (Berman et al., 2018) as an ``nn.Module``: the Lovász extension of each
    class's Jaccard loss at the errors ``|g − p_c|``, averaged over the classes.

    Per class, the errors m sorted in decreasing order get the weights ``Δ(M_i) − Δ(M_{i−1})``, the
    growth of the Jaccard loss ``Δ(M) = |M| / |F ∪ M|`` (F the class's positions) as the i largest
    errors join; the loss is ``Σ m_π(i)·(Δ(M_i) − Δ(M_{i−1}))``. ``forward(input, target)``
    computes it.

    Args:
        classes: ``"present"``: the classes in the target of each row (an absent class contributes
            nothing); ``"all"``: every class; or a list of class indices, averaged present or not.
        per_image: one loss per image; False: the positions of the whole batch sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        from_logits: apply the softmax inside; False: the input is probabilities.
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (``(B,)``; ``()`` with
            ``per_image=False``).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import LovaszSoftmaxLoss
    >>> criterion = LovaszSoftmaxLoss(ignore_index=255)
    >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    >>> criterion(logits, torch.randint(0, 3, (2, 8, 8))).backward()
    >>> logits.grad.shape
    torch.Size([2, 3, 8, 8])
    """

    name = "lovasz_softmax"

    def __init__(
        self,
        *,
        classes: Any = "present",
        per_image: bool = True,
        ignore_index: int | None = None,
        from_logits: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            reduction, classes=classes, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits
        )


class LovaszHingeLoss(_LovaszLoss):
    """Lovász hinge loss (Berman et al., 2018) as an ``nn.Module``: the Lovász extension of the
    foreground's Jaccard loss at the hinge errors ``max(1 − z·(2g − 1), 0)``.

    z is one logit per position and g the 0/1 label; the weights are those of
    :class:`LovaszSoftmaxLoss` for the foreground class. ``forward(input, target)`` computes it.

    Args:
        per_image: one loss per image; False: the positions of the whole batch sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        reduction: ``"mean"`` or ``"sum"`` over the images, or ``"none"`` (``(B,)``; ``()`` with
            ``per_image=False``).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import torch
    >>> from losses.torch import LovaszHingeLoss
    >>> logits = torch.tensor([[[[2.0, -2.0], [-2.0, 2.0]]]])      # (B=1, 1, 2, 2)
    >>> LovaszHingeLoss()(logits, torch.tensor([[[1, 0], [0, 1]]])).item()
    0.0
    """

    name = "lovasz_hinge"

    def __init__(self, *, per_image: bool = True, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction, per_image=per_image, ignore_index=ignore_index)


__all__ = ["LovaszHingeLoss", "LovaszSoftmaxLoss", "lovasz_hinge_loss", "lovasz_softmax_loss"]
