"""Hypothesis strategies and helpers for the Lovász losses, shared by the PyTorch and Keras tests.

Channels first (the reference's layout); the Keras tests move the channel axis.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import reference

IGNORE = 255


@st.composite
def lovasz_cases(draw, max_side=4, losses=("lovasz_softmax", "lovasz_hinge")):
    """(loss, logits, labels, options): 1 to 3 spatial dims, every option, label maps with and
    without their channel axis, some classes absent, some positions ignored."""
    loss = draw(st.sampled_from(losses))
    num_classes = 1 if loss == "lovasz_hinge" else draw(st.integers(2, 4))
    batch = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, max_side)) for _ in range(draw(st.integers(1, 3))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (batch, num_classes, *spatial)
    options = {"per_image": draw(st.booleans())}
    logits = rng.normal(scale=draw(st.sampled_from([0.5, 3.0])), size=shape)
    if loss == "lovasz_softmax":
        options["classes"] = draw(st.sampled_from(["present", "all", "list"]))
        if options["classes"] == "list":
            options["classes"] = sorted(draw(st.sets(st.integers(0, num_classes - 1), min_size=1)))
        options["from_logits"] = draw(st.booleans())
        if not options["from_logits"]:
            e = np.exp(logits)
            logits = e / e.sum(1, keepdims=True)
    labels = rng.integers(0, 2 if loss == "lovasz_hinge" else num_classes, (batch, *spatial))
    if draw(st.booleans()):
        labels[0] = 0  # an image without some classes (the hinge: without foreground)
    options["ignore_index"] = None
    if draw(st.booleans()):
        options["ignore_index"] = IGNORE
        labels[rng.uniform(size=labels.shape) < 0.25] = IGNORE
    if draw(st.booleans()):
        labels = labels[:, None]
    return loss, logits, labels, options


def reference_loss(loss, logits, labels, reduction="none", **options):
    return getattr(reference, f"{loss}_loss")(logits, labels, reduction, **options)


def errors_and_foreground(loss, logits, labels, options):
    """The errors and foreground of every (row, class) over its valid positions, as the reference
    sees them: for the tie and kink conditions of the gradient tests."""
    x, flat, valid = reference._lovasz_rows(logits, labels, options.get("per_image", True), options.get("ignore_index"))
    rows = []
    for row in range(x.shape[0]):
        keep = valid[row]
        if loss == "lovasz_hinge":
            foreground = flat[row][keep] == 1
            rows.append((1.0 - x[row, 0][keep] * (2.0 * foreground - 1.0), foreground))
            continue
        p = reference._softmax(x, 1)[row] if options.get("from_logits", True) else x[row]
        for c in range(x.shape[1]):
            foreground = flat[row][keep] == c
            rows.append((np.abs(foreground - p[c][keep]), foreground))
    return rows


def clear_of_kinks(loss, logits, labels, options, gap=1e-4):
    """No two errors of a (row, class) closer than ``gap`` (the order is fixed near the point), and
    no hinge error within ``gap`` of 0 (where max(·, 0) bends)."""
    for errors, _ in errors_and_foreground(loss, logits, labels, options):
        if loss == "lovasz_hinge":
            if np.any(np.abs(errors) < gap):
                return False
            errors = errors[errors > 0]
        ordered = np.sort(errors)
        if np.any(np.diff(ordered) < gap):
            return False
    return True


def softmax_gradient(logits, labels, classes="present", per_image=True, ignore_index=None, reduction="mean"):
    """The gradient of the Lovász-softmax loss with respect to the logits (float64, channels first),
    with the reference's weights: at ties, those of its stable order (the documented subgradient)."""
    x, flat, valid = reference._lovasz_rows(logits, labels, per_image, ignore_index)
    p = reference._softmax(x, 1)
    d_p = np.zeros_like(p)
    for row in range(x.shape[0]):
        keep = valid[row]
        chosen = [
            c
            for c in range(x.shape[1])
            if (np.any(flat[row][keep] == c) if classes == "present" else classes == "all" or c in classes)
        ]
        for c in chosen:
            foreground = flat[row][keep] == c
            _, weights = reference.lovasz_extension(np.abs(foreground - p[row, c][keep]), foreground)
            d_p[row, c, keep] = weights * np.sign(p[row, c][keep] - foreground) / len(chosen)
    d_x = p * (d_p - (p * d_p).sum(1, keepdims=True))
    return _per_image_gradient(d_x, np.asarray(logits).shape, per_image, reduction)


def hinge_gradient(logits, labels, per_image=True, ignore_index=None, reduction="mean"):
    """The gradient of the Lovász hinge loss with respect to the logits, as :func:`softmax_gradient`
    (the derivative of max(·, 0) is 0 at 0)."""
    x, flat, valid = reference._lovasz_rows(logits, labels, per_image, ignore_index)
    d_x = np.zeros_like(x)
    for row in range(x.shape[0]):
        keep = valid[row]
        sign = 2.0 * (flat[row][keep] == 1) - 1.0
        margin = 1.0 - x[row, 0][keep] * sign
        _, weights = reference.lovasz_extension(np.maximum(margin, 0.0), sign > 0)
        d_x[row, 0, keep] = -sign * weights * (margin > 0)
    return _per_image_gradient(d_x, np.asarray(logits).shape, per_image, reduction)


def _per_image_gradient(d_x, shape, per_image, reduction):
    """Rows of (S, C, N) back to channels-first ``shape``, scaled for the mean over images."""
    if not per_image:
        d_x = np.moveaxis(d_x.reshape(shape[1], shape[0], -1), 0, 1)
    elif reduction == "mean":
        d_x = d_x / shape[0]
    return d_x.reshape(shape)
