"""Hypothesis strategies for the robustness suites (tests/test_*_robustness.py): every segmentation
loss on random finite and non-finite inputs, dtypes, layouts, option combinations, weight maps with
zeros, images with every position ignored, and bad inputs with the argument their error must name.
Channels first, as in the reference; the Keras suite moves the channel axis.

Run the suites longer by hand with ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_*robustness*``
(``-k focal``, ``-k lovasz`` and so on for some losses only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import strategies as st

import lovasz_cases
import reference
from dice_cases import IGNORE, dice_cases
from focal_cases import focal_cases, pair_cases

LOSSES = ("dice", "focal", "dice_ce", "dice_focal", "lovasz_softmax", "lovasz_hinge")
PAIRS = ("dice_ce", "dice_focal")
LOVASZ = ("lovasz_softmax", "lovasz_hinge")
POISONS = ("nan", "inf", "-inf")


@dataclasses.dataclass(frozen=True)
class Case:
    """One call of ``loss``: channels-first ``logits``, ``target``, the keyword arguments ``options`` of
    the loss function (the same in both frontends), a weight per position or None, and the keyword
    arguments of the pair's reference (:func:`reference.pair_loss`), which differ from the function's."""

    loss: str
    logits: np.ndarray
    target: np.ndarray
    options: dict
    weight: np.ndarray | None = None
    pair_reference: dict | None = None

    @property
    def mode(self) -> str:
        return {"lovasz_softmax": "multiclass", "lovasz_hinge": "binary"}.get(self.loss) or self.options["mode"]

    @property
    def per_image(self) -> bool:
        return self.options.get("per_image", True)

    @property
    def has_overlap_term(self) -> bool:
        return self.loss == "dice" or self.loss in PAIRS

    def replace(self, **changes: Any) -> Case:
        return dataclasses.replace(self, **changes)


@st.composite
def weight_maps(draw, shape):
    """None, or a weight per position ``shape`` with zeros: at random positions, or also at every
    position of the first image."""
    kind = draw(st.sampled_from(["none", "zeros", "zero image"]))
    if kind == "none":
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weight = rng.uniform(0.0, 2.0, shape)
    weight[rng.uniform(size=shape) < 0.3] = 0.0
    if kind == "zero image":
        weight[0] = 0.0
    return weight


@st.composite
def loss_cases(draw, loss, max_side=4):
    """A :class:`Case` of ``loss`` with every option, now and then an image whose every position is
    ignored, and (but for the Lovász losses, which take no weight map) a weight map with zeros."""
    pair_reference = None
    if loss == "dice":
        logits, target, options = draw(dice_cases(max_side=max_side))
    elif loss == "focal":
        logits, target, options, _ = draw(focal_cases(max_side=max_side, with_weight=False))
    elif loss in PAIRS:
        _, logits, target, options, _, pair_reference = draw(
            pair_cases(max_side=max_side, with_weight=False, kinds=(loss,))
        )
    else:
        _, logits, target, options = draw(lovasz_cases.lovasz_cases(max_side=max_side, losses=(loss,)))
    if options.get("ignore_index") is not None and draw(st.booleans()):
        target = target.copy()
        target[0] = options["ignore_index"]
    weight = None if loss in LOVASZ else draw(weight_maps((logits.shape[0], *logits.shape[2:])))
    return Case(loss, logits, target, options, weight, pair_reference)


def _without_smoothing(case: Case, smooth_dr: float) -> Case:
    smoothing = {"smooth_nr": 0.0, "smooth_dr": smooth_dr}
    pair_reference = None if case.pair_reference is None else {**case.pair_reference, **smoothing}
    return case.replace(options={**case.options, **smoothing}, pair_reference=pair_reference)


@st.composite
def finite_cases(draw, loss, max_side=4):
    """(case, dtype name, layout) with every value finite."""
    case = draw(loss_cases(loss, max_side))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    logits = case.logits
    if draw(st.booleans()):  # extreme logits: overflow and underflow of exp on every path
        if case.options.get("from_logits", True):
            logits = logits * draw(st.sampled_from([30.0, 120.0, 1e4]))
        if case.has_overlap_term:
            case = _without_smoothing(case, draw(st.sampled_from([0.0, 1e-5])))
    if dtype == "float16":  # finite in float16 too
        logits = np.clip(logits, -6e4, 6e4)
    return case.replace(logits=logits), dtype, layout


def matches_reference_in(case: Case, dtype: str) -> bool:
    """Whether the loss of ``case`` computed in ``dtype`` is expected to match the float64 reference on
    the same (rounded) input. Not in float16 and bfloat16; not where float32 and float64 differ by
    design: an overlap term with probabilities that underflow to exactly 0 in one and not the other,
    without smoothing, or soft labels under the log of ``log_loss`` (cancellation)."""
    if dtype not in ("float32", "float64"):
        return False
    if case.has_overlap_term and (case.options["smooth_dr"] == 0.0 or np.abs(case.logits).max() > 50):
        return False
    return not (case.options.get("soft_labels") and case.options.get("log_loss"))


@st.composite
def poisoned_cases(draw, loss, max_side=4):
    """(case, where, index): one NaN or ±inf at ``index`` of the logits (``where="input"``) or of a
    float target of the logits' shape (``"target"``; the Lovász losses take label maps only)."""
    case = draw(loss_cases(loss, max_side))
    value = float(draw(st.sampled_from(POISONS)))
    logits, target = case.logits.copy(), case.target
    float_target = np.shape(target) == np.shape(logits) and loss not in LOVASZ
    index = tuple(draw(st.integers(0, n - 1)) for n in logits.shape)
    if float_target and draw(st.booleans()):
        target = np.asarray(target, dtype=np.float64).copy()
        target[index] = value
        where = "target"
    else:
        logits[index] = value
        where = "input"
    return case.replace(logits=logits, target=target), where, index


def non_finite_gradient(case: Case, index: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(must, may)``: where the gradient must be non-finite, and where it may be, after a NaN or ±inf
    entered at ``index`` (boolean masks of the logits' shape).

    The overlap losses, the pairs and the Lovász losses: every element of the row that holds it (its
    image; the batch with ``per_image=False``), and no other. The focal loss, a sum of independent
    terms: the element, and at most every class of its position (a softmax couples them); no other.
    A pair without its overlap term (``lambda_dice=0``): the element, and at most its row.
    """
    must = np.zeros(case.logits.shape, bool)
    if case.loss == "focal" or (case.loss in PAIRS and case.options["lambda_dice"] == 0):
        must[index] = True
        may = must.copy()
        if case.loss in PAIRS:
            may[index[0] if case.per_image else slice(None)] = True
        elif case.mode == "multiclass":
            may[(index[0], slice(None), *index[2:])] = True
        return must, may
    must[index[0] if case.per_image else slice(None)] = True
    return must, must


def non_finite_values(case: Case, index: tuple, per_sample: bool) -> np.ndarray:
    """Where the unreduced loss must be non-finite (and it must be finite elsewhere): the per-image
    values ``(B,)`` (``per_sample``: also the Keras focal loss, a mean per image), or the PyTorch focal
    loss's terms: per position ``(B, *spatial)`` (multiclass) or element ``(B, C, *spatial)``."""
    if case.loss == "focal" and not per_sample:
        must, _ = non_finite_gradient(case, index)
        return must.any(1) if case.mode == "multiclass" else must
    rows = np.zeros(case.logits.shape[0], bool)
    rows[index[0] if case.per_image else slice(None)] = True
    return rows


def reference_loss(case: Case, logits: np.ndarray, reduction: str) -> Any:
    """The float64 reference of the PyTorch frontend: ``reduction`` ``"mean"``, ``"sum"`` or ``"none"``."""
    if case.loss == "dice":
        return reference.dice_loss(logits, case.target, reduction, case.weight, **case.options)
    if case.loss == "focal":
        return reference.focal_loss(logits, case.target, reduction, case.weight, **case.options)
    if case.loss in PAIRS:
        return reference.pair_loss(logits, case.target, reduction, case.weight, **case.pair_reference)
    return lovasz_cases.reference_loss(case.loss, logits, case.target, reduction, **case.options)


def reference_per_sample(case: Case, logits: np.ndarray) -> np.ndarray:
    """The float64 reference of the Keras frontend: the loss of each image ``(B,)`` (the batch's,
    repeated, with ``per_image=False``; the focal loss: the mean of the image's terms, 0 without any)."""
    if case.loss == "focal":
        return reference.focal_image_means(logits, case.target, case.weight, **case.options)
    return np.broadcast_to(reference_loss(case, logits, "none"), (logits.shape[0],))


def valid_weights(case: Case) -> np.ndarray:
    """Σ v of each row of the loss (image, or the batch with ``per_image=False``): the weight of its
    valid positions (elements for a sigmoid). A pooled mean over a total weight of 0 is NaN."""
    _, valid = reference.focal_terms(
        np.zeros(case.logits.shape),
        case.target,
        case.weight,
        mode=case.mode,
        ignore_index=case.options.get("ignore_index"),
    )
    per_image = valid.reshape(valid.shape[0], -1).sum(1)
    return per_image if case.per_image else per_image.sum(keepdims=True)


# Bad inputs: (name, the losses it applies to, builder(rng) -> (logits, target, options, weight),
# the exception, the text its message must hold). The Keras suite reads "target" as "y_true" and
# "input" as "y_pred".
WITH_MODE = ("dice", "focal", "dice_ce", "dice_focal")
WITH_SMOOTHING = ("dice", "dice_ce", "dice_focal")
WITH_LABELS = (*WITH_MODE, "lovasz_softmax")
WITH_FOCUSING = ("focal", "dice_focal")


def _labels(rng, shape, high):
    return rng.integers(0, high, shape)


def _with_value(labels, value):
    """``labels`` with its first position set to ``value``: a bad value that random labels might miss."""
    labels = labels.copy()
    labels.flat[0] = value
    return labels


def _three_classes(target, **options):
    return lambda r: (r.normal(size=(2, 3, 4, 4)), target(r) if callable(target) else target, options, None)


def _two_classes(**options):
    return lambda r: (r.normal(size=(1, 2, 2, 2)), _labels(r, (1, 2, 2), 2), options, None)


def _one_channel(target, **options):
    return lambda r: (r.normal(size=(2, 1, 3, 3)), target(r) if callable(target) else target, options, None)


def _weight(weight):
    return lambda r: (r.normal(size=(2, 3, 4, 4)), _labels(r, (2, 4, 4), 3), {}, weight(r))


_GRID = np.array([[[0, 1, 2, 3]] * 4] * 2)

BAD_INPUTS = [
    ("label above range", WITH_LABELS, _three_classes(_GRID), ValueError, "target labels"),
    ("negative label", WITH_LABELS, _three_classes(np.where(_GRID == 3, -1, _GRID)), ValueError, "target labels"),
    (
        "label beyond int32",
        WITH_LABELS,
        lambda r: (r.normal(size=(1, 3, 1, 2)), np.array([[[2**40, 1]]]), {}, None),
        ValueError,
        "target labels",
    ),
    (
        "fractional float label",
        WITH_LABELS,
        lambda r: (r.normal(size=(1, 3, 1, 2)), np.array([[[0.5, 1.0]]]), {}, None),
        ValueError,
        "whole numbers",
    ),
    (
        "0/255 mask with a channel axis",
        WITH_MODE,
        lambda r: (
            r.normal(size=(2, 1, 4, 4)),
            np.where(r.uniform(size=(2, 1, 4, 4)) < 0.5, 0, 255).astype(np.uint8),
            {"mode": "binary"},
            None,
        ),
        ValueError,
        "target",
    ),
    (
        "soft target above 1",
        WITH_MODE,
        lambda r: (r.normal(size=(2, 2, 3, 3)), 1.5 * r.uniform(size=(2, 2, 3, 3)) + 0.6, {"mode": "multilabel"}, None),
        ValueError,
        "target",
    ),
    (
        "log-probabilities as probabilities",
        WITH_LABELS,
        lambda r: (
            np.log(r.uniform(0.1, 0.9, size=(2, 3, 4, 4))),
            _labels(r, (2, 4, 4), 3),
            {"from_logits": False},
            None,
        ),
        ValueError,
        "input",
    ),
    ("target shape", WITH_LABELS, _three_classes(lambda r: _labels(r, (2, 4, 5), 3)), ValueError, "target"),
    (
        "binary with 2 channels",
        WITH_MODE,
        lambda r: (r.normal(size=(2, 2, 4, 4)), _labels(r, (2, 4, 4), 2), {"mode": "binary"}, None),
        ValueError,
        "channel",
    ),
    (
        "smooth_dr 0 with smooth_nr",
        WITH_SMOOTHING,
        _two_classes(smooth_dr=0.0),
        ValueError,
        "smooth_nr must be <= smooth_dr",
    ),
    (
        "smooth_nr above smooth_dr",
        WITH_SMOOTHING,
        _two_classes(smooth_nr=1.0, smooth_dr=1e-5),
        ValueError,
        "smooth_nr must be <= smooth_dr",
    ),
    ("negative smoothing", WITH_SMOOTHING, _two_classes(smooth_nr=-1.0), ValueError, "smooth_nr"),
    # Float options beyond float32's range round to inf there and give NaN for finite input.
    ("smoothing beyond float32", WITH_SMOOTHING, _two_classes(smooth_nr=1e39, smooth_dr=1e39), ValueError, "smooth_nr"),
    ("smooth_dr beyond float32", WITH_SMOOTHING, _two_classes(smooth_dr=1e300), ValueError, "smooth_dr"),
    ("gamma beyond float32", WITH_FOCUSING, _two_classes(gamma=1e39), ValueError, r"gamma must be <= 1e\+38"),
    ("alpha beyond float32", WITH_FOCUSING, _two_classes(alpha=[1e39, 1.0]), ValueError, r"alpha\[0\] must be <="),
    ("lambda beyond float32", PAIRS, _two_classes(lambda_dice=1e39), ValueError, "lambda_dice must be <="),
    (
        "Tversky beta beyond float32",
        PAIRS,
        _two_classes(overlap="tversky", overlap_options={"beta": 1e39}),
        ValueError,
        "beta must be <=",
    ),
    ("NaN class weight", WITH_MODE, _two_classes(class_weights=[1.0, float("nan")]), ValueError, "class_weights"),
    ("class weights length", WITH_MODE, _two_classes(class_weights=[1.0]), ValueError, "class_weights"),
    ("class out of range", (*WITH_SMOOTHING, "lovasz_softmax"), _two_classes(classes=[2]), ValueError, "classes"),
    (
        "float ignore_index",
        LOSSES,
        lambda r: (r.normal(size=(1, 1, 2, 2)), _labels(r, (1, 2, 2), 2), {"ignore_index": 1.5}, None),
        TypeError,
        "ignore_index",
    ),
    ("unknown mode", WITH_MODE, _two_classes(mode="softmax"), ValueError, "mode"),
    (
        "unknown option",
        LOSSES,
        lambda r: (r.normal(size=(1, 1, 2, 2)), _labels(r, (1, 2, 2), 2), {"smooth": 1.0}, None),
        TypeError,
        "smooth",
    ),
    # Weight maps.
    ("weight shape", WITH_MODE, _weight(lambda r: r.uniform(size=(2, 4, 5))), ValueError, "weight"),
    ("negative weight", WITH_MODE, _weight(lambda r: -r.uniform(0.1, 1.0, size=(2, 4, 4))), ValueError, "weight"),
    (
        "NaN weight",
        WITH_MODE,
        _weight(lambda r: np.where(r.uniform(size=(2, 4, 4)) < 0.5, np.nan, 1.0)),
        ValueError,
        "weight",
    ),
    (
        "infinite weight",
        WITH_MODE,
        _weight(lambda r: np.where(r.uniform(size=(2, 4, 4)) < 0.5, np.inf, 1.0)),
        ValueError,
        "weight",
    ),
    # The focal term and the pairs.
    ("negative gamma", WITH_FOCUSING, _two_classes(gamma=-1.0), ValueError, "gamma"),
    (
        "label_smoothing 1",
        (*WITH_FOCUSING, "dice_ce"),
        _two_classes(label_smoothing=1.0),
        ValueError,
        "label_smoothing",
    ),
    (
        "negative label_smoothing",
        (*WITH_FOCUSING, "dice_ce"),
        _two_classes(label_smoothing=-0.1),
        ValueError,
        "label_smoothing",
    ),
    ("a float alpha with a softmax", WITH_FOCUSING, _two_classes(alpha=0.25), ValueError, "alpha"),
    ("alpha length", WITH_FOCUSING, _two_classes(alpha=[1.0, 1.0, 1.0]), ValueError, "alpha"),
    (
        "alpha above 1 with a sigmoid",
        WITH_FOCUSING,
        lambda r: (r.normal(size=(1, 1, 2, 2)), _labels(r, (1, 2, 2), 2), {"mode": "binary", "alpha": 1.5}, None),
        ValueError,
        "alpha",
    ),
    (
        "no weight of either term",
        ("dice_ce",),
        _two_classes(lambda_dice=0.0, lambda_ce=0.0),
        ValueError,
        "lambda_dice and lambda_ce",
    ),
    (
        "no weight of either term",
        ("dice_focal",),
        _two_classes(lambda_dice=0.0, lambda_focal=0.0),
        ValueError,
        "lambda_dice and lambda_focal",
    ),
    ("negative lambda_dice", PAIRS, _two_classes(lambda_dice=-1.0), ValueError, "lambda_dice"),
    ("unknown overlap", PAIRS, _two_classes(overlap="iou"), ValueError, "overlap"),
    (
        "an option the overlap member does not take",
        PAIRS,
        _two_classes(overlap="tversky", squared=True),
        TypeError,
        "squared",
    ),
    (
        "an unknown option of the overlap member",
        PAIRS,
        _two_classes(overlap_options={"gamma": 2.0}),
        TypeError,
        "gamma",
    ),
    # The Lovász losses.
    (
        "per-class target for Lovász-softmax",
        ("lovasz_softmax",),
        _three_classes(lambda r: np.eye(3)[_labels(r, (2, 4, 4), 3)].transpose(0, 3, 1, 2)),
        ValueError,
        "label map",
    ),
    (
        "Lovász-softmax with 1 channel",
        ("lovasz_softmax",),
        _one_channel(lambda r: _labels(r, (2, 3, 3), 1)),
        ValueError,
        "channel",
    ),
    ("unknown classes", ("lovasz_softmax",), _two_classes(classes="some"), ValueError, "classes"),
    (
        "Lovász hinge with 3 channels",
        ("lovasz_hinge",),
        _three_classes(lambda r: _labels(r, (2, 4, 4), 2)),
        ValueError,
        "channel",
    ),
    (
        "hinge label 2",
        ("lovasz_hinge",),
        _one_channel(lambda r: _with_value(_labels(r, (2, 3, 3), 3), 2)),
        ValueError,
        "target labels",
    ),
    (
        "0/255 hinge mask",
        ("lovasz_hinge",),
        _one_channel(lambda r: _with_value(255 * _labels(r, (2, 3, 3), 2), 255)),
        ValueError,
        "target labels",
    ),
    (
        "fractional hinge label",
        ("lovasz_hinge",),
        _one_channel(lambda r: r.uniform(size=(2, 3, 3))),
        ValueError,
        "whole numbers",
    ),
    ("hinge target shape", ("lovasz_hinge",), _one_channel(lambda r: _labels(r, (2, 3, 4), 2)), ValueError, "target"),
    (
        "from_logits for the hinge",
        ("lovasz_hinge",),
        _one_channel(lambda r: _labels(r, (2, 3, 3), 2), from_logits=False),
        TypeError,
        "from_logits",
    ),
]


def bad_inputs(losses=LOSSES):
    """(loss, name, builder, exception, text) for every kind of bad input of each of ``losses``."""
    return [
        (loss, name, build, error, text)
        for name, applies_to, build, error, text in BAD_INPUTS
        for loss in applies_to
        if loss in losses
    ]


__all__ = [
    "BAD_INPUTS",
    "IGNORE",
    "LOSSES",
    "Case",
    "bad_inputs",
    "finite_cases",
    "loss_cases",
    "matches_reference_in",
    "non_finite_gradient",
    "non_finite_values",
    "poisoned_cases",
    "reference_loss",
    "reference_per_sample",
    "valid_weights",
]
