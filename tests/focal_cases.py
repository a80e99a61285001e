"""Hypothesis strategies for the focal loss and the pairs (an overlap loss plus a cross-entropy or focal term)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from dice_cases import MEMBER_OPTIONS, dice_cases

_OVERLAP_ONLY = ("smooth_nr", "smooth_dr", "soft_labels", "per_image", "classes", "squared", "log_loss", "empty_target")


@st.composite
def alphas(draw, mode, num_classes):
    """None, or the focal term's alpha: one weight per class (multiclass) or the positives' weight."""
    if not draw(st.booleans()):
        return None
    if mode == "multiclass":
        return [draw(st.floats(0.1, 2.0)) for _ in range(num_classes)]
    return draw(st.sampled_from([0.25, 0.75]))


@st.composite
def focal_cases(draw, max_side=4, with_weight=True):
    """(logits, target, focal options, weight map or None)."""
    logits, target, options = draw(dice_cases(max_side=max_side))
    mode, num_classes = options["mode"], logits.shape[1]
    focal = {k: options[k] for k in ("mode", "from_logits", "class_weights", "ignore_index")}
    focal["gamma"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    focal["label_smoothing"] = draw(st.sampled_from([0.0, 0.1]))
    alpha = draw(alphas(mode, num_classes))
    if alpha is not None:
        focal["alpha"] = alpha
    weight = None
    if with_weight and draw(st.booleans()):
        weight = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(
            0.1, 2.0, (logits.shape[0], *logits.shape[2:])
        )
    return logits, target, focal, weight


@st.composite
def pair_cases(draw, max_side=4, with_weight=True, kinds=("dice_ce", "dice_focal")):
    """(kind, logits, target, options of the pair function, weight, reference kwargs)."""
    logits, target, options = draw(dice_cases(max_side=max_side))
    kind = draw(st.sampled_from(kinds))
    overlap = draw(st.sampled_from(sorted(MEMBER_OPTIONS)))
    common = {k: v for k, v in options.items() if k not in ("squared", "log_loss", "empty_target")}
    own = {key: draw(st.sampled_from(values)) for key, values in MEMBER_OPTIONS[overlap].items()}
    if own.get("log_loss") and common["soft_labels"]:
        own["log_loss"] = False
    lambdas = draw(st.sampled_from([(1.0, 1.0), (0.5, 1.0), (1.0, 2.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)]))
    term = {"gamma": 0.0, "label_smoothing": draw(st.sampled_from([0.0, 0.1]))}
    if kind == "dice_focal":
        term["gamma"] = draw(st.sampled_from([0.5, 1.0, 2.0]))
        alpha = draw(alphas(options["mode"], logits.shape[1]))
        if alpha is not None:
            term["alpha"] = alpha
    arguments = dict(common, overlap=overlap, overlap_options=own, label_smoothing=term["label_smoothing"])
    arguments["lambda_dice"] = lambdas[0]
    arguments["lambda_ce" if kind == "dice_ce" else "lambda_focal"] = lambdas[1]
    if kind == "dice_focal":
        arguments.update({k: v for k, v in term.items() if k != "label_smoothing"})
    weight = None
    if with_weight and draw(st.booleans()):
        weight = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(
            0.1, 2.0, (logits.shape[0], *logits.shape[2:])
        )
    reference_kwargs = dict(common, overlap=overlap, overlap_options=own, lambdas=lambdas, term=term)
    return kind, logits, target, arguments, weight, reference_kwargs
