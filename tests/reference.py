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

OVERLAP_DEFAULTS = dict(
    mode="multiclass",
    from_logits=True,
    smooth_nr=1e-5,
    smooth_dr=1e-5,
    squared=False,
    log_loss=False,
    soft_labels=False,
    per_image=True,
    classes=None,
    class_weights=None,
    ignore_index=None,
    empty_target="smooth",
    average="macro",
)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def dice_probabilities_and_targets(input, target, mode="multiclass", from_logits=True, ignore_index=None, weight=None):
    """Channels-first p, g and the weight of each element v (0 where ignored; the weight map's value
    or 1 elsewhere), all of shape (B, C, N), float64; label maps as one-hot."""
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
    if weight is not None:
        valid = valid * np.asarray(weight, dtype=np.float64).reshape(batch, 1, -1)
    return p, g, valid


def dice_stats(input, target, mode="multiclass", from_logits=True, ignore_index=None, per_image=True, weight=None):
    """The (S, C, 7) sums: Σv·p·g, Σv·p, Σv·g, Σv·p², Σv·g², Σv·|p − g|, Σv."""
    p, g, v = dice_probabilities_and_targets(input, target, mode, from_logits, ignore_index, weight)
    stats = np.stack(
        [
            (v * p * g).sum(-1),
            (v * p).sum(-1),
            (v * g).sum(-1),
            (v * p * p).sum(-1),
            (v * g * g).sum(-1),
            (v * np.abs(p - g)).sum(-1),
            v.sum(-1),
        ],
        axis=-1,
    )
    return stats if per_image else stats.sum(0, keepdims=True)


def _reduce(losses, reduction):
    if reduction == "mean":
        return np.mean(losses)
    if reduction == "sum":
        return np.sum(losses)
    return losses


def _images(input, target, weight, o):
    """p, g, v per image (the whole batch as one image when not per_image), the class weights and
    the selected classes."""
    p, g, v = dice_probabilities_and_targets(input, target, o["mode"], o["from_logits"], o["ignore_index"], weight)
    if not o["per_image"]:
        p, g, v = (np.concatenate(list(a), axis=-1)[None] for a in (p, g, v))
    num_classes = p.shape[1]
    weights = np.ones(num_classes) if o["class_weights"] is None else np.asarray(o["class_weights"], float)
    selected = list(range(num_classes)) if o["classes"] is None else list(o["classes"])
    # Class weights are relative: only their ratios matter (with pooled sums too, where the
    # smoothing is added after the weighted sums).
    weights = weights / max(weights[c] for c in selected)
    return p, g, v, weights, selected


def _class_sums(pc, gc, vc, soft_labels, squared):
    """TP, P', G' (Σp², Σg² when squared), Σp, Σg and Σv of one class."""
    p_sum, g_sum = (vc * pc).sum(), (vc * gc).sum()
    if soft_labels and squared:  # the soft intersection in the squared norm, as MONAI
        tp = ((vc * pc**2).sum() + (vc * gc**2).sum() - (vc * (pc - gc) ** 2).sum()) / 2
    elif soft_labels:
        tp = (p_sum + g_sum - (vc * np.abs(pc - gc)).sum()) / 2
    else:
        tp = (vc * pc * gc).sum()
    p_prime = (vc * pc**2).sum() if squared else p_sum
    g_prime = (vc * gc**2).sum() if squared else g_sum
    return tp, p_prime, g_prime, p_sum, g_sum, vc.sum()


def _score(numerator, denominator, o):
    denominator = denominator + o["smooth_dr"]
    if denominator == 0:
        return 1.0
    return (numerator + o["smooth_nr"]) / max(denominator, 1e-30)


def _ratio_loss(input, target, reduction, weight, o, k, alpha, beta, transform):
    """A loss of the family whose per-class score is (k·TP + s_nr) / (k·TP + α·FP + β·FN + s_dr)."""
    p, g, v, weights, selected = _images(input, target, weight, o)
    losses = np.zeros(p.shape[0])
    for b in range(p.shape[0]):
        rows = []  # (numerator, denominator, Σp, Σg, Σv, weight) per class, or one pooled row
        for c in selected:
            tp, p_prime, g_prime, p_sum, g_sum, count = _class_sums(
                p[b, c], g[b, c], v[b, c], o["soft_labels"], o["squared"]
            )
            rows.append(
                (k * tp, k * tp + alpha * (p_prime - tp) + beta * (g_prime - tp), p_sum, g_sum, count, weights[c])
            )
        if o["average"] == "micro":
            rows = [tuple(sum(r[5] * r[i] for r in rows) for i in range(5)) + (1.0,)]
        total, weight_total = 0.0, 0.0
        for numerator, denominator, p_sum, g_sum, count, w in rows:
            loss = transform(_score(numerator, denominator, o))
            if g_sum <= 0:
                if o["empty_target"] == "exclude":
                    w = 0.0
                elif o["empty_target"] == "penalize":
                    loss = p_sum / count if count > 0 else 0.0
            total += w * loss
            weight_total += w
        losses[b] = total / weight_total if weight_total > 0 else 0.0
    return _reduce(losses if o["per_image"] else losses[0], reduction)


def _linear_or_log(o):
    return (lambda score: -np.log(max(score, 1e-7))) if o["log_loss"] else (lambda score: 1 - score)


def dice_loss(input, target, reduction="mean", weight=None, **options):
    """Dice loss: per class 1 − (2·TP + s_nr) / (2·TP + FP + FN + s_dr), i.e. (2·Σp·g + s)/(Σp + Σg + s)."""
    o = {**OVERLAP_DEFAULTS, **options}
    return _ratio_loss(input, target, reduction, weight, o, 2.0, 1.0, 1.0, _linear_or_log(o))


def jaccard_loss(input, target, reduction="mean", weight=None, **options):
    """Jaccard (IoU) loss: per class 1 − (TP + s_nr) / (TP + FP + FN + s_dr)."""
    o = {**OVERLAP_DEFAULTS, **options}
    return _ratio_loss(input, target, reduction, weight, o, 1.0, 1.0, 1.0, _linear_or_log(o))


def tversky_loss(input, target, reduction="mean", weight=None, alpha=0.5, beta=0.5, **options):
    """Tversky loss: per class 1 − (TP + s_nr) / (TP + α·FP + β·FN + s_dr); α weighs the false positives."""
    o = {**OVERLAP_DEFAULTS, **options}
    return _ratio_loss(input, target, reduction, weight, o, 1.0, alpha, beta, _linear_or_log(o))


def focal_tversky_loss(input, target, reduction="mean", weight=None, alpha=0.3, beta=0.7, gamma=0.75, **options):
    """Focal Tversky loss: per class max(1 − T, 0)^γ with T the Tversky index, then the class mean."""
    o = {**OVERLAP_DEFAULTS, **options}
    return _ratio_loss(
        input, target, reduction, weight, o, 1.0, alpha, beta, lambda score: max(1 - score, 0.0) ** gamma
    )


def generalized_dice_loss(input, target, reduction="mean", weight=None, weight_type="square", **options):
    """Generalized Dice loss: 1 − (2·Σ w_c·TP_c + s_nr) / (Σ w_c·(Σp + Σg)_c + s_dr) per image, with
    w_c = class weight / G_c² (square), / G_c (simple) or 1 (uniform); an absent class gets the
    largest weight of the present ones, an image with none present weights 0 (as in MONAI)."""
    o = {**OVERLAP_DEFAULTS, **options}
    power = {"square": 2, "simple": 1, "uniform": 0}[weight_type]
    p, g, v, weights, selected = _images(input, target, weight, o)
    losses = np.zeros(p.shape[0])
    for b in range(p.shape[0]):
        sums = {c: _class_sums(p[b, c], g[b, c], v[b, c], o["soft_labels"], False) for c in selected}
        present = {c: s[4] > 0 and weights[c] > 0 for c, s in sums.items()}
        target_weights = {c: 1.0 / sums[c][4] ** power for c in selected if present[c]}
        largest = max(target_weights.values()) if target_weights else 0.0
        w = {c: weights[c] * (target_weights[c] if present[c] else (largest if power else 1.0)) for c in selected}
        numerator = sum(w[c] * 2 * sums[c][0] for c in selected)
        denominator = sum(w[c] * (sums[c][3] + sums[c][4]) for c in selected)
        losses[b] = 1 - _score(numerator, denominator, o)
    return _reduce(losses if o["per_image"] else losses[0], reduction)


OVERLAP_LOSSES = {
    "dice": dice_loss,
    "jaccard": jaccard_loss,
    "tversky": tversky_loss,
    "focal_tversky": focal_tversky_loss,
    "generalized_dice": generalized_dice_loss,
}


# ----------------------------------------------------------------------------------------------
# Focal loss (cross-entropy at gamma = 0) and the pairs with an overlap loss
# ----------------------------------------------------------------------------------------------


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def focal_terms(
    input,
    target,
    weight=None,
    mode="multiclass",
    gamma=2.0,
    alpha=None,
    from_logits=True,
    label_smoothing=0.0,
    class_weights=None,
    ignore_index=None,
):
    """(v·ℓ, v) per position (multiclass, (B, N)) or element ((B, C, N)), float64, per losses/_cross_entropy.py."""
    x = np.asarray(input, dtype=np.float64)
    batch, classes = x.shape[:2]
    x = x.reshape(batch, classes, -1)
    eps = label_smoothing
    w = np.ones(classes) if class_weights is None else np.asarray(class_weights, float)
    w = w / w.max()
    t = np.asarray(target)
    dense = t.shape == np.asarray(input).shape
    if mode == "multiclass":
        log_p = _log_softmax(x, 1) if from_logits else np.log(np.maximum(x, 1e-30))
        if alpha is not None:
            w = w * np.asarray(alpha, float)
        if dense:
            q = t.reshape(batch, classes, -1).astype(np.float64)
            valid = np.ones((q.shape[0], q.shape[2])) if ignore_index is None else (q != ignore_index).all(1)
            q = np.where(q == ignore_index, 0.0, q) if ignore_index is not None else q
        else:
            labels = t.reshape(batch, -1).astype(np.int64)
            valid = np.ones(labels.shape, bool) if ignore_index is None else (labels != ignore_index)
            q = np.stack([(labels == c) & valid for c in range(classes)], axis=1).astype(np.float64)
        q = (1 - eps) * q + eps / classes
        p = np.exp(log_p)
        terms = -(w[None, :, None] * q * (1 - p) ** gamma * log_p).sum(1)
        valid = np.asarray(valid, np.float64)
    else:
        t = t.reshape(batch, classes if dense else 1, -1)
        valid = np.ones(t.shape) if ignore_index is None else (t != ignore_index).astype(np.float64)
        t = np.where(valid > 0, t, 0).astype(np.float64)
        t = (1 - eps) * t + eps / 2
        if from_logits:
            log_p, log_not_p, p = _log_sigmoid(x), _log_sigmoid(-x), _sigmoid(x)
        else:
            log_p, log_not_p, p = np.log(np.maximum(x, 1e-30)), np.log(np.maximum(1 - x, 1e-30)), x
        ce = -(t * log_p + (1 - t) * log_not_p)
        miss = p * (1 - t) + (1 - p) * t
        terms = w[None, :, None] * miss**gamma * ce
        if alpha is not None:
            terms = (alpha * t + (1 - alpha) * (1 - t)) * terms
        valid = np.broadcast_to(valid, terms.shape)
    if weight is not None:
        shape = (batch, -1) if mode == "multiclass" else (batch, 1, -1)
        valid = valid * np.asarray(weight, np.float64).reshape(shape)
    return valid * terms, valid


def focal_loss(input, target, reduction="mean", weight=None, **options):
    terms, valid = focal_terms(input, target, weight, **options)
    if reduction == "none":
        return terms
    return terms.sum() if reduction == "sum" else terms.sum() / valid.sum()


def focal_image_means(input, target, weight=None, **options):
    """Σ v·ℓ / Σ v of each image, 0 for an image without a valid position (the Keras per-sample focal loss)."""
    terms, valid = focal_terms(input, target, weight, **options)
    sums, counts = terms.reshape(terms.shape[0], -1).sum(1), valid.reshape(valid.shape[0], -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, 0.0)


def pair_loss(
    input,
    target,
    reduction="mean",
    weight=None,
    overlap="dice",
    overlap_options=None,
    lambdas=(1.0, 1.0),
    term=None,
    **options,
):
    """λ_overlap·L_overlap + λ_term·mean(ℓ) per image (per batch with per_image=False)."""
    o = {**OVERLAP_DEFAULTS, **options}
    overlap_rows = OVERLAP_LOSSES[overlap](input, target, "none", weight, **options, **(overlap_options or {}))
    terms, valid = focal_terms(
        input,
        target,
        weight,
        mode=o["mode"],
        from_logits=o["from_logits"],
        class_weights=o["class_weights"],
        ignore_index=o["ignore_index"],
        **(term or {}),
    )
    term_sums, counts = terms.reshape(terms.shape[0], -1).sum(1), valid.reshape(valid.shape[0], -1).sum(1)
    if not o["per_image"]:
        term_sums, counts = term_sums.sum(), counts.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        term_means = np.where(counts > 0, term_sums / counts, 0.0)  # no valid position: nothing to learn, 0
    rows = lambdas[0] * overlap_rows + lambdas[1] * term_means
    return _reduce(rows, reduction)


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


def exact_sums(x, total, shift):
    """Whether each ``total`` is ``x + shift`` exactly (in rationals), not rounded."""
    from fractions import Fraction

    return np.array(
        [Fraction(float(t)) == Fraction(float(v)) + Fraction(shift) for v, t in zip(np.ravel(x), np.ravel(total))],
        dtype=bool,
    ).reshape(np.shape(x))


def _residual(x, shift):
    """y - (floor(y) + 1/2) for y = x + shift, from the fraction of x (exact in float64 at any size,
    where x + shift rounds beyond 2^52): the position of y in its unit cell, in [-1/2, 1/2)."""
    fraction = (x - np.floor(x)) + shift  # in [-1/2, 3/2)
    fraction = np.where(fraction >= 1.0, fraction - 1.0, np.where(fraction < 0.0, fraction + 1.0, fraction))
    return fraction - 0.5


def _soft_round_shifted(x, alpha, shift):
    x = np.asarray(x, dtype=np.float64)
    r = _residual(x, shift)
    return ((x + shift) - r) + np.tanh(alpha * r) / (2.0 * np.tanh(alpha / 2.0))


def _soft_round_shifted_derivative(x, alpha, shift):
    r = _residual(np.asarray(x, dtype=np.float64), shift)
    return alpha * (1.0 - np.tanh(alpha * r) ** 2) / (2.0 * np.tanh(alpha / 2.0))


def soft_round(x, alpha):
    return _soft_round_shifted(x, alpha, 0.0)


def soft_round_derivative(x, alpha):
    return _soft_round_shifted_derivative(x, alpha, 0.0)


def soft_floor(x, alpha):
    return _soft_round_shifted(x, alpha, -0.5)


def soft_floor_derivative(x, alpha):
    return _soft_round_shifted_derivative(x, alpha, -0.5)


def soft_ceil(x, alpha):
    return _soft_round_shifted(x, alpha, 0.5)


def soft_ceil_derivative(x, alpha):
    return _soft_round_shifted_derivative(x, alpha, 0.5)


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


# ----------------------------------------------------------------------------------------------
# The Lovász losses
# ----------------------------------------------------------------------------------------------


def lovasz_extension(errors, foreground):
    """Value and gradient of the Lovász extension of the Jaccard loss Δ(M) = |M| / |F ∪ M| at the
    errors of one row of valid positions: Σ_i m_π(i)·(Δ(M_i) − Δ(M_{i−1})), π a stable sort by
    decreasing error (among equal errors the earlier position first), M_i its first i positions.
    The gradient puts each weight Δ(M_i) − Δ(M_{i−1}) back at its position (at ties: this order's)."""
    errors = np.asarray(errors, dtype=np.float64)
    foreground = np.asarray(foreground, dtype=bool)
    order = np.argsort(-errors, kind="stable")
    mispredicted = np.zeros(errors.shape, dtype=bool)
    weights = np.zeros(errors.shape)
    previous = 0.0
    for position in order:
        mispredicted[position] = True
        current = mispredicted.sum() / (foreground | mispredicted).sum()
        weights[position] = current - previous
        previous = current
    return float(errors @ weights), weights


def _lovasz_rows(input, target, per_image, ignore_index):
    """Channels-first logits (B, C, N) and labels (B, N) as rows: one per image, or the batch as one."""
    x = np.asarray(input, dtype=np.float64)
    x = x.reshape(x.shape[0], x.shape[1], -1)
    labels = np.asarray(target).reshape(x.shape[0], -1)
    valid = np.ones(labels.shape, dtype=bool) if ignore_index is None else labels != ignore_index
    if not per_image:
        x = np.moveaxis(x, 0, 1).reshape(1, x.shape[1], -1)
        labels, valid = labels.reshape(1, -1), valid.reshape(1, -1)
    return x, labels, valid


def lovasz_softmax_loss(
    input, target, reduction="mean", classes="present", per_image=True, ignore_index=None, from_logits=True
):
    """Lovász-softmax: per class the extension at |g − p| over the valid positions, averaged over
    the classes ("present": in the row's target; "all"; or a list), 0 for a row with none."""
    x, labels, valid = _lovasz_rows(input, target, per_image, ignore_index)
    p = _softmax(x, 1) if from_logits else x
    losses = np.zeros(x.shape[0])
    for row in range(x.shape[0]):
        keep = valid[row]
        terms = []
        for c in range(x.shape[1]):
            foreground = labels[row][keep] == c
            chosen = foreground.any() if classes == "present" else classes == "all" or c in classes
            if chosen:
                terms.append(lovasz_extension(np.abs(foreground - p[row, c][keep]), foreground)[0])
        losses[row] = np.mean(terms) if terms else 0.0
    return _reduce(losses if per_image else losses[0], reduction)


def lovasz_hinge_loss(input, target, reduction="mean", per_image=True, ignore_index=None):
    """Lovász hinge: the extension at max(1 − z·(2g − 1), 0) over the valid positions (0 if none)."""
    x, labels, valid = _lovasz_rows(input, target, per_image, ignore_index)
    losses = np.zeros(x.shape[0])
    for row in range(x.shape[0]):
        keep = valid[row]
        foreground = labels[row][keep] == 1
        errors = np.maximum(1.0 - x[row, 0][keep] * (2.0 * foreground - 1.0), 0.0)
        losses[row] = lovasz_extension(errors, foreground)[0] if keep.any() else 0.0
    return _reduce(losses if per_image else losses[0], reduction)
