"""The inputs of the Keras losses: shapes, target kinds, value checks, ignored positions and weight
maps, the same for every loss of the package. The inputs come channels last, ``(B, *spatial, C)``,
or channels first, ``(B, C, *spatial)`` (``data_format``); they are checked in the layout they came
in, so that an error shows the user's shapes, and the computation reads them channels last."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import keras
import numpy as np
from keras import ops

from losses._validation import InputOptions, describe, shape_text
from losses.keras._common import (
    check_floating,
    concrete_value,
    dtype_name,
    loss_config,
    reduce_per_sample,
    Shape,
    shapes_match,
    static_shape,
)


DATA_FORMATS = ("channels_last", "channels_first")

# The shape of y_pred in each layout, for error messages.
PREDICTION_SHAPES = {"channels_last": "(B, *spatial, C)", "channels_first": "(B, C, *spatial)"}


def resolve_data_format(data_format: Any) -> str:
    """``data_format`` checked; None is Keras' global setting, ``keras.config.image_data_format()``
    (read now: a loss object reads it when it is built, as Keras' layers do)."""
    if data_format is None:
        return cast(str, keras.config.image_data_format())
    if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
        raise ValueError(
            "data_format must be 'channels_last' (y_pred of shape (B, *spatial, C)), 'channels_first' "
            "((B, C, *spatial)) or None (keras.config.image_data_format(), now "
            f"{keras.config.image_data_format()!r}); got {describe(data_format)}"
        )
    return data_format


def class_axis(rank: int, data_format: str) -> int:
    """The axis of ``y_pred``'s classes (channels) in the layout ``data_format``."""
    return 1 if data_format == "channels_first" else rank - 1


def per_position_shapes(pred_shape: Shape, data_format: str) -> tuple[Shape, Shape]:
    """The shapes of one value per position (a label map, a weight map) for ``y_pred`` of shape
    ``pred_shape`` in the layout ``data_format``: without the class axis, and with it of size 1."""
    axis = class_axis(len(pred_shape), data_format)
    return (*pred_shape[:axis], *pred_shape[axis + 1 :]), (*pred_shape[:axis], 1, *pred_shape[axis + 1 :])


def is_label_map(y_true_shape: Shape, y_pred_shape: Shape, mode: str, data_format: str = "channels_last") -> bool:
    """Whether ``y_true`` is a label map (else per-class targets of ``y_pred``'s shape); a clear error otherwise."""
    if shapes_match(y_true_shape, y_pred_shape):
        return False
    label_shapes = per_position_shapes(y_pred_shape, data_format)
    if mode != "multilabel" and any(shapes_match(y_true_shape, s) for s in label_shapes):
        return True
    if mode == "multilabel":
        expected = f"{shape_text(y_pred_shape)} (y_pred's shape)"
    else:
        expected = (
            f"{shape_text(y_pred_shape)} (probabilities) or a label map of shape "
            f"{shape_text(label_shapes[0])} or {shape_text(label_shapes[1])}"
        )
    raise ValueError(
        f"y_true has shape {shape_text(y_true_shape)} but y_pred has shape {shape_text(y_pred_shape)} "
        f"(data_format={data_format!r}); expected y_true of shape {expected}. Shapes are never broadcast."
    )


def check_values(y_true: Any, y_pred: Any, options: InputOptions, label_map: bool, num_classes: int) -> None:
    """Eager inputs only (inside a traced function, tf.function or jit, the check is skipped): every
    value in its range, as in the PyTorch frontend; NaN is no error (it propagates to the loss)."""
    values = concrete_value(y_true)
    if values is not None:
        if label_map:
            upper = 2 if options.mode == "binary" else num_classes
            allowed = "0 or 1" if options.mode == "binary" else f"in [0, {num_classes})"
            if np.issubdtype(values.dtype, np.floating):
                allowed = "whole numbers " + allowed
            check_range("y_true labels", values, 0, upper - 1, allowed, options.ignore_index, integral=True)
        elif values.dtype != bool:
            check_range("y_true", values, 0, 1, "in [0, 1] (per-class probabilities or one-hot)", options.ignore_index)
    if not options.from_logits:
        predictions = concrete_value(y_pred)
        if predictions is not None:
            check_range(
                "y_pred",
                predictions,
                0,
                1,
                "probabilities in [0, 1] with from_logits=False (pass logits with from_logits=True)",
                None,
            )


def check_range(
    name: str,
    values: np.ndarray,
    low: float,
    high: float,
    allowed: str,
    ignore_index: int | None,
    integral: bool = False,
    finite: bool = False,
) -> None:
    checked = values if ignore_index is None else np.where(values == ignore_index, low, values)
    with np.errstate(invalid="ignore"):
        bad = (checked < low) | (checked > high)
        if np.issubdtype(checked.dtype, np.floating):
            if integral:
                bad |= checked != np.floor(checked)  # True for NaN and ±inf: a label must be a number
            elif finite:
                bad |= ~np.isfinite(checked)
            else:
                bad &= np.isfinite(checked)  # NaN and ±inf are no range error: they propagate
    if bad.any():
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        found = np.unique(checked[bad])[:8].tolist()
        raise ValueError(f"{name} must be {allowed}{extra}; found {found}")


def ignored_positions(target: Any, ignore_index: int | None) -> Any:
    """``target == ignore_index`` (None when nothing can match), compared in ``target``'s own dtype."""
    if ignore_index is None:
        return None
    dtype = keras.backend.standardize_dtype(target.dtype)
    if "int" in dtype:
        info = np.iinfo(dtype)
        if not info.min <= ignore_index <= info.max:
            return None
    return ops.equal(target, ops.convert_to_tensor(ignore_index, dtype))


def weight_map(weight: Any, pred_shape: Shape, data_format: str = "channels_last") -> Any:
    """``weight`` as a weight per position ``(B, *spatial)``, checked (the values where known)."""
    shape = static_shape("weight", weight)
    expected = per_position_shapes(pred_shape, data_format)
    if not any(shapes_match(shape, s) for s in expected):
        raise ValueError(
            f"weight has shape {shape_text(shape)}; expected a weight per position, "
            f"{shape_text(expected[0])} or {shape_text(expected[1])}, for y_pred of shape "
            f"{shape_text(pred_shape)} (data_format={data_format!r}). Shapes are never broadcast."
        )
    values = concrete_value(weight)
    if values is not None:
        check_range("weight", np.asarray(values, np.float64), 0, np.inf, "finite and >= 0", None, finite=True)
    weight = ops.convert_to_tensor(weight)
    if len(shape) == len(pred_shape):
        # Indexed, not squeezed: inside a traced function the axis's size may be unknown.
        return weight[:, 0] if data_format == "channels_first" else weight[..., 0]
    return weight


@dataclass(frozen=True)
class Inputs:
    """Checked inputs as tensors: ``y_true``, ``y_pred``, ``weight`` (a weight per position
    ``(B, *spatial)`` or None), whether ``y_true`` is a label map, the number of classes C and of
    positions N per image (an int, or a tensor where the spatial shape is unknown)."""

    y_true: Any
    y_pred: Any
    weight: Any
    label_map: bool
    num_classes: int
    positions: Any


def prepare_inputs(
    y_true: Any,
    y_pred: Any,
    options: InputOptions,
    weight: Any = None,
    target_kind: Callable[[Shape, Shape, Any, str], bool] | None = None,
    data_format: str | None = "channels_last",
) -> Inputs:
    """Shapes, dtypes and (where known) values of a loss's inputs, checked once for every loss, and
    given to the computation channels last.

    ``options`` has ``mode``, ``from_logits``, ``ignore_index`` and ``check_num_classes``;
    ``target_kind(true_shape, pred_shape, options, data_format)`` says whether ``y_true`` is a label
    map (raising on a mismatch); by default :func:`is_label_map`. ``data_format``: the layout of the
    inputs, ``"channels_last"`` or ``"channels_first"`` (None: Keras' global setting, now).
    """
    data_format = resolve_data_format(data_format)
    check_floating("y_pred", y_pred)
    pred_shape = static_shape("y_pred", y_pred)
    true_shape = static_shape("y_true", y_true)
    if len(pred_shape) < 3:
        raise ValueError(
            f"y_pred must have shape {PREDICTION_SHAPES[data_format]} with at least one spatial dimension "
            f"(data_format={data_format!r}); got shape {shape_text(pred_shape)}"
        )
    axis = class_axis(len(pred_shape), data_format)
    num_classes = pred_shape[axis]
    if num_classes is None:
        raise ValueError(
            f"y_pred must have a known number of channels (its dimension {axis}, data_format={data_format!r})"
        )
    options.check_num_classes(num_classes)
    if "complex" in dtype_name(y_true):
        raise TypeError(f"y_true must have a real dtype; got {dtype_name(y_true)}")
    if target_kind is None:
        label_map = is_label_map(true_shape, pred_shape, options.mode, data_format)
    else:
        label_map = target_kind(true_shape, pred_shape, options, data_format)
    weight = None if weight is None else weight_map(weight, pred_shape, data_format)
    # Before the conversion to tensors: labels beyond 32 bits are checked as they came.
    check_values(y_true, y_pred, options, label_map, num_classes)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if data_format == "channels_first":
        # The computation reads the classes on the last axis. A target with a class axis (per-class
        # targets, or a label map with an axis of size 1) moves with the prediction.
        y_pred = ops.moveaxis(y_pred, 1, -1)
        if len(true_shape) == len(pred_shape):
            y_true = ops.moveaxis(y_true, 1, -1)
    # The number of positions, not -1: a batch of 0 images has no size to infer it from.
    spatial = per_position_shapes(pred_shape, data_format)[0][1:]
    positions = math.prod(cast(tuple[int, ...], spatial)) if None not in spatial else ops.prod(ops.shape(y_pred)[1:-1])
    return Inputs(y_true, y_pred, weight, label_map, num_classes, positions)


def label_indices(labels: Any, ignore_index: int | None) -> tuple[Any, Any]:
    """``(labels as int32 with ignored positions set to 0, valid)``: ``valid`` is a boolean tensor,
    or None when nothing is ignored. Float labels are rounded (checked to be whole numbers where
    their values are known)."""
    ignored = ignored_positions(labels, ignore_index)
    if keras.backend.is_float_dtype(dtype_name(labels)):
        labels = ops.round(labels)
    if ignored is not None:
        labels = ops.where(ignored, ops.zeros_like(labels), labels)
    return ops.cast(labels, "int32"), None if ignored is None else ops.logical_not(ignored)


def label_poison(labels: Any) -> Any:
    """0 where a label (or a per-class target) is finite and NaN where it is not, per element (float
    values; None for integer ones). Rounded and cast to int32, a NaN label would pick a class (which
    one depends on the backend and on XLA), and a product with a 0/1 weight under XLA drops a NaN
    target: a loss adds this after its weights instead, so that the NaN reaches it where the value
    checks do not run (traced code)."""
    if not keras.backend.is_float_dtype(dtype_name(labels)):
        return None
    return ops.where(ops.isfinite(labels), 0.0, np.nan)


_FULL_PRECISION = ("float32", "float64")


class LossWithWeightMap(keras.losses.Loss):
    """A loss of the package as a ``keras.losses.Loss``; subclasses define :meth:`loss_per_sample`.

    ``sample_weight`` is one weight per image, ``(B,)`` (Keras' convention: it scales the image's
    loss), or one per position, ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)``
    channels first): a weight map that enters every sum of the loss (a weight of 0 leaves the
    position out, as ``ignore_index``), unless ``takes_weight_map`` is False.

    ``data_format`` (``"channels_last"``, ``"channels_first"`` or None) is resolved here, None to
    ``keras.config.image_data_format()``, and kept in the config: a model saved with a loss built for
    channels first reloads with that loss, whatever the setting where it is loaded.
    """

    takes_weight_map = True

    def __init__(self, data_format: str | None, name: str, reduction: str | None, dtype: Any) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.data_format = resolve_data_format(data_format)

    def get_config(self) -> dict[str, Any]:
        return {**loss_config(self), "data_format": self.data_format}

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Not keras.losses.Loss.__call__, which converts both inputs to the loss dtype first: that
        # would turn integer predictions into floats unchecked and labels beyond 2^24 into other labels.
        weight_map = None
        if sample_weight is not None and not hasattr(sample_weight, "shape"):
            sample_weight = np.asarray(sample_weight)
        if sample_weight is not None and self.takes_weight_map and _per_position(sample_weight, y_pred):
            weight_map, sample_weight = sample_weight, None
        with keras.name_scope(self.name):
            averaged = self.reduction == "mean_with_sample_weight" or (
                sample_weight is None and self.reduction not in (None, "none", "sum")
            )
            if averaged and self.synced_batch_loss():
                # The loss of the whole global batch, the same on every replica, divided by the number
                # of replicas: also on a replica with no image (the last batch of an epoch with fewer
                # images than replicas), whose mean over its images would be 0/0, and whose share of
                # the all-reduce's gradient the other replicas need. (Per-sample weights of one
                # value for the batch cancel in their weighted mean.)
                from keras.src.losses.loss import scale_loss_for_distribution

                batch = self._loss(y_true, y_pred, weight_map, self.loss_of_batch)
                return scale_loss_for_distribution(ops.cast(batch, self.dtype))
            values = self._loss(y_true, y_pred, weight_map, self.loss_per_sample)
            return reduce_per_sample(values, sample_weight, self.reduction, self.dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self._loss(y_true, y_pred, None, self.loss_per_sample)

    def synced_batch_loss(self) -> bool:
        """Whether the loss is one value for the global batch (``per_image=False`` with
        ``sync_across_ranks``): then :meth:`loss_of_batch` gives it."""
        return False

    def loss_of_batch(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        raise NotImplementedError

    def _loss(self, y_true: Any, y_pred: Any, weight: Any, loss: Callable[[Any, Any, Any], Any]) -> Any:
        check_floating("y_pred", y_pred)
        if dtype_name(y_pred) in _FULL_PRECISION and self.dtype in _FULL_PRECISION:
            y_pred = ops.cast(y_pred, self.dtype)  # the loss dtype, as keras.losses.Loss does
        return loss(y_true, y_pred, weight)

    def loss_per_sample(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        """The loss of each sample, ``(B,)``, with ``weight`` a weight per position or None."""
        raise NotImplementedError


def _per_position(sample_weight: Any, y_pred: Any) -> bool:
    """Whether ``sample_weight`` has a weight per position rather than one per image."""
    rank = len(static_shape("sample_weight", sample_weight))
    pred_rank = len(static_shape("y_pred", y_pred))
    return rank >= pred_rank - 1 and rank > 1 and not (rank == 2 and sample_weight.shape[-1] == 1 and pred_rank == 3)
