"""Float64 NumPy reference of every loss and surrogate: the single oracle of the test suite.

Written for clarity, not speed: label maps are expanded to one-hot here (never in the package),
loops follow the formulas in the docstrings. Channels first, as in the PyTorch frontend; the Keras
tests move the channel axis before comparing.
"""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------------------------
# Dice
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Penalized MAE
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Surrogates
# ----------------------------------------------------------------------------------------------
# Straight from the formulas of losses/_surrogates.py, in float64, with NumPy's own hard functions.


def soft_round(x, alpha):
    x = np.asarray(x, dtype=np.float64)
    m = np.floor(x) + 0.5
    return m + np.tanh(alpha * (x - m)) / (2.0 * np.tanh(alpha / 2.0))


def soft_round_derivative(x, alpha):
    x = np.asarray(x, dtype=np.float64)
    r = x - (np.floor(x) + 0.5)
    return alpha * (1.0 - np.tanh(alpha * r) ** 2) / (2.0 * np.tanh(alpha / 2.0))


def soft_floor(x, alpha):
    return soft_round(np.asarray(x, dtype=np.float64) - 0.5, alpha)


def soft_floor_derivative(x, alpha):
    return soft_round_derivative(np.asarray(x, dtype=np.float64) - 0.5, alpha)


def soft_ceil(x, alpha):
    return soft_round(np.asarray(x, dtype=np.float64) + 0.5, alpha)


def soft_ceil_derivative(x, alpha):
    return soft_round_derivative(np.asarray(x, dtype=np.float64) + 0.5, alpha)


def _sigmoid(z):
    with np.errstate(over="ignore"):  # exp(large) = inf gives the right limit 0
        return 1.0 / (1.0 + np.exp(-z))


def soft_step(x, alpha):
    return _sigmoid(alpha * np.asarray(x, dtype=np.float64))


def soft_step_derivative(x, alpha):
    z = alpha * np.asarray(x, dtype=np.float64)
    return alpha * _sigmoid(z) * (1.0 - _sigmoid(z))


def soft_sign(x, alpha):
    return 2.0 * soft_step(x, alpha) - 1.0


def soft_sign_derivative(x, alpha):
    return 2.0 * soft_step_derivative(x, alpha)


SURROGATES = ("soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign")

# The value of straight_through=True: round half to even, step(0) = 1/2, sign(0) = 0.
HARD = {
    "soft_round": np.round,
    "soft_floor": np.floor,
    "soft_ceil": np.ceil,
    "soft_step": lambda x: np.heaviside(x, 0.5),
    "soft_sign": np.sign,
}

# Where the hard function jumps, and where the surrogate is only C1 (the branch of floor changes).
JUMPS = {"soft_round": 0.5, "soft_floor": 0.0, "soft_ceil": 0.0, "soft_step": None, "soft_sign": None}
C1_POINTS = {"soft_round": 0.0, "soft_floor": 0.5, "soft_ceil": 0.5, "soft_step": None, "soft_sign": None}


def surrogate(name, x, alpha):
    return globals()[name](x, alpha)


def surrogate_derivative(name, x, alpha):
    return globals()[name + "_derivative"](x, alpha)
