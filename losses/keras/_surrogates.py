"""Smooth surrogates of round, floor, ceil, step and sign in ``keras.ops``, with straight-through forms.

The formulas, the range of ``alpha`` and the docstrings live in :mod:`losses._surrogates`, shared
with the PyTorch frontend. Each function is its value and its derivative, written out below;
the gradient is the derivative times the upstream gradient, written by hand with
``keras.ops.custom_gradient`` (``tf.custom_gradient`` or ``jax.custom_gradient``), for the soft
forms as for the straight-through ones (whose forward value is the exact hard function). Value
and gradient each run as one compiled function of the backend (see
:mod:`losses.keras._elementwise`); on the torch backend they are the PyTorch frontend's.
Symbolic inputs (``keras.Input``) get the soft forms as plain ``keras.ops``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from losses import _surrogates as _spec
from losses._validation import floating_dtype_error
from losses.keras._elementwise import compiled, options

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
# expm1 keep the dtype on every backend, so there floor, ceil and tanh are built on them.


def _floor(x: Any) -> Any:
    f = ops.floor(x)
    if _dtype(f) == _dtype(x):
        return f
    # exact: round(x) is an integer within 1/2 of x, so floor(x) is it or it minus one
    r = ops.round(x)
    return ops.subtract(r, ops.cast(ops.greater(r, x), _dtype(x)))


def _ceil(x: Any) -> Any:
    return ops.negative(_floor(ops.negative(x)))  # keeps the sign of zero, as ceil(-0.25) = -0.0


def _tanh(y: Any) -> Any:
    t = ops.tanh(y)
    if _dtype(t) == _dtype(y):
        return t
    # tanh|y| = -u / (2 + u) with u = expm1(-2|y|) keeps the relative precision near 0, which
    # 2 sigmoid(2y) - 1 loses to cancellation (1e-8 relative at |y| = 1e-8 in float64).
    u = ops.expm1(ops.multiply(-2.0, ops.abs(y)))
    magnitude = ops.divide(ops.negative(u), ops.add(u, 2.0))
    return ops.where(ops.less(y, 0.0), ops.negative(magnitude), magnitude)


def _sign(x: Any) -> Any:
    # ops.sign(nan) is 0 on some backends: a NaN that comes in must come out.
    return ops.where(ops.isnan(x), x, ops.sign(x))


# Values and derivatives. Options are tensors of x's dtype (arguments of the compiled functions,
# so that a new value compiles nothing): the rounding family takes alpha and 1 / (2 tanh(alpha / 2));
# step and sign take alpha.
# The derivatives are 1 - tanh² and sigmoid·(1 - sigmoid), as autodiff writes them: XLA's tanh and
# sigmoid are cheap rational functions. Where they round to 0 in the tails, the derivative is
# below the dtype's precision of its peak.


# soft_round(x + shift) for shift 0 (round), -1/2 (floor) and +1/2 (ceil): m = floor(x + shift) + 1/2
# and r = x + shift - m in [-1/2, 1/2), never from x + shift itself, which rounds where it crosses a
# power of two and, beyond 2^22 in float32, to even, picking the neighbouring cell (see
# losses/torch/_kernels/cpu_elementwise.c). With k = floor(x) and f = x - k, which is exact but for
# x in (-1, 0) (where it is x + 1, rounded), each shift has its own exact form, a constant of the
# compiled function (fewer operations than one form for every shift):
# - round: with K = round(x), x - K is exact, and r = (x - K) -/+ 1/2 (exact where f - 1/2 is);
# - floor and ceil: with K = floor(x + 1/2) = k + [f >= 1/2] (a comparison that the rounding of f
#   never flips), r = x - K, exact everywhere, and m = K -/+ 1/2.
# m is written as a subtraction: TensorFlow's graph optimizer merges a tree of additions into one
# AddN of k, 1/2 and tanh(...)·s, whose order rounds (soft_ceil(-1/2) = 0, soft_round(0) = 6e-8).


def _round_cell(x: Any) -> tuple[Any, Any]:
    """(m, r) of soft_round, exactly."""
    nearest = ops.round(x)
    offset = ops.subtract(x, nearest)  # in [-1/2, 1/2], exact
    # The cell of x is [nearest, nearest + 1) for offset >= 0, else the one below. One addition of
    # the selected half: (x - k) - 1/2 would be rewritten x - (k + 1/2) by TensorFlow's constant
    # folding, which rounds for |x| >= 2^23 in float32 (2^52 in float64).
    above = ops.greater_equal(offset, 0.0)
    minus_half = ops.where(above, ops.convert_to_tensor(-0.5, _dtype(x)), ops.convert_to_tensor(0.5, _dtype(x)))
    return ops.subtract(nearest, minus_half), ops.add(offset, minus_half)


def _shifted_cell(x: Any, shift: float) -> tuple[Any, Any]:
    """(m, r) of soft_round(x + shift), shift = -1/2 (soft_floor) or +1/2 (soft_ceil), exactly."""
    k = _floor(x)
    nearest = ops.add(k, ops.cast(ops.greater_equal(ops.subtract(x, k), 0.5), _dtype(x)))  # floor(x + 1/2)
    return ops.subtract(nearest, -shift), ops.subtract(x, nearest)


def _rounding(cell: Callable[[Any], tuple[Any, Any]]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The value and the derivative of a member of the rounding family, from its cell."""

    def value(x: Any, alpha: Any, scale: Any) -> Any:
        m, residual = cell(x)
        return ops.add(m, ops.multiply(_tanh(ops.multiply(residual, alpha)), scale))

    def derivative(x: Any, alpha: Any, scale: Any) -> Any:
        t = _tanh(ops.multiply(cell(x)[1], alpha))
        return ops.multiply(ops.subtract(1.0, ops.square(t)), ops.multiply(alpha, scale))

    return value, derivative


_round_value, _round_derivative = _rounding(_round_cell)
_floor_value, _floor_derivative = _rounding(lambda x: _shifted_cell(x, -0.5))
_ceil_value, _ceil_derivative = _rounding(lambda x: _shifted_cell(x, 0.5))


def _step_value(x: Any, alpha: Any) -> Any:
    return ops.sigmoid(ops.multiply(x, alpha))


def _step_derivative(x: Any, alpha: Any) -> Any:
    s = ops.sigmoid(ops.multiply(x, alpha))
    return ops.multiply(ops.multiply(s, ops.subtract(1.0, s)), alpha)


def _sign_value(x: Any, alpha: Any) -> Any:
    # tanh(z / 2) equals 2 * sigmoid(z) - 1 without its cancellation near 0.
    return _tanh(ops.multiply(x, ops.multiply(alpha, 0.5)))


def _sign_derivative(x: Any, alpha: Any) -> Any:
    half = ops.multiply(alpha, 0.5)
    t = _tanh(ops.multiply(x, half))
    return ops.multiply(ops.subtract(1.0, ops.square(t)), half)


def _hard_step(x: Any) -> Any:
    # 0, 1/2 or 1, with step(0) = 1/2 like the surrogate at 0, and a NaN kept. Selects rather than
    # (sign + 1) / 2: XLA on the CPU reduces a sum of the latter in a tree of reduce-windows, 2.5x
    # slower than its fused reduction of selects (a loss's mean of the straight-through step).
    zero, half, one = (ops.convert_to_tensor(value, _dtype(x)) for value in (0.0, 0.5, 1.0))
    at_zero = ops.where(ops.equal(x, zero), half, x)
    return ops.where(ops.greater(x, zero), one, ops.where(ops.less(x, zero), zero, at_zero))


# name: (value, derivative, hard value, options(alpha))
_FUNCTIONS: dict[
    str, tuple[Callable[..., Any], Callable[..., Any], Callable[[Any], Any], Callable[[float], tuple[float, ...]]]
] = {
    "soft_round": (_round_value, _round_derivative, ops.round, lambda a: (a, _spec.round_scale(a))),
    "soft_floor": (_floor_value, _floor_derivative, _floor, lambda a: (a, _spec.round_scale(a))),
    "soft_ceil": (_ceil_value, _ceil_derivative, _ceil, lambda a: (a, _spec.round_scale(a))),
    "soft_step": (_step_value, _step_derivative, _hard_step, lambda a: (a,)),
    "soft_sign": (_sign_value, _sign_derivative, _sign, lambda a: (a,)),
}


def _times_derivative(derivative: Callable[..., Any]) -> Callable[..., Any]:
    """``upstream · derivative(x)``, one function per derivative (a compiled function's identity)."""
    if derivative not in _GRADIENTS:
        _GRADIENTS[derivative] = lambda x, upstream, *option_values: ops.multiply(
            upstream, derivative(x, *option_values)
        )
    return _GRADIENTS[derivative]


_GRADIENTS: dict[Callable[..., Any], Callable[..., Any]] = {}


def _surrogate(name: str, x: Any, alpha: Any, straight_through: Any) -> Any:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    if keras.backend.backend() == "torch" and not isinstance(x, keras.KerasTensor):
        return _torch_surrogate(name, x, alpha, straight_through)
    x = _prepare(x)
    value, derivative, hard, option_values = _FUNCTIONS[name]
    if isinstance(x, keras.KerasTensor):
        if straight_through:
            # custom_gradient is not a Keras operation, so a functional model could not replay it
            raise TypeError(
                "straight_through=True needs a concrete tensor, not a symbolic keras.Input; inside a "
                "functional model wrap the call in a layer, e.g. "
                "keras.layers.Lambda(lambda t: soft_round(t, alpha, straight_through=True)), or use it "
                "in a loss or in a layer's call()"
            )
        return value(x, *options(x, *option_values(alpha)))
    tensors = options(x, *option_values(alpha))
    forward = (lambda t: compiled(hard)(t)) if straight_through else (lambda t: compiled(value)(t, *tensors))
    return _with_gradient(x, forward, derivative, tensors)


def _with_gradient(x: Any, forward: Callable[[Any], Any], derivative: Callable[..., Any], tensors: list[Any]) -> Any:
    """``forward(x)``, with the gradient ``upstream · derivative(x, *tensors)`` written by hand."""
    gradient = compiled(_times_derivative(derivative))

    @ops.custom_gradient
    def apply(x: Any) -> tuple[Any, Callable[..., Any]]:
        def grad(*args: Any, upstream: Any = None) -> Any:
            # TensorFlow and JAX call grad(upstream); the torch backend grad(*inputs, upstream=...).
            if upstream is None:
                (upstream,) = args
            return gradient(x, upstream, *tensors)

        return forward(x), grad

    return apply(x)


def _torch_surrogate(name: str, x: Any, alpha: float, straight_through: bool) -> Any:
    import losses.torch

    x = _prepare(x)
    return getattr(losses.torch, name)(x, alpha, straight_through=straight_through)


def soft_round(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    """Smooth round: ``soft_round(x, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_round(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative           = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard round at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard round it passes through the midpoint.
    The hard value of ``straight_through=True`` rounds half to even, like ``round`` in NumPy, PyTorch
    and TensorFlow.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard round:
    ``|soft_round(x, alpha) - round(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_round(x, alpha) - x| <= alpha**2 / 48`` (the identity) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (round of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_round
    >>> x = np.array([0.2, 0.5, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_round(x, alpha=10.0)), 4)
    array([0.0024, 0.5   , 1.9821], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_round(x, alpha=10.0, straight_through=True))
    array([0., 0., 2.], dtype=float32)
    """
    return _surrogate("soft_round", x, alpha, straight_through)


def soft_floor(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    """Smooth floor: ``soft_floor(x, alpha) = soft_round(x - 1/2, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x - 1/2``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_floor(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative           = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard floor at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard floor it passes through the midpoint.
    The hard value of ``straight_through=True`` is ``floor``.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard floor:
    ``|soft_floor(x, alpha) - floor(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_floor(x, alpha) - (x - 1/2)| <= alpha**2 / 48`` (the identity, shifted) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (floor of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_floor
    >>> x = np.array([0.2, 1.0, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_floor(x, alpha=10.0)), 4)
    array([-0.0179,  0.5   ,  1.0024], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_floor(x, alpha=10.0, straight_through=True))
    array([0., 1., 1.], dtype=float32)
    """
    return _surrogate("soft_floor", x, alpha, straight_through)


def soft_ceil(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    """Smooth ceil: ``soft_ceil(x, alpha) = soft_round(x + 1/2, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x + 1/2``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_ceil(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative          = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard ceil at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard ceil it passes through the midpoint.
    The hard value of ``straight_through=True`` is ``ceil``.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard ceil:
    ``|soft_ceil(x, alpha) - ceil(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_ceil(x, alpha) - (x + 1/2)| <= alpha**2 / 48`` (the identity, shifted) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (ceil of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_ceil
    >>> x = np.array([0.2, 1.0, 1.7], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_ceil(x, alpha=10.0)), 4)
    array([0.9821, 1.5   , 2.0024], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_ceil(x, alpha=10.0, straight_through=True))
    array([1., 1., 2.], dtype=float32)
    """
    return _surrogate("soft_ceil", x, alpha, straight_through)


def soft_step(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    """Smooth Heaviside step: ``soft_step(x, alpha) = sigmoid(alpha * x)``.

    Derivative ``alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 4`` (at 0).
    The hard value of ``straight_through=True`` is 1 for x > 0, 0 for x < 0 and 1/2 at 0 (the
    value of the surrogate at 0 for every alpha; ``numpy.heaviside(x, 0.5)``).
    To turn ``if a > threshold`` into a weight, use ``soft_step(a - threshold, alpha)``.

    Limits: ``|soft_step(x, alpha) - step(x)| <= exp(-alpha * |x|)``, and
    ``|soft_step(x, alpha) - (1/2 + alpha * x / 4)| <= (alpha * |x|)**3 / 48``.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (step of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_step
    >>> x = np.array([-0.5, 0.0, 0.1], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_step(x, alpha=10.0)), 4)
    array([0.0067, 0.5   , 0.7311], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_step(x, alpha=10.0, straight_through=True))
    array([0. , 0.5, 1. ], dtype=float32)
    """
    return _surrogate("soft_step", x, alpha, straight_through)


def soft_sign(x: Any, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> Any:
    """Smooth sign: ``soft_sign(x, alpha) = 2 * sigmoid(alpha * x) - 1 = tanh(alpha * x / 2)``.

    Derivative ``2 * alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 2``
    (at 0). The hard value of ``straight_through=True`` is ``sign(x)`` with ``sign(0) = 0``.
    (Not ``x / (1 + |x|)``, which Keras calls softsign: that one has no sharpness.)

    Limits: ``|soft_sign(x, alpha) - sign(x)| <= 2 * exp(-alpha * |x|)``, and
    ``|soft_sign(x, alpha) - alpha * x / 2| <= (alpha * |x|)**3 / 24``.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (sign of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import keras, numpy as np
    >>> from losses.keras import soft_sign
    >>> x = np.array([-0.5, 0.0, 0.1], dtype="float32")
    >>> np.round(keras.ops.convert_to_numpy(soft_sign(x, alpha=10.0)), 4)
    array([-0.9866,  0.    ,  0.4621], dtype=float32)
    >>> keras.ops.convert_to_numpy(soft_sign(x, alpha=10.0, straight_through=True))
    array([-1.,  0.,  1.], dtype=float32)
    """
    return _surrogate("soft_sign", x, alpha, straight_through)
