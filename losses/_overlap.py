r"""The overlap losses (Dice, Jaccard, Tversky, focal Tversky, generalized Dice): the framework-free half.

Every member of the family is a function of the same per-class sums. Both frontends and every
execution path reduce their inputs to ``stats`` of shape ``(S, C, NUM_STATS)``, ``S = B`` (per image)
or ``S = 1`` (sums over the whole batch), and the loss follows from them by :func:`overlap_loss`,
one general form written once, with its derivative. A member of the family is a :class:`Member`:
its options and the :class:`Form` they give; nothing else.

**The sums.** With ``p`` the predicted probability of a class, ``g`` its target probability and
``v`` the weight of a position (1, or the per-position weight map; 0 where the target equals
``ignore_index``), summed over the positions of an image (or of the batch):

=====  ==================  ==========
index  name                sum
=====  ==================  ==========
0      ``INTERSECTION``    Σ v·p·g
1      ``PRED_SUM``        Σ v·p
2      ``TARGET_SUM``      Σ v·g
3      ``PRED_SQUARES``    Σ v·p²
4      ``TARGET_SQUARES``  Σ v·g²
5      ``ABS_DIFF``        Σ v·|p − g|
6      ``VALID_COUNT``     Σ v
=====  ==================  ==========

The layout is named here only: the C kernels get it as ``-D`` definitions (:func:`layout_definitions`),
the Triton kernels as constexprs imported from here.

**The general form.** Per class, the true positives, false positives and false negatives are

    TP = Σv·p·g               (soft_labels: (Σv·p + Σv·g − Σv·|p − g|) / 2)
    FP = P' − TP,  FN = G' − TP      with P' = Σv·p, G' = Σv·g   (squared: Σv·p², Σv·g²)

(with ``squared`` the soft-label intersection is taken in the same norm, as MONAI does:
``(Σv·p² + Σv·g² − Σv·(p − g)²) / 2``, which is ``Σv·p·g``; the L1 form there could make
``P' + G' − TP`` negative and the ratio unbounded)

and the score of a member is the ratio

    score = (k·TP + smooth_nr) / (k·TP + α·FP + β·FN + smooth_dr)

(``k = 2, α = β = 1``: Dice ``(2·TP + s) / (P' + G' + s)``; ``k = 1, α = β = 1``: Jaccard; ``k = 1``:
Tversky). A positive denominator below ``DENOMINATOR_MIN`` is clamped there, and a denominator of
exactly 0 (nothing in prediction or target, no smoothing) gives a score of 1. The per-class loss
is a transform of the score: ``1 − score``, ``−log(max(score, LOG_CLAMP))`` or
``max(1 − score, 0)^γ``; a class absent from the target (``Σv·g = 0``) contributes by the
``empty_target`` policy (``"smooth"``: the formula; ``"exclude"``: nothing; ``"penalize"``: the
false-positive fraction ``Σv·p / Σv``). The loss of a row is the weighted mean ``Σ w·L / Σ w``
over the classes that count (0 if none count).

Pooling replaces the classes by one: ``average="micro"`` sums the class-weighted sums over the
classes first (one score per image); the generalized Dice of Sudre et al. (2017) does the same with
weights ``w_c·(1/G_c)^q`` from the target (``q = 2, 1, 0``), computed as ratios to the smallest
present ``G`` (and the smoothing scaled alike) so that no weight overflows; a class absent from the
target gets the largest weight of the present ones, and an image with no class present only its
smoothing (MONAI's convention). Those weights are constants for the derivative.

**Non-finite values.** Every comparison is False for NaN and every clamp keeps NaN, so a NaN in a
row's sums gives a NaN loss; the derivative of such a row is NaN in every entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from losses._validation import (
    check_bool,
    check_choice,
    check_int,
    check_int_sequence,
    MAXIMUM_OPTION,
    check_number,
    check_weight_sequence,
)

STAT_NAMES = ("intersection", "pred_sum", "target_sum", "pred_squares", "target_squares", "abs_diff", "valid_count")
INTERSECTION, PRED_SUM, TARGET_SUM, PRED_SQUARES, TARGET_SQUARES, ABS_DIFF, VALID_COUNT = range(len(STAT_NAMES))
NUM_STATS = len(STAT_NAMES)

MODES = ("binary", "multiclass", "multilabel")
EMPTY_TARGET_POLICIES = ("smooth", "exclude", "penalize")
AVERAGES = ("macro", "micro")
WEIGHT_TYPES = ("square", "simple", "uniform")
TRANSFORMS = ("linear", "log", "power")
POOLINGS = ("none", "sum", "generalized")

# Below this the log of the score is clamped, so log_loss stays finite when smooth_nr = 0.
LOG_CLAMP = 1e-7
# A positive denominator is clamped below here, so that the score and its derivative (up to
# k / DENOMINATOR_MIN) stay finite in float32 when both smoothing terms are 0 and the sums are
# subnormal. Only a denominator below 1e-30 is changed: with any smooth_dr >= 1e-30, none is.
DENOMINATOR_MIN = 1e-30


def layout_definitions() -> dict[str, int]:
    """The stats layout as C preprocessor definitions: ``STAT_INTERSECTION=0`` ... ``NUM_STATS=7``."""
    return {**{f"STAT_{name.upper()}": index for index, name in enumerate(STAT_NAMES)}, "NUM_STATS": NUM_STATS}


# ------------------------------------------------------------------------------------------------
# The general form
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """The parameters of the general form (see the module docstring) that a member's options give."""

    tp_weight: float = 2.0  # k
    fp_weight: float = 1.0  # α
    fn_weight: float = 1.0  # β
    squared: bool = False
    soft_labels: bool = False
    transform: str = "linear"
    gamma: float = 1.0
    pooling: str = "none"
    weight_power: float = 0.0  # generalized pooling: the q of (1/G)^q
    empty_target: str = "smooth"
    smooth_nr: float = 1e-5
    smooth_dr: float = 1e-5

    @property
    def soft_intersection(self) -> bool:
        """TP from Σ|p − g| (soft labels); with ``squared`` the soft intersection is ``Σv·p·g``."""
        return self.soft_labels and not self.squared

    def coefficients(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(u, d)`` with numerator ``k·TP = stats · u`` and denominator ``k·TP + α·FP + β·FN = stats · d``.

        Both are linear in the sums, so their derivatives are these constant vectors.
        """
        tp = [0.0] * NUM_STATS
        if self.soft_intersection:
            tp[PRED_SUM], tp[TARGET_SUM], tp[ABS_DIFF] = 0.5, 0.5, -0.5
        else:
            tp[INTERSECTION] = 1.0
        pred = PRED_SQUARES if self.squared else PRED_SUM
        target = TARGET_SQUARES if self.squared else TARGET_SUM
        k, alpha, beta = self.tp_weight, self.fp_weight, self.fn_weight
        numerator = [k * t for t in tp]
        denominator = [(k - alpha - beta) * t for t in tp]
        denominator[pred] += alpha
        denominator[target] += beta
        return tuple(numerator), tuple(denominator)


def _linear(stats: Any, coefficients: tuple[float, ...]) -> Any:
    """``stats · coefficients`` over the last axis, with Python floats (no tensor to create)."""
    total = None
    for index, c in enumerate(coefficients):
        if c != 0.0:
            term = stats[..., index] if c == 1.0 else c * stats[..., index]
            total = term if total is None else total + term
    return total if total is not None else 0.0 * stats[..., 0]


def _generalized_weights(ops: Any, target_sum: Any, weights: Any, power: float) -> tuple[Any, Any]:
    """Per-row class weights ``w_c·(G_min/G_c)^q`` and the smoothing scale ``G_min^q`` (both constants).

    ``G_min`` is the smallest target sum among the selected classes present in the row. A selected
    class absent from the target gets the largest weight ratio, 1; a row with no class present gets
    weights 0 and scale 1, so that its loss is ``1 − smooth_nr / smooth_dr`` (as in MONAI).
    """
    selected = (ops.zeros_like(target_sum) + weights) > 0
    if power == 0:  # uniform: the class weights themselves, whatever the target
        return ops.where(selected, ops.zeros_like(target_sum) + weights, 0.0), 1.0
    present = ops.logical_and(target_sum > 0, selected)
    smallest = ops.min(ops.where(present, target_sum, math.inf), axis=1, keepdims=True)
    any_present = smallest < math.inf
    smallest = ops.where(any_present, smallest, 1.0)
    ratio = ops.pow(smallest / ops.where(present, target_sum, 1.0), power)
    ratio = ops.where(present, ratio, ops.where(any_present, 1.0, 0.0))
    scale = ops.pow(smallest, power)
    # Numerator and denominator divided by max(G_min^q, 1): the score is the same, but the
    # smoothing scale is at most 1, so that scale·smooth_dr cannot overflow float32 (G_min = 10 and
    # smooth_dr = 1e37 gave inf / inf = NaN); the weights are then w_c / G_c^q (MONAI's).
    divisor = ops.maximum(scale, 1.0)
    class_weights = ops.where(selected, ratio * weights, 0.0) / divisor
    return ops.stop_gradient(class_weights), ops.stop_gradient(scale / divisor)


def overlap_loss(ops: Any, stats: Any, weights: Any, form: Form, with_grad: bool = False) -> Any:
    """The loss of each row ``(S,)`` from ``stats`` ``(S, C, NUM_STATS)`` of every class.

    ``weights`` ``(C,)`` has one weight per class, 0 for a class left out. ``ops`` is the
    frontend's tensor namespace (:class:`NumpyOps` for NumPy arrays). With
    ``with_grad``, also ``∂loss[s]/∂stats[s]`` ``(S, C, NUM_STATS)``, written by hand: where the formula
    switches (a denominator of 0, a clamp, an empty target) it is the derivative of the branch
    taken, as automatic differentiation of the value gives it. The fused CPU path computes the same
    in C (``losses/torch/_kernels/cpu_formula.c``), tested against this.
    """
    numerator_coefficients, denominator_coefficients = form.coefficients()
    target_sum = stats[..., TARGET_SUM]
    scale: Any = 1.0
    if form.pooling == "none":
        rows = stats
        class_weights = ops.zeros_like(target_sum) + weights
    else:
        if form.pooling == "generalized":
            pool_weights, scale = _generalized_weights(ops, target_sum, weights, form.weight_power)
        else:
            pool_weights = ops.zeros_like(target_sum) + weights
        rows = ops.sum(stats * pool_weights[..., None], axis=1, keepdims=True)  # one pooled class
        class_weights = ops.zeros_like(rows[..., TARGET_SUM]) + 1.0

    numerator = _linear(rows, numerator_coefficients) + scale * form.smooth_nr
    denominator = _linear(rows, denominator_coefficients) + scale * form.smooth_dr
    zero = denominator == 0
    safe_denominator = ops.maximum(denominator, DENOMINATOR_MIN)
    score = ops.where(zero, 1.0, numerator / safe_denominator)
    if form.transform == "log":
        below = score < LOG_CLAMP
        per_class = -ops.log(ops.where(below, LOG_CLAMP, score))
    elif form.transform == "power":
        miss = ops.maximum(1.0 - score, 0.0)
        none_missed = miss <= 0
        per_class = ops.where(none_missed, 0.0, ops.pow(ops.where(none_missed, 1.0, miss), form.gamma))
    else:
        per_class = 1.0 - score

    empty = rows[..., TARGET_SUM] <= 0
    if form.empty_target == "exclude":
        class_weights = ops.where(empty, 0.0, class_weights)
    elif form.empty_target == "penalize":
        count = rows[..., VALID_COUNT]
        has_valid = count > 0
        safe_count = ops.where(has_valid, count, 1.0)
        false_positive = ops.where(has_valid, rows[..., PRED_SUM] / safe_count, 0.0)
        per_class = ops.where(empty, false_positive, per_class)

    total = ops.sum(class_weights, axis=1)
    counted = total > 0
    safe_total = ops.where(counted, total, 1.0)
    loss = ops.where(counted, ops.sum(class_weights * per_class, axis=1) / safe_total, 0.0)
    if not with_grad:
        return loss

    # The derivative, stage by stage backwards: row loss → per-class loss → score → the sums.
    d_per_class = ops.where(counted[:, None], class_weights / safe_total[:, None], 0.0)
    if form.transform == "log":
        d_score = ops.where(below, 0.0, -1.0 / ops.where(below, 1.0, score))
    elif form.transform == "power":
        d_score = ops.where(
            none_missed, 0.0, -form.gamma * ops.pow(ops.where(none_missed, 1.0, miss), form.gamma - 1.0)
        )
    else:
        d_score = ops.zeros_like(score) - 1.0
    d_pred_sum = d_count = None
    if form.empty_target == "penalize":
        d_score = ops.where(empty, 0.0, d_score)
        penalized = ops.logical_and(empty, has_valid)
        d_pred_sum = d_per_class * ops.where(penalized, 1.0 / safe_count, 0.0)
        d_count = d_per_class * ops.where(penalized, -false_positive / safe_count, 0.0)
    d_numerator = d_per_class * d_score * ops.where(zero, 0.0, 1.0 / safe_denominator)
    clamped = ops.logical_or(zero, denominator < DENOMINATOR_MIN)
    d_denominator = d_per_class * d_score * ops.where(clamped, 0.0, -score / safe_denominator)
    columns = []
    for index in range(NUM_STATS):
        column = numerator_coefficients[index] * d_numerator + denominator_coefficients[index] * d_denominator
        if index == PRED_SUM and d_pred_sum is not None:
            column = column + d_pred_sum
        if index == VALID_COUNT and d_count is not None:
            column = column + d_count
        columns.append(column)
    grad = ops.stack(columns, axis=-1)
    if form.pooling != "none":
        grad = grad * pool_weights[..., None]  # every class's sums enter the pooled ones with its weight
    # A row whose loss is NaN has no finite derivative.
    return loss, ops.where((loss != loss)[:, None, None], math.nan, grad)


class NumpyOps:
    """The tensor namespace of :func:`overlap_loss` for NumPy arrays: the float64 definition that the
    formula of the fused CPU path (``losses/torch/_kernels/cpu_formula.c``) is tested against."""

    @staticmethod
    def where(condition: Any, x: Any, y: Any) -> Any:
        import numpy as np

        return np.where(condition, x, y)

    @staticmethod
    def maximum(x: Any, value: float) -> Any:
        import numpy as np

        return np.maximum(x, value)  # keeps NaN

    @staticmethod
    def log(x: Any) -> Any:
        import numpy as np

        return np.log(x)

    @staticmethod
    def pow(x: Any, exponent: Any) -> Any:
        import numpy as np

        return np.power(x, exponent)

    @staticmethod
    def sum(x: Any, axis: int, keepdims: bool = False) -> Any:
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x: Any, axis: int, keepdims: bool = False) -> Any:
        return x.min(axis=axis, keepdims=keepdims)

    @staticmethod
    def zeros_like(x: Any) -> Any:
        import numpy as np

        return np.zeros_like(x)

    @staticmethod
    def stack(xs: list[Any], axis: int) -> Any:
        import numpy as np

        return np.stack(xs, axis=axis)

    @staticmethod
    def logical_and(x: Any, y: Any) -> Any:
        return x & y

    @staticmethod
    def logical_or(x: Any, y: Any) -> Any:
        return x | y

    @staticmethod
    def stop_gradient(x: Any) -> Any:
        return x


# ------------------------------------------------------------------------------------------------
# Options and members
# ------------------------------------------------------------------------------------------------

_COMMON = (
    "mode",
    "from_logits",
    "smooth_nr",
    "smooth_dr",
    "soft_labels",
    "per_image",
    "classes",
    "class_weights",
    "ignore_index",
    "sync_across_ranks",
)


@dataclass(frozen=True)
class Member:
    """One loss of the family: its name, the options it takes beyond the common ones (with their
    defaults) and the :class:`Form` its options give."""

    name: str
    title: str
    options: tuple[tuple[str, Any], ...]
    form: Callable[[OverlapOptions], Form]

    def defaults(self) -> dict[str, Any]:
        return dict(self.options)

    def accepts(self) -> tuple[str, ...]:
        return (*_COMMON, *(name for name, _ in self.options))


@dataclass(frozen=True)
class OverlapOptions:
    """Every option of a member of the family except the reduction, validated once.

    Options a member does not take keep their neutral defaults here; ``create`` rejects them.
    """

    loss: str = "dice"
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
    average: str = "macro"
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 1.0
    weight_type: str = "square"
    sync_across_ranks: bool = False

    @classmethod
    def create(cls, loss: str = "dice", **kwargs: Any) -> OverlapOptions:
        """The options of member ``loss``, checked: an option it does not take is a ``TypeError``."""
        # No dataclasses.fields() nor cls() here: torch.compile(fullgraph=True) traces this.
        member = MEMBERS[loss]
        accepted = member.accepts()
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"{member.title} takes no option {unknown[0]!r}; its options are {sorted(accepted)}")
        values = {name: getattr(_DEFAULTS, name) for name in _OPTION_NAMES}
        values.update(member.defaults())
        values.update(kwargs)
        ignore_index = values["ignore_index"]
        smooth_nr = check_number("smooth_nr", values["smooth_nr"], minimum=0.0, maximum=MAXIMUM_OPTION)
        smooth_dr = check_number("smooth_dr", values["smooth_dr"], minimum=0.0, maximum=MAXIMUM_OPTION)
        if smooth_nr > smooth_dr:
            raise ValueError(
                f"smooth_nr must be <= smooth_dr (got smooth_nr={smooth_nr!r}, smooth_dr={smooth_dr!r}): the score "
                "(k·TP + smooth_nr) / (k·TP + α·FP + β·FN + smooth_dr) would exceed 1 where the sums are small "
                "(smooth_nr / smooth_dr on an empty image) and the loss would turn negative, without bound as "
                "smooth_dr goes to 0. Use smooth_nr = smooth_dr (as MONAI's defaults), or smooth_nr=0."
            )
        alpha = check_number("alpha", values["alpha"], minimum=0.0, maximum=MAXIMUM_OPTION)
        beta = check_number("beta", values["beta"], minimum=0.0, maximum=MAXIMUM_OPTION)
        if not alpha + beta > 0:
            raise ValueError(
                "alpha and beta must not both be 0: the score would be 1 whatever the prediction, and "
                "the loss would have no gradient"
            )
        return cls(
            loss=loss,
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
            average=check_choice("average", values["average"], AVERAGES),
            alpha=alpha,
            beta=beta,
            gamma=check_number("gamma", values["gamma"], minimum=0.0, strictly_greater=True, maximum=MAXIMUM_OPTION),
            weight_type=check_choice("weight_type", values["weight_type"], WEIGHT_TYPES),
            sync_across_ranks=check_bool("sync_across_ranks", values["sync_across_ranks"]),
        )

    @property
    def member(self) -> Member:
        return MEMBERS[self.loss]

    @property
    def form(self) -> Form:
        return self.member.form(self)

    def for_target(self, label_map: bool) -> OverlapOptions:
        """These options for a target that is (``label_map``) or is not a label map.

        A label map's targets are 0 or 1, for which the soft intersection ½·(Σv·p + Σv·g − Σv·|p − g|)
        is Σv·p·g: ``soft_labels`` is dropped there. The soft form's gradient is the difference of
        two terms of size 1/score, which cancel to float32's precision of 1/score (a relative error
        of 1e-3 in the gradient of a class with a score of 1e-5 under ``log_loss``); Σv·p·g has none.
        """
        if not (label_map and self.soft_labels):
            return self
        values = {name: getattr(self, name) for name in _OPTION_NAMES}
        values["soft_labels"] = False
        return OverlapOptions(loss=self.loss, **values)

    def to_dict(self) -> dict[str, Any]:
        """The options the member takes, as a config (lists, not tuples)."""
        config = {name: getattr(self, name) for name in self.member.accepts()}
        for key in ("classes", "class_weights"):
            if config[key] is not None:
                config[key] = list(config[key])
        return config

    def changed(self) -> dict[str, Any]:
        """The options that differ from the member's defaults (for repr)."""
        defaults = OverlapOptions.create(self.loss)
        return {k: v for k, v in self.to_dict().items() if k == "mode" or v != getattr(defaults, k)}

    def needed_stats(self) -> frozenset[int]:
        """The sums the loss reads (a path may leave the others at 0)."""
        numerator, denominator = self.form.coefficients()
        needed = {i for i in range(NUM_STATS) if numerator[i] != 0.0 or denominator[i] != 0.0}
        needed.add(TARGET_SUM)  # the empty-target test and the generalized weights
        if self.empty_target == "penalize":
            needed |= {PRED_SUM, VALID_COUNT}
        return frozenset(needed)

    def check_num_classes(self, num_classes: int) -> None:
        """Checks that need the number of channels ``C`` of the prediction."""
        if self.mode == "binary" and num_classes != 1:
            raise ValueError(
                f"input must have exactly 1 channel in mode='binary'; got {num_classes} channels. "
                "Use mode='multilabel' for several independent sigmoid channels or mode='multiclass' for a softmax."
            )
        if self.mode == "multiclass" and num_classes < 2:
            raise ValueError(
                f"input must have at least 2 channels in mode='multiclass'; got {num_classes}. "
                "Use mode='binary' for a single foreground channel."
            )
        if self.classes is not None:
            bad = [c for c in self.classes if not 0 <= c < num_classes]
            if bad:
                raise ValueError(
                    f"classes must lie in [0, {num_classes}) for an input with {num_classes} "
                    f"channels; got {list(self.classes)}"
                )
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"class_weights must have one weight per channel of the input ({num_classes}); "
                f"got {len(self.class_weights)} weights"
            )

    def full_weights(self, num_classes: int) -> tuple[float, ...]:
        """One weight per channel, 0 for a class left out by ``classes``, divided by the largest.

        Class weights are relative: only their ratios matter. ``Σ w·L / Σ w`` does not change when
        every weight is scaled, and the pooled sums (micro, generalized) are defined with the
        weights so divided; huge weights cannot overflow the sum (``inf / inf``) nor tiny ones
        vanish in float32.
        """
        weights = self.class_weights or (1.0,) * num_classes
        selected = range(num_classes) if self.classes is None else self.classes
        largest = max(weights[c] for c in selected)
        if not largest > 0:
            raise ValueError(
                f"class_weights give every selected class a weight of 0: classes={list(selected)}, "
                f"class_weights={list(weights)}"
            )
        full = [0.0] * num_classes
        for c in selected:
            full[c] = weights[c] / largest
        return tuple(full)


_OPTION_NAMES = tuple(f.name for f in fields(OverlapOptions) if f.name != "loss")
_DEFAULTS = OverlapOptions()


def _transform(o: OverlapOptions) -> str:
    return "log" if o.log_loss else "linear"


def _pooling(o: OverlapOptions) -> str:
    return "sum" if o.average == "micro" else "none"


_SHARED = dict(empty_target="smooth", average="macro")

DICE = Member(
    "dice",
    "DiceLoss",
    (("squared", False), ("log_loss", False), *_SHARED.items()),
    lambda o: Form(
        2.0,
        1.0,
        1.0,
        o.squared,
        o.soft_labels,
        _transform(o),
        1.0,
        _pooling(o),
        0.0,
        o.empty_target,
        o.smooth_nr,
        o.smooth_dr,
    ),
)
JACCARD = Member(
    "jaccard",
    "JaccardLoss",
    (("squared", False), ("log_loss", False), *_SHARED.items()),
    lambda o: Form(
        1.0,
        1.0,
        1.0,
        o.squared,
        o.soft_labels,
        _transform(o),
        1.0,
        _pooling(o),
        0.0,
        o.empty_target,
        o.smooth_nr,
        o.smooth_dr,
    ),
)
TVERSKY = Member(
    "tversky",
    "TverskyLoss",
    (("alpha", 0.5), ("beta", 0.5), ("log_loss", False), *_SHARED.items()),
    lambda o: Form(
        1.0,
        o.alpha,
        o.beta,
        False,
        o.soft_labels,
        _transform(o),
        1.0,
        _pooling(o),
        0.0,
        o.empty_target,
        o.smooth_nr,
        o.smooth_dr,
    ),
)
FOCAL_TVERSKY = Member(
    "focal_tversky",
    "FocalTverskyLoss",
    (("alpha", 0.3), ("beta", 0.7), ("gamma", 0.75), *_SHARED.items()),
    lambda o: Form(
        1.0,
        o.alpha,
        o.beta,
        False,
        o.soft_labels,
        "power",
        o.gamma,
        _pooling(o),
        0.0,
        o.empty_target,
        o.smooth_nr,
        o.smooth_dr,
    ),
)
GENERALIZED_DICE = Member(
    "generalized_dice",
    "GeneralizedDiceLoss",
    (("weight_type", "square"),),
    lambda o: Form(
        2.0,
        1.0,
        1.0,
        False,
        o.soft_labels,
        "linear",
        1.0,
        "generalized",
        {"square": 2.0, "simple": 1.0, "uniform": 0.0}[o.weight_type],
        "smooth",
        o.smooth_nr,
        o.smooth_dr,
    ),
)

MEMBERS = {m.name: m for m in (DICE, JACCARD, TVERSKY, FOCAL_TVERSKY, GENERALIZED_DICE)}
