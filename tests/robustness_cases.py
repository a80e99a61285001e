"""Hypothesis strategies for the robustness suites (tests/test_*_robustness.py): random finite and
non-finite inputs, dtypes, layouts, option combinations, and bad inputs with the argument their
error must name. Channels first, as in the reference; the Keras suite moves the channel axis.

Run the suites longer by hand with ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_*robustness*``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from dice_cases import dice_cases

POISONS = ("nan", "inf", "-inf")


@st.composite
def finite_cases(draw, max_side=4):
    """(logits, target, options, dtype name, layout) with every value finite."""
    logits, target, options = draw(dice_cases(max_side=max_side))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    if draw(st.booleans()):  # extreme logits: overflow and underflow of exp on every path
        if options["from_logits"]:
            logits = logits * draw(st.sampled_from([30.0, 120.0, 1e4]))
        options = {**options, "smooth_nr": 0.0, "smooth_dr": draw(st.sampled_from([0.0, 1e-5]))}
    if dtype == "float16":  # finite in float16 too
        logits = np.clip(logits, -6e4, 6e4)
    return logits, target, options, dtype, layout


@st.composite
def poisoned_cases(draw, max_side=4):
    """(logits, target, options, poisoned image) with one NaN or ±inf in the input or a float target."""
    logits, target, options = draw(dice_cases(max_side=max_side))
    value = float(draw(st.sampled_from(POISONS)))
    image = draw(st.integers(0, logits.shape[0] - 1))
    float_target = np.shape(target) == np.shape(logits)
    logits = logits.copy()
    if float_target and draw(st.booleans()):
        target = np.asarray(target, dtype=np.float64).copy()
        flat = target[image].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = value
        target[image] = flat.reshape(target[image].shape)
    else:
        flat = logits[image].reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = value
        logits[image] = flat.reshape(logits[image].shape)
    return logits, target, options, image


# Each bad input: (name, builder(rng) -> (logits, target, options), exception, the text the error must hold).
def _labels(rng, shape, high):
    return rng.integers(0, high, shape)


BAD_INPUTS = {
    "label above range": (lambda r: (r.normal(size=(2, 3, 4, 4)), np.array([[[0, 1, 2, 3]] * 4] * 2), {}),
                          ValueError, "target labels"),
    "negative label": (lambda r: (r.normal(size=(2, 3, 4, 4)), np.array([[[0, -1, 2, 1]] * 4] * 2), {}),
                       ValueError, "target labels"),
    "label beyond int32": (lambda r: (r.normal(size=(1, 3, 1, 2)), np.array([[[2**40, 1]]]), {}),
                           ValueError, "target labels"),
    "fractional float label": (lambda r: (r.normal(size=(1, 3, 1, 2)), np.array([[[0.5, 1.0]]]), {}),
                               ValueError, "whole numbers"),
    "0/255 mask with a channel axis": (
        lambda r: (r.normal(size=(2, 1, 4, 4)), np.where(r.uniform(size=(2, 1, 4, 4)) < 0.5, 0, 255).astype(np.uint8),
                   {"mode": "binary"}), ValueError, "target"),
    "soft target above 1": (lambda r: (r.normal(size=(2, 2, 3, 3)), 1.5 * r.uniform(size=(2, 2, 3, 3)) + 0.6,
                                       {"mode": "multilabel"}), ValueError, "target"),
    "log-probabilities as probabilities": (
        lambda r: (np.log(r.uniform(0.1, 0.9, size=(2, 3, 4, 4))), _labels(r, (2, 4, 4), 3), {"from_logits": False}),
        ValueError, "input"),
    "target shape": (lambda r: (r.normal(size=(2, 3, 4, 4)), _labels(r, (2, 4, 5), 3), {}), ValueError, "target"),
    "binary with 2 channels": (lambda r: (r.normal(size=(2, 2, 4, 4)), _labels(r, (2, 4, 4), 2), {"mode": "binary"}),
                               ValueError, "channel"),
    "smooth_dr 0 with smooth_nr": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2),
                                              {"smooth_dr": 0.0}), ValueError, "smooth_dr"),
    "negative smoothing": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), {"smooth_nr": -1.0}),
                           ValueError, "smooth_nr"),
    "NaN class weight": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2),
                                    {"class_weights": [1.0, float("nan")]}), ValueError, "class_weights"),
    "class weights length": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2),
                                        {"class_weights": [1.0]}), ValueError, "class_weights"),
    "class out of range": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), {"classes": [2]}),
                           ValueError, "classes"),
    "float ignore_index": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), {"ignore_index": 1.5}),
                           TypeError, "ignore_index"),
    "unknown mode": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), {"mode": "softmax"}),
                     ValueError, "mode"),
    "unknown option": (lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), {"smooth": 1.0}),
                       TypeError, "smooth"),
}


def bad_inputs():
    """(name, (logits, target, options), exception, text) for every kind of bad input, random values."""
    return st.tuples(st.sampled_from(sorted(BAD_INPUTS)), st.integers(0, 2**32 - 1)).map(
        lambda pair: (pair[0], BAD_INPUTS[pair[0]][0](np.random.default_rng(pair[1])), *BAD_INPUTS[pair[0]][1:]))
