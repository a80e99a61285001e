"""The losses as a user would write them: composed from framework ops and left to autodiff.

These are the baselines (eager, ``torch.compile`` and ``tf.function``) and, evaluated in float64,
the reference every row of a case is checked against. They follow the formulas of the package's
docstrings with the same default smoothing, so a correct implementation matches them to rounding.
"""

from __future__ import annotations

SMOOTH_NR = 1e-5
SMOOTH_DR = 1e-5


# Dice ----------------------------------------------------------------------------------------


def dice_torch(input, target, *, mode, per_image):
    """Dice loss from logits, channels first; multiclass targets are int64 label maps."""
    import torch
    import torch.nn.functional as F

    if mode == "binary":
        prob = torch.sigmoid(input)
        onehot = target.to(prob.dtype)
    else:
        prob = torch.softmax(input, dim=1)
        onehot = F.one_hot(target, input.shape[1]).movedim(-1, 1).to(prob.dtype)
    dims = tuple(range(2, input.ndim)) if per_image else (0,) + tuple(range(2, input.ndim))
    intersection = (prob * onehot).sum(dims)
    denominator = prob.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + SMOOTH_NR) / (denominator + SMOOTH_DR)
    return (1.0 - dice).mean()


# Penalized MAE -------------------------------------------------------------------------------


def penalized_mae_torch(input, target, *, delta, penalty):
    import torch

    error = (input - target).abs()
    return (error + penalty * torch.clamp(error - delta, min=0.0) ** 2).mean()


def penalized_mae_keras(y_true, y_pred, *, delta, penalty):
    from keras import ops

    error = ops.abs(y_pred - y_true)
    return ops.mean(error + penalty * ops.square(ops.maximum(error - delta, 0.0)))


# Surrogates ----------------------------------------------------------------------------------
# Each surrogate's value as written in the docs; straight through as a user would write it: the
# hard value forward, the surrogate's gradient backward, with the detach trick.


def _surrogate_value(ops, name, x, alpha):
    import math

    if name == "soft_step":
        return 1.0 / (1.0 + ops.exp(-alpha * x))
    if name == "soft_sign":
        return ops.tanh(0.5 * alpha * x)
    y = x + {"soft_round": 0.0, "soft_floor": -0.5, "soft_ceil": 0.5}[name]
    middle = ops.floor(y) + 0.5
    return middle + ops.tanh(alpha * (y - middle)) / (2.0 * math.tanh(alpha / 2.0))


def _hard_value(ops, name, x):
    if name == "soft_step":
        return (ops.sign(x) + 1.0) * 0.5
    if name == "soft_sign":
        return ops.sign(x)
    return {"soft_round": ops.round, "soft_floor": ops.floor, "soft_ceil": ops.ceil}[name](x)


def surrogate_torch(x, *, name, alpha, straight_through=False):
    import torch

    value = _surrogate_value(torch, name, x, alpha)
    if straight_through:
        value = value + (_hard_value(torch, name, x) - value).detach()
    return value.mean()


def surrogate_keras(x, *, name, alpha, straight_through=False):
    from keras import ops

    value = _surrogate_value(ops, name, x, alpha)
    if straight_through:
        value = value + ops.stop_gradient(_hard_value(ops, name, x) - value)
    return ops.mean(value)


# The overlap family ------------------------------------------------------------------------------


def overlap_torch(input, target, *, member, per_image, alpha=0.5, beta=0.5, gamma=1.0, weight_type="square"):
    """Dice, Jaccard, Tversky, focal Tversky or generalized Dice from logits and an int64 label map,
    channels first, as a user would write them (one-hot target, sums, the ratio)."""
    import torch
    import torch.nn.functional as F

    prob = torch.softmax(input, dim=1)
    onehot = F.one_hot(target, input.shape[1]).movedim(-1, 1).to(prob.dtype)
    dims = tuple(range(2, input.ndim)) if per_image else (0,) + tuple(range(2, input.ndim))
    tp = (prob * onehot).sum(dims)
    fp = (prob * (1 - onehot)).sum(dims)
    fn = ((1 - prob) * onehot).sum(dims)
    if member == "generalized_dice":
        counts = onehot.sum(dims)
        weights = {"square": 1 / counts**2, "simple": 1 / counts, "uniform": torch.ones_like(counts)}[weight_type]
        score = (2 * (weights * tp).sum(-1) + SMOOTH_NR) / ((weights * (2 * tp + fp + fn)).sum(-1) + SMOOTH_DR)
        return (1 - score).mean()
    if member == "dice":
        alpha = beta = 0.5
    elif member == "jaccard":
        alpha = beta = 1.0
    if member == "dice":
        score = (2 * tp + SMOOTH_NR) / (2 * tp + fp + fn + SMOOTH_DR)
    else:
        score = (tp + SMOOTH_NR) / (tp + alpha * fp + beta * fn + SMOOTH_DR)
    loss = (1 - score).clamp_min(0) ** gamma if member == "focal_tversky" else 1 - score
    return loss.mean()


# Lovász-softmax -------------------------------------------------------------------------------------


def lovasz_softmax_torch(input, target, *, per_image, classes):
    """Lovász-softmax from logits and an int64 label map, channels first, as in the reference
    implementation of Berman et al.: per class, sort the errors, take the differences of the
    Jaccard losses of the growing sets as weights."""
    import torch

    prob = torch.softmax(input, dim=1)
    num_classes = prob.shape[1]

    def flat_loss(p, labels):  # p (C, N), labels (N,)
        losses = []
        for c in range(num_classes):
            foreground = (labels == c).to(p.dtype)
            if classes == "present" and foreground.sum() == 0:
                continue
            errors_sorted, order = torch.sort((foreground - p[c]).abs(), descending=True)
            foreground_sorted = foreground[order]
            total = foreground_sorted.sum()
            jaccard = 1 - (total - foreground_sorted.cumsum(0)) / (total + (1 - foreground_sorted).cumsum(0))
            weights = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
            losses.append(torch.dot(errors_sorted, weights))
        return torch.stack(losses).mean()

    if per_image:
        return torch.stack(
            [flat_loss(p.reshape(num_classes, -1), labels.reshape(-1)) for p, labels in zip(prob, target)]
        ).mean()
    return flat_loss(prob.movedim(1, 0).reshape(num_classes, -1), target.reshape(-1))


# Focal loss and the pairs with Dice ------------------------------------------------------------------


def focal_torch(input, target, *, mode, gamma, alpha=None):
    """Focal loss from logits, the mean over positions (multiclass: int64 label maps) or elements
    (binary, multilabel: float 0/1 targets of the prediction's shape), as torchvision writes the
    sigmoid one; ``alpha``: the weight of the positives (sigmoid) or None."""
    import torch
    import torch.nn.functional as F

    if mode == "multiclass":
        if alpha is not None:
            raise ValueError("the naive multiclass focal loss takes no alpha")
        log_pt = torch.log_softmax(input, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
        return -((1 - log_pt.exp()) ** gamma * log_pt).mean()
    target = target.to(input.dtype)
    p = torch.sigmoid(input)
    ce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


def dice_term_torch(input, target, *, mode, per_image, lambda_term, gamma=0.0, alpha=None):
    """Dice plus ``lambda_term`` times the cross-entropy (``gamma=0``) or focal loss. Per image or per
    batch, the pair is the same: every image has as many positions, so the mean of the images'
    mean terms is the batch's mean term."""
    dice = dice_torch(input, target, mode=mode, per_image=per_image)
    return dice + lambda_term * focal_torch(input, target, mode=mode, gamma=gamma, alpha=alpha)
