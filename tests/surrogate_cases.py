"""Inputs and checks for the smooth surrogates, shared by the PyTorch, Keras and agreement tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import reference
from losses import _surrogates as spec
from losses.testing import GradientMismatch, numeric_gradient, value_and_grad

NAMES = reference.SURROGATES

# Finite differences use eps = 1e-6; a second derivative that jumps within eps of x (the C1 points
# of the rounding family) spoils them, so hypothesis inputs stay this far away.
C1_MARGIN = 1e-4


def lattice_distance(x, offset):
    """Distance from each x to the nearest point of offset + Z."""
    return np.abs(np.mod(np.asarray(x, dtype=np.float64) - offset + 0.5, 1.0) - 0.5)


def clear_of_c1_points(name, x, margin=C1_MARGIN):
    offset = reference.C1_POINTS[name]
    return offset is None or bool(np.all(lattice_distance(x, offset) >= margin))


def jump_distance(name, x):
    """Distance from each x to the nearest jump of the hard function."""
    offset = reference.JUMPS[name]
    x = np.asarray(x, dtype=np.float64)
    return np.abs(x) if offset is None else lattice_distance(x, offset)


# log-uniform sharpness; finite differences need alpha**3 * eps**2 small next to the derivative.
alphas = st.floats(min_value=np.log10(spec.ALPHA_MIN), max_value=2.0).map(lambda e: float(10.0**e))
# No subnormals: TensorFlow and XLA flush them to zero, so floor(-5e-324) is -0 there, -1 in NumPy.
xs = st.lists(
    st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, allow_subnormal=False), min_size=1, max_size=6
).map(lambda v: np.array(v, dtype=np.float64))


def grid(dtype_max):
    """Integers, half-integers, near misses, +-1e4, 0, tiny and the dtype's largest finite value."""
    base = [
        0.0,
        1e-30,
        0.25,
        0.5,
        0.75,
        1.0,
        1.5,
        2.0,
        2.5,
        3.0,
        0.4999,
        0.5001,
        0.9999,
        1.0001,
        7.5,
        1e4,
        1e4 + 0.5,
        float(dtype_max),
    ]
    base = np.array(base, dtype=np.float64)
    return np.concatenate([base, -base])


def check_straight_through_gradient(straight_through_fn, soft_fn, x, framework, rtol=1e-4, atol=1e-6):
    """Raise GradientMismatch unless the straight-through backward equals the central differences of
    the soft surrogate (the same comparison as losses.testing.check_gradient, across two functions)."""
    x = np.array(x, dtype=np.float64)
    _, analytic = value_and_grad(straight_through_fn, [x], framework=framework)
    numeric = numeric_gradient(soft_fn, [x], framework=framework)
    error = np.abs(analytic - numeric)
    if not np.all(np.isfinite(analytic)) or np.any(error > atol + rtol * np.abs(numeric)):
        worst = int(np.argmax(error - rtol * np.abs(numeric)))
        raise GradientMismatch(
            f"straight-through backward {analytic[worst]!r} but finite differences of the "
            f"surrogate {numeric[worst]!r} at x = {x.reshape(-1)[worst]!r}"
        )
