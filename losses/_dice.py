"""Dice loss: the framework-free half (options, checks, and the math from per-class sums).

Both frontends reduce their inputs to the same small tensor of per-class sums, ``stats`` of shape
``(S, C, 7)`` with ``S = B`` (``per_image=True``) or ``S = 1`` (sums over the whole batch), and then
call :func:`dice_from_stats` here, so the formula, the empty-target policy, class selection and class
weights are written once. With ``p`` the predicted probability of a class, ``g`` its target
probability and ``v`` the valid mask (0 where the target equals ``ignore_index``), the sums over the
spatial positions (and the batch, when not per image) are:

=====  ================  =========================================================
index  name              sum
=====  ================  =========================================================
0      ``INTERSECTION``  Σ v·p·g
1      ``PRED_SUM``      Σ v·p
2      ``TARGET_SUM``    Σ v·g
3      ``PRED_SQUARES``  Σ v·p²
4      ``TARGET_SQUARES`` Σ v·g²
5      ``ABS_DIFF``      Σ v·|p − g|
6      ``VALID_COUNT``   Σ v
=====  ================  =========================================================

A frontend computes only the sums the options need and leaves the others at zero (see
:meth:`DiceOptions.needed_stats`).

Data-parallel training (``sync_across_ranks=True``): every statistic is a sum, so the statistics of
the global batch are the SUM over the ranks of the local ones. With ``per_image=False`` a frontend
all-reduces ``stats`` right after computing them, with a differentiable collective whose backward
is again a sum over the ranks. Every rank then computes the global batch loss ``L``; in the backward
each rank's statistics receive the sum over the W ranks of the upstream gradients. In PyTorch that is
``W·∂L/∂S``, and DDP's averaging of the parameter gradients over the ranks divides by W again; in
Keras under ``tf.distribute`` the per-replica loss is ``L/W`` and the replicas' gradients are summed.
Either way the parameters get the single-process gradient of the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from losses._validation import (
    check_bool,
    check_choice,
    check_int,
    check_int_sequence,
    check_number,
    check_weight_sequence,
)

MODES = ("binary", "multiclass", "multilabel")
EMPTY_TARGET_POLICIES = ("smooth", "exclude", "penalize")

INTERSECTION, PRED_SUM, TARGET_SUM, PRED_SQUARES, TARGET_SQUARES, ABS_DIFF, VALID_COUNT = range(7)
NUM_STATS = 7

# Below this the log of the Dice coefficient is clamped, so log_loss stays finite when smooth_nr = 0.
LOG_CLAMP = 1e-7
# A positive denominator is clamped below here, so that the coefficient and its derivative (up to
# 2 / DENOMINATOR_MIN) stay finite in float32 when both smoothing terms are 0 and the sums are
# subnormal. Only a denominator below 1e-30 is changed: with any smooth_dr >= 1e-30, none is.
DENOMINATOR_MIN = 1e-30


@dataclass(frozen=True)
class DiceOptions:
    """Every Dice option except the reduction, validated once."""

    mode: str = "multiclass"
    from_logits: bool = True
    smooth_nr: float = 1e-5
    smooth_dr: float = 1e-5
    squared: bool = False
    log_loss: bool = False
    soft_labels: bool = False
    per_image: bool = True
    classes: tuple[int, ...] | None = None
    class_weights: tuple[float, ...] | None = None
    ignore_index: int | None = None
    empty_target: str = "smooth"
    sync_across_ranks: bool = False

    @classmethod
    def create(cls, **kwargs: Any) -> DiceOptions:
        # No dataclasses.fields() nor cls() here: torch.compile(fullgraph=True) traces this.
        unknown = sorted(set(kwargs) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown Dice option(s) {unknown}; the options are {sorted(_OPTION_NAMES)}")
        values = {name: kwargs.get(name, getattr(_DEFAULTS, name)) for name in _OPTION_NAMES}
        ignore_index = values["ignore_index"]
        smooth_nr = check_number("smooth_nr", values["smooth_nr"], minimum=0.0)
        smooth_dr = check_number("smooth_dr", values["smooth_dr"], minimum=0.0)
        if smooth_nr > 0 and smooth_dr == 0:
            raise ValueError(
                f"smooth_dr must be > 0 when smooth_nr > 0 (got smooth_nr={smooth_nr!r}, smooth_dr=0.0): the "
                "ratio (2·Σp·g + smooth_nr) / (Σp + Σg) has no bound as Σp + Σg goes to 0. Use smooth_dr >= "
                "smooth_nr, or smooth_nr=0 for the unsmoothed Dice.")
        return cls(
            mode=check_choice("mode", values["mode"], MODES),
            from_logits=check_bool("from_logits", values["from_logits"]),
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            squared=check_bool("squared", values["squared"]),
            log_loss=check_bool("log_loss", values["log_loss"]),
            soft_labels=check_bool("soft_labels", values["soft_labels"]),
            per_image=check_bool("per_image", values["per_image"]),
            classes=check_int_sequence("classes", values["classes"]),
            class_weights=check_weight_sequence("class_weights", values["class_weights"]),
            ignore_index=None if ignore_index is None else check_int("ignore_index", ignore_index),
            empty_target=check_choice("empty_target", values["empty_target"], EMPTY_TARGET_POLICIES),
            sync_across_ranks=check_bool("sync_across_ranks", values["sync_across_ranks"]),
        )

    def to_dict(self) -> dict[str, Any]:
        config = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("classes", "class_weights"):
            if config[key] is not None:
                config[key] = list(config[key])
        return config

    def needed_stats(self) -> frozenset[int]:
        needed = {TARGET_SUM}
        needed.add(INTERSECTION)
        if self.squared:
            needed |= {PRED_SQUARES, TARGET_SQUARES}
        else:
            needed.add(PRED_SUM)
        if self.soft_labels:
            needed |= {PRED_SUM, ABS_DIFF}
            needed.discard(INTERSECTION)
        if self.empty_target == "penalize":
            needed |= {PRED_SUM, VALID_COUNT}
        return frozenset(needed)

    def check_num_classes(self, num_classes: int) -> None:
        """Checks that need the number of channels ``C`` of the prediction."""
        if self.mode == "binary" and num_classes != 1:
            raise ValueError(
                f"input must have exactly 1 channel in mode='binary'; got {num_classes} channels. "
                "Use mode='multilabel' for several independent sigmoid channels or mode='multiclass' for a softmax.")
        if self.mode == "multiclass" and num_classes < 2:
            raise ValueError(
                f"input must have at least 2 channels in mode='multiclass'; got {num_classes}. "
                "Use mode='binary' for a single foreground channel.")
        if self.classes is not None:
            bad = [c for c in self.classes if not 0 <= c < num_classes]
            if bad:
                raise ValueError(f"classes must lie in [0, {num_classes}) for an input with {num_classes} "
                                 f"channels; got {list(self.classes)}")
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(f"class_weights must have one weight per channel of the input ({num_classes}); "
                             f"got {len(self.class_weights)} weights")

    def selected_weights(self, num_classes: int) -> tuple[float, ...]:
        """The weight of each selected class, in the order of ``classes``, divided by the largest.

        The loss ``Σ w·L / Σ w`` does not change when every weight is scaled; scaled so that the
        largest is 1, huge weights cannot overflow the sum (``inf / inf``) nor tiny ones vanish in
        float32.
        """
        weights = self.class_weights or (1.0,) * num_classes
        indices = self.classes if self.classes is not None else range(num_classes)
        selected = tuple(weights[c] for c in indices)
        largest = max(selected)
        if not largest > 0:
            raise ValueError(f"class_weights give every selected class a weight of 0: classes={list(self.classes)}, "
                             f"class_weights={list(weights)}")
        return tuple(w / largest for w in selected)

    def full_weights(self, num_classes: int) -> tuple[float, ...]:
        """One weight per channel: that of :meth:`selected_weights` for a selected class, else 0."""
        selected = self.selected_weights(num_classes)
        if self.classes is None:
            return selected
        full = [0.0] * num_classes
        for c, w in zip(self.classes, selected):
            full[c] = w
        return tuple(full)


_OPTION_NAMES = tuple(f.name for f in fields(DiceOptions))
_DEFAULTS = DiceOptions()


def dice_from_stats(ops: Any, stats: Any, options: DiceOptions, class_weights: Any) -> Any:
    """The Dice loss of each image (or of the batch) from the per-class sums.

    ``stats`` has shape ``(S, C', 7)`` with the selected classes only; ``class_weights`` is a
    tensor of shape ``(C',)``. ``ops`` is the frontend's tensor namespace (``where``, ``log``,
    ``maximum``, ``sum``). Returns shape ``(S,)``.

    Per class, with ``I`` the intersection and ``D`` the denominator::

        I = Σp·g                    or (Σp + Σg − Σ|p − g|) / 2 with soft_labels
        D = Σp + Σg                 or Σp² + Σg² with squared
        dice = (2·I + smooth_nr) / max(D + smooth_dr, 1e-30)     (1 when both are 0)
        L = 1 − dice                or −log(max(dice, 1e-7)) with log_loss

    For a class whose target is empty (``Σg = 0``), ``empty_target`` decides: ``"smooth"`` keeps
    ``L``; ``"exclude"`` drops the class from the average; ``"penalize"`` uses the false-positive
    fraction ``Σp / Σv`` (in [0, 1], gradient ``1/Σv`` per position, never vanishing). The loss
    is the weighted mean ``Σ w·L / Σ w`` over the classes that count (0 if none count).

    A NaN or infinite sum gives a NaN loss for its row: every comparison here is False for NaN and
    ``ops.maximum`` must keep NaN.
    """
    target_sum = stats[..., TARGET_SUM]
    if options.soft_labels:
        intersection = (stats[..., PRED_SUM] + target_sum - stats[..., ABS_DIFF]) * 0.5
    else:
        intersection = stats[..., INTERSECTION]
    if options.squared:
        denominator = stats[..., PRED_SQUARES] + stats[..., TARGET_SQUARES]
    else:
        denominator = stats[..., PRED_SUM] + target_sum
    numerator = 2.0 * intersection + options.smooth_nr
    denominator = denominator + options.smooth_dr
    # Comparisons that are False for NaN, and a NaN-keeping maximum: a NaN sum gives a NaN loss.
    dice = ops.where(denominator == 0, 1.0, numerator / ops.maximum(denominator, DENOMINATOR_MIN))
    if options.log_loss:
        per_class = -ops.log(ops.maximum(dice, LOG_CLAMP))
    else:
        per_class = 1.0 - dice

    empty = target_sum <= 0
    weights = ops.zeros_like(target_sum) + class_weights  # one weight per image and class: (S, C')
    if options.empty_target == "exclude":
        weights = ops.where(empty, 0.0, weights)
    elif options.empty_target == "penalize":
        count = stats[..., VALID_COUNT]
        has_valid = count > 0
        false_positive = ops.where(has_valid, stats[..., PRED_SUM] / ops.where(has_valid, count, 1.0), 0.0)
        per_class = ops.where(empty, false_positive, per_class)

    total_weight = ops.sum(weights, 1)
    counted = total_weight > 0
    return ops.where(counted, ops.sum(weights * per_class, 1) / ops.where(counted, total_weight, 1.0), 0.0)


def dice_and_gradient_from_stats(stats: Any, class_weights: Any, options: DiceOptions) -> tuple[Any, Any]:
    """:func:`dice_from_stats` and its derivative, in NumPy (float64), for hand-written backwards.

    ``stats`` is a float64 array ``(S, C, 7)`` of all classes and ``class_weights`` ``(C,)`` with 0
    for unselected classes. Returns the loss of each row ``(S,)`` and ``∂loss[s]/∂stats[s]``
    ``(S, C, 7)``. Where the formula switches (a denominator of 0, a clamp, an empty target) the
    derivative is that of the branch taken, as automatic differentiation of :func:`dice_from_stats`
    gives it. A row whose loss is NaN gets a NaN derivative in every entry.
    """
    import numpy as np

    target_sum = stats[..., TARGET_SUM]
    pred_sum = stats[..., PRED_SUM]
    if options.soft_labels:
        intersection = (pred_sum + target_sum - stats[..., ABS_DIFF]) * 0.5
    else:
        intersection = stats[..., INTERSECTION]
    if options.squared:
        denominator = stats[..., PRED_SQUARES] + stats[..., TARGET_SQUARES]
    else:
        denominator = pred_sum + target_sum
    numerator = 2.0 * intersection + options.smooth_nr
    denominator = denominator + options.smooth_dr
    zero = denominator == 0
    clamped = denominator < DENOMINATOR_MIN
    safe_denominator = np.maximum(denominator, DENOMINATOR_MIN)  # keeps NaN
    dice = np.where(zero, 1.0, numerator / safe_denominator)
    if options.log_loss:
        unclamped = ~(dice < LOG_CLAMP)
        per_class = -np.log(np.maximum(dice, LOG_CLAMP))
        d_dice = np.where(unclamped, -1.0 / np.where(unclamped, dice, 1.0), 0.0)
    else:
        per_class = 1.0 - dice
        d_dice = -np.ones_like(dice)
    d_numerator = np.where(zero, 0.0, d_dice / safe_denominator)
    d_denominator = np.where(zero | clamped, 0.0, -d_dice * dice / safe_denominator)

    empty = target_sum <= 0
    weights = np.broadcast_to(np.asarray(class_weights, dtype=np.float64), target_sum.shape)
    d_pred_sum_direct = np.zeros_like(dice)
    d_count = np.zeros_like(dice)
    if options.empty_target == "exclude":
        weights = np.where(empty, 0.0, weights)
    elif options.empty_target == "penalize":
        count = stats[..., VALID_COUNT]
        has_valid = count > 0
        safe_count = np.where(has_valid, count, 1.0)
        false_positive = np.where(has_valid, pred_sum / safe_count, 0.0)
        per_class = np.where(empty, false_positive, per_class)
        d_numerator = np.where(empty, 0.0, d_numerator)
        d_denominator = np.where(empty, 0.0, d_denominator)
        d_pred_sum_direct = np.where(empty & has_valid, 1.0 / safe_count, 0.0)
        d_count = np.where(empty & has_valid, -false_positive / safe_count, 0.0)

    total = weights.sum(1)
    counted = total > 0
    safe_total = np.where(counted, total, 1.0)
    loss = np.where(counted, (weights * per_class).sum(1) / safe_total, 0.0)
    d_per_class = np.where(counted[:, None], weights / safe_total[:, None], 0.0)

    grad = np.zeros(stats.shape, dtype=np.float64)
    d_numerator = d_numerator * d_per_class
    d_denominator = d_denominator * d_per_class
    if options.soft_labels:  # numerator = (P + G − A) + smooth_nr
        grad[..., PRED_SUM] += d_numerator
        grad[..., TARGET_SUM] += d_numerator
        grad[..., ABS_DIFF] -= d_numerator
    else:
        grad[..., INTERSECTION] += 2.0 * d_numerator
    if options.squared:
        grad[..., PRED_SQUARES] += d_denominator
        grad[..., TARGET_SQUARES] += d_denominator
    else:
        grad[..., PRED_SUM] += d_denominator
        grad[..., TARGET_SUM] += d_denominator
    grad[..., PRED_SUM] += d_pred_sum_direct * d_per_class
    grad[..., VALID_COUNT] += d_count * d_per_class
    grad[~np.isfinite(loss)] = np.nan  # a row whose loss is not finite has no finite derivative
    return loss, grad
