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


FLOAT32_MAX = float(np.finfo(np.float32).max)
# values below float32's resolution round to one of its subnormal numbers (or 0)
SUBNORMAL = float(np.finfo(np.float32).smallest_subnormal)


@st.composite
def float32_range_cases(draw):
    """(prediction, target, delta, penalty): float32 values anywhere in float32's finite range, some
    errors or terms beyond it, none within 1e-3 of its edge (where float32 rounding decides)."""
    size = draw(st.integers(1, 8))
    finite32 = st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32)
    prediction = draw(hnp.arrays(np.float32, size, elements=finite32))
    target = draw(hnp.arrays(np.float32, size, elements=finite32))
    delta = draw(st.floats(0.0, 10.0))
    penalty = draw(st.one_of(st.just(0.0), st.floats(0.0, 10.0), st.floats(0.0, 1e38)))
    terms, derivatives = float64_terms(prediction, target, delta, penalty)
    for values in (terms, np.abs(derivatives), np.abs(prediction.astype(np.float64) - target)):
        near_edge = np.abs(values / FLOAT32_MAX - 1.0) < 1e-3
        if near_edge.any():
            prediction = np.where(near_edge, target, prediction)
    return prediction, target, delta, penalty


def float64_terms(prediction, target, delta, penalty):
    """Each element's term and derivative, in float64 (beyond float32's range where it is)."""
    e = prediction.astype(np.float64) - target.astype(np.float64)
    excess = np.maximum(np.abs(e) - delta, 0.0)
    return np.abs(e) + penalty * excess**2, np.sign(e) * (1.0 + 2.0 * penalty * excess)


def check_float32_range(
    prediction,
    target,
    delta,
    penalty,
    per_element,
    mean,
    grad_of_mean,
    path="",
    mean_of_float32_terms=False,
    smallest=SUBNORMAL,
):
    """The documented rule for float32: a term (or derivative) beyond the range is +inf (±inf),
    never NaN; the mean is the true mean, rounded, also where terms or their sum are beyond the
    range, except where an error x - t itself is (float32 computes it: inf, and so is the mean).
    ``mean_of_float32_terms``: the mean is that of the float32 terms (Keras on the torch backend),
    inf where one of them is. ``smallest``: the magnitude below which results may be flushed to 0
    (XLA flushes subnormal numbers on the CPU)."""
    # the options as float32 holds them (delta = 2 - 2e-15 is 2 there)
    delta, penalty = float(np.float32(delta)), float(np.float32(penalty))
    terms, derivatives = float64_terms(prediction, target, delta, penalty)
    overflowed = np.abs(prediction.astype(np.float64) - target) > FLOAT32_MAX
    beyond = terms > FLOAT32_MAX
    assert not np.isnan(per_element).any() and not np.isnan(mean).any(), path
    assert not np.isnan(grad_of_mean).any(), path
    np.testing.assert_array_equal(np.isposinf(per_element), beyond, err_msg=path)
    np.testing.assert_allclose(per_element[~beyond], terms[~beyond], rtol=1e-5, atol=smallest, err_msg=path)
    true_mean = np.inf if overflowed.any() or (mean_of_float32_terms and beyond.any()) else terms.mean()
    if true_mean > FLOAT32_MAX * (1 + 1e-3):
        assert np.isposinf(mean), path
    elif true_mean < FLOAT32_MAX * (1 - 1e-3):
        np.testing.assert_allclose(mean, true_mean, rtol=1e-5, atol=smallest, err_msg=path)
    # where e overflowed, so does the derivative (with a penalty)
    steep = (np.abs(derivatives) > FLOAT32_MAX) | (overflowed & (penalty > 0))
    np.testing.assert_array_equal(np.isinf(grad_of_mean), steep, err_msg=path)
    # 1e-4: near |e| = delta the float32 excess is off by a rounding of |e|, times 2·penalty
    np.testing.assert_allclose(
        grad_of_mean[~steep], derivatives[~steep] / terms.size, rtol=1e-4, atol=smallest, err_msg=path
    )
