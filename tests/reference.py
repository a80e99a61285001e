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

DICE_DEFAULTS = dict(
    mode="multiclass", from_logits=True, smooth_nr=1e-5, smooth_dr=1e-5, squared=False, log_loss=False,
    soft_labels=False, per_image=True, classes=None, class_weights=None, ignore_index=None,
    empty_target="smooth",
)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def dice_probabilities_and_targets(input, target, mode="multiclass", from_logits=True, ignore_index=None):
    """Channels-first p, g and valid mask, all of shape (B, C, N), float64; label maps as one-hot."""
    x = np.asarray(input, dtype=np.float64)
    batch, classes = x.shape[:2]
    x = x.reshape(batch, classes, -1)
    if from_logits:
        p = _softmax(x, 1) if mode == "multiclass" else _sigmoid(x)
    else:
        p = x
    t = np.asarray(target)
    if t.shape == np.asarray(input).shape:
        t = t.reshape(batch, classes, -1).astype(np.float64)
        valid = np.ones_like(t) if ignore_index is None else (t != ignore_index).astype(np.float64)
        g = np.where(valid > 0, t, 0.0)
    else:
        labels = t.reshape(batch, -1).astype(np.int64)
        valid1 = np.ones(labels.shape) if ignore_index is None else (labels != ignore_index).astype(np.float64)
        if mode == "binary":
            g = (labels == 1).astype(np.float64)[:, None, :]
        else:
            g = np.stack([(labels == c).astype(np.float64) for c in range(classes)], axis=1)
        valid = np.repeat(valid1[:, None, :], classes, axis=1)
        g = g * valid
    return p, g, valid


def dice_stats(input, target, mode="multiclass", from_logits=True, ignore_index=None, per_image=True):
    """The (S, C, 7) sums: Σv·p·g, Σv·p, Σv·g, Σv·p², Σv·g², Σv·|p − g|, Σv."""
    p, g, v = dice_probabilities_and_targets(input, target, mode, from_logits, ignore_index)
    stats = np.stack([
        (v * p * g).sum(-1), (v * p).sum(-1), (v * g).sum(-1), (v * p * p).sum(-1), (v * g * g).sum(-1),
        (v * np.abs(p - g)).sum(-1), v.sum(-1),
    ], axis=-1)
    return stats if per_image else stats.sum(0, keepdims=True)


def dice_loss(input, target, reduction="mean", **options):
    """Dice loss per DESIGN.md, straight from the definitions; channels first."""
    o = {**DICE_DEFAULTS, **options}
    p, g, v = dice_probabilities_and_targets(input, target, o["mode"], o["from_logits"], o["ignore_index"])
    if not o["per_image"]:  # one "image": the whole batch
        p, g, v = (np.concatenate(list(a), axis=-1)[None] for a in (p, g, v))
    num_images, num_classes = p.shape[:2]
    weights = np.ones(num_classes) if o["class_weights"] is None else np.asarray(o["class_weights"], float)
    selected = range(num_classes) if o["classes"] is None else o["classes"]
    losses = np.zeros(num_images)
    for b in range(num_images):
        total, weight_total = 0.0, 0.0
        for c in selected:
            pc, gc, vc = p[b, c] * v[b, c], g[b, c] * v[b, c], v[b, c]
            if o["soft_labels"]:
                intersection = (pc.sum() + gc.sum() - np.abs(pc - gc).sum()) / 2
            else:
                intersection = (pc * gc).sum()
            denominator = (pc ** 2).sum() + (gc ** 2).sum() if o["squared"] else pc.sum() + gc.sum()
            numerator = 2 * intersection + o["smooth_nr"]
            denominator = denominator + o["smooth_dr"]
            dice = numerator / denominator if denominator > 0 else 1.0
            loss = -np.log(max(dice, 1e-7)) if o["log_loss"] else 1 - dice
            weight = weights[c]
            if gc.sum() <= 0:
                if o["empty_target"] == "exclude":
                    weight = 0.0
                elif o["empty_target"] == "penalize":
                    loss = pc.sum() / vc.sum() if vc.sum() > 0 else 0.0
            total += weight * loss
            weight_total += weight
        losses[b] = total / weight_total if weight_total > 0 else 0.0
    if not o["per_image"]:
        losses = losses[0]
    if reduction == "mean":
        return np.mean(losses)
    if reduction == "sum":
        return np.sum(losses)
    return losses


# ----------------------------------------------------------------------------------------------
# Penalized MAE
# ----------------------------------------------------------------------------------------------


def _penalized_mae_reduce(values, reduction):
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "mean":
        return values.sum() / values.size if values.size else np.nan  # the mean of nothing
    if reduction == "per_sample":  # the Keras loss function: mean over every non-batch axis (NaN when empty)
        if values.ndim <= 1:
            return values
        per_sample = int(np.prod(values.shape[1:]))
        if per_sample == 0:
            return np.full(values.shape[0], np.nan)
        return values.reshape(values.shape[0], per_sample).sum(axis=1) / per_sample
    raise ValueError(f"unknown reduction {reduction!r}")


def penalized_mae(prediction, target, delta=1.0, penalty=0.5, reduction="mean"):
    """|e| + penalty * max(|e| - delta, 0)**2 with e = prediction - target, in float64.

    reduction: "mean" (over every element, NaN when empty), "sum", "none", or "per_sample" (mean
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
