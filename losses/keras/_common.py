"""Helpers shared by the Keras losses: dtype checks, concrete-value checks, the ops namespace."""

from __future__ import annotations

from typing import Any, TypeVar

import keras
import numpy as np
from keras import ops

from losses._validation import floating_dtype_error

Shape = tuple[int | None, ...]
"""A static shape: a size per axis, None where it is unknown (inside a traced function)."""

_Registered = TypeVar("_Registered")


def serializable(obj: _Registered) -> _Registered:
    """Registers a loss class or function with Keras under the package name ``losses``, so that a saved
    model reloads after ``import losses.keras`` without ``custom_objects``."""
    registered: _Registered = keras.saving.register_keras_serializable(package="losses")(obj)
    return registered


class KerasOps:
    """The tensor namespace :func:`losses._overlap.overlap_loss` expects, for Keras tensors."""

    where = staticmethod(ops.where)
    log = staticmethod(ops.log)
    zeros_like = staticmethod(ops.zeros_like)
    stack = staticmethod(ops.stack)
    logical_and = staticmethod(ops.logical_and)
    logical_or = staticmethod(ops.logical_or)
    stop_gradient = staticmethod(ops.stop_gradient)

    @staticmethod
    def maximum(x: Any, value: float) -> Any:
        # Not ops.maximum: on the torch backend it returns float32 even for float64 x. NaN stays NaN.
        return ops.where(x < value, value, x)

    @staticmethod
    def pow(x: Any, exponent: float) -> Any:
        return ops.power(x, ops.cast(exponent, x.dtype))

    @staticmethod
    def sum(x: Any, axis: int, keepdims: bool = False) -> Any:
        return ops.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def min(x: Any, axis: int, keepdims: bool = False) -> Any:
        return ops.min(x, axis=axis, keepdims=keepdims)


def dtype_name(x: Any) -> str:
    return keras.backend.standardize_dtype(getattr(x, "dtype", None) or np.asarray(x).dtype)


def check_floating(name: str, x: Any) -> None:
    if not keras.backend.is_float_dtype(dtype_name(x)):
        raise floating_dtype_error(name, dtype_name(x))


def compute_dtype(x: Any) -> str:
    """float64 stays float64; every other float type is computed in float32."""
    return "float64" if dtype_name(x) == "float64" else "float32"


def concrete_value(x: Any) -> np.ndarray | None:
    """The value of ``x`` as a NumPy array when it is known now (eager), else None (traced)."""
    if isinstance(x, (np.ndarray, np.generic, list, tuple, int, float)):
        return np.asarray(x)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    try:
        return ops.convert_to_numpy(x)
    except Exception:  # a symbolic tensor of any backend
        return None


def static_shape(name: str, x: Any) -> Shape:
    """``x.shape`` as a tuple (unknown sizes are None); a clear error when even the rank is unknown."""
    if not hasattr(x, "shape"):
        raise TypeError(f"{name} must be a tensor or an array; got {type(x).__name__}")
    try:
        return tuple(x.shape)
    except (TypeError, ValueError):  # a TensorShape of unknown rank
        raise ValueError(
            f"{name} must have a known rank (number of dimensions); inside tf.function, give the "
            "input signature a shape such as (None, None, None, C)"
        ) from None


_FLOAT16_MAX = 65504.0


@ops.custom_gradient
def _saturating_upcast(x: Any) -> Any:
    def grad(*args: Any, upstream: Any = None) -> Any:
        if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally
            (upstream,) = args
        # An infinity comes from a non-finite input (finite input gives a finite gradient): it stays one.
        saturated = ops.where(ops.isinf(upstream), upstream, ops.clip(upstream, -_FLOAT16_MAX, _FLOAT16_MAX))
        return ops.cast(saturated, "float16")

    return ops.cast(x, "float32"), grad


def upcast(x: Any) -> Any:
    """``x`` in its computation dtype (:func:`compute_dtype`). From float16 the gradient is cast back
    with saturation at float16's largest value, rather than overflowing to inf (which would make a
    loss scaler skip the step); NaN and ±inf (from a non-finite input) stay as they are."""
    dtype = dtype_name(x)
    if dtype == "float16":
        return _saturating_upcast(x)
    return ops.cast(x, compute_dtype(x))


@ops.custom_gradient
def _non_finite_mark(x: Any) -> Any:
    def grad(*args: Any, upstream: Any = None) -> Any:
        if upstream is None:
            (upstream,) = args
        return upstream * (x * 0.0)

    return x * 0.0, grad


def non_finite_mark(x: Any) -> Any:
    """0 where ``x`` is finite and NaN where it is NaN or ±inf, with the gradient 0 and NaN there too:
    added to a term, it makes the term and its gradient NaN where its input was not finite (so that
    a loss scaler sees the NaN), whatever the term's own derivative gives there."""
    return _non_finite_mark(x)


def reduce_per_sample(values: Any, sample_weight: Any, reduction: str | None, dtype: str) -> Any:
    """The Keras ``reduction`` of per-sample losses ``values`` ``(B,)`` weighted by ``sample_weight``.

    As ``keras.losses.Loss`` does, except for an empty batch: ``"sum"`` gives 0 and
    ``"sum_over_batch_size"`` / ``"mean"`` give NaN (the mean of nothing, as in
    ``torch.nn.functional``), in eager and traced code alike; and ``"mean_with_sample_weight"``
    with every weight 0 gives 0 only for finite losses (NaN where a sample's loss is NaN).
    """
    from keras.src.losses.loss import scale_loss_for_distribution

    values = ops.cast(values, dtype)
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        shape = static_shape("sample_weight", sample_weight)
        rank = len(shape)
        if rank > 1 and any(d != 1 for d in shape[1:]):
            raise ValueError(f"sample_weight must have shape (B,): one weight per sample; got shape {shape}")
        # A scalar scales every sample (Keras' convention); a vector is never broadcast to the batch.
        batch = values.shape[0] if len(values.shape) else None
        if rank >= 1 and None not in (shape[0], batch) and shape[0] != batch:
            raise ValueError(
                f"sample_weight must have shape (B,): one weight per sample; got shape {shape} for a batch "
                f"of {batch} samples. Shapes are never broadcast (a scalar scales every sample)."
            )
        if rank > 1:
            sample_weight = ops.reshape(sample_weight, (-1,))
        values = values * sample_weight
    if reduction is None or reduction == "none" or len(values.shape) == 0:
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        # 0 where every weight is 0, as Keras' divide_no_nan, but NaN where a NaN entered the total:
        # divide_no_nan would give 0 there, a finite loss beside a NaN gradient.
        weight_sum = ops.sum(sample_weight)
        weighted = weight_sum != 0
        mean = ops.where(weighted, total / ops.where(weighted, weight_sum, 1.0), total * 0.0)
        return scale_loss_for_distribution(mean)
    return scale_loss_for_distribution(total / ops.cast(ops.shape(values)[0], dtype))


def loss_config(loss: Any) -> dict[str, Any]:
    """``name``, ``reduction`` and ``dtype`` of a ``keras.losses.Loss`` (Keras' own config leaves out dtype)."""
    policy = loss._dtype_policy
    dtype = policy.name if type(policy).__name__ == "DTypePolicy" else keras.dtype_policies.serialize(policy)
    return {"name": loss.name, "reduction": loss.reduction, "dtype": dtype}


def shapes_match(a: Shape, b: Shape) -> bool:
    """Equal shapes, where an unknown (None) dimension matches anything."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))
