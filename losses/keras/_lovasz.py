r"""The Lovász losses for Keras 3 (channels last, or first with ``data_format``), written in
``keras.ops``: ``LovaszSoftmaxLoss`` and ``LovaszHingeLoss``.

The definitions, the closed form of the extension's weights, ignored positions and ties are in
:mod:`losses._lovasz`; the label checks are those of the overlap losses. The order is
``ops.argsort`` of the negated errors, stable on every backend (TensorFlow sorts through
``top_k``, which puts the lower index first among equal values; JAX and torch sort stably), so
that ties give the same subgradient as in ``losses.torch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from losses._lovasz import LovaszOptions, class_average, extension_weights
from losses._validation import shape_text
from losses.keras._common import Shape, compute_dtype, serializable, shapes_match, upcast
from losses.keras._inputs import (
    LossWithWeightMap,
    label_indices,
    label_poison,
    per_position_shapes,
    prepare_inputs,
)


class _LovaszOps:
    """The tensor namespace of :func:`losses._lovasz.extension_weights` for Keras tensors."""

    where = staticmethod(ops.where)
    cast = staticmethod(ops.cast)

    @staticmethod
    def cumsum(x: Any) -> Any:
        return ops.cumsum(ops.cast(x, "int32"), axis=-1)

    @staticmethod
    def count(x: Any) -> Any:
        return ops.sum(ops.cast(x, "int32"), axis=-1, keepdims=True)

    @staticmethod
    def sum(x: Any) -> Any:
        return ops.sum(x, axis=-1)

    @staticmethod
    def maximum(x: Any, value: float) -> Any:
        return ops.where(x < value, value, x)  # not ops.maximum: float32 for float64 x on the torch backend


def _label_map_only(true_shape: Shape, pred_shape: Shape, options: LovaszOptions, data_format: str) -> bool:
    label_shapes = per_position_shapes(pred_shape, data_format)
    if not any(shapes_match(true_shape, s) for s in label_shapes):
        raise ValueError(
            f"y_true has shape {shape_text(true_shape)} but y_pred has shape {shape_text(pred_shape)} "
            f"(data_format={data_format!r}); expected a label map of shape {shape_text(label_shapes[0])} or "
            f"{shape_text(label_shapes[1])} (class indices: the Lovász extension needs hard labels"
            + (
                "; turn one-hot targets into labels with argmax over the channels"
                if options.loss == "lovasz_softmax"
                else ""
            )
            + "). Shapes are never broadcast."
        )
    return True


def _rows(x: Any, per_image: bool) -> Any:
    """``(B, K, N)`` as the rows of the loss: itself, or ``(1, K, B·N)`` for the whole batch."""
    return x if per_image else ops.reshape(ops.transpose(x, (1, 0, 2)), (1, x.shape[1], -1))


def lovasz_per_sample(
    y_true: Any, y_pred: Any, options: LovaszOptions, data_format: str | None = "channels_last"
) -> Any:
    """Loss of each image, shape (B,); with per_image=False the batch loss repeated B times."""
    inputs = prepare_inputs(y_true, y_pred, options, target_kind=_label_map_only, data_format=data_format)
    num_classes, positions = inputs.num_classes, inputs.positions
    dtype = compute_dtype(inputs.y_pred)
    batch = ops.shape(inputs.y_pred)[0]
    x = ops.reshape(upcast(inputs.y_pred), (batch, positions, num_classes))
    label_values = ops.reshape(inputs.y_true, (batch, positions))
    labels, valid = label_indices(label_values, options.ignore_index)

    if options.loss == "lovasz_softmax":
        p = ops.softmax(x, axis=-1) if options.from_logits else x
        foreground = ops.equal(labels[..., None], ops.arange(num_classes, dtype="int32"))
        if valid is not None:
            foreground = ops.logical_and(foreground, valid[..., None])
        errors = ops.transpose(ops.abs(p - ops.cast(foreground, dtype)), (0, 2, 1))  # (B, C, N)
        foreground = ops.transpose(foreground, (0, 2, 1))
    else:
        foreground = ops.equal(labels, 1)
        if valid is not None:
            foreground = ops.logical_and(foreground, valid)
        errors = ops.relu(1.0 - x[..., 0] * (2.0 * ops.cast(foreground, dtype) - 1.0))[:, None, :]
        foreground = foreground[:, None, :]
    background = ops.logical_not(foreground)
    if valid is not None:
        background = ops.logical_and(background, valid[:, None, :])
    # One gather of the kind of each position: 1 foreground, 2 background, 0 ignored.
    kinds = ops.cast(foreground, "int32") + 2 * ops.cast(background, "int32")
    errors, kinds, foreground = (_rows(t, options.per_image) for t in (errors, kinds, foreground))

    order = ops.argsort(-errors, axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    kinds_sorted = ops.take_along_axis(kinds, order, axis=-1)
    weights = ops.stop_gradient(
        extension_weights(_LovaszOps, ops.equal(kinds_sorted, 1), ops.equal(kinds_sorted, 2), dtype)
    )
    per_class = ops.sum(errors_sorted * weights, axis=-1)  # (S, K)
    mask = options.class_mask(per_class.shape[1])
    if mask is None:
        selected = ops.cast(ops.any(foreground, axis=-1), dtype)
    else:
        selected = ops.zeros_like(per_class) + ops.convert_to_tensor(np.asarray(mask, dtype))
    loss = class_average(_LovaszOps, per_class, selected)
    # 0 for a finite row, NaN for a row holding a NaN or ±inf. Its square adds 0 or NaN to the loss,
    # and its derivative 2·poison·0 is 0 or NaN at every element of the row.
    poison = ops.sum(x * 0.0, axis=(1, 2))
    label_nan = label_poison(label_values)
    if label_nan is not None:  # a NaN label, whose class the cast to int32 would pick
        poison = poison + ops.sum(ops.cast(label_nan, dtype), axis=1)
    if options.per_image:
        return loss + poison * poison
    poison = ops.sum(poison)
    return ops.broadcast_to(loss + poison * poison, (batch,))


class _LovaszLoss(LossWithWeightMap):
    """A Lovász loss as a ``keras.losses.Loss``: its options, checked once. ``sample_weight``: one
    weight per image, ``(B,)``."""

    loss_name = ""
    takes_weight_map = False

    def __init__(self, reduction: str | None, name: str, dtype: Any, data_format: str | None, **options: Any) -> None:
        super().__init__(data_format, name, reduction, dtype)
        self.options = LovaszOptions.create(self.loss_name, **options)

    def loss_per_sample(self, y_true: Any, y_pred: Any, weight: Any) -> Any:
        return lovasz_per_sample(y_true, y_pred, self.options, self.data_format)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.options.to_dict()}


@serializable
def lovasz_softmax_loss(
    y_true: Any,
    y_pred: Any,
    classes: Any = "present",
    per_image: bool = True,
    ignore_index: int | None = None,
    from_logits: bool = True,
    data_format: str | None = None,
) -> Any:
    """Lovász-softmax loss of each sample, shape ``(B,)``: see :class:`LovaszSoftmaxLoss`.

    Per class, the Lovász extension of the Jaccard loss at the errors ``|g − p|`` of the softmax
    probabilities, averaged over the classes (Berman et al., 2018). With ``per_image=False`` every
    sample carries the loss of the whole batch.

    Args:
        y_true: a label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels
            first) of class indices in ``[0, C)``.
        y_pred: logits ``(B, *spatial, C)``, or ``(B, C, *spatial)`` channels first, ``C >= 2``
            (probabilities with ``from_logits=False``).
        classes: ``"present"`` (the classes in the target of each row; an absent class contributes
            nothing), ``"all"`` (every class) or a sequence of class indices (averaged whether
            present or not).
        per_image: one loss per image; ``False``: one loss for the batch, its positions sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        from_logits: apply the softmax over the channels inside.
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, or an option has the wrong type.
        ValueError: shapes that do not match (never broadcast), per-class (one-hot) targets instead of a label map,
            an option out of its range
            (the message names it), or, where the values are known (eagerly), a label out of range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import lovasz_softmax_loss
    >>> logits = np.array([[[[2.0, 0.0], [-1.0, 0.5]]]], dtype="float32")   # (B=1, 1, 2, C=2)
    >>> np.round(np.asarray(lovasz_softmax_loss(np.array([[[0, 1]]]), logits)), 4)
    array([0.1666], dtype=float32)
    """
    options = LovaszOptions.create(
        "lovasz_softmax", classes=classes, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits
    )
    return lovasz_per_sample(y_true, y_pred, options, data_format)


@serializable
def lovasz_hinge_loss(
    y_true: Any,
    y_pred: Any,
    per_image: bool = True,
    ignore_index: int | None = None,
    data_format: str | None = None,
) -> Any:
    """Lovász hinge loss of each sample, shape ``(B,)``: see :class:`LovaszHingeLoss`.

    The Lovász extension of the foreground's Jaccard loss at the hinge errors
    ``max(1 − z·(2g − 1), 0)`` of the logits z (Berman et al., 2018). With ``per_image=False``
    every sample carries the loss of the whole batch.

    Args:
        y_true: a binary label map ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)``
            channels first): 0 or 1, or ``ignore_index``.
        y_pred: one logit per position, ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels first).
        per_image: one loss per image; ``False``: one loss for the batch.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        data_format: ``"channels_last"``: ``y_pred`` of shape ``(B, *spatial, C)``;
            ``"channels_first"``: ``(B, C, *spatial)``, ``y_true`` and a weight per position in the
            same layout (a label map ``(B, *spatial)`` or ``(B, 1, *spatial)``); None:
            ``keras.config.image_data_format()``, read when a loss object is built and at each call
            of a function.

    Returns:
        The loss of each sample, shape ``(B,)`` (with ``per_image=False`` the batch loss in every
        entry).

    Raises:
        TypeError: ``y_true`` or ``y_pred`` is not a tensor or an array, ``y_pred`` is not
            floating-point, or an option has the wrong type.
        ValueError: shapes that do not match (never broadcast), an option out of its range
            (the message names it), or, where the values are known (eagerly), a label out of range.

    Example:

    >>> import numpy as np
    >>> from losses.keras import lovasz_hinge_loss
    >>> logits = np.array([[[[2.0], [-1.0], [0.5]]]], dtype="float32")   # (B=1, 1, 3, C=1)
    >>> np.round(np.asarray(lovasz_hinge_loss(np.array([[[1, 0, 0]]]), logits)), 4)
    array([0.75], dtype=float32)
    """
    options = LovaszOptions.create("lovasz_hinge", per_image=per_image, ignore_index=ignore_index)
    return lovasz_per_sample(y_true, y_pred, options, data_format)


@serializable
class LovaszSoftmaxLoss(_LovaszLoss):
    """Lovász-softmax loss (Berman et al., 2018) as a ``keras.losses.Loss``, channels last (or first,
    with ``data_format``).

    Per class, the Lovász extension of the Jaccard loss at the errors ``|g − p|`` of the softmax
    probabilities, averaged over the classes given by ``classes``: ``"present"`` (in the target of
    the image, or of the batch with ``per_image=False``), ``"all"`` or a list of indices. Options
    (the same in ``losses.torch.LovaszSoftmaxLoss``): ``classes``, ``per_image``, ``ignore_index``,
    ``from_logits``, ``data_format`` and the Keras ``reduction``. ``y_true``: a label map
    ``(B, *spatial)`` or ``(B, *spatial, 1)`` (``(B, 1, *spatial)`` channels first), labels in ``[0, C)`` (checked eagerly, not inside ``tf.function`` /
    ``jit``) keeping their integer dtype. A NaN or ±inf in ``y_pred`` gives a NaN loss for its
    image (the batch with ``per_image=False``) and a NaN gradient for all of it; an empty batch
    gives 0 with ``reduction="sum"`` and NaN with ``"sum_over_batch_size"``. Registered as
    serializable under the package ``losses``.

    Args:
        classes: ``"present"``: the classes in the target of each row (an absent class contributes
            nothing); ``"all"``: every class; or a list of class indices, averaged present or not.
        per_image: one loss per image; False: the positions of the whole batch sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
        from_logits: apply the softmax inside; False: ``y_pred`` is probabilities.
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
    >>> from losses.keras import LovaszSoftmaxLoss
    >>> loss = LovaszSoftmaxLoss(ignore_index=255)
    >>> y_pred = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    >>> y_true = np.random.default_rng(1).integers(0, 3, size=(2, 8, 8))
    >>> 0.0 < float(loss(y_true, y_pred)) < 1.0
    True
    >>> LovaszSoftmaxLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    True
    """

    loss_name = "lovasz_softmax"

    def __init__(
        self,
        *,
        classes: Any = "present",
        per_image: bool = True,
        ignore_index: int | None = None,
        from_logits: bool = True,
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "lovasz_softmax_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction,
            name,
            dtype,
            data_format,
            classes=classes,
            per_image=per_image,
            ignore_index=ignore_index,
            from_logits=from_logits,
        )


@serializable
class LovaszHingeLoss(_LovaszLoss):
    """Lovász hinge loss (Berman et al., 2018) as a ``keras.losses.Loss``, channels last (or first,
    with ``data_format``): the Lovász extension of the foreground's Jaccard loss at the hinge errors
    ``max(1 − z·(2g − 1), 0)``.

    ``y_pred``: one logit per position, ``(B, *spatial, 1)`` (channels first ``(B, 1, *spatial)``);
    ``y_true``: 0 or 1 (or ``ignore_index``), ``(B, *spatial)`` or ``(B, *spatial, 1)``
    (``(B, 1, *spatial)``). Options ``per_image``, ``ignore_index``, ``data_format`` and the Keras
    ``reduction``, as in ``losses.torch.LovaszHingeLoss`` (channels first always).

    Args:
        per_image: one loss per image; False: the positions of the whole batch sorted together.
        ignore_index: a target value whose positions are left out (gradient exactly 0).
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
    >>> from losses.keras import LovaszHingeLoss
    >>> logits = np.array([[[[2.0], [-2.0]], [[-2.0], [2.0]]]], dtype="float32")   # (B=1, 2, 2, C=1)
    >>> float(LovaszHingeLoss()(np.array([[[1, 0], [0, 1]]]), logits))
    0.0
    """

    loss_name = "lovasz_hinge"

    def __init__(
        self,
        *,
        per_image: bool = True,
        ignore_index: int | None = None,
        data_format: str | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "lovasz_hinge_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction, name, dtype, data_format, per_image=per_image, ignore_index=ignore_index)
