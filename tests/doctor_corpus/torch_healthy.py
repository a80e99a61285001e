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


class SeedDiceLoss(torch.nn.Module):
    # Seed 004's Dice module: forward(y_pred, y_true), the order read from the names.
    def __init__(self, smooth=1e-5):
        super().__init__()
        self.smooth = smooth

    def forward(self, y_pred, y_true):
        y_pred = torch.sigmoid(y_pred)
        intersection = torch.sum(y_pred * y_true)
        union = torch.sum(y_pred) + torch.sum(y_true)
        return 1.0 - (2.0 * intersection + self.smooth) / (union + self.smooth)


def stacked_rows(input, target):
    # The repair of tensor_from_list: torch.stack keeps the history.
    rows = [((input[i] - target[i]) ** 2).mean() for i in range(input.shape[0])]
    return torch.stack(rows).mean()


def class_indices_cross_entropy(logits, target):
    # A target of another shape than the prediction is not broadcasting: labels index the classes.
    labels = (target.sum(dim=1) % 4).long()
    return F.cross_entropy(logits, labels)


def masked_with_zeros_like(input, target):
    # zeros_like takes only the shape: the masked elements' zero gradient is intended.
    loss = (input - target) ** 2
    return torch.where(target > 0.5, loss, torch.zeros_like(loss)).mean()


def label_map_dice(logits, target):
    # (B, C) prediction against a (B,) label map, expanded without broadcasting the two against each other.
    labels = (target.sum(dim=1) % logits.shape[1]).long()
    one_hot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    probabilities = logits.softmax(dim=1)
    intersection = (probabilities * one_hot).sum(dim=0)
    union = probabilities.sum(dim=0) + one_hot.sum(dim=0)
    return (1 - (2 * intersection + 1) / (union + 1)).mean()
