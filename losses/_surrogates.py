"""Framework-free pieces of the smooth surrogates: the range of ``alpha``, its check, the docstrings.

Both frontends (``losses.torch`` and ``losses.keras``) compute the same five functions,

- ``soft_round(x, alpha)  = m + tanh(alpha * r) / (2 * tanh(alpha / 2))``, ``m = floor(x) + 1/2``,
  ``r = x - m`` (Agustsson & Theis, 2020),
- ``soft_floor(x, alpha)  = soft_round(x - 1/2, alpha)``,
- ``soft_ceil(x, alpha)   = soft_round(x + 1/2, alpha)``,
- ``soft_step(x, alpha)   = sigmoid(alpha * x)``,
- ``soft_sign(x, alpha)   = 2 * sigmoid(alpha * x) - 1 = tanh(alpha * x / 2)``,

and take their option checks and docstrings from here, so the two cannot drift apart.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from losses._validation import check_bool, check_number, describe

# Below ALPHA_MIN every surrogate is affine to float32 precision (nothing of the hard function is
# left) and alpha = 0 itself is 0/0 in soft_round. Above ALPHA_MAX the peak derivative (alpha / 2
# for the rounding family) would no longer be safely below float16's largest value, 65504, once
# multiplied by an upstream gradient of a few units.
ALPHA_MIN = 1e-3
ALPHA_MAX = 1e4
DEFAULT_ALPHA = 10.0

NAMES = ("soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign")


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a Python float in ``[ALPHA_MIN, ALPHA_MAX]``; a clear error otherwise."""
    if hasattr(alpha, "shape") and not isinstance(alpha, numbers.Real):  # a tensor or an array
        raise TypeError(
            f"alpha must be a Python float in [{ALPHA_MIN:g}, {ALPHA_MAX:g}]; got {describe(alpha)}. "
            "alpha is a fixed sharpness, not a tensor: to anneal it, call the function with a new float."
        )
    value = check_number("alpha", alpha)
    if not ALPHA_MIN <= value <= ALPHA_MAX:
        raise ValueError(
            f"alpha must be in [{ALPHA_MIN:g}, {ALPHA_MAX:g}] (small: smooth, large: close to the hard "
            f"function); got {value!r}"
        )
    return value


def check_options(alpha: Any, straight_through: Any) -> tuple[float, bool]:
    return check_alpha(alpha), check_bool("straight_through", straight_through)


def round_scale(alpha: float) -> float:
    """``1 / (2 tanh(alpha / 2))``, computed once in float64 on the host."""
    return 1.0 / (2.0 * math.tanh(alpha / 2.0))


_ROUND_FAMILY = {
    "soft_round": ("round", "x", "rounds half to even, like ``round`` in NumPy, PyTorch and TensorFlow"),
    "soft_floor": ("floor", "x - 1/2", "``floor``"),
    "soft_ceil": ("ceil", "x + 1/2", "``ceil``"),
}

_COMMON_ARGS = f"""
    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[{ALPHA_MIN:g}, {ALPHA_MAX:g}]`` (default
            ``{DEFAULT_ALPHA:g}``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value ({{hard}} of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.
"""


def docstring(name: str, example: str) -> str:
    """The docstring of surrogate ``name`` in either frontend; ``example`` is the doctest."""
    if name in _ROUND_FAMILY:
        hard, argument, hard_text = _ROUND_FAMILY[name]
        shift = "" if argument == "x" else f" = soft_round({argument}, alpha)"
        label = "derivative".ljust(len(name) + len("(x, alpha)"))
        text = f"""Smooth {hard}: ``{name}(x, alpha){shift}`` (Agustsson & Theis, 2020).

    With ``y = {argument}``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        {name}(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        {label} = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard {hard} at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard {hard} it passes through the midpoint.
    The hard value of ``straight_through=True`` is {hard_text}.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard {hard}:
    ``|{name}(x, alpha) - {hard}(x)| <= exp(-2 * alpha * d)``, and
    ``|{name}(x, alpha) - ({argument})| <= alpha**2 / 48`` (the identity, shifted) for alpha <= 1.
"""
        return text + _COMMON_ARGS.replace("{hard}", hard) + example
    if name == "soft_step":
        text = """Smooth Heaviside step: ``soft_step(x, alpha) = sigmoid(alpha * x)``.

    Derivative ``alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 4`` (at 0).
    The hard value of ``straight_through=True`` is 1 for x > 0, 0 for x < 0 and 1/2 at 0 (the
    value of the surrogate at 0 for every alpha; ``numpy.heaviside(x, 0.5)``).
    To turn ``if a > threshold`` into a weight, use ``soft_step(a - threshold, alpha)``.

    Limits: ``|soft_step(x, alpha) - step(x)| <= exp(-alpha * |x|)``, and
    ``|soft_step(x, alpha) - (1/2 + alpha * x / 4)| <= (alpha * |x|)**3 / 48``.
"""
        return text + _COMMON_ARGS.replace("{hard}", "step") + example
    if name == "soft_sign":
        text = """Smooth sign: ``soft_sign(x, alpha) = 2 * sigmoid(alpha * x) - 1 = tanh(alpha * x / 2)``.

    Derivative ``2 * alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 2``
    (at 0). The hard value of ``straight_through=True`` is ``sign(x)`` with ``sign(0) = 0``.
    (Not ``x / (1 + |x|)``, which Keras calls softsign: that one has no sharpness.)

    Limits: ``|soft_sign(x, alpha) - sign(x)| <= 2 * exp(-alpha * |x|)``, and
    ``|soft_sign(x, alpha) - alpha * x / 2| <= (alpha * |x|)**3 / 24``.
"""
        return text + _COMMON_ARGS.replace("{hard}", "sign") + example
    raise ValueError(f"unknown surrogate {name!r}; expected one of {NAMES}")
