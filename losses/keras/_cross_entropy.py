r"""Focal loss (cross-entropy at ``gamma=0``) and its pairs with an overlap loss for Keras 3 (channels
last, or first with ``data_format``), written in ``keras.ops``: ``FocalLoss``, ``DiceCELoss``, ``DiceFocalLoss``.

The definitions are in :mod:`losses._cross_entropy`. A Keras loss gives one value per sample: here
the mean of the terms over the image's valid positions, ``Σ v·ℓ / Σ v`` (0 for an image without a
valid position), which Keras' reduction then averages over the batch with its ``sample_weight``.
``losses.torch.FocalLoss`` pools the batch instead (``Σ v·ℓ / Σ v`` over every position of every
image); the two agree when every image has the same total weight (no ``ignore_index``, no weight
map). The pairs are the same per image in both frontends.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from losses._validation import ClassIndices, ClassWeights
from losses._cross_entropy import PROBABILITY_MIN, FocalOptions, PairOptions
from losses.keras._common import compute_dtype, non_finite_mark, upcast
from losses.keras._inputs import (
    Inputs,
    LossWithWeightMap,
    ignored_positions,
    label_indices,
    label_poison,
    prepare_inputs,
)
from losses.keras._overlap import overlap_rows, per_sample, sum_across_replicas


def _power(base: Any, gamma: float) -> Any:
    """``base^γ`` for base in [0, 1], with the gradient of the limit (0) where base = 0 and γ < 1."""
    if gamma == 0:
        return ops.ones_like(base)
    if gamma == 1:
        return base
    if gamma == 2:  # the usual value: a product, not a power (exp and log per element)
        return base * base
    zero = base <= 0
    return ops.where(zero, 0.0, ops.power(ops.where(zero, 1.0, base), ops.cast(gamma, base.dtype)))


def _log_at_least(x: Any) -> Any:
    """``log(max(x, PROBABILITY_MIN))``: a probability given as input, clamped inside the log."""
    return ops.log(ops.where(x < PROBABILITY_MIN, PROBABILITY_MIN, x))


def focal_terms(inputs: Inputs, options: FocalOptions) -> tuple[Any, Any]:
    """``(v·ℓ, v)``: the weighted focal terms and their weights, ``(B, N)`` (multiclass: per position)
    or ``(B, N, C)`` (binary, multilabel: per element); v is None where every weight is 1."""
    y_pred = inputs.y_pred
    dtype = compute_dtype(y_pred)
    num_classes, positions = inputs.num_classes, inputs.positions
    batch = ops.shape(y_pred)[0]
    x = ops.reshape(upcast(y_pred), (batch, positions, num_classes))
    class_factors = options.class_factors(num_classes)
    factors = ops.convert_to_tensor(np.asarray(class_factors, dtype))
    weighted_classes = any(factor != 1.0 for factor in class_factors)
    smoothing = options.label_smoothing

    def focal(log_p: Any) -> Any:
        """−(1 − p)^γ·log p, from log p."""
        return -log_p if options.gamma == 0 else -_power(1.0 - ops.exp(log_p), options.gamma) * log_p

    if options.mode == "multiclass":
        log_p = ops.log_softmax(x, axis=-1) if options.from_logits else _log_at_least(x)
        if inputs.label_map:
            label_values = ops.reshape(inputs.y_true, (batch, positions))
            labels, valid = label_indices(label_values, options.ignore_index)
            poison = label_poison(label_values)
            one_hot = ops.cast(ops.equal(labels[..., None], ops.arange(num_classes, dtype="int32")), dtype)
            # Σ_c [c = y]·f_c·focal(log p_c) = f_y·focal(log p_y): the label's class alone, per position
            # (0 where ignored: log p_y = 0 there, and so is its term).
            terms = focal(ops.sum(one_hot * log_p, axis=-1))
            if weighted_classes:
                terms = ops.sum(one_hot * factors, axis=-1) * terms
            if smoothing:
                per_class = focal(log_p) if not weighted_classes else factors * focal(log_p)  # (B, N, C)
                terms = (1.0 - smoothing) * terms + smoothing / num_classes * ops.sum(per_class, axis=-1)
        else:
            per_class = factors * focal(log_p)  # (B, N, C)
            q = ops.reshape(inputs.y_true, (batch, positions, num_classes))
            poison = label_poison(q)
            if poison is not None:
                poison = ops.sum(poison, axis=-1)
            ignored = ignored_positions(q, options.ignore_index)
            q = ops.cast(q, dtype)
            valid = None
            if ignored is not None:
                q = ops.where(ignored, 0.0, q)
                valid = ops.all(ops.logical_not(ignored), axis=-1)
            q = (1.0 - smoothing) * q + smoothing / num_classes
            terms = ops.sum(q * per_class, axis=-1)
        mark = ops.sum(non_finite_mark(x), axis=-1)
        if poison is not None:
            mark = mark + ops.cast(poison, dtype)
    else:
        t = ops.reshape(inputs.y_true, (batch, positions, 1 if inputs.label_map else num_classes))
        poison = label_poison(t)
        ignored = ignored_positions(t, options.ignore_index)
        t = ops.cast(t, dtype)
        if ignored is not None:
            t = ops.where(ignored, 0.0, t)
        if smoothing:
            t = (1.0 - smoothing) * t + smoothing / 2
        if options.from_logits:
            # max(x, 0) − t·x + log(1 + e^−|x|), as tf.nn.sigmoid_cross_entropy_with_logits: one exp
            # and one log1p where two log-sigmoids take several passes each; `where`, not relu and
            # abs, so that at x = 0 the gradient is σ(0) − t, not −t.
            positive = x >= 0
            ce = ops.where(positive, x, 0.0) - t * x + ops.log1p(ops.exp(ops.where(positive, -x, x)))
            p = ops.sigmoid(x)
        else:
            ce = -(t * _log_at_least(x) + (1.0 - t) * _log_at_least(1.0 - x))
            p = x
        terms = ce if options.gamma == 0 else _power(p + t * (1.0 - 2.0 * p), options.gamma) * ce  # (1 − p_t)^γ·ce
        if weighted_classes:
            terms = factors * terms
        alpha = options.positive_weight
        if alpha is not None:
            terms = ((1.0 - alpha) + (2.0 * alpha - 1.0) * t) * terms  # α·t + (1 − α)·(1 − t)
        valid = None if ignored is None else ops.broadcast_to(ops.logical_not(ignored), ops.shape(terms))
        mark = non_finite_mark(x)
        if poison is not None:
            mark = mark + ops.cast(poison, dtype)
    # A NaN or ±inf logit (or float target) makes its term NaN, and the logit's gradient NaN: added
    # after the weights, since XLA rewrites a product with a 0/1 weight as a select, which drops the
    # NaN of an ignored or zero-weight position.
    if valid is None and inputs.weight is None:
        return terms + mark, None
    valid = ops.ones_like(terms) if valid is None else ops.cast(valid, dtype)
    if inputs.weight is not None:
        weight = ops.reshape(ops.cast(inputs.weight, dtype), (batch, positions))
        valid = valid * (weight if options.mode == "multiclass" else weight[..., None])
    return valid * terms + mark, valid


def _term_rows(inputs: Inputs, options: FocalOptions, per_image: bool, sync: bool) -> Any:
    """``Σ v·ℓ / Σ v`` of each row (image, or the batch), 0 for a row without a valid position (NaN
    where a NaN entered it)."""
    terms, valid = focal_terms(inputs, options)
    axes = tuple(range(1, len(terms.shape)))
    term_sums = ops.sum(terms, axis=axes)
    if valid is None:  # every weight 1: the count is the number of terms of an image
        count = ops.cast(ops.prod(ops.shape(terms)[1:]), term_sums.dtype)
        counts = ops.zeros_like(term_sums) + count
    else:
        counts = ops.sum(valid, axis=axes)
    sums = ops.stack([term_sums, counts], axis=-1)  # (B, 2)
    if not per_image:
        sums = ops.sum(sums, axis=0, keepdims=True)
        if sync:
            sums = sum_across_replicas(sums)
    term_sum, count = sums[:, 0], sums[:, 1]
    has_valid = count > 0
    return ops.where(has_valid, term_sum / ops.where(has_valid, count, 1.0), term_sum * 0.0)


def focal_per_sample(
    y_true: Any, y_pred: Any, options: FocalOptions, weight: Any = None, data_format: str | None = "channels_last"
) -> Any:
    """The focal loss of each image, ``(B,)``: the mean of its terms over its valid positions."""
    inputs = prepare_inputs(y_true, y_pred, options, weight, data_format=data_format)
    return _term_rows(inputs, options, per_image=True, sync=False)


def pair_per_sample(
    y_true: Any, y_pred: Any, pair: PairOptions, weight: Any = None, data_format: str | None = "channels_last"
) -> Any:
    """``λ_overlap·L_overlap + λ_term·mean(ℓ)`` of each image ``(B,)``; with ``per_image=False`` the
    batch's value repeated B times."""
    inputs = prepare_inputs(y_true, y_pred, pair.overlap, weight, data_format=data_format)
    return per_sample(_pair_rows(inputs, pair), inputs, pair.overlap.per_image)


def _pair_rows(inputs: Inputs, pair: PairOptions) -> Any:
    """The pair's loss of each row: of each image ``(B,)``, or of the batch ``(1,)``."""
    options = pair.overlap
    pair.term.check_num_classes(inputs.num_classes)
    overlap = pair.lambda_overlap * overlap_rows(inputs, options)
    if pair.lambda_term == 0:  # computing the term would only add 0
        return overlap
    return overlap + pair.lambda_term * _term_rows(inputs, pair.term, options.per_image, options.sync_across_ranks)


# ------------------------------------------------------------------------------------------------
# Focal loss
# ------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="losses")
def focal_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    gamma: float = 2.0,
    alpha: float | ClassWeights | None = None,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    class_weights: ClassWeights | None = None,
    ignore_index: int | None = None,
    data_format: str | None = None,
) -> Any:
    """Focal loss of each sample, shape ``(B,)``: the mean of ``v·ℓ`` over the image's valid positions.

    Multiclass, per position: ``ℓ = −Σ_c w_c·α_c·q_c·(1 − p_c)^γ·log p_c``; binary and multilabel,
    per element: ``ℓ = w_c·α_t·(1 − p_t)^γ·BCE``; v the weight of the position (see
    :class:`FocalLoss`).

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1), or per-class targets of ``y_pred``'s shape
            (probabilities in [0, 1]).
        y_pred: logits ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (probabilities
            with ``from_logits=False``).
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``.
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for
            the negatives); multiclass: None or one weight per class.
        from_logits: apply the sigmoid / softmax inside; False: ``y_pred`` is probabilities.
        label_smoothing: ε in [0, 1): multiclass ``q = (1 − ε)·q + ε/C``; sigmoid
            ``t = (1 − ε)·t + ε/2``.
        class_weights: one weight per channel, relative (divided by the largest), multiplying the
            terms of that class.
        ignore_index: a target value whose positions (elements, for per-class targets) count nowhere.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.

    Returns:
        The loss of each sample, shape ``(B,)`` (0 for an image without a valid position).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, or an option has the wrong type.
        ValueError: shapes that do not match (never broadcast), a channel count that does not fit
            ``mode``, an option out of its range (the message names it), or, where the
            values are known (eagerly), a label, target, probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import focal_loss
    >>> logits = np.array([[[[2.0, -1.0], [-1.0, 2.0]]]], dtype="float32")   # (B=1, 1, 2, C=2)
    >>> np.round(np.asarray(focal_loss(np.array([[[0, 1]]]), logits, gamma=0.0)), 4)   # cross-entropy
    array([0.0486], dtype=float32)
    """
    options = FocalOptions.create(
        mode=mode,
        from_logits=from_logits,
        gamma=gamma,
        alpha=alpha,
        label_smoothing=label_smoothing,
        class_weights=class_weights,
        ignore_index=ignore_index,
    )
    return focal_per_sample(y_true, y_pred, options, weight, data_format)


@keras.saving.register_keras_serializable(package="losses")
class FocalLoss(LossWithWeightMap):
    r"""Focal loss (Lin et al., 2017) as a ``keras.losses.Loss``, channels last (or first, with
    ``data_format``); ``gamma=0`` is the cross-entropy.

    Multiclass (softmax), per position: ``ℓ = −Σ_c w_c·α_c·q_c·(1 − p_c)^γ·log p_c`` with q the
    label-smoothed one-hot label (label maps ``(B, *spatial)`` of class indices, never expanded to
    one-hot in memory, or per-class targets). Binary and multilabel (a sigmoid per element):
    ``ℓ = w_c·α_t·(1 − p_t)^γ·BCE`` with ``α_t = α·t + (1 − α)·(1 − t)``. Options as
    ``losses.torch.FocalLoss``: ``mode``, ``gamma``, ``alpha`` (binary/multilabel: the weight of
    the positives in [0, 1], as torchvision and MONAI; multiclass: one weight per class),
    ``from_logits``, ``label_smoothing``, ``class_weights`` (relative), ``ignore_index``; and
    ``data_format``, the layout of the inputs (as :class:`DiceLoss`).

    Each sample's loss is the mean of its terms over its valid positions (0 when it has none);
    Keras' reduction averages the samples. ``sample_weight``: one weight per image ``(B,)``, or a
    weight map ``(B, *spatial)`` that weighs each position's term.

    ``keras.losses.CategoricalFocalCrossentropy(alpha=a, gamma=g)`` on one-hot targets is
    ``FocalLoss(gamma=g, alpha=[a] * C)`` here (it sums over the classes too);
    ``keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=a)`` is
    ``FocalLoss(mode="multilabel", alpha=a)``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for
            the negatives); multiclass: None or one weight per class.
        from_logits: apply the sigmoid / softmax inside; False: ``y_pred`` is probabilities.
        label_smoothing: ε in [0, 1) (as :func:`focal_loss`).
        class_weights: one weight per channel, relative (divided by the largest).
        ignore_index: a target value whose positions (elements, for per-class targets) count nowhere.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        reduction: the Keras reduction over the samples: ``"sum_over_batch_size"`` (the mean),
            ``"sum"``, ``"mean"``, ``"mean_with_sample_weight"`` or None (one loss per sample).
        name: the name of the loss (its Keras name scope).
        dtype: the loss dtype (Keras' ``dtype`` argument); None: Keras' float type.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import numpy as np
    >>> from losses.keras import FocalLoss
    >>> loss = FocalLoss(mode="binary", alpha=0.25)
    >>> logits = np.array([[[[3.0], [-3.0]]]], dtype="float32")          # (B=1, 1, 2, C=1)
    >>> round(float(loss(np.array([[[1, 0]]]), logits)), 5)
    5e-05
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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "focal_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(data_format, name, reduction, dtype)
        self.options = FocalOptions.create(
            mode=mode,
            from_logits=from_logits,
            gamma=gamma,
            alpha=alpha,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
            ignore_index=ignore_index,
        )

    def loss_per_sample(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        return focal_per_sample(y_true, y_pred, self.options, weight, self.data_format)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.options.to_config()}


# ------------------------------------------------------------------------------------------------
# Pairs
# ------------------------------------------------------------------------------------------------

_COMMON_DEFAULTS = dict(
    mode="multiclass",
    from_logits=True,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    squared=False,
    log_loss=False,
    soft_labels=False,
    per_image=True,
    classes=None,
    class_weights=None,
    ignore_index=None,
    empty_target="smooth",
    average="macro",
    sync_across_ranks=False,
)


def _pair(
    overlap: str,
    overlap_options: dict[str, Any] | None,
    lambdas: tuple[float, float],
    lambda_names: tuple[str, str],
    common: dict[str, Any],
    term: dict[str, Any],
) -> PairOptions:
    unknown = sorted(set(common) - set(_COMMON_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r}; the options are {sorted(_COMMON_DEFAULTS)}, "
            "'overlap', 'overlap_options' and those of the cross-entropy term"
        )
    return PairOptions.create(overlap, {**_COMMON_DEFAULTS, **common}, overlap_options, *lambdas, lambda_names, **term)


@keras.saving.register_keras_serializable(package="losses")
def dice_ce_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    overlap: str = "dice",
    overlap_options: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Dice (or another overlap loss) plus cross-entropy of each sample, shape ``(B,)``: see :class:`DiceCELoss`.

    ``λ_dice·L_overlap + λ_ce·Σ v·ℓ / Σ v`` per image (per batch with ``per_image=False``, its value
    in every entry), ℓ the cross-entropy term of :func:`focal_loss` with ``gamma=0``.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1), or per-class targets of ``y_pred``'s shape
            (probabilities in [0, 1]).
        y_pred: logits ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (probabilities
            with ``from_logits=False``).
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, for both terms.
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_ce: the weight of the cross-entropy term (``>= 0``; not both 0).
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the cross-entropy term.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the other options of :class:`DiceLoss` (``from_logits``, ``smooth_nr``,
            ``smooth_dr``, ``squared``, ``log_loss``, ``soft_labels``, ``per_image``, ``classes``,
            ``class_weights``, ``ignore_index``, ``empty_target``, ``average``,
            ``sync_across_ranks``), with its defaults; ``classes`` selects the classes of the
            overlap term only.

    Returns:
        The loss of each sample, shape ``(B,)``.

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, or an option has the wrong type, or an option (or an entry of ``overlap_options``) this loss does not take.
        ValueError: shapes that do not match (never broadcast), a channel count that does not fit
            ``mode``, an option out of its range (the message names it), both lambdas 0, or, where the
            values are known (eagerly), a label, target, probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import dice_ce_loss
    >>> logits = np.array([[[[2.0, -1.0], [-1.0, 2.0]]]], dtype="float32")   # (B=1, 1, 2, C=2)
    >>> np.round(np.asarray(dice_ce_loss(np.array([[[0, 1]]]), logits)), 4)
    array([0.096], dtype=float32)
    """
    pair = _pair(
        overlap,
        overlap_options,
        (lambda_dice, lambda_ce),
        ("lambda_dice", "lambda_ce"),
        dict(options, mode=mode),
        dict(gamma=0.0, label_smoothing=label_smoothing),
    )
    return pair_per_sample(y_true, y_pred, pair, weight, data_format)


@keras.saving.register_keras_serializable(package="losses")
def dice_focal_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    gamma: float = 2.0,
    alpha: float | ClassWeights | None = None,
    overlap: str = "dice",
    overlap_options: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Dice (or another overlap loss) plus focal loss of each sample, shape ``(B,)``: see :class:`DiceFocalLoss`.

    ``λ_dice·L_overlap + λ_focal·Σ v·ℓ / Σ v`` per image (per batch with ``per_image=False``, its
    value in every entry), ℓ the term of :func:`focal_loss`.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1), or per-class targets of ``y_pred``'s shape
            (probabilities in [0, 1]).
        y_pred: logits ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (probabilities
            with ``from_logits=False``).
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, for both terms.
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_focal: the weight of the focal term (``>= 0``; not both 0).
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for
            the negatives); multiclass: None or one weight per class.
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the focal term.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the other options of :class:`DiceLoss` (``from_logits``, ``smooth_nr``,
            ``smooth_dr``, ``squared``, ``log_loss``, ``soft_labels``, ``per_image``, ``classes``,
            ``class_weights``, ``ignore_index``, ``empty_target``, ``average``,
            ``sync_across_ranks``), with its defaults; ``classes`` selects the classes of the
            overlap term only.

    Returns:
        The loss of each sample, shape ``(B,)``.

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, or an option has the wrong type, or an option (or an entry of ``overlap_options``) this loss does not take.
        ValueError: shapes that do not match (never broadcast), a channel count that does not fit
            ``mode``, an option out of its range (the message names it), both lambdas 0, or, where the
            values are known (eagerly), a label, target, probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import dice_focal_loss
    >>> logits = np.array([[[[2.0, -1.0], [-1.0, 2.0]]]], dtype="float32")   # (B=1, 1, 2, C=2)
    >>> np.round(np.asarray(dice_focal_loss(np.array([[[0, 1]]]), logits)), 4)
    array([0.0475], dtype=float32)
    """
    pair = _pair(
        overlap,
        overlap_options,
        (lambda_dice, lambda_focal),
        ("lambda_dice", "lambda_focal"),
        dict(options, mode=mode),
        dict(gamma=gamma, alpha=alpha, label_smoothing=label_smoothing),
    )
    return pair_per_sample(y_true, y_pred, pair, weight, data_format)


class _PairLoss(LossWithWeightMap):
    lambda_names: tuple[str, str] = ("", "")

    def __init__(
        self, pair: PairOptions, data_format: str | None, reduction: str | None, name: str, dtype: Any
    ) -> None:
        super().__init__(data_format, name, reduction, dtype)
        self.options = pair

    def loss_per_sample(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        return pair_per_sample(y_true, y_pred, self.options, weight, self.data_format)

    def synced_batch_loss(self) -> bool:
        return bool(self.options.overlap.sync_across_ranks and not self.options.overlap.per_image)

    def loss_of_batch(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        inputs = prepare_inputs(y_true, y_pred, self.options.overlap, weight, data_format=self.data_format)
        return _pair_rows(inputs, self.options)[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.options.to_config(self.lambda_names)}


@keras.saving.register_keras_serializable(package="losses")
class DiceCELoss(_PairLoss):
    """Dice (or another overlap loss) plus cross-entropy as a ``keras.losses.Loss``, channels last (or
    first, with ``data_format``): ``λ_dice·L_overlap + λ_ce·CE`` per image (per batch with
    ``per_image=False``).

    Both terms over the same valid positions, with one ``ignore_index``, one weight map (a
    per-position ``sample_weight``) and one rule for ``class_weights`` (class c's weight multiplies
    its overlap loss in the class mean and its cross-entropy terms). ``overlap`` picks the member of
    the overlap family (``"dice"``, ``"jaccard"``, ``"tversky"``, ``"focal_tversky"``,
    ``"generalized_dice"``) and ``overlap_options`` its own options; ``label_smoothing`` is the
    cross-entropy's; the other options are those of :class:`DiceLoss`. The same in
    ``losses.torch.DiceCELoss``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_ce: the weight of the cross-entropy term (``>= 0``; not both 0).
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the cross-entropy term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term; None: every class. The
            cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target contributes: ``"smooth"`` the smoothed
            formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction ``Σp / Σv``.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under a ``tf.distribute`` strategy (TensorFlow backend) with
            ``per_image=False``, all-reduce the per-class sums over the replicas, so that the loss
            and gradients are those of the global batch; nothing elsewhere.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        reduction: the Keras reduction over the samples: ``"sum_over_batch_size"`` (the mean),
            ``"sum"``, ``"mean"``, ``"mean_with_sample_weight"`` or None (one loss per sample).
        name: the name of the loss (its Keras name scope).
        dtype: the loss dtype (Keras' ``dtype`` argument); None: Keras' float type.

    Raises:
        TypeError: an option of the wrong type, or an option (or an entry of ``overlap_options``) this loss does not take.
        ValueError: an option value out of its range (the message names the option), or both lambdas 0.

    Example:

    >>> import numpy as np
    >>> from losses.keras import DiceCELoss
    >>> loss = DiceCELoss(ignore_index=255)
    >>> y_pred = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    >>> y_true = np.random.default_rng(1).integers(0, 3, size=(2, 8, 8))
    >>> float(loss(y_true, y_pred)) > 0
    True
    >>> DiceCELoss.from_config(loss.get_config()).get_config() == loss.get_config()
    True
    """

    lambda_names = ("lambda_dice", "lambda_ce")

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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_ce_loss",
        dtype: Any = None,
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
        pair = _pair(
            overlap,
            overlap_options,
            (lambda_dice, lambda_ce),
            self.lambda_names,
            common,
            dict(gamma=0.0, label_smoothing=label_smoothing),
        )
        super().__init__(pair, data_format, reduction, name, dtype)


@keras.saving.register_keras_serializable(package="losses")
class DiceFocalLoss(_PairLoss):
    """Dice (or another overlap loss) plus focal loss as a ``keras.losses.Loss``:
    ``λ_dice·L_overlap + λ_focal·focal`` per image (per batch with ``per_image=False``).

    ``gamma`` and ``alpha`` as :class:`FocalLoss`; the other options as :class:`DiceCELoss`. The
    same in ``losses.torch.DiceFocalLoss``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        lambda_dice: the weight of the overlap term (``>= 0``).
        lambda_focal: the weight of the focal term (``>= 0``; not both 0).
        gamma: the focusing exponent, ``>= 0`` (0: cross-entropy).
        alpha: binary and multilabel: None or the weight in [0, 1] of the positives (1 − alpha for
            the negatives); multiclass: None or one weight per class.
        overlap: the member of the overlap family: ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"`` or ``"generalized_dice"``.
        overlap_options: options of that member only (e.g. ``{"alpha": 0.3, "beta": 0.7}``).
        label_smoothing: ε in [0, 1) of the focal term.
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the overlap term; None: every class. The
            cross-entropy term takes every class.
        class_weights: one weight per channel, relative (divided by the largest): ``Σ w·L / Σ w``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
        empty_target: what a class absent from the target contributes: ``"smooth"`` the smoothed
            formula, ``"exclude"`` nothing, ``"penalize"`` the false-positive fraction ``Σp / Σv``.
        average: ``"macro"``: the mean of the per-class losses; ``"micro"``: one score of the
            class-weighted sums pooled over the classes, per image.
        sync_across_ranks: under a ``tf.distribute`` strategy (TensorFlow backend) with
            ``per_image=False``, all-reduce the per-class sums over the replicas, so that the loss
            and gradients are those of the global batch; nothing elsewhere.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        reduction: the Keras reduction over the samples: ``"sum_over_batch_size"`` (the mean),
            ``"sum"``, ``"mean"``, ``"mean_with_sample_weight"`` or None (one loss per sample).
        name: the name of the loss (its Keras name scope).
        dtype: the loss dtype (Keras' ``dtype`` argument); None: Keras' float type.

    Raises:
        TypeError: an option of the wrong type, or an option (or an entry of ``overlap_options``) this loss does not take.
        ValueError: an option value out of its range (the message names the option), or both lambdas 0.

    Example:

    >>> import numpy as np
    >>> from losses.keras import DiceFocalLoss
    >>> logits = np.array([[[[2.0, -1.0], [-1.0, 2.0]]]], dtype="float32")   # (B=1, 1, 2, C=2)
    >>> round(float(DiceFocalLoss()(np.array([[[0, 1]]]), logits)), 4)
    0.0475
    """

    lambda_names = ("lambda_dice", "lambda_focal")

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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_focal_loss",
        dtype: Any = None,
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
        pair = _pair(
            overlap,
            overlap_options,
            (lambda_dice, lambda_focal),
            self.lambda_names,
            common,
            dict(gamma=gamma, alpha=alpha, label_smoothing=label_smoothing),
        )
        super().__init__(pair, data_format, reduction, name, dtype)
