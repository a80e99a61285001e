"""Smooth surrogates of round, floor, ceil, step and sign in ``keras.ops``, with straight-through forms.

The formulas, the range of ``alpha`` and the docstrings live in :mod:`losses._surrogates`, shared
with the PyTorch frontend. The straight-through forms use ``keras.ops.custom_gradient``
(``tf.custom_gradient``, ``jax.custom_gradient`` or a ``torch.autograd.Function``, by backend)
with the surrogate's derivative written out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from losses import _surrogates as _spec
from losses._validation import floating_dtype_error

__all__ = ["soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign"]

_KEPT_DTYPES = ("float32", "float64")


def _prepare(x: Any) -> Any:
    x = ops.convert_to_tensor(x)
    dtype = _dtype(x)
    if "float" not in dtype:
        raise floating_dtype_error("x", dtype)
    return x if dtype in _KEPT_DTYPES else ops.cast(x, "float32")


def _dtype(x: Any) -> str:
    return keras.backend.standardize_dtype(x.dtype)


# Keras caps the result of floor, ceil (JAX and torch backends) and tanh (JAX backend) at 32 bits,
# so float64 would lose its precision there, and floor(1e300) would become inf. round, sign and
# sigmoid keep the dtype on every backend, so floor, ceil and (where needed) tanh are built on them.

def _floor(x: Any) -> Any:
    # exact: round(x) is an integer within 1/2 of x, so floor(x) is it or it minus one
    r = ops.round(x)
    return ops.subtract(r, ops.cast(ops.greater(r, x), _dtype(x)))


def _ceil(x: Any) -> Any:
    return ops.negative(_floor(ops.negative(x)))  # keeps the sign of zero, as ceil(-0.25) = -0.0


def _tanh(y: Any) -> Any:
    t = ops.tanh(y)
    if _dtype(t) == _dtype(y):
        return t
    return ops.subtract(ops.multiply(2.0, ops.sigmoid(ops.multiply(2.0, y))), 1.0)


def _scale(x: Any, c: float) -> Any:
    # The torch backend turns a bare Python float into a float32 tensor, which would round c
    # before it meets a float64 x; converting it to x's dtype keeps it exact.
    return ops.multiply(x, ops.convert_to_tensor(c, dtype=_dtype(x)))


def _sech2(y: Any) -> Any:
    # 1 - tanh(y)**2 written with sigmoids: no cancellation in the tails, exactly 1 at 0.
    return ops.multiply(4.0, ops.multiply(ops.sigmoid(ops.multiply(2.0, y)), ops.sigmoid(ops.multiply(-2.0, y))))


# Values (autodiff gives the soft forms' gradients) and derivatives (the straight-through backward).

def _round_value(y: Any, alpha: float) -> Any:
    m = ops.add(_floor(y), 0.5)
    return ops.add(m, _scale(_tanh(_scale(ops.subtract(y, m), alpha)), _spec.round_scale(alpha)))


def _round_derivative(y: Any, alpha: float) -> Any:
    r = ops.subtract(y, ops.add(_floor(y), 0.5))
    return _scale(_sech2(_scale(r, alpha)), alpha * _spec.round_scale(alpha))


def _floor_derivative(x: Any, alpha: float) -> Any:
    return _round_derivative(ops.subtract(x, 0.5), alpha)


def _ceil_derivative(x: Any, alpha: float) -> Any:
    return _round_derivative(ops.add(x, 0.5), alpha)


def _step_derivative(x: Any, alpha: float) -> Any:
    z = _scale(x, alpha)
    return _scale(ops.multiply(ops.sigmoid(z), ops.sigmoid(ops.negative(z))), alpha)


def _sign_derivative(x: Any, alpha: float) -> Any:
    return ops.multiply(2.0, _step_derivative(x, alpha))


def _hard_step(x: Any) -> Any:
    # (sign + 1) / 2 is exact: 0, 1/2 or 1, with step(0) = 1/2 like the surrogate at 0.
    return ops.multiply(ops.add(ops.sign(x), 1.0), 0.5)


def _straight_through(x: Any, hard: Callable, derivative: Callable, alpha: float) -> Any:
    """Forward ``hard(x)``, backward ``upstream * derivative(x, alpha)``."""
    if isinstance(x, keras.KerasTensor):
        # custom_gradient is not a Keras operation, so a functional model could not replay it
        raise TypeError(
            "straight_through=True needs a concrete tensor, not a symbolic keras.Input; inside a "
            "functional model wrap the call in a layer, e.g. "
            "keras.layers.Lambda(lambda t: soft_round(t, alpha, straight_through=True)), or use it "
            "in a loss or in a layer's call()"
        )

    @ops.custom_gradient
    def forward(x):
        def grad(*args, upstream=None):
            # TensorFlow and JAX call grad(upstream); the torch backend grad(*inputs, upstream=...).
            if upstream is None:
                (upstream,) = args
            return ops.multiply(upstream, derivative(x, alpha))

        return hard(x), grad

    return forward(x)


def soft_round(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, ops.round, _round_derivative, alpha)
    return _round_value(x, alpha)


def soft_floor(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, _floor, _floor_derivative, alpha)
    return _round_value(ops.subtract(x, 0.5), alpha)


def soft_ceil(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, _ceil, _ceil_derivative, alpha)
    return _round_value(ops.add(x, 0.5), alpha)


def soft_step(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, _hard_step, _step_derivative, alpha)
    return ops.sigmoid(_scale(x, alpha))


def soft_sign(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _prepare(x)
    if straight_through:
        return _straight_through(x, ops.sign, _sign_derivative, alpha)
    # tanh(z / 2) equals 2 * sigmoid(z) - 1 without its cancellation near 0.
    return _tanh(_scale(x, 0.5 * alpha))


_EXAMPLES = {
    "soft_round": """
    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_round
    >>> x = np.array([0.2, 0.5, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_round(x, alpha=10.0)), 4)
    array([0.0024, 0.5   , 1.9821], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_round(x, alpha=10.0, straight_through=True))
    array([0., 0., 2.], dtype=float32)
""",
    "soft_floor": """
    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_floor
    >>> x = np.array([0.2, 1.0, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_floor(x, alpha=10.0)), 4)
    array([-0.0179,  0.5   ,  1.0024], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_floor(x, alpha=10.0, straight_through=True))
    array([0., 1., 1.], dtype=float32)
""",
    "soft_ceil": """
    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_ceil
    >>> x = np.array([0.2, 1.0, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_ceil(x, alpha=10.0)), 4)
    array([0.9821, 1.5   , 2.0024], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_ceil(x, alpha=10.0, straight_through=True))
    array([1., 1., 2.], dtype=float32)
""",
    "soft_step": """
    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_step
    >>> x = np.array([-0.5, 0.0, 0.1], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_step(x, alpha=10.0)), 4)
    array([0.0067, 0.5   , 0.7311], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_step(x, alpha=10.0, straight_through=True))
    array([0. , 0.5, 1. ], dtype=float32)
""",
    "soft_sign": """
    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_sign
    >>> x = np.array([-0.5, 0.0, 0.1], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_sign(x, alpha=10.0)), 4)
    array([-0.9866,  0.    ,  0.4621], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_sign(x, alpha=10.0, straight_through=True))
    array([-1.,  0.,  1.], dtype=float32)
""",
}

for _function in (soft_round, soft_floor, soft_ceil, soft_step, soft_sign):
    _function.__doc__ = _spec.docstring(_function.__name__, _EXAMPLES[_function.__name__])
del _function
