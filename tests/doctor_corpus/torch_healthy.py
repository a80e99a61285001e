"""Correct user-style PyTorch losses: the doctor must report nothing."""

import logging

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
    quadratic = 0.5 * error**2
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


# Well-known losses, written as users write them: false-alarm controls.


def focal_loss(logits, target, gamma=2.0, alpha=0.25):
    probabilities = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = probabilities * target + (1 - probabilities) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()


def tversky_loss(logits, target, alpha=0.3, beta=0.7, smooth=1.0):
    probabilities = torch.sigmoid(logits)
    true_pos = (probabilities * target).sum()
    false_neg = ((1 - probabilities) * target).sum()
    false_pos = (probabilities * (1 - target)).sum()
    return 1 - (true_pos + smooth) / (true_pos + alpha * false_neg + beta * false_pos + smooth)


def label_smoothing_cross_entropy(logits, target, smoothing=0.1):
    labels = target.argmax(dim=1)
    log_probabilities = F.log_softmax(logits, dim=1)
    nll = -log_probabilities.gather(1, labels[:, None]).squeeze(1)
    uniform = -log_probabilities.mean(dim=1)
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def builtin_label_smoothing(logits, target):
    return F.cross_entropy(logits, target.argmax(dim=1), label_smoothing=0.1)


def info_nce(embeddings, target, temperature=0.1):
    # Row i of the prediction and row i of the target are two views of one sample.
    a = F.normalize(embeddings, dim=1)
    b = F.normalize(target + 0.1, dim=1)
    logits = a @ b.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def contrastive_pairwise(embeddings, target, margin=1.0):
    distances = (embeddings[:, None, :] - target[None, :, :]).pow(2).sum(-1).add(1e-9).sqrt()
    same = torch.eye(embeddings.shape[0])
    return (same * distances**2 + (1 - same) * F.relu(margin - distances) ** 2).mean()


def chamfer_distance(points, target):
    # Two point sets: every predicted point against every target point.
    squared = (points.unsqueeze(1) - target.unsqueeze(0)).pow(2).sum(-1)
    return squared.min(dim=1).values.mean() + squared.min(dim=0).values.mean()


def mmd_rbf(samples, target, bandwidth=1.0):
    def kernel(a, b):
        return torch.exp(-(a[:, None, :] - b[None, :, :]).pow(2).sum(-1) / (2 * bandwidth**2))

    return kernel(samples, samples).mean() + kernel(target, target).mean() - 2 * kernel(samples, target).mean()


def lovasz_hinge(logits, target):
    # Binary Lovasz hinge over the whole batch (Berman et al. 2018).
    logits, labels = logits.reshape(-1), target.reshape(-1)
    signs = 2 * labels - 1
    errors = 1 - logits * signs
    errors_sorted, perm = torch.sort(errors, descending=True)
    gt_sorted = labels[perm]
    intersection = gt_sorted.sum() - gt_sorted.cumsum(0)
    union = gt_sorted.sum() + (1 - gt_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return torch.dot(F.relu(errors_sorted), jaccard)


def inactive_penalty_term(input, target):
    # The range penalty is zero at these inputs: a term without gradient here is not a dead term.
    return F.mse_loss(input, target) + F.relu(input - 2.0).mean()


def target_only_term(input, target):
    # A term built from the target alone is a constant, not a dead term of the prediction.
    return F.mse_loss(input, target) + 0.1 * target.var()


def correct_custom_backward(input, target):
    class MeanSquaredError(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t):
            ctx.save_for_backward(x, t)
            return ((x - t) ** 2).mean()

        @staticmethod
        def backward(ctx, grad):
            x, t = ctx.saved_tensors
            g = grad * 2 * (x - t) / x.numel()
            return g, -g

    return MeanSquaredError.apply(input, target)


def straight_through_round(input, target):
    # A straight-through estimator: forward rounds, backward passes the gradient on, by design.
    class RoundStraightThrough(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.round(x)

        @staticmethod
        def backward(ctx, grad):
            return grad

    levels = RoundStraightThrough.apply(input * 4) / 4
    return ((levels - target) ** 2).mean() + ((input - target) ** 2).mean()


def package_straight_through_surrogates(input, target):
    from losses.torch import soft_floor, soft_step

    levels = soft_floor(input * 4, 4.0, straight_through=True) / 4
    hits = soft_step(input - 0.5, 10.0, straight_through=True)
    return ((levels - target) ** 2).mean() + (hits - target).abs().mean()


def package_dice_and_penalized_mae(input, target):
    from losses.torch.functional import dice_loss, penalized_mae

    # Hand-written backward passes of this package (the CPU Dice kernel, penalized MAE).
    logits, labels = input.reshape(2, 4, 4), target.reshape(2, 4, 4).argmax(dim=1)
    return penalized_mae(input, target, delta=0.3) + dice_loss(logits, labels)


def straight_through_detach_trick(input, target):
    # x + (round(x) - x).detach(): forward rounds, backward is the identity (VQ-VAE style).
    levels = input * 4 + (torch.round(input * 4) - input * 4).detach()
    return ((levels / 4 - target) ** 2).mean()


def dice_with_logging(input, target):
    # Numbers read off the loss for a log are not terms of it.
    probabilities = torch.sigmoid(input)
    dice = (2 * (probabilities * target).sum() + 1) / (probabilities.sum() + target.sum() + 1)
    logging.getLogger(__name__).debug("dice %.3f (%.3f)", dice.item(), float(dice))
    return 0.5 - 0.5 * dice + 0.1 * F.mse_loss(input, target)
