"""Correct user-style PyTorch losses: the doctor must report nothing."""

import torch
import torch.nn.functional as F


def mse(input, target):
    return ((input - target) ** 2).mean()


def bce_with_logits(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)


def soft_dice(input, target, eps=1e-6):
    probabilities = torch.sigmoid(input)
    intersection = (probabilities * target).sum(dim=1)
    union = probabilities.sum(dim=1) + target.sum(dim=1)
    return (1 - (2 * intersection + eps) / (union + eps)).mean()


def huber(input, target, delta=0.3):
    error = (input - target).abs()
    quadratic = 0.5 * error ** 2
    linear = delta * (error - 0.5 * delta)
    return torch.where(error < delta, quadratic, linear).mean()


def masked_mean_nan_safe(input, target):
    mask = (target > 2).float()  # may be empty: the denominator is guarded
    count = mask.sum()
    total = (((input - target) ** 2) * mask).sum()
    masked = torch.where(count > 0, total / count.clamp_min(1.0), total * 0.0)
    return masked + 1e-3 * ((input - target) ** 2).mean()


def clone_then_mul_(predictions, targets):
    # The seed's in-place example is safe: autograd saved nothing that mul_ changes.
    scaled = predictions.clone()
    scaled.mul_(2.0)
    return torch.mean((scaled - targets) ** 2)


def focal_weight_detached(input, target):
    # A detached weight next to a connected term is a deliberate stop-gradient, not a bug.
    probabilities = torch.sigmoid(input)
    weight = (probabilities - target).abs().detach() ** 2
    return (weight * F.binary_cross_entropy(probabilities, target, reduction="none")).mean()


class ModuleLoss(torch.nn.Module):
    def forward(self, input, target):
        return F.smooth_l1_loss(input, target)
