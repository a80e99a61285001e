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


# ----------------------------------------------------------------------------------------------
# Surrogates
# ----------------------------------------------------------------------------------------------
