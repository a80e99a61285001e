"""Hypothesis strategy for penalized-MAE inputs, shared by the PyTorch and Keras tests."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from losses.testing.strategies import float_arrays

MARGIN = 1e-2  # distance kept from the kinks e = 0 and |e| = delta in finite-difference checks


@st.composite
def penalized_mae_cases(draw, shapes=None, min_delta=0.05):
    """(prediction, target, delta, penalty) in float64, errors on both sides of delta, away from kinks.

    ``shapes``: a strategy of shapes (default: rank 1 to 3, sides 1 to 4).
    """
    shapes = shapes or hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
    shape = draw(shapes)
    size = math.prod(shape)
    delta = draw(st.floats(min_delta, 3.0))
    penalty = draw(st.floats(0.0, 2.0))
    u = draw(hnp.arrays(np.float64, size, elements=st.floats(0.0, 1.0)))
    outside = draw(hnp.arrays(np.bool_, size))
    negative = draw(hnp.arrays(np.bool_, size))
    outside[0] = True
    if size > 1:
        outside[-1] = False
    magnitude = np.where(outside, delta + MARGIN + 5.0 * u, MARGIN + (delta - 2 * MARGIN) * u)
    error = np.where(negative, -magnitude, magnitude).reshape(shape)
    target = draw(float_arrays(shape, -5.0, 5.0))
    return target + error, target, delta, penalty
