"""Hypothesis strategies for Dice inputs and options, shared by the PyTorch and Keras tests.

Inputs are channels first (the reference's layout); the Keras tests move the channel axis.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

IGNORE = 255


@st.composite
def dice_cases(draw, with_ignore=True, max_side=4):
    """(logits, target, options): shapes of 1 to 3 spatial dims, every target form and option."""
    mode = draw(st.sampled_from(["binary", "multiclass", "multilabel"]))
    num_classes = {"binary": 1, "multiclass": draw(st.integers(2, 4)), "multilabel": draw(st.integers(1, 3))}[mode]
    batch = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, max_side)) for _ in range(draw(st.integers(1, 3))))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    from_logits = draw(st.booleans())
    scale = draw(st.sampled_from([0.5, 3.0]))
    shape = (batch, num_classes, *spatial)
    if from_logits:
        logits = rng.normal(scale=scale, size=shape)
    elif mode == "multiclass":
        # Probabilities kept >= 0.1 / C: near 0, −log(dice) curves so sharply that central
        # differences themselves lose the digits the gradient checks compare.
        e = np.exp(rng.normal(scale=scale, size=shape))
        logits = 0.9 * e / e.sum(1, keepdims=True) + 0.1 / num_classes
    else:
        logits = rng.uniform(0.01, 0.99, size=shape)
    target_form = draw(st.sampled_from(["label", "label_channel", "dense"] if mode != "multilabel" else ["dense"]))
    soft_labels = draw(st.booleans())
    if target_form == "dense":
        if mode == "multiclass":
            if soft_labels:
                t = np.exp(rng.normal(size=shape))
                target = t / t.sum(1, keepdims=True)
            else:
                target = np.moveaxis(np.eye(num_classes)[rng.integers(0, num_classes, (batch, *spatial))], -1, 1)
        else:
            target = rng.uniform(size=shape) if soft_labels else (rng.uniform(size=shape) < 0.4).astype(np.float64)
    else:
        high = 2 if mode == "binary" else num_classes
        labels = rng.integers(0, high, (batch, *spatial))
        # Some images lack some classes, to exercise the empty-target policies.
        if draw(st.booleans()):
            labels[0] = 0
        target = labels[:, None] if target_form == "label_channel" else labels
    ignore_index = None
    if with_ignore and draw(st.booleans()):
        ignore_index = IGNORE
        target = target.copy()
        mask = rng.uniform(size=target.shape) < 0.2
        target[mask] = IGNORE
    classes = None
    class_weights = None
    if num_classes > 1 and draw(st.booleans()):
        classes = sorted(draw(st.sets(st.integers(0, num_classes - 1), min_size=1)))
    if draw(st.booleans()):
        class_weights = [draw(st.floats(0.1, 3.0)) for _ in range(num_classes)]
    options = dict(
        mode=mode,
        from_logits=from_logits,
        smooth_nr=(smooth_nr := draw(st.sampled_from([0.0, 1e-5, 1.0]))),
        smooth_dr=draw(st.sampled_from([v for v in (1e-5, 1.0) if v >= smooth_nr])),
        squared=draw(st.booleans()),
        log_loss=draw(st.booleans()),
        soft_labels=soft_labels,
        per_image=draw(st.booleans()),
        classes=classes,
        class_weights=class_weights,
        ignore_index=ignore_index,
        empty_target=draw(st.sampled_from(["smooth", "exclude", "penalize"])),
    )
    return logits, target, options


# The options of each member of the overlap family beyond the common ones, and values to draw.
MEMBER_OPTIONS = {
    "dice": dict(
        squared=[False, True],
        log_loss=[False, True],
        empty_target=["smooth", "exclude", "penalize"],
        average=["macro", "micro"],
    ),
    "jaccard": dict(
        squared=[False, True],
        log_loss=[False, True],
        empty_target=["smooth", "exclude", "penalize"],
        average=["macro", "micro"],
    ),
    "tversky": dict(
        alpha=[0.0, 0.3, 0.5, 1.0],
        beta=[0.3, 0.7, 1.0],
        log_loss=[False, True],
        empty_target=["smooth", "exclude", "penalize"],
        average=["macro", "micro"],
    ),
    "focal_tversky": dict(
        alpha=[0.3, 0.5],
        beta=[0.5, 0.7],
        gamma=[0.75, 1.0, 2.0],
        empty_target=["smooth", "exclude", "penalize"],
        average=["macro", "micro"],
    ),
    "generalized_dice": dict(weight_type=["square", "simple", "uniform"]),
}
_NOT_COMMON = ("squared", "log_loss", "empty_target")


@st.composite
def overlap_cases(draw, with_ignore=True, max_side=4, with_weight=True):
    """(member, logits, target, options, weight map or None): every member of the family with its options."""
    logits, target, options = draw(dice_cases(with_ignore=with_ignore, max_side=max_side))
    member = draw(st.sampled_from(sorted(MEMBER_OPTIONS)))
    options = {k: v for k, v in options.items() if k not in _NOT_COMMON}
    for key, values in MEMBER_OPTIONS[member].items():
        options[key] = draw(st.sampled_from(values))
    if options.get("log_loss") and options["soft_labels"]:
        options["log_loss"] = (
            False  # float32 cancellation under a log: see test_torch_dice.test_float32_matches_reference
        )
    weight = None
    if with_weight and draw(st.booleans()):
        shape = (logits.shape[0], *logits.shape[2:])
        weight = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(0.0, 2.0, size=shape)
    return member, logits, target, options, weight
