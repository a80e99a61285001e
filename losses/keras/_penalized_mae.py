r"""Penalized MAE for Keras 3, with a hand-written gradient (``keras.ops.custom_gradient``).

The math (formula, derivative, subgradients, berHu) is in :mod:`losses._penalized_mae`. On
TensorFlow ``keras.ops.custom_gradient`` is ``tf.custom_gradient``, on JAX ``jax.custom_gradient``;
the loss and its gradient run as compiled functions of the backend (one XLA cluster each inside a
TensorFlow graph, ``jax.jit`` on JAX; see :mod:`losses.keras._elementwise`). The gradient keeps
no input-sized tensor of its own: it recomputes ``e`` from the inputs and
``ℓ'(e) = sign(e) + 2·penalty·softshrink(e, delta)`` from it, only when a gradient is asked for.
Being written in differentiable ops, the gradient can itself be differentiated (nested
``GradientTape``, ``jax.hessian``): the second derivative is ``2·penalty·[|e| > delta]``. On the
torch backend the loss is the PyTorch frontend's (its C and Triton kernels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from losses._penalized_mae import DEFAULT_DELTA, DEFAULT_PENALTY, check_penalized_mae_options
from losses._validation import check_same_shape
from losses.keras._common import check_floating, compute_dtype, dtype_name, reduce_per_sample, serializable
from losses.keras._elementwise import compiled, options


def _check_shapes(y_true: Any, y_pred: Any) -> None:
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    # Inside a traced function unknown dimensions are None: only known ones can disagree.
    if len(true_shape) != len(pred_shape) or any(
        t is not None and p is not None and t != p for t, p in zip(true_shape, pred_shape)
    ):
        check_same_shape("y_pred", pred_shape, "y_true", true_shape)


def _sample_count(e: Any) -> Any:
    """Elements per sample, as a tensor of e's dtype (0 for samples without elements: their mean is NaN)."""
    if None not in e.shape[1:]:
        count = int(np.prod(e.shape[1:]))
    else:  # unknown sizes inside a traced function
        count = ops.size(e) // ops.maximum(ops.shape(e)[0], 1)
    return ops.cast(count, e.dtype)


def _excess(e: Any, delta: Any) -> Any:
    """sign(e)·max(|e| − delta, 0) = e − clip(e, −delta, delta)."""
    return ops.subtract(e, ops.clip(e, ops.negative(delta), delta))


def _penalized(penalty: Any, term: Any) -> Any:
    """``term`` where ``penalty > 0``, else 0: not ``0 · inf = NaN`` where ``e`` overflowed."""
    return ops.where(ops.greater(penalty, 0), term, ops.zeros_like(term))


def _in_dtype(e: Any, *values: Any) -> list[Any]:
    """The options in e's dtype (JAX passes them as weakly typed floats, float64 under x64): a
    penalty that rounds to 0 there is 0, as on every path, and never multiplies an infinity."""
    return [ops.cast(value, e.dtype) for value in values]


def _loss_per_sample(y_true: Any, y_pred: Any, delta: Any, penalty: Any) -> Any:
    e = ops.subtract(y_pred, y_true)
    delta, penalty = _in_dtype(e, delta, penalty)
    magnitude, excess = ops.abs(e), _excess(e, delta)
    rank = len(e.shape)
    if rank <= 1:
        # (sqrt(penalty)·excess)², not penalty·excess², whose excess² overflows before the term does
        return ops.add(magnitude, _penalized(penalty, ops.square(ops.multiply(ops.sqrt(penalty), excess))))
    # Each term divided before the sum (one reduction, fused with the terms), so that a mean of
    # terms or of a sum beyond the dtype's range is finite where it is in range (and not ops.mean,
    # which computes float64 inputs in float32 on some backends). A sample of no elements has the
    # mean of nothing, NaN.
    count = _sample_count(e)
    reciprocal = ops.divide(ops.ones_like(count), count)
    root = ops.multiply(ops.multiply(ops.sqrt(penalty), ops.sqrt(reciprocal)), excess)
    terms = ops.add(ops.multiply(magnitude, reciprocal), _penalized(penalty, ops.square(root)))
    mean = ops.sum(terms, axis=tuple(range(1, rank)))
    return ops.where(ops.greater(count, 0), mean, ops.full_like(mean, np.nan))


def _gradient_of_prediction(y_true: Any, y_pred: Any, upstream: Any, delta: Any, penalty: Any) -> Any:
    e = ops.subtract(y_pred, y_true)
    delta, penalty = _in_dtype(e, delta, penalty)
    factor = ops.add(ops.sign(e), _penalized(penalty, ops.multiply(ops.add(penalty, penalty), _excess(e, delta))))
    # sign(e) is 0 for a NaN e: a NaN that comes in must come out of the gradient too
    factor = ops.where(ops.isnan(e), e, factor)
    rank = len(e.shape)
    if rank > 1:
        upstream = ops.reshape(ops.divide(upstream, _sample_count(e)), (-1,) + (1,) * (rank - 1))
    return ops.multiply(factor, upstream)


def _penalized_mae_per_sample(y_true: Any, y_pred: Any, delta: float, penalty: float) -> Any:
    """Per-sample mean over the non-batch axes; inputs already checked and of one float dtype."""
    if keras.backend.backend() == "torch":
        return _torch_per_sample(y_true, y_pred, delta, penalty)
    delta_t, penalty_t = options(y_pred, delta, penalty)

    @ops.custom_gradient
    def per_sample(y_true: Any, y_pred: Any) -> tuple[Any, Callable[..., tuple[Any, Any]]]:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally
                (upstream,) = args
            # e again from the inputs, not the forward's e: the closure then keeps no tensor the
            # caller does not hold anyway, and the gradient stays differentiable (second order).
            grad_pred = compiled(_gradient_of_prediction)(y_true, y_pred, upstream, delta_t, penalty_t)
            return ops.negative(grad_pred), grad_pred

        return compiled(_loss_per_sample)(y_true, y_pred, delta_t, penalty_t), grad

    return per_sample(y_true, y_pred)


def _torch_per_sample(y_true: Any, y_pred: Any, delta: float, penalty: float) -> Any:
    from losses.torch.functional import penalized_mae as torch_penalized_mae

    values = torch_penalized_mae(y_pred, y_true, delta, penalty, reduction="none")
    if values.dim() <= 1:
        return values
    count = int(np.prod(values.shape[1:]))
    if count == 0:
        return values.flatten(1).sum(1) / count  # the mean of nothing is NaN
    return values.flatten(1).mul(1.0 / count).sum(1)  # divided before the sum, as above


@serializable
def penalized_mae(y_true: Any, y_pred: Any, delta: float = DEFAULT_DELTA, penalty: float = DEFAULT_PENALTY) -> Any:
    r"""Per-sample mean absolute error plus a quadratic penalty on errors larger than ``delta``.

    Per element, with ``e = y_pred - y_true``::

        loss = |e| + penalty * max(|e| - delta, 0) ** 2
        d loss / d y_pred = sign(e) * (1 + 2 * penalty * max(|e| - delta, 0))   (sign(0) = 0)

    averaged over every non-batch axis. The gradient is written by hand with
    ``keras.ops.custom_gradient``; at ``e = 0`` it is the subgradient 0, at ``|e| = delta`` it is
    ``sign(e)`` (the derivative from both sides). With ``penalty = 1 / (2 * delta)`` this is the
    reverse Huber (berHu) loss. Details: :mod:`losses._penalized_mae`.

    Args:
        y_true: targets, the shape of ``y_pred`` (never broadcast); cast to the computation dtype.
        y_pred: predictions ``(B, *dims)``, a floating dtype. float16 and bfloat16 are computed in
            float32 and give a float32 loss.
        delta: threshold ``>= 0`` beyond which the quadratic penalty starts. Default 1.0.
        penalty: weight ``>= 0`` of the quadratic penalty. Default 0.5.

    Returns:
        The loss of each sample, shape ``(B,)``: the mean over its elements (NaN for a sample of no
        elements, the mean of nothing; an empty batch gives shape ``(0,)``). A one-dimensional input is a batch of
        one-element samples (the loss of each element); a scalar gives a scalar. A NaN or an
        infinity in either input gives a non-finite loss, and a non-finite gradient where the
        gradient depends on it.

    Raises:
        TypeError: ``y_pred`` is not floating-point, ``y_true`` is complex, or ``delta`` /
            ``penalty`` is not a real number.
        ValueError: ``y_true``'s shape differs from ``y_pred``'s (never broadcast), or ``delta`` or
            ``penalty`` is negative or not finite.

    Example:

    >>> import keras
    >>> from losses.keras import penalized_mae
    >>> y_pred = keras.ops.convert_to_tensor([[0.5, -2.0, 3.0], [0.0, 0.0, 1.0]])
    >>> y_true = keras.ops.zeros((2, 3))
    >>> [round(float(v), 4) for v in penalized_mae(y_true, y_pred)]  # (0.5 + 2.5 + 5) / 3, 1 / 3
    [2.6667, 0.3333]
    """
    delta, penalty = check_penalized_mae_options(delta, penalty)
    check_floating("y_pred", y_pred)
    pred_dtype = dtype_name(y_pred)
    if "complex" in dtype_name(y_true):
        raise TypeError(f"y_true must have a real dtype (floating, integer or bool); got {dtype_name(y_true)}")
    dtype = compute_dtype(y_pred)
    # Explicit dtypes: some backends would otherwise turn float64 arrays into floatx() first.
    y_pred = ops.cast(ops.convert_to_tensor(y_pred, dtype=pred_dtype), dtype)
    y_true = ops.convert_to_tensor(y_true, dtype=dtype)
    _check_shapes(y_true, y_pred)
    return _penalized_mae_per_sample(y_true, y_pred, delta, penalty)


@serializable
class PenalizedMAELoss(keras.losses.Loss):
    r"""Mean absolute error plus a quadratic penalty on errors larger than ``delta``.

    Per element, with ``e = y_pred - y_true``::

        loss = |e| + penalty * max(|e| - delta, 0) ** 2

    averaged over the non-batch axes of each sample, then weighted by ``sample_weight`` and reduced
    over the batch by ``reduction``. Hand-written gradient
    ``sign(e) * (1 + 2 * penalty * max(|e| - delta, 0))`` with ``sign(0) = 0``; see
    :func:`losses.keras.penalized_mae`. With ``penalty = 1 / (2 * delta)`` it is the berHu loss.

    Args:
        delta: threshold ``>= 0`` beyond which the quadratic penalty starts. Default 1.0.
        penalty: weight ``>= 0`` of the quadratic penalty. Default 0.5.
        reduction: a Keras reduction: ``"sum_over_batch_size"`` (default), ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or ``None``. An empty batch gives 0 with
            ``"sum"`` and NaN with the means (the mean of nothing), as the PyTorch frontend does.
        name: the loss's name. Default ``"penalized_mae"``.
        dtype: the computation dtype (default ``keras.backend.floatx()``); inputs are converted to
            it as by every Keras loss.

    Shapes: ``y_true`` and ``y_pred`` ``(B, *dims)`` alike; ``sample_weight`` ``(B,)``.

    Raises:
        TypeError: ``delta`` or ``penalty`` is not a real number.
        ValueError: ``delta`` or ``penalty`` is negative or not finite.

    Example:

    >>> import keras
    >>> from losses.keras import PenalizedMAELoss
    >>> loss = PenalizedMAELoss(delta=1.0, penalty=0.5)
    >>> y_pred = keras.ops.convert_to_tensor([[0.5, -2.0, 3.0], [0.0, 0.0, 1.0]])
    >>> round(float(loss(keras.ops.zeros((2, 3)), y_pred)), 4)  # (8/3 + 1/3) / 2
    1.5
    >>> round(float(loss(keras.ops.zeros((2, 3)), y_pred, sample_weight=[1.0, 0.0])), 4)
    1.3333
    """

    def __init__(
        self,
        delta: float = DEFAULT_DELTA,
        penalty: float = DEFAULT_PENALTY,
        reduction: str | None = "sum_over_batch_size",
        name: str = "penalized_mae",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta, self.penalty = check_penalized_mae_options(delta, penalty)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras converts the inputs to self.dtype first, which would silently turn integer
        # predictions into floats: check before it does.
        check_floating("y_pred", y_pred)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
            # The reduction of every loss of this package: an empty batch sums to 0 and its mean is
            # NaN, in eager and traced code alike (Keras hands an empty batch back unreduced).
            return reduce_per_sample(self.call(y_true, y_pred), sample_weight, self.reduction, self.dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return penalized_mae(y_true, y_pred, delta=self.delta, penalty=self.penalty)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update({"delta": self.delta, "penalty": self.penalty, "dtype": self.dtype})
        return config
