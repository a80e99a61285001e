"""PyTorch losses that give no gradient (or a wrong one), one failure each, as in the seed articles."""

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = {
    "argmax_python_loop": ((8, 4), (8,)),
    "shape_10x10_vs_10x5": ((10, 10), (10, 5)),
    "shape_n_vs_n1": ((8, 1), (8,)),
    "shape_n1_target": ((8,), (8, 1)),
}


def detach(input, target):
    probabilities = torch.sigmoid(input).detach()  # expect: DISCONNECTED
    return ((probabilities - target) ** 2).mean()


def partial_detach(predictions, targets):
    # Seed 002: the gradient still reaches column 0, never column 1.
    component_a = predictions[:, 0]
    component_b = predictions[:, 1].detach()  # expect: DISCONNECTED
    ratio = component_a / (component_b + 1.0)
    return torch.mean((ratio - targets[:, 0]) ** 2)


def numpy_floor(input, target):
    bins = np.floor(input.detach().cpu().numpy() * 4)  # expect: DISCONNECTED
    return torch.mean((torch.from_numpy(bins) / 4 - target) ** 2)


def item_per_sample(input, target):
    errors = [((input[i] - target[i]) ** 2).mean().item() for i in range(input.shape[0])]  # expect: DISCONNECTED
    return torch.tensor(errors).mean()


def python_float(input, target):
    scale = float(input.abs().mean())  # expect: DISCONNECTED
    return torch.tensor(scale) * target.mean()


def tensor_from_list(input, target):
    rows = [((input[i] - target[i]) ** 2).mean() for i in range(input.shape[0])]
    return torch.tensor(rows).mean()  # expect: DISCONNECTED


def argmax_python_loop(predictions, targets):
    predicted_class = torch.argmax(predictions, dim=1)  # expect: ZERO_GRADIENT
    loss_values = []
    for i in range(len(predicted_class)):
        if predicted_class[i] != targets[i]:
            loss_values.append((predicted_class[i] - targets[i]) ** 2)
    return torch.mean(torch.tensor(loss_values, dtype=torch.float32))


def rounded(input, target):
    hard = torch.round(input)  # expect: ZERO_GRADIENT
    return ((hard - target) ** 2).mean()


def floored(input, target):
    levels = torch.floor(input * 4) / 4  # expect: ZERO_GRADIENT
    return (levels - target).abs().mean()


def signed(input, target):
    direction = torch.sign(input - 0.5)  # expect: ZERO_GRADIENT
    return (direction * (2 * target - 1)).neg().mean()


def comparison_as_float(input, target):
    hard = (input > 0.5).float()  # expect: ZERO_GRADIENT
    return (hard - target).abs().mean()


def value_dependent_if(input, target):
    error = (input - target).abs().mean()
    if error > 0.25:  # expect: ZERO_GRADIENT
        return torch.tensor(1.0)
    return torch.tensor(0.0)


def inplace_mul(predictions, targets):
    probabilities = torch.sigmoid(predictions)
    probabilities.mul_(2.0)  # expect: INPLACE
    return torch.mean((probabilities - targets) ** 2)


def ignores_prediction(input, target):
    centred = target - target.mean()  # the prediction is never used
    return (centred**2).mean()  # expect: DISCONNECTED


def shape_10x10_vs_10x5(input, target):
    return ((input - target) ** 2).mean()  # expect: BROADCAST


def shape_n_vs_n1(input, target):
    return ((input - target) ** 2).mean()  # expect: BROADCAST


def shape_n1_target(input, target):
    return (input - target).abs().mean()  # expect: BROADCAST


def zero_denominator(input, target):
    mask = (target > 2).float()  # no element passes: an empty mask
    return (((input - target) ** 2) * mask).sum() / mask.sum()  # expect: NON_FINITE


def sqrt_at_zero(input, target):
    distance = torch.sqrt(((input - input.mean()) ** 2 * 0).sum())  # expect: NON_FINITE
    return distance + ((input - target) ** 2).mean()


def swapped_arguments(input, target):
    return F.binary_cross_entropy(target, torch.sigmoid(input))  # expect: SWAPPED_ARGUMENTS


def under_no_grad(input, target):
    with torch.no_grad():
        error = (input - target) ** 2  # expect: DISCONNECTED
    return error.mean()


def integer_cast(input, target):
    buckets = (input * 4).long().float() / 4  # expect: ZERO_GRADIENT
    return (buckets - target).abs().mean()


def data_attribute(input, target):
    values = input.data  # expect: DISCONNECTED
    return ((values - target) ** 2).mean()


def masked_assignment(input, target):
    probabilities = torch.sigmoid(input)
    probabilities[target > 0.5] = 1.0  # expect: INPLACE
    return probabilities.mean()


# Hand-written backward passes that are wrong: WRONG_GRADIENT points at the backward.


class SeedMAELoss(torch.autograd.Function):
    # Seed 000, given to the doctor as the class: the backward drops the 1/N of the mean.
    @staticmethod
    def forward(ctx, y_true, y_pred):
        abs_diff = torch.abs(y_true - y_pred)
        quadratic_penalty = torch.where(abs_diff > 1, 0.5 * (abs_diff - 1) ** 2, torch.zeros_like(abs_diff))
        loss = torch.mean(abs_diff + quadratic_penalty)
        ctx.save_for_backward(y_true, y_pred, abs_diff)
        return loss

    @staticmethod
    def backward(ctx, grad_output):  # expect: WRONG_GRADIENT
        y_true, y_pred, abs_diff = ctx.saved_tensors
        grad_abs_diff = torch.where(abs_diff > 1, abs_diff - 1, torch.sign(y_pred - y_true))
        grad_input = grad_output * grad_abs_diff
        return -grad_input, grad_input


def sign_flipped_backward(input, target):
    class SquaredError(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t):
            ctx.save_for_backward(x, t)
            return ((x - t) ** 2).sum()

        @staticmethod
        def backward(ctx, grad):  # expect: WRONG_GRADIENT
            x, t = ctx.saved_tensors
            return grad * 2 * (t - x), None

    return SquaredError.apply(input, target) / input.numel()


def sigmoid_backward_without_chain_rule(input, target):
    class Sigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.sigmoid(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):  # expect: WRONG_GRADIENT
            (y,) = ctx.saved_tensors
            return grad * y  # the derivative is y * (1 - y)

    return F.binary_cross_entropy(Sigmoid.apply(input), target)


# A dead term next to a working one: the total trains, the term does nothing.


def dead_argmax_term(logits, target):
    labels = target.argmax(dim=1)
    wrong = (logits.argmax(dim=1) != labels).float().mean()  # expect: DEAD_TERM
    return F.cross_entropy(logits, labels) + 0.5 * wrong


def dead_round_term(input, target):
    counts = torch.round(input * 4)  # expect: DEAD_TERM
    return F.mse_loss(input, target) + 0.1 * (counts - 4 * target).abs().mean()


def dead_comparison_term(input, target):
    positives = (input > 0.5).float()  # expect: DEAD_TERM
    return F.binary_cross_entropy(input, target) + 0.1 * (positives.mean() - target.mean()) ** 2


def dead_cast_term(input, target):
    buckets = (input * 10).long()  # expect: DEAD_TERM
    return F.l1_loss(input, target) + 0.01 * buckets.float().var()


def dead_item_term(input, target):
    sparsity = input.abs().mean().item()  # expect: DEAD_TERM
    return F.mse_loss(input, target) + 0.1 * sparsity


def dead_python_float_term(input, target):
    sparsity = float(input.abs().mean())  # expect: DEAD_TERM
    return F.mse_loss(input, target) + 0.1 * sparsity


def dead_no_grad_metric_term(input, target):
    loss = F.mse_loss(input, target)
    with torch.no_grad():
        hits = (input.argmax(dim=1) == target.argmax(dim=1)).float().mean()  # expect: DEAD_TERM
    return loss - 0.1 * hits


def dead_detach_term(input, target):
    mse = ((input - target) ** 2).mean()
    smoothness = (input[:, 1:] - input[:, :-1]).detach().pow(2).mean()  # expect: DEAD_TERM
    return mse + 0.1 * smoothness


# Swapped arguments through torch.nn.functional and torch.nn losses.


def swapped_kl_div(input, target):
    log_probabilities = F.log_softmax(input, dim=1)
    return F.kl_div(target.softmax(dim=1), log_probabilities, reduction="batchmean")  # expect: SWAPPED_ARGUMENTS


def swapped_bce_module(input, target):
    criterion = torch.nn.BCELoss()
    return criterion(target, torch.sigmoid(input))  # expect: SWAPPED_ARGUMENTS


def swapped_cross_entropy_probabilities(logits, target):
    return F.cross_entropy(target, logits)  # expect: SWAPPED_ARGUMENTS


# In-place changes of a tensor autograd saved, derived from the target.


def inplace_on_saved_target_weights(input, target):
    weights = target * 2.0 + 1.0
    weighted = input * weights  # mul saves weights for the gradient of input
    weights.add_(1.0)  # expect: INPLACE
    return weighted.mean()


def inplace_target_mask(input, target):
    mask = target.clone()
    loss = torch.exp(input) * mask
    mask[mask == 0] = 0.5  # expect: INPLACE
    return loss.mean()


# Indices beside values: max(dim), topk and sort return both; the indices are a choice of index.


def topk_indices(input, target):
    chosen = input.topk(2, dim=1).indices  # expect: ZERO_GRADIENT
    return 1.0 - (F.one_hot(chosen, input.shape[1]).sum(1).float() * target).mean()


def max_indices(input, target):
    _, index = input.max(dim=1)  # expect: ZERO_GRADIENT
    return 1.0 - F.one_hot(index, input.shape[1]).float().mul(target).mean()


def loss_and_logs(input, target):  # expect: DISCONNECTED
    # A tuple returned: the loss beside a logged number (whose .item() is not the problem).
    loss = ((input - target) ** 2).mean()
    return loss, {"mse": loss.item()}


def wrong_backward_on_a_later_call(input, target):
    # Right for positive inputs, wrong for negative ones: the first call sees only positives.
    class Magnitude(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.abs()

        @staticmethod
        def backward(ctx, grad):  # expect: WRONG_GRADIENT
            (x,) = ctx.saved_tensors
            return grad * torch.ones_like(x)  # the sign of x is missing

    positive = Magnitude.apply(input.abs() + 0.1)
    negative = Magnitude.apply(-(input.abs() + 0.1))
    return (positive.mean() - target.mean()) ** 2 + negative.mean()


def fill_overwrites_the_prediction(input, target):
    values = input.clone()
    values.fill_(0.5)  # expect: DISCONNECTED
    return ((values - target) ** 2).mean()


# Hand-written backward passes that send nothing back: the backward is named, not the loss.


def backward_returns_zeros(input, target):
    class SquaredError(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t):
            ctx.save_for_backward(x, t)
            return ((x - t) ** 2).mean()

        @staticmethod
        def backward(ctx, grad):  # expect: WRONG_GRADIENT
            x, _ = ctx.saved_tensors
            return torch.zeros_like(x), None

    return SquaredError.apply(input, target)


def backward_returns_none(input, target):
    class SquaredError(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, t):
            return ((x - t) ** 2).mean()

        @staticmethod
        def backward(ctx, grad):  # expect: WRONG_GRADIENT
            return None, None

    return SquaredError.apply(input, target)


def histogram_matching(input, target):
    # histc returns float counts without a gradient: piecewise constant, not a detach.
    predicted = torch.histc(input, bins=4, min=0, max=1)  # expect: ZERO_GRADIENT
    expected = torch.histc(target, bins=4, min=0, max=1)
    return ((predicted - expected) ** 2).mean()


def heaviside_step(input, target):
    # PyTorch has no derivative for heaviside: the backward raises, the step is named.
    step = torch.heaviside(input - 0.5, torch.tensor(0.5))  # expect: ZERO_GRADIENT
    return ((step - target) ** 2).mean()


# Connected, but saturated for every element: the line where the gradient dies is named.


def saturated_clamp(input, target):
    capped = torch.clamp(input, min=1.0)  # expect: ZERO_GRADIENT
    return ((capped - target) ** 2).mean()


def saturated_where_branch(input, target):
    chosen = torch.where(target > 2, input, torch.zeros_like(input))  # expect: ZERO_GRADIENT
    return ((chosen - target) ** 2).mean()
