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
    # isinstance first: Dynamo cannot trace hasattr on the symbolic float that a changing alpha becomes.
    if not isinstance(alpha, numbers.Real) and hasattr(alpha, "shape"):  # a tensor or an array
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
