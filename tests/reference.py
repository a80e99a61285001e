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


def _penalized_mae_reduce(values, reduction):
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / max(values.size, 1)
    if reduction == "per_sample":  # the Keras loss function: mean over every non-batch axis
        return values if values.ndim == 0 else values.reshape(values.shape[0], -1).mean(axis=1)
    raise ValueError(f"unknown reduction {reduction!r}")


def penalized_mae(prediction, target, delta=1.0, penalty=0.5, reduction="mean"):
    """|e| + penalty * max(|e| - delta, 0)**2 with e = prediction - target, in float64.

    reduction: "mean" (over every element, 0 when empty), "sum", "none", or "per_sample" (mean
    over every axis but the first, as the Keras loss function returns).
    """
    e = np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    excess = np.maximum(np.abs(e) - delta, 0.0)
    values = np.abs(e) + penalty * excess**2
    return _penalized_mae_reduce(values, reduction)


def penalized_mae_grad(prediction, target, delta=1.0, penalty=0.5, reduction="mean"):
    """Gradient of the sum of ``penalized_mae(...)``'s output with respect to ``prediction``.

    sign(e) * (1 + 2 * penalty * max(|e| - delta, 0)) with sign(0) = 0, divided by the number of
    elements averaged over ("mean": all; "per_sample": those of one sample). The gradient with
    respect to the target is its negative.
    """
    e = np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    grad = np.sign(e) * (1.0 + 2.0 * penalty * np.maximum(np.abs(e) - delta, 0.0))
    if reduction == "mean":
        grad = grad / max(e.size, 1)
    elif reduction == "per_sample" and e.ndim > 0 and e.size:
        grad = grad / (e.size // e.shape[0])
    elif reduction not in ("sum", "none", "per_sample"):
        raise ValueError(f"unknown reduction {reduction!r}")
    return grad


# ----------------------------------------------------------------------------------------------
# Surrogates
# ----------------------------------------------------------------------------------------------
