"""Dice loss for PyTorch (channels first)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from losses._dice import (
    ABS_DIFF,
    INTERSECTION,
    NUM_STATS,
    PRED_SQUARES,
    PRED_SUM,
    TARGET_SQUARES,
    TARGET_SUM,
    VALID_COUNT,
    DiceOptions,
    dice_and_gradient_from_stats,
    dice_from_stats,
)
from losses._validation import TORCH_REDUCTIONS, check_choice, floating_dtype_error, shape_text
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch._kernels import use_triton
from losses.torch._kernels.dice import dice_kernel_supports, dice_stats_triton
from losses.torch._kernels.dice_finalize import dice_loss_triton, finalize_supports


class _TorchOps:
    where = staticmethod(torch.where)
    log = staticmethod(torch.log)
    zeros_like = staticmethod(torch.zeros_like)

    @staticmethod
    def maximum(x: Tensor, value: float) -> Tensor:
        return x.clamp_min(value)

    @staticmethod
    def sum(x: Tensor, axis: int) -> Tensor:
        return x.sum(axis)


@functools.lru_cache(maxsize=64)
def _cached_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Eagerly, cached: a small host list copied to the GPU at every step would synchronise.
    # Under torch.compile the tensor becomes a constant of the graph.
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=dtype, device=device)
    return _cached_constant(values, dtype, device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_label_map(input: Tensor, target: Tensor, mode: str) -> bool:
    """Whether ``target`` holds class indices rather than per-class probabilities."""
    batch, _, *spatial = input.shape
    if tuple(target.shape) == tuple(input.shape):
        return False
    if mode != "multilabel" and tuple(target.shape) in ((batch, *spatial), (batch, 1, *spatial)):
        return True
    if mode == "multilabel":
        expected = f"{shape_text(input.shape)} (the input's shape)"
    else:
        expected = (f"{shape_text(input.shape)} (probabilities) or a label map of shape "
                    f"{shape_text((batch, *spatial))} or {shape_text((batch, 1, *spatial))}")
    raise ValueError(f"target has shape {shape_text(target.shape)} but input has shape {shape_text(input.shape)}; "
                     f"expected target of shape {expected}. Shapes are never broadcast.")


def _check_inputs(input: Tensor, target: Tensor, options: DiceOptions) -> bool:
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor; got {type(input).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if not input.is_floating_point():
        raise floating_dtype_error("input", input.dtype)
    if input.dim() < 3:
        raise ValueError(f"input must have shape (B, C, *spatial) with at least one spatial dimension; "
                         f"got shape {shape_text(input.shape)}")
    if target.is_complex():
        raise TypeError(f"target must be a real tensor; got {target.dtype}")
    if input.device != target.device:
        raise ValueError(f"input and target must be on the same device; got input on {input.device} and target "
                         f"on {target.device}")
    options.check_num_classes(input.shape[1])
    return _is_label_map(input, target, options.mode)


def _matches(x: Tensor, value: int | None) -> Tensor | None:
    """``x == value`` where ``value`` is ignore_index; None when nothing can match."""
    if value is None:
        return None
    if not x.is_floating_point() and x.dtype != torch.bool:
        info = torch.iinfo(x.dtype)
        if not info.min <= value <= info.max:
            return None
    return x == value


def _check_values(input: Tensor, target: Tensor, options: DiceOptions, label_map: bool) -> None:
    """Every value in its range, or a clear error. NaN is no error: it propagates to the loss.

    Label maps: integers (also when stored as floats) in [0, C) (binary: {0, 1}) or ignore_index.
    Per-class targets: in [0, 1] or ignore_index (so a 0/255 mask is caught in every shape).
    Probabilities (``from_logits=False``): in [0, 1]. Checked eagerly on the CPU (a ``ValueError``
    naming the values found), as an asynchronous device assert on CUDA (no host synchronisation),
    and not under ``torch.compile`` nor ``torch.func`` transforms (no data-dependent branch there).
    """
    if torch.compiler.is_compiling() or _transformed(input) or _is_functorch_wrapped(target):
        return
    num_classes = input.shape[1]
    if label_map:
        upper = 2 if options.mode == "binary" else num_classes
        allowed = "0 or 1" if options.mode == "binary" else f"in [0, {num_classes})"
        if target.is_floating_point():
            allowed = "whole numbers " + allowed
        _check_range("target labels", target, 0, upper - 1, allowed, options.ignore_index, integral=True)
    elif target.dtype != torch.bool:
        _check_range("target", target, 0, 1, "in [0, 1] (per-class probabilities or one-hot)", options.ignore_index)
    if not options.from_logits:
        _check_range("input", input, 0, 1, "probabilities in [0, 1] with from_logits=False (pass logits with "
                     "from_logits=True)", None)


def _check_range(name: str, x: Tensor, low: float, high: float, allowed: str, ignore_index: int | None,
                 integral: bool = False) -> None:
    if x.numel() == 0 or x.dtype == torch.bool:
        return
    ignored = _matches(x, ignore_index)
    checked = x if ignored is None else torch.where(ignored, low, x)
    fraction = None
    if checked.is_floating_point():
        if integral:
            fraction = checked != torch.floor(checked)  # True for NaN and ±inf: a label must be a number
        else:  # NaN and ±inf are no range error: they propagate to the loss
            checked = torch.where(torch.isfinite(checked), checked, low)
    # One pass (aminmax) over the values; the details of a failure only when there is one.
    smallest, largest = torch.aminmax(checked)
    ok = (smallest >= low) & (largest <= high)
    if fraction is not None:
        ok = ok & ~fraction.any()
    if x.device.type != "cpu":
        torch._assert_async(ok, f"{name} out of range")
        return
    if bool(ok):
        return
    bad = (checked < low) | (checked > high)
    if fraction is not None:
        bad |= fraction
    values = torch.unique(checked[bad])[:8].tolist()
    extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    raise ValueError(f"{name} must be {allowed}{extra}; found {values}")


def _sums(x: Tensor, valid: Tensor | None) -> Tensor:
    """Σ over the last axis of x, counting only valid positions; x is (B, C, N), valid (B, 1, N) or None."""
    return (x if valid is None else x * valid).sum(-1)


def _dice_stats_torch(input: Tensor, target: Tensor, options: DiceOptions, label_map: bool) -> Tensor:
    """The per-class sums (S, C, 7) of :mod:`losses._dice`, differentiable through ``input``.

    Every sum of an image that holds a NaN or an infinity (in the input, or in a float target) is
    NaN, so that its loss and the gradient of all its elements are NaN, as on the fused paths.
    """
    _check_values(input, target, options, label_map)
    dtype = _compute_dtype(input.dtype)
    batch, num_classes = input.shape[:2]
    positions = math.prod(input.shape[2:])  # not -1: a batch of 0 images has no size to infer it from
    logits = _upcast(input).reshape(batch, num_classes, positions)
    if options.from_logits:
        probs = torch.softmax(logits, 1) if options.mode == "multiclass" else torch.sigmoid(logits)
    else:
        probs = logits
    needed = options.needed_stats()
    zeros = probs.new_zeros(batch, num_classes)
    columns = [zeros] * NUM_STATS
    ignore = options.ignore_index

    if label_map and options.mode == "multiclass":
        labels = target.reshape(batch, positions).long()
        ignored = _matches(labels, ignore)
        if ignored is None:
            valid = None
            safe_labels = labels
        else:
            is_valid = ~ignored
            safe_labels = torch.where(is_valid, labels, 0)
            valid = is_valid.to(dtype)
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
        if PRED_SUM in needed:
            columns[PRED_SUM] = _sums(probs, valid3)
        if PRED_SQUARES in needed:
            columns[PRED_SQUARES] = _sums(probs * probs, valid3)
        if ABS_DIFF in needed:
            # For one-hot g: Σ|p − g| = Σp + Σg − 2·Σp·g.
            pred_sum = columns[PRED_SUM] if PRED_SUM in needed else _sums(probs, valid3)
            columns[ABS_DIFF] = pred_sum + counts - 2 * intersection
        if VALID_COUNT in needed:
            count = torch.full_like(zeros, labels.shape[1]) if valid is None else valid.sum(-1, keepdim=True).expand_as(zeros)
            columns[VALID_COUNT] = count
    else:
        if label_map:  # binary label map: the target probability of the single class is the label
            labels = target.reshape(batch, 1, positions)
        else:
            labels = target.reshape(batch, num_classes, positions)
        truth = labels.to(dtype)
        valid = None
        ignored = _matches(labels, ignore)
        if ignored is not None:
            is_valid = ~ignored
            valid = is_valid.to(dtype)
            truth = torch.where(is_valid, truth, 0.0)
        if INTERSECTION in needed:
            columns[INTERSECTION] = _sums(probs * truth, valid)
        if PRED_SUM in needed:
            columns[PRED_SUM] = _sums(probs, valid)
        columns[TARGET_SUM] = truth.sum(-1).expand(batch, num_classes)
        if PRED_SQUARES in needed:
            columns[PRED_SQUARES] = _sums(probs * probs, valid)
        if TARGET_SQUARES in needed:
            columns[TARGET_SQUARES] = (truth * truth).sum(-1).expand(batch, num_classes)
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


def _dice_stats(input: Tensor, target: Tensor, options: DiceOptions, label_map: bool) -> Tensor:
    """The per-class sums, from the fused Triton kernels where they apply, else from PyTorch ops."""
    if _triton_stats(input, target, options):
        if input.device.type == "cpu":  # on CUDA the stats kernels assert themselves
            _check_values(input, target, options, label_map)
        return dice_stats_triton(input, target, mode=options.mode, from_logits=options.from_logits,
                                 ignore_index=options.ignore_index, per_image=options.per_image)
    return _dice_stats_torch(input, target, options, label_map)


def _triton_stats(input: Tensor, target: Tensor, options: DiceOptions) -> bool:
    return use_triton(input, target) and dice_kernel_supports(
        input, target, options.mode, options.from_logits, options.ignore_index, options.per_image)


def _distributed() -> bool:
    # Both calls are constant-folded by torch.compile, so the check costs nothing there.
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce_sum(x: Tensor) -> Tensor:
    """Σ of ``x`` over the ranks of the default process group; its backward is Σ over the ranks too."""
    from torch.distributed import _functional_collectives as collectives

    if hasattr(collectives, "all_reduce_backward"):
        # The functional collective is differentiable (sum) and traceable by torch.compile.
        return collectives.all_reduce(x, "sum", torch.distributed.group.WORLD)
    from torch.distributed.nn.functional import all_reduce  # older PyTorch: autograd-aware, eager only

    return all_reduce(x)


def _reduce_across_ranks(per_image: Tensor, reduction: str) -> Tensor:
    """The mean or sum of the per-image losses of the global batch, on every rank.

    Rank r's value depends on its own images through the local sum; the backward of the
    all-reduce hands each rank W times the single-process gradient, which DDP's averaging over the
    W ranks turns back into it, whatever the batch size of each rank.
    """
    count = torch.ones_like(per_image).sum()
    totals = _all_reduce_sum(torch.stack([per_image.sum(), count]))
    return totals[0] / totals[1] if reduction == "mean" else totals[0]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _dice_loss(input: Tensor, target: Tensor, options: DiceOptions, reduction: str) -> Tensor:
    label_map = _check_inputs(input, target, options)
    num_classes = input.shape[1]
    options.selected_weights(num_classes)  # raises when no selected class has a weight
    sync = options.sync_across_ranks and _distributed()
    rows = input.shape[0] if options.per_image else 1
    if not sync and _triton_stats(input, target, options) and finalize_supports(rows, num_classes):
        # Stats, formula and reduction in two launches, the backward in one (host time is the
        # cost at training sizes). On CUDA the stats kernels check the label range themselves
        # (a device assert, without a pass of its own); the CPU keeps the ValueError with details.
        if input.device.type == "cpu":
            _check_values(input, target, options, label_map)
        full = _constant(options.full_weights(num_classes), torch.float32, input.device)
        return dice_loss_triton(input, target, full, options, reduction)
    if not sync and _fused_cpu(input, target, options, label_map):
        return _FusedCpuDice.apply(input, target, options, reduction, label_map)
    return _composed_loss(input, target, options, reduction, label_map, sync)


def _composed_loss(input: Tensor, target: Tensor, options: DiceOptions, reduction: str, label_map: bool,
                   sync: bool) -> Tensor:
    """The loss from PyTorch ops (or the Triton stats), differentiated by autograd."""
    weights = options.selected_weights(input.shape[1])
    stats = _dice_stats(input, target, options, label_map)
    if sync and not options.per_image:
        stats = _all_reduce_sum(stats)
    # A row with a NaN sum in any class (also one left out by `classes`) has a NaN loss.
    stats = stats + 0 * stats.sum((1, 2), keepdim=True)
    if options.classes is not None:
        stats = stats.index_select(1, _constant(options.classes, torch.long, stats.device))
    per_image = dice_from_stats(_TorchOps, stats, options, _constant(weights, stats.dtype, stats.device))
    if not options.per_image:
        per_image = per_image.squeeze(0)
    elif sync and reduction != "none":
        return _reduce_across_ranks(per_image, reduction)
    return _reduce(per_image, reduction)


def _fused_cpu(input: Tensor, target: Tensor, options: DiceOptions, label_map: bool) -> bool:
    # The fused pass reads raw memory: not for a target that needs a gradient (a soft target in
    # distillation), nor under torch.func transforms or forward-mode AD, which the portable path serves.
    return (not torch.compiler.is_compiling() and not target.requires_grad and not _transformed(input)
            and cpu_kernels.supports(input, target, options.mode, label_map) and cpu_kernels.available())


def _transformed(input: Tensor) -> bool:
    """Whether ``input`` is seen through a torch.func transform (grad, vmap, jvp) or is a dual tensor."""
    return _is_functorch_wrapped(input) or _forward_ad._current_level >= 0


_is_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
_forward_ad = torch.autograd.forward_ad


class _FusedCpuDice(torch.autograd.Function):
    """The whole loss on the CPU: one fused pass for the sums, the formula and its derivative on
    the (S, C, 7) sums in NumPy, and one fused pass for the gradient (``_kernels/cpu_dice.c``)."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor, options: DiceOptions, reduction: str,
                label_map: bool) -> Tensor:
        prepared = cpu_kernels.Prepared(input, target, options.mode, options.from_logits, options.ignore_index,
                                        label_map)
        basic = options.needed_stats() <= _BASIC_STATS
        partials = prepared.stats(basic)  # NumPy float64 (B, C, NUM_PARTIALS)
        if partials[..., cpu_kernels.OUT_OF_RANGE].any():
            _check_values(input, target, options, label_map)  # raises, with details
            raise RuntimeError("the fused CPU Dice pass counted values out of range that the check did not find")
        stats = partials[..., :NUM_STATS]
        # An image with a NaN or an infinity: NaN sums, as on the portable path (see _dice_stats_torch).
        stats[partials[..., cpu_kernels.NON_FINITE].sum(1) > 0] = np.nan
        one_hot_labels = label_map and options.mode == "multiclass"
        if one_hot_labels:  # as on the portable path: for one-hot g, Σ|p − g| = Σp + Σg − 2·Σp·g
            stats[..., ABS_DIFF] = stats[..., PRED_SUM] + stats[..., TARGET_SUM] - 2 * stats[..., INTERSECTION]
        if not options.per_image:
            stats = stats.sum(0, keepdims=True)
        rows, grad_stats = dice_and_gradient_from_stats(stats, _full_weights(options, input.shape[1]), options)
        # The images whose gradient is NaN: those of a NaN row (every image when the row is the batch).
        not_finite = ~np.isfinite(rows)
        ctx.nan_images = not_finite if options.per_image else np.repeat(not_finite, input.shape[0])
        ctx.prepared, ctx.grad_stats, ctx.one_hot_labels = prepared, grad_stats, one_hot_labels
        ctx.options, ctx.reduction, ctx.label_map, ctx.input_dtype = options, reduction, label_map, input.dtype
        ctx.save_for_backward(input, target)
        if reduction == "none":
            return torch.from_numpy(np.asarray(rows if options.per_image else rows[0], dtype=np.float32))
        return torch.full((), float(rows.mean() if reduction == "mean" else rows.sum()), dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        input, target = ctx.saved_tensors  # checks that neither was modified in place since
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        if torch.is_grad_enabled() or ctx.prepared is None:
            # create_graph=True (a second derivative), or a second backward through the same graph
            # (retain_graph=True) after the first used up the probabilities: the composed loss.
            with torch.enable_grad():
                loss = _composed_loss(input, target, ctx.options, ctx.reduction, ctx.label_map, sync=False)
                (grad,) = torch.autograd.grad(loss, input, grad_output, create_graph=True)
            return grad, None, None, None, None
        grad_stats = ctx.grad_stats
        upstream = grad_output.detach().double().numpy()
        if ctx.reduction == "mean":
            upstream = upstream / grad_stats.shape[0]
        scale = np.broadcast_to(upstream, grad_stats.shape[:1])[:, None, None]
        coefficients = grad_stats[..., [INTERSECTION, PRED_SUM, PRED_SQUARES, ABS_DIFF]] * scale
        if ctx.one_hot_labels:  # the Σ|p − g| of one-hot labels is Σp + Σg − 2·Σp·g
            coefficients[..., 1] += coefficients[..., 3]
            coefficients[..., 0] -= 2 * coefficients[..., 3]
            coefficients[..., 3] = 0.0
        prepared, ctx.prepared = ctx.prepared, None
        grad = prepared.gradient(np.broadcast_to(coefficients, (prepared.batch, *coefficients.shape[1:])))
        if ctx.nan_images.any():
            grad[torch.from_numpy(ctx.nan_images)] = float("nan")
        return _cast_gradient(grad.view(input.shape), ctx.input_dtype), None, None, None, None


_BASIC_STATS = frozenset({INTERSECTION, PRED_SUM, TARGET_SUM, VALID_COUNT})


def _cast_gradient(grad: Tensor, dtype: torch.dtype) -> Tensor:
    """``grad`` (float32) in ``dtype``, saturating at float16's largest value instead of overflowing.

    A Dice gradient can exceed 65504 (1/smooth_dr per position on an empty target); cast to
    float16 it would become inf and make AMP skip every step. NaN stays NaN.
    """
    if dtype == torch.float16:
        grad = grad.clamp_(-_FLOAT16_MAX, _FLOAT16_MAX)
    return grad.to(dtype)


_FLOAT16_MAX = torch.finfo(torch.float16).max


class _SaturatingUpcast(torch.autograd.Function):
    """float16 to float32, whose backward casts the gradient back with :func:`_cast_gradient`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(input: Tensor) -> Tensor:
        return input.to(torch.float32)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp(-_FLOAT16_MAX, _FLOAT16_MAX).to(torch.float16)

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        return tangent.to(torch.float32)


def _upcast(input: Tensor) -> Tensor:
    """``input`` in the dtype the loss is computed in (float64 stays, the rest becomes float32)."""
    if input.dtype == torch.float16:
        return _SaturatingUpcast.apply(input)
    return input.to(_compute_dtype(input.dtype))


@functools.lru_cache(maxsize=64)
def _full_weights(options: DiceOptions, num_classes: int) -> np.ndarray:
    weights = np.asarray(options.full_weights(num_classes), dtype=np.float64)
    weights.flags.writeable = False
    return weights


def dice_loss(
    input: Tensor,
    target: Tensor,
    mode: str = "multiclass",
    *,
    from_logits: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    squared: bool = False,
    log_loss: bool = False,
    soft_labels: bool = False,
    per_image: bool = True,
    classes: Any = None,
    class_weights: Any = None,
    ignore_index: int | None = None,
    empty_target: str = "smooth",
    sync_across_ranks: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Dice loss, ``1 − (2·Σp·g + smooth_nr) / (Σp + Σg + smooth_dr)`` averaged over classes.

    Args:
        input: predictions ``(B, C, *spatial)``, logits (``from_logits=True``) or probabilities;
            float16, bfloat16, float32 or float64 (low precision is computed in float32).
        target: one of

            - a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of class indices (integer or
              integral float; ``binary``: 0 or 1; ``multiclass``: ``[0, C)``), never expanded to
              one-hot;
            - per-class targets of the input's shape: one-hot, multi-hot or soft probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C ≥ 2``, softmax over C) or
            ``"multilabel"`` (independent sigmoid per channel; target of the input's shape).
        from_logits: apply the sigmoid / softmax (numerically stable) to ``input``.
        smooth_nr, smooth_dr: added to the numerator and the denominator (``≥ 0``; ``smooth_dr > 0``
            when ``smooth_nr > 0``, else the ratio has no bound). A denominator below 1e-30 is
            clamped there, so that the loss and its gradient stay finite without smoothing.
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice``.
        soft_labels: intersection ``(Σp + Σg − Σ|p − g|) / 2``, which equals ``Σp·g`` for hard
            labels and is minimised at ``p = g`` for soft targets.
        per_image: sums per image and class (``True``) or per class over the whole batch.
        classes: indices of the classes that enter the loss (default: all).
        class_weights: one weight per channel; the loss is ``Σ w·L / Σ w`` over classes (the
            weights are divided by the largest selected one, which changes nothing but keeps
            huge or tiny weights finite).
        ignore_index: target value whose positions are excluded from every sum (their gradient is
            exactly 0). For label maps a whole position is ignored, for per-class targets the element.
        empty_target: what a class absent from the target (``Σg = 0``) contributes: ``"smooth"``
            the smoothed formula (0 if the prediction is empty too, else close to 1 with a vanishing
            gradient), ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction
            ``Σp / Σv``, whose gradient ``1/Σv`` pushes the prediction down and never vanishes.
        sync_across_ranks: for data-parallel training (DistributedDataParallel): the loss of the
            global batch on every rank and, after DDP's gradient averaging, the gradient of the
            single-process run on the concatenated batch. ``per_image=False``: the per-class sums
            are all-reduced (``C × 7`` numbers, in the forward and again in the backward);
            ``per_image=True``: the ``"mean"`` or ``"sum"`` over the images of all ranks (an
            all-reduce of 2 numbers; ``reduction="none"`` returns the local per-image losses). The
            collective is differentiable; without an initialised process group the option does
            nothing.
        reduction: ``"mean"`` or ``"sum"`` over images, or ``"none"``: shape ``(B,)`` per image
            (``per_image=False``: the batch loss, shape ``()``).

    Values are checked: labels must lie in ``[0, C)`` (binary: ``{0, 1}``; labels stored as floats
    must be whole numbers), per-class targets in ``[0, 1]`` (so a 0/255 mask is an error in every
    shape) and, with ``from_logits=False``, the input in ``[0, 1]``; ``ignore_index`` excepted. A
    value out of range raises a ``ValueError`` on the CPU and triggers an asynchronous device assert
    on CUDA (no host synchronisation); it is not checked under ``torch.compile`` nor ``torch.func``
    transforms, where the result for such input is undefined.

    Nothing fails silently: a NaN or ±inf in the input or in a float target makes the loss of its
    image NaN (the loss of the batch with ``per_image=False``) and the gradient of every element of
    that image NaN, on every execution path; finite input always gives a finite loss and gradient
    (float16 gradients saturate at ±65504 instead of overflowing). A batch of 0 images gives an
    empty ``(0,)`` loss with ``reduction="none"``, 0 with ``"sum"`` and NaN with ``"mean"`` (the
    mean of nothing, as in ``torch.nn.functional``); an image of 0 positions is an empty prediction
    on an empty target.

    Example:

    >>> import torch
    >>> from losses.torch.functional import dice_loss
    >>> logits = torch.tensor([[[[4.0, -4.0], [-4.0, 4.0]]]])   # (B=1, C=1, 2, 2)
    >>> mask = torch.tensor([[[1, 0], [0, 1]]])                    # label map (1, 2, 2)
    >>> round(dice_loss(logits, mask, mode="binary").item(), 4)
    0.018
    >>> dice_loss(logits, mask, mode="binary", reduction="none").shape
    torch.Size([1])
    """
    reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
    options = DiceOptions.create(
        mode=mode, from_logits=from_logits, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        log_loss=log_loss, soft_labels=soft_labels, per_image=per_image, classes=classes,
        class_weights=class_weights, ignore_index=ignore_index, empty_target=empty_target,
        sync_across_ranks=sync_across_ranks,
    )
    return _dice_loss(input, target, options, reduction)


class DiceLoss(nn.Module):
    """Dice loss as an ``nn.Module``; see :func:`losses.torch.functional.dice_loss` for the formula
    and every option.

    Example:

    >>> import torch
    >>> from losses.torch import DiceLoss
    >>> criterion = DiceLoss(mode="multiclass", ignore_index=255)
    >>> logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    >>> labels = torch.randint(0, 3, (2, 8, 8))
    >>> loss = criterion(logits, labels)
    >>> loss.backward()
    >>> logits.grad.shape
    torch.Size([2, 3, 8, 8])
    """

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
        classes: Any = None,
        class_weights: Any = None,
        ignore_index: int | None = None,
        empty_target: str = "smooth",
        sync_across_ranks: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, TORCH_REDUCTIONS)
        self.options = DiceOptions.create(
            mode=mode, from_logits=from_logits, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
            log_loss=log_loss, soft_labels=soft_labels, per_image=per_image, classes=classes,
            class_weights=class_weights, ignore_index=ignore_index, empty_target=empty_target,
            sync_across_ranks=sync_across_ranks,
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return _dice_loss(input, target, self.options, self.reduction)

    def extra_repr(self) -> str:
        defaults = DiceOptions()
        changed = [f"{k}={v!r}" for k, v in self.options.to_dict().items()
                   if k == "mode" or v != getattr(defaults, k)]
        if self.reduction != "mean":
            changed.append(f"reduction={self.reduction!r}")
        return ", ".join(changed)
