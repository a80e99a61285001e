"""Helpers shared by the Keras losses: dtype checks, concrete-value checks, the ops namespace."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from losses._validation import floating_dtype_error


class KerasOps:
    """The tensor namespace :func:`losses._dice.dice_from_stats` and friends expect."""

    where = staticmethod(ops.where)
    log = staticmethod(ops.log)

    @staticmethod
    def maximum(x: Any, value: float) -> Any:
        # Not ops.maximum: on the torch backend it returns float32 even for float64 x.
        return ops.where(x > value, x, value)

    @staticmethod
    def sum(x: Any, axis: int) -> Any:
        return ops.sum(x, axis=axis)


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


def static_shape(x: Any) -> tuple:
    return tuple(x.shape)


def shapes_match(a: tuple, b: tuple) -> bool:
    """Equal shapes, where an unknown (None) dimension matches anything."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))
