"""The overlap losses for Keras 3 (channels last, or first with ``data_format``), written in
``keras.ops``: Dice, Jaccard, Tversky, focal Tversky and generalized Dice, on the general form of
:mod:`losses._overlap`. On TensorFlow the per-class sums carry a hand-written gradient
(:func:`_sums_with_gradient`); JAX and torch differentiate them by autodiff, which their compilers
fuse."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from losses._validation import ClassIndices, ClassWeights
from losses._overlap import (
    ABS_DIFF,
    INTERSECTION,
    NUM_STATS,
    PRED_SQUARES,
    PRED_SUM,
    TARGET_SQUARES,
    TARGET_SUM,
    VALID_COUNT,
    OverlapOptions,
    overlap_loss,
)
from losses.keras._common import KerasOps, compute_dtype, serializable, upcast
from losses.keras._inputs import Inputs, LossWithWeightMap, ignored_positions, label_indices, prepare_inputs


def _overlap_stats_keras(inputs: Inputs, options: OverlapOptions) -> Any:
    """Per-class sums (S, C, NUM_STATS) of :mod:`losses._overlap`, channels last.

    Every sum of an image that holds a NaN or an infinity (in y_pred, or in a float y_true) is NaN,
    so that its loss and the gradient of all its elements are NaN, as in the PyTorch frontend.
    """
    y_true, y_pred, weight, label_map = inputs.y_true, inputs.y_pred, inputs.weight, inputs.label_map
    dtype = compute_dtype(y_pred)
    num_classes, positions = inputs.num_classes, inputs.positions
    batch = ops.shape(y_pred)[0]
    logits = ops.reshape(upcast(y_pred), (batch, positions, num_classes))
    float_target = keras.backend.is_float_dtype(keras.backend.standardize_dtype(y_true.dtype))

    # g: the target probability of each class (0 where ignored); v: the weight of each position
    # (0 where ignored), None where every weight is 1.
    if label_map:
        labels, valid = label_indices(ops.reshape(y_true, (batch, positions)), options.ignore_index)
        if options.mode == "binary":
            truth = ops.cast(ops.equal(labels, 1), dtype)[..., None]
        else:
            # A comparison, not a materialised one-hot: XLA fuses it into the reductions.
            truth = ops.cast(ops.equal(labels[..., None], ops.arange(num_classes, dtype="int32")), dtype)
        valid = None if valid is None else ops.cast(valid, dtype)[..., None]
        if valid is not None:
            truth = truth * valid
    else:
        target = ops.reshape(y_true, (batch, positions, num_classes))
        ignored = ignored_positions(target, options.ignore_index)
        valid = None if ignored is None else ops.cast(ops.logical_not(ignored), dtype)
        truth = ops.cast(target, dtype)
        if valid is not None:
            truth = ops.where(ignored, ops.zeros_like(truth), truth)
    if weight is not None:
        weights = ops.reshape(ops.cast(weight, dtype), (batch, positions, 1))
        valid = weights if valid is None else valid * weights

    activation = _Activation(options)
    needed = options.needed_stats()
    if keras.backend.backend() == "tensorflow":
        stats = _sums_with_gradient(logits, truth, valid, activation, needed)
    else:
        stats = _sums(activation(logits), truth, valid, needed)
    # 0 for finite values and NaN otherwise, left out of the differentiation: the NaN reaches the
    # gradient through the sums, whose own gradient it makes NaN. A float target's NaN or ±inf shows
    # in Σ v·g (0·inf where its weight is 0); a logit's may not (sigmoid(inf) = 1), so it is tested.
    finite = ops.all(ops.isfinite(ops.stop_gradient(logits)), axis=(1, 2))
    if label_map and float_target:  # a NaN label, whose class the cast to int32 would pick
        finite = ops.logical_and(finite, ops.all(ops.isfinite(ops.reshape(y_true, (batch, positions))), axis=1))
    guard = ops.where(finite, ops.zeros((), dtype), ops.full((), np.nan, dtype))
    if not label_map and float_target:
        guard = guard + 0.0 * ops.sum(ops.stop_gradient(stats[..., TARGET_SUM]), axis=1)
    stats = stats + guard[:, None, None]
    if not options.per_image:
        stats = ops.sum(stats, axis=0, keepdims=True)
    return stats


class _Activation:
    """The probabilities of the logits (B, N, C), and the gradient with respect to the logits from
    the one with respect to the probabilities (for the hand-written gradient)."""

    def __init__(self, options: OverlapOptions) -> None:
        if not options.from_logits:
            self.kind = "identity"
        else:
            self.kind = "softmax" if options.mode == "multiclass" else "sigmoid"

    def __call__(self, logits: Any) -> Any:
        if self.kind == "softmax":
            return ops.softmax(logits, axis=-1)
        return ops.sigmoid(logits) if self.kind == "sigmoid" else logits

    def backward(self, probs: Any, grad: Any) -> Any:
        if self.kind == "softmax":
            return probs * (grad - ops.sum(probs * grad, axis=-1, keepdims=True))
        if self.kind == "sigmoid":
            import tensorflow as tf

            return tf.raw_ops.SigmoidGrad(y=probs, dy=grad)  # p·(1 − p)·grad in one pass
        return grad


def _sums(probs: Any, truth: Any, valid: Any, needed: frozenset[int]) -> Any:
    """The sums (B, C, NUM_STATS) over the positions of the probabilities p and the targets g
    (B, N, C) with the weights v (B, N, 1), None for 1; the columns not ``needed`` are 0."""

    def weighted_sum(x: Any) -> Any:
        return ops.sum(x if valid is None else x * valid, axis=1)

    shape = ops.shape(probs)
    zeros = ops.zeros((shape[0], shape[2]), probs.dtype)
    columns = [zeros] * NUM_STATS
    if INTERSECTION in needed:
        columns[INTERSECTION] = weighted_sum(probs * truth)
    if PRED_SUM in needed:
        columns[PRED_SUM] = weighted_sum(probs)
    columns[TARGET_SUM] = zeros + weighted_sum(truth)
    if PRED_SQUARES in needed:
        columns[PRED_SQUARES] = weighted_sum(probs * probs)
    if TARGET_SQUARES in needed:
        columns[TARGET_SQUARES] = zeros + weighted_sum(truth * truth)
    if ABS_DIFF in needed:
        columns[ABS_DIFF] = weighted_sum(ops.abs(probs - truth))
    if VALID_COUNT in needed:
        columns[VALID_COUNT] = zeros + ops.sum(ops.ones_like(probs[..., :1]) if valid is None else valid, axis=1)
    return ops.stack(columns, axis=-1)


def _sums_with_gradient(logits: Any, truth: Any, valid: Any, activation: _Activation, needed: frozenset[int]) -> Any:
    """:func:`_sums` of the activation of the logits, with its gradient written out (TensorFlow):
    autodiff broadcasts the upstream gradient of every sum to the input's size and adds them up, a
    pass over the input each; this is one expression per input. The gradients of the targets and
    weights are written too, so that they differentiate as under autodiff (a ``tf.function`` prunes
    what nothing uses)."""
    import tensorflow as tf

    @tf.custom_gradient
    def sums(logits: Any, truth: Any, *weights: Any) -> Any:
        v = weights[0] if weights else None
        probs = activation(logits)

        def grad(upstream: Any) -> Any:
            k = [upstream[:, None, :, stat] for stat in range(NUM_STATS)]  # (B, 1, C) against (B, N, C)
            sign = ops.sign(probs - truth) if ABS_DIFF in needed else None
            d_probs = _total(
                probs,
                (lambda: k[INTERSECTION] * truth) if INTERSECTION in needed else None,
                (lambda: k[PRED_SUM]) if PRED_SUM in needed else None,
                (lambda: 2.0 * k[PRED_SQUARES] * probs) if PRED_SQUARES in needed else None,
                (lambda: k[ABS_DIFF] * sign) if ABS_DIFF in needed else None,
            )
            d_truth = _target_gradient(k, probs, truth, sign, needed)
            if v is None:
                return activation.backward(probs, d_probs), d_truth
            d_v = _total(
                probs,
                (lambda: k[INTERSECTION] * probs * truth) if INTERSECTION in needed else None,
                (lambda: k[PRED_SUM] * probs) if PRED_SUM in needed else None,
                lambda: k[TARGET_SUM] * truth,
                (lambda: k[PRED_SQUARES] * probs * probs) if PRED_SQUARES in needed else None,
                (lambda: k[TARGET_SQUARES] * truth * truth) if TARGET_SQUARES in needed else None,
                (lambda: k[ABS_DIFF] * ops.abs(probs - truth)) if ABS_DIFF in needed else None,
                (lambda: k[VALID_COUNT]) if VALID_COUNT in needed else None,
            )
            if v.shape[-1] != d_v.shape[-1]:  # one weight per position, for every class
                d_v = ops.sum(d_v, axis=-1, keepdims=True)
            return activation.backward(probs, d_probs * v), d_truth * v, d_v

        return _sums(probs, truth, v, needed), grad

    return sums(logits, truth) if valid is None else sums(logits, truth, valid)


def _target_gradient(k: list[Any], probs: Any, truth: Any, sign: Any, needed: frozenset[int]) -> Any:
    """∂(Σ_s k_s·stat_s)/∂g before the weights: k_I·p + k_G + 2·k_G2·g − k_A·sign(p − g)."""
    return _total(
        truth,
        (lambda: k[INTERSECTION] * probs) if INTERSECTION in needed else None,
        lambda: k[TARGET_SUM],
        (lambda: 2.0 * k[TARGET_SQUARES] * truth) if TARGET_SQUARES in needed else None,
        (lambda: -k[ABS_DIFF] * sign) if ABS_DIFF in needed else None,
    )


def _total(like: Any, *terms: Any) -> Any:
    """The sum of the terms (functions; None for a term left out), broadcast to the shape of ``like``."""
    present = [make() for make in terms if make is not None]
    if not present:
        return ops.zeros_like(like)
    total = present[0]
    for term in present[1:]:
        total = total + term
    return total if tuple(total.shape) == tuple(like.shape) else ops.broadcast_to(total, ops.shape(like))


def sum_across_replicas(stats: Any) -> Any:
    """Σ of ``stats`` over the replicas of a ``tf.distribute`` strategy, inside its replica context.

    The replica-context all-reduce is differentiable: its gradient is the sum over the replicas of
    the upstream gradients. Other backends, or no strategy: ``stats`` unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return stats
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return stats
    return tf.distribute.get_replica_context().all_reduce("sum", stats)


def overlap_rows(inputs: Inputs, options: OverlapOptions) -> Any:
    """The loss of each row: of each image ``(B,)``, or of the batch ``(1,)`` with ``per_image=False``."""
    options = options.for_target(inputs.label_map)
    stats = _overlap_stats_keras(inputs, options)
    if options.sync_across_ranks and not options.per_image:
        # Per-image losses need no synchronisation: Keras divides each replica's mean by the number
        # of replicas and sums the gradients, which is already the global mean and its gradient.
        stats = sum_across_replicas(stats)
    # A row with a NaN sum in any class (also one left out by `classes`) has a NaN loss.
    stats = stats + 0.0 * ops.sum(stats, axis=(1, 2), keepdims=True)
    dtype = keras.backend.standardize_dtype(stats.dtype)
    weights = ops.convert_to_tensor(np.asarray(options.full_weights(inputs.num_classes), dtype))
    return overlap_loss(KerasOps, stats, weights, options.form)


def overlap_per_sample(
    y_true: Any, y_pred: Any, options: OverlapOptions, weight: Any = None, data_format: str | None = "channels_last"
) -> Any:
    """Loss of each image, shape (B,); with per_image=False the batch loss repeated B times."""
    inputs = prepare_inputs(y_true, y_pred, options, weight, data_format=data_format)
    return per_sample(overlap_rows(inputs, options), inputs, options.per_image)


def per_sample(rows: Any, inputs: Inputs, per_image: bool) -> Any:
    """``rows`` as one value per sample: itself, or the batch's loss repeated B times."""
    return rows if per_image else ops.broadcast_to(rows, (ops.shape(inputs.y_pred)[0],))


class _OverlapLoss(LossWithWeightMap):
    """A member of the overlap family as a ``keras.losses.Loss``: its options, checked once."""

    loss_name = ""

    def __init__(self, reduction: str | None, name: str, dtype: Any, data_format: str | None, **options: Any) -> None:
        super().__init__(data_format, name, reduction, dtype)
        self.options = OverlapOptions.create(self.loss_name, **options)

    def loss_per_sample(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        return overlap_per_sample(y_true, y_pred, self.options, weight, self.data_format)

    def synced_batch_loss(self) -> bool:
        return bool(self.options.sync_across_ranks and not self.options.per_image)

    def loss_of_batch(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        inputs = prepare_inputs(y_true, y_pred, self.options, weight, data_format=self.data_format)
        return overlap_rows(inputs, self.options)[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.options.to_dict()}


# ------------------------------------------------------------------------------------------------
# The members
# ------------------------------------------------------------------------------------------------


@serializable
def dice_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Dice loss of each sample, ``1 − (2·Σp·g + smooth_nr) / (Σp + Σg + smooth_dr)``; shape ``(B,)``.

    Per class, p the predicted probability and g the target summed over the positions of each image
    (of the batch with ``per_image=False``), averaged over the classes: the functional form of
    :class:`DiceLoss`, with the options of ``losses.torch.functional.dice_loss``. With
    ``per_image=False`` every sample carries the loss of the whole batch, so that the mean over the
    batch is that loss.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1; multiclass: ``[0, C)``), or per-class targets
            of ``y_pred``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        y_pred: predictions ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (``C = 1``
            in binary mode), logits (``from_logits=True``, the default) or probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, entering every sum (0 leaves
            the position out).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the keyword options of :class:`DiceLoss` (``squared``, ``log_loss``,
            ``empty_target``, ``average`` and ``from_logits``, ``smooth_nr``, ``smooth_dr``,
            ``soft_labels``, ``per_image``, ``classes``, ``class_weights``, ``ignore_index``,
            ``sync_across_ranks``), with its defaults.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, an option has the wrong type, or ``options`` holds one this loss does
            not take.
        ValueError: shapes that do not match (never broadcast), an option out of its range (the
            message names it), or, where the values are known (eagerly), a label, target,
            probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import dice_loss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')  # (B=1, 2, 2, C=1)
    >>> mask = np.array([[[1, 0], [0, 1]]])                         # (1, 2, 2)
    >>> loss = dice_loss(mask, logits, mode="binary")
    >>> np.round(np.asarray(loss), 4)
    array([0.018], dtype=float32)
    """
    return overlap_per_sample(y_true, y_pred, OverlapOptions.create("dice", mode=mode, **options), weight, data_format)


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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction,
            name or f"{self.loss_name}_loss",
            dtype,
            data_format,
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


@serializable
class DiceLoss(_RatioLoss):
    """Dice loss as a ``keras.losses.Loss``, channels last (``data_format="channels_first"``: first).

    Per class, with p the predicted and g the target probability, summed over the pixels of each
    image (``per_image=True``) or of the whole batch::

        loss = 1 − (2·Σp·g + smooth_nr) / (Σp + Σg + smooth_dr)

    averaged over classes with ``class_weights`` (``average="micro"``: one Dice of the sums pooled
    over the classes). Options (the same in ``losses.torch.DiceLoss``): ``mode`` ("binary",
    "multiclass", "multilabel"), ``from_logits``, ``smooth_nr``, ``smooth_dr``, ``squared``,
    ``log_loss``, ``soft_labels``, ``per_image``, ``classes``, ``class_weights``, ``ignore_index``,
    ``empty_target`` ("smooth", "exclude", "penalize"), ``average`` ("macro", "micro"),
    ``sync_across_ranks``, ``data_format`` and the Keras ``reduction``. Registered as serializable
    under the package ``losses``.

    ``sample_weight``: one weight per image ``(B,)``, or a weight map ``(B, *spatial)`` /
    ``(B, *spatial, 1)`` that enters every sum (``model.fit(x, y, sample_weight=pixel_weights)``).

    ``data_format``: the layout of the inputs, as Keras' layers take it. ``"channels_first"`` reads
    ``y_pred`` as ``(B, C, *spatial)``, per-class targets of its shape, label maps and weight maps as
    ``(B, *spatial)`` or ``(B, 1, *spatial)``; the loss and the gradient are those of the inputs
    channels last. None (the default) is ``keras.config.image_data_format()`` when the loss is
    built; the value is kept in the config, so a saved model reloads with the layout it trained with.

    ``sync_across_ranks=True`` (TensorFlow backend, ``model.fit`` under a ``tf.distribute`` strategy
    such as ``MirroredStrategy``): with ``per_image=False`` the per-class sums are all-reduced over
    the replicas, so that the loss and the gradients are those of the single-device run on the
    global batch; with ``per_image=True`` Keras's own scaling already gives them. Outside a strategy
    and on the JAX and torch backends it does nothing.

    Values are checked where they are known (eagerly; not inside ``tf.function`` or ``jit``):
    labels in ``[0, C)`` (binary ``{0, 1}``; whole numbers when stored as floats), per-class targets
    in ``[0, 1]``, probabilities in ``[0, 1]`` with ``from_logits=False``, ``ignore_index``
    excepted; labels keep their integer dtype (Keras' own loss call would cast them to float). A
    NaN or ±inf in ``y_pred`` or a float ``y_true`` gives a NaN loss for its image and a NaN
    gradient for all of it. An empty batch gives 0 with ``reduction="sum"`` and NaN with
    ``"sum_over_batch_size"`` (the mean of nothing), in eager and traced code alike.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: denominator ``Σp² + Σg²`` (Milletari et al., 2016).
        log_loss: ``−log(dice)`` instead of ``1 − dice`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss; None: every class.
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
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import DiceLoss
    >>> loss = DiceLoss(mode="multiclass", ignore_index=255)
    >>> y_pred = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    >>> y_true = np.random.default_rng(1).integers(0, 3, size=(2, 8, 8))
    >>> value = float(loss(y_true, y_pred))
    >>> 0.0 < value < 1.0
    True
    >>> DiceLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    True
    """

    loss_name = "dice"


@serializable
def jaccard_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Jaccard (IoU) loss of each sample, ``1 − (Σp·g + s_nr) / (Σp + Σg − Σp·g + s_dr)``; shape ``(B,)``.

    Per class, averaged over the classes; the functional form of :class:`JaccardLoss`, with inputs
    and options as :func:`dice_loss`.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1; multiclass: ``[0, C)``), or per-class targets
            of ``y_pred``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        y_pred: predictions ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (``C = 1``
            in binary mode), logits (``from_logits=True``, the default) or probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, entering every sum (0 leaves
            the position out).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the keyword options of :class:`JaccardLoss` (``squared``, ``log_loss``,
            ``empty_target``, ``average`` and ``from_logits``, ``smooth_nr``, ``smooth_dr``,
            ``soft_labels``, ``per_image``, ``classes``, ``class_weights``, ``ignore_index``,
            ``sync_across_ranks``), with its defaults.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, an option has the wrong type, or ``options`` holds one this loss does
            not take.
        ValueError: shapes that do not match (never broadcast), an option out of its range (the
            message names it), or, where the values are known (eagerly), a label, target,
            probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import jaccard_loss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')  # (B=1, 2, 2, C=1)
    >>> np.round(np.asarray(jaccard_loss(np.array([[[1, 0], [0, 1]]]), logits, mode="binary")), 4)
    array([0.0353], dtype=float32)
    """
    return overlap_per_sample(
        y_true, y_pred, OverlapOptions.create("jaccard", mode=mode, **options), weight, data_format
    )


@serializable
class JaccardLoss(_RatioLoss):
    """Jaccard (IoU) loss as a ``keras.losses.Loss``: per class ``1 − (TP + s_nr) / (TP + FP + FN + s_dr)``.

    Options as :class:`DiceLoss` (``squared``: FP and FN from Σp² and Σg²); the same in
    ``losses.torch.JaccardLoss``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        squared: FP and FN from Σp² and Σg² (the denominator ``Σp² + Σg² − Σp·g``).
        log_loss: ``−log(J)`` instead of ``1 − J`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss; None: every class.
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
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import numpy as np
    >>> from losses.keras import JaccardLoss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')
    >>> round(float(JaccardLoss(mode="binary")(np.array([[[1, 0], [0, 1]]]), logits)), 4)
    0.0353
    """

    loss_name = "jaccard"


@serializable
def tversky_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Tversky loss of each sample, ``1 − (TP + s_nr) / (TP + α·FP + β·FN + s_dr)``; shape ``(B,)``.

    With TP = Σp·g, FP = Σp − TP, FN = Σg − TP per class, averaged over the classes: ``alpha``
    weighs false positives, ``beta`` false negatives. The functional form of :class:`TverskyLoss`.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1; multiclass: ``[0, C)``), or per-class targets
            of ``y_pred``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        y_pred: predictions ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (``C = 1``
            in binary mode), logits (``from_logits=True``, the default) or probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, entering every sum (0 leaves
            the position out).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the keyword options of :class:`TverskyLoss` (``alpha``, ``beta``, ``log_loss``,
            ``empty_target``, ``average`` and ``from_logits``, ``smooth_nr``, ``smooth_dr``,
            ``soft_labels``, ``per_image``, ``classes``, ``class_weights``, ``ignore_index``,
            ``sync_across_ranks``), with its defaults.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, an option has the wrong type, or ``options`` holds one this loss does
            not take.
        ValueError: shapes that do not match (never broadcast), an option out of its range (the
            message names it), or, where the values are known (eagerly), a label, target,
            probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import tversky_loss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')
    >>> loss = tversky_loss(np.array([[[1, 0], [0, 1]]]), logits, mode="binary", alpha=0.3, beta=0.7)
    >>> np.round(np.asarray(loss), 4)
    array([0.018], dtype=float32)
    """
    return overlap_per_sample(
        y_true, y_pred, OverlapOptions.create("tversky", mode=mode, **options), weight, data_format
    )


@serializable
class TverskyLoss(_OverlapLoss):
    """Tversky loss (Salehi et al., 2017) as a ``keras.losses.Loss``: per class
    ``1 − (TP + s_nr) / (TP + α·FP + β·FN + s_dr)``.

    ``alpha`` weighs false positives and ``beta`` false negatives, as in MONAI, smp, kornia and
    ``losses.torch.TverskyLoss``. ``keras.losses.Tversky(alpha=a, beta=b)`` weighs them the other
    way round: it is ``TverskyLoss(alpha=b, beta=a)`` here (up to its epsilon and its sums over all
    axes).

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        log_loss: ``−log(T)`` instead of ``1 − T`` (clamped at 1e-7, never infinite).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss; None: every class.
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
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import numpy as np
    >>> from losses.keras import TverskyLoss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')
    >>> round(float(TverskyLoss(mode="binary", alpha=0.3, beta=0.7)(np.array([[[1, 0], [0, 1]]]), logits)), 4)
    0.018
    """

    loss_name = "tversky"

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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "tversky_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction,
            name,
            dtype,
            data_format,
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


@serializable
def focal_tversky_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Focal Tversky loss of each sample: per class ``max(1 − T, 0)^γ`` averaged over classes; shape ``(B,)``.

    ``T = (TP + s_nr) / (TP + α·FP + β·FN + s_dr)`` is the Tversky index of :func:`tversky_loss`.
    The functional form of :class:`FocalTverskyLoss`.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1; multiclass: ``[0, C)``), or per-class targets
            of ``y_pred``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        y_pred: predictions ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (``C = 1``
            in binary mode), logits (``from_logits=True``, the default) or probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, entering every sum (0 leaves
            the position out).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the keyword options of :class:`FocalTverskyLoss` (``alpha``, ``beta``, ``gamma``,
            ``empty_target``, ``average`` and ``from_logits``, ``smooth_nr``, ``smooth_dr``,
            ``soft_labels``, ``per_image``, ``classes``, ``class_weights``, ``ignore_index``,
            ``sync_across_ranks``), with its defaults.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, an option has the wrong type, or ``options`` holds one this loss does
            not take.
        ValueError: shapes that do not match (never broadcast), an option out of its range (the
            message names it), or, where the values are known (eagerly), a label, target,
            probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import focal_tversky_loss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')
    >>> np.round(np.asarray(focal_tversky_loss(np.array([[[1, 0], [0, 1]]]), logits, mode="binary")), 4)
    array([0.0491], dtype=float32)
    """
    return overlap_per_sample(
        y_true, y_pred, OverlapOptions.create("focal_tversky", mode=mode, **options), weight, data_format
    )


@serializable
class FocalTverskyLoss(_OverlapLoss):
    """Focal Tversky loss (Abraham & Khan, 2019) as a ``keras.losses.Loss``: per class ``(1 − T)^γ``
    with T the Tversky index of :class:`TverskyLoss`, before the class average.

    Defaults ``alpha=0.3, beta=0.7, gamma=0.75``: the paper's recommendation (its α = 0.7 weighs the
    false negatives, its exponent is 1/γ with γ = 4/3). The same in ``losses.torch.FocalTverskyLoss``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        alpha: the weight of the false positives (``>= 0``).
        beta: the weight of the false negatives (``>= 0``; not both 0).
        gamma: the exponent (``> 0``).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss; None: every class.
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
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import numpy as np
    >>> from losses.keras import FocalTverskyLoss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')
    >>> round(float(FocalTverskyLoss(mode="binary")(np.array([[[1, 0], [0, 1]]]), logits)), 4)
    0.0491
    """

    loss_name = "focal_tversky"

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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "focal_tversky_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction,
            name,
            dtype,
            data_format,
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


@serializable
def generalized_dice_loss(
    y_true: Any,
    y_pred: Any,
    mode: str = "multiclass",
    weight: Any = None,
    *,
    data_format: str | None = None,
    **options: Any,
) -> Any:
    """Generalized Dice loss of each sample (Sudre et al., 2017); shape ``(B,)``.

    ``1 − (2·Σ_c w_c·TP_c + s_nr) / (Σ_c w_c·(Σp + Σg)_c + s_dr)`` per image, one ratio pooled over
    the classes with weights ``w_c`` from the target's class sums. The functional form of
    :class:`GeneralizedDiceLoss`.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices (binary: 0 or 1; multiclass: ``[0, C)``), or per-class targets
            of ``y_pred``'s shape (one-hot, multi-hot or probabilities in [0, 1]).
        y_pred: predictions ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first (``C = 1``
            in binary mode), logits (``from_logits=True``, the default) or probabilities.
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight: an optional weight per position, ``(B, *spatial)`` or ``(B, *spatial, 1)``
            (``(B, 1, *spatial)`` channels first), finite and ``>= 0``, entering every sum (0 leaves
            the position out).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.
        **options: the keyword options of :class:`GeneralizedDiceLoss` (``weight_type`` and
            ``from_logits``, ``smooth_nr``, ``smooth_dr``, ``soft_labels``, ``per_image``,
            ``classes``, ``class_weights``, ``ignore_index``, ``sync_across_ranks``), with its
            defaults.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, an option has the wrong type, or ``options`` holds one this loss does
            not take.
        ValueError: shapes that do not match (never broadcast), an option out of its range (the
            message names it), or, where the values are known (eagerly), a label, target,
            probability or weight out of its range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import generalized_dice_loss
    >>> logits = np.array([[[[4.0, -4.0], [-4.0, 4.0]], [[-4.0, 4.0], [4.0, -4.0]]]], dtype='float32')
    >>> np.round(np.asarray(generalized_dice_loss(np.array([[[0, 1], [1, 0]]]), logits)), 4)
    array([0.0003], dtype=float32)
    """
    return overlap_per_sample(
        y_true, y_pred, OverlapOptions.create("generalized_dice", mode=mode, **options), weight, data_format
    )


@serializable
class GeneralizedDiceLoss(_OverlapLoss):
    """Generalized Dice loss (Sudre et al., 2017) as a ``keras.losses.Loss``:
    ``1 − (2·Σ_c w_c·TP_c + s_nr) / (Σ_c w_c·(Σp + Σg)_c + s_dr)`` per image.

    ``w_c`` is ``class_weights_c`` divided by ``G_c²`` (``weight_type="square"``), by ``G_c``
    (``"simple"``) or by 1 (``"uniform"``), ``G_c`` the target sum of class c; a class absent from
    the target gets the largest weight of the present ones, an image with no class present only its
    smoothing (as in MONAI). The same in ``losses.torch.GeneralizedDiceLoss``.

    Args:
        mode: ``"binary"`` (``C = 1``, sigmoid), ``"multiclass"`` (``C >= 2``, softmax) or
            ``"multilabel"`` (independent sigmoids; target of the prediction's shape).
        weight_type: ``"square"`` (``w_c = 1/G_c²``), ``"simple"`` (``1/G_c``) or ``"uniform"`` (1).
        from_logits: apply the (numerically stable) sigmoid / softmax inside; False: ``y_pred`` is
            probabilities.
        smooth_nr: added to the numerator (``>= 0``).
        smooth_dr: added to the denominator (``>= 0`` and ``>= smooth_nr``).
        soft_labels: TP = ``(Σp + Σg − Σ|p − g|) / 2``, equal to Σp·g for hard labels and
            minimised at p = g for soft targets.
        per_image: sums per image and class; False: per class over the whole batch.
        classes: the indices of the classes that enter the loss; None: every class.
        class_weights: one weight per channel, relative (divided by the largest), multiplying ``w_c``.
        ignore_index: a target value whose positions are left out of every sum (gradient exactly 0).
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
        TypeError: an option of the wrong type.
        ValueError: an option value out of its range (the message names the option).

    Example:

    >>> import numpy as np
    >>> from losses.keras import GeneralizedDiceLoss
    >>> logits = np.array([[[[4.0, -4.0], [-4.0, 4.0]], [[-4.0, 4.0], [4.0, -4.0]]]], dtype='float32')
    >>> round(float(GeneralizedDiceLoss()(np.array([[[0, 1], [1, 0]]]), logits)), 4)
    0.0003
    """

    loss_name = "generalized_dice"

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
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "generalized_dice_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction,
            name,
            dtype,
            data_format,
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
