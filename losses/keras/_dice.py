"""Dice loss for Keras 3 (channels last), written in ``keras.ops``."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

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
    dice_from_stats,
)
from losses._validation import shape_text
from losses.keras._common import KerasOps, check_floating, compute_dtype, concrete_value, shapes_match


def _is_label_map(y_true_shape: tuple, y_pred_shape: tuple, mode: str) -> bool:
    if shapes_match(y_true_shape, y_pred_shape):
        return False
    label_shapes = (y_pred_shape[:-1], (*y_pred_shape[:-1], 1))
    if mode != "multilabel" and any(shapes_match(y_true_shape, s) for s in label_shapes):
        return True
    if mode == "multilabel":
        expected = f"{shape_text(y_pred_shape)} (y_pred's shape)"
    else:
        expected = (f"{shape_text(y_pred_shape)} (probabilities) or a label map of shape "
                    f"{shape_text(label_shapes[0])} or {shape_text(label_shapes[1])}")
    raise ValueError(f"y_true has shape {shape_text(y_true_shape)} but y_pred has shape {shape_text(y_pred_shape)}; "
                     f"expected y_true of shape {expected}. Shapes are never broadcast.")


def _check_labels(labels: Any, num_classes: int, options: DiceOptions) -> None:
    """Eager inputs only: inside a traced function (tf.function, jit) the check is skipped."""
    values = concrete_value(labels)
    if values is None:
        return
    upper = 2 if options.mode == "binary" else num_classes
    bad = (values < 0) | (values >= upper)
    if options.ignore_index is not None:
        bad &= values != options.ignore_index
    if bad.any():
        allowed = "0 or 1" if options.mode == "binary" else f"in [0, {num_classes})"
        extra = "" if options.ignore_index is None else f" or ignore_index={options.ignore_index}"
        found = np.unique(values[bad])[:8].tolist()
        raise ValueError(f"y_true labels must be {allowed}{extra}; found {found}")


def _dice_stats_keras(y_true: Any, y_pred: Any, options: DiceOptions, label_map: bool) -> Any:
    """Per-class sums (S, C, 7) of :mod:`losses._dice`, channels last."""
    dtype = compute_dtype(y_pred)
    num_classes = y_pred.shape[-1]
    batch = ops.shape(y_pred)[0]
    logits = ops.reshape(ops.cast(y_pred, dtype), (batch, -1, num_classes))
    if options.from_logits:
        probs = ops.softmax(logits, axis=-1) if options.mode == "multiclass" else ops.sigmoid(logits)
    else:
        probs = logits
    needed = options.needed_stats()
    ignore = options.ignore_index

    if label_map:
        labels = ops.reshape(y_true, (batch, -1))
        if not keras.backend.is_int_dtype(keras.backend.standardize_dtype(labels.dtype)):
            labels = ops.round(labels)  # Keras losses receive labels cast to float
        labels = ops.cast(labels, "int32")
        _check_labels(labels, num_classes, options)
        if options.mode == "binary":
            truth = ops.cast(ops.equal(labels, 1), dtype)[..., None]
        else:
            # A comparison, not a materialised one-hot: XLA fuses it into the reductions.
            truth = ops.cast(ops.equal(labels[..., None], ops.arange(num_classes, dtype="int32")), dtype)
        valid = None if ignore is None else ops.cast(ops.not_equal(labels, ignore), dtype)[..., None]
    else:
        target = ops.reshape(y_true, (batch, -1, num_classes))
        valid = None if ignore is None else ops.cast(ops.not_equal(target, ignore), dtype)
        truth = ops.cast(target, dtype)
    if valid is not None:
        truth = truth * valid
        probs_valid = probs * valid
    else:
        probs_valid = probs

    zeros = ops.zeros_like(probs_valid[:, 0, :])
    columns = [zeros] * NUM_STATS
    if INTERSECTION in needed:
        columns[INTERSECTION] = ops.sum(probs_valid * truth, axis=1)
    if PRED_SUM in needed:
        columns[PRED_SUM] = ops.sum(probs_valid, axis=1)
    columns[TARGET_SUM] = ops.sum(truth, axis=1)
    if PRED_SQUARES in needed:
        columns[PRED_SQUARES] = ops.sum(probs_valid * probs_valid, axis=1)
    if TARGET_SQUARES in needed:
        columns[TARGET_SQUARES] = ops.sum(truth * truth, axis=1)
    if ABS_DIFF in needed:
        columns[ABS_DIFF] = ops.sum(ops.abs(probs_valid - truth), axis=1)
    if VALID_COUNT in needed:
        ones = ops.ones_like(probs[..., :1]) if valid is None else valid
        columns[VALID_COUNT] = zeros + ops.sum(ones, axis=1)
    stats = ops.stack(columns, axis=-1)
    if not options.per_image:
        stats = ops.sum(stats, axis=0, keepdims=True)
    return stats


def _dice_per_sample(y_true: Any, y_pred: Any, options: DiceOptions) -> Any:
    """Loss of each image, shape (B,); with per_image=False the batch loss repeated B times."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    check_floating("y_pred", y_pred)
    if len(y_pred.shape) < 3:
        raise ValueError("y_pred must have shape (B, *spatial, C) with at least one spatial dimension; "
                         f"got shape {shape_text(y_pred.shape)}")
    num_classes = y_pred.shape[-1]
    if num_classes is None:
        raise ValueError("y_pred must have a known number of channels (its last dimension)")
    options.check_num_classes(num_classes)
    label_map = _is_label_map(tuple(y_true.shape), tuple(y_pred.shape), options.mode)
    stats = _dice_stats_keras(y_true, y_pred, options, label_map)
    weights = options.selected_weights(num_classes)
    if options.classes is not None:
        stats = ops.take(stats, list(options.classes), axis=1)
    per_image = dice_from_stats(KerasOps, stats, options, ops.convert_to_tensor(np.asarray(weights, keras.backend.standardize_dtype(stats.dtype))))
    if not options.per_image:
        per_image = ops.broadcast_to(per_image, (ops.shape(y_pred)[0],))
    return per_image


def dice_loss(y_true: Any, y_pred: Any, mode: str = "multiclass", **options: Any) -> Any:
    """Dice loss of each sample, ``1 − (2·Σp·g + smooth_nr) / (Σp + Σg + smooth_dr)``; shape ``(B,)``.

    Channels last: ``y_pred`` is ``(B, *spatial, C)``; ``y_true`` is a label map ``(B, *spatial)``
    or ``(B, *spatial, 1)`` of class indices, or per-class targets of ``y_pred``'s shape. Every option
    is that of :class:`DiceLoss` (and of ``losses.torch.functional.dice_loss``). With
    ``per_image=False`` every sample carries the loss of the whole batch, so that the mean over the
    batch is that loss.

    Example:

    >>> import numpy as np
    >>> from losses.keras import dice_loss
    >>> logits = np.array([[[[4.0], [-4.0]], [[-4.0], [4.0]]]], dtype='float32')  # (B=1, 2, 2, C=1)
    >>> mask = np.array([[[1, 0], [0, 1]]])                         # (1, 2, 2)
    >>> loss = dice_loss(mask, logits, mode="binary")
    >>> np.round(np.asarray(loss), 4)
    array([0.018], dtype=float32)
    """
    return _dice_per_sample(y_true, y_pred, DiceOptions.create(mode=mode, **options))


@keras.saving.register_keras_serializable(package="losses")
class DiceLoss(keras.losses.Loss):
    """Dice loss as a ``keras.losses.Loss``, channels last.

    Per class, with p the predicted and g the target probability, summed over the pixels of each
    image (``per_image=True``) or of the whole batch::

        loss = 1 − (2·Σp·g + smooth_nr) / (Σp + Σg + smooth_dr)

    averaged over classes with ``class_weights``. Options (the same in ``losses.torch.DiceLoss``):
    ``mode`` ("binary", "multiclass", "multilabel"), ``from_logits``, ``smooth_nr``, ``smooth_dr``,
    ``squared``, ``log_loss``, ``soft_labels``, ``per_image``, ``classes``, ``class_weights``,
    ``ignore_index``, ``empty_target`` ("smooth", "exclude", "penalize") and the Keras ``reduction``;
    the README's table describes each. Registered as serializable under the package ``losses``.

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
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.options = DiceOptions.create(
            mode=mode, from_logits=from_logits, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
            log_loss=log_loss, soft_labels=soft_labels, per_image=per_image, classes=classes,
            class_weights=class_weights, ignore_index=ignore_index, empty_target=empty_target,
        )

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        check_floating("y_pred", y_pred)  # before Keras casts it to the loss dtype
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _dice_per_sample(y_true, y_pred, self.options)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.options.to_dict()}
