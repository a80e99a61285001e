"""The hand-written gradient of the overlap sums in Keras on TensorFlow (``_sums_with_gradient``)
against autodiff of the same sums, for the logits, the targets and the weights, first and second
order, with negative controls; and finite differences of the public losses with respect to soft
targets and weight maps (on every backend)."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from losses._overlap import NUM_STATS, TARGET_SUM
from losses.keras import dice_loss, tversky_loss
from losses.keras import _overlap
from losses.testing import GradientMismatch, check_gradient

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="the hand-written gradient is TensorFlow's")


@st.composite
def sums_cases(draw):
    """Logits, targets in [0, 1], weights (None, one per position, or one per position and class),
    an activation, the set of sums a loss needs (always the target's), and an upstream gradient."""
    kind = draw(st.sampled_from(["identity", "sigmoid", "softmax"]))
    batch, positions = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    classes = draw(st.integers(2 if kind == "softmax" else 1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (batch, positions, classes)
    logits = rng.uniform(0.05, 0.95, shape) if kind == "identity" else rng.normal(0, 2, shape)
    truth = rng.uniform(0, 1, shape)
    weights = draw(st.sampled_from([None, 1, classes]))
    valid = None if weights is None else rng.uniform(0, 2, (batch, positions, weights))
    needed = frozenset(draw(st.sets(st.integers(0, NUM_STATS - 1))) | {TARGET_SUM})
    upstream = rng.normal(0, 1, (batch, classes, NUM_STATS))
    return kind, logits, truth, valid, needed, upstream


def activation_of(kind):
    return _overlap._Activation(
        SimpleNamespace(from_logits=kind != "identity", mode="multiclass" if kind == "softmax" else "binary")
    )


def gradients(sums, kind, logits, truth, valid, needed, upstream, order=1):
    """∂(Σ upstream·sums)/∂(logits, truth, valid) (0 where a sum does not depend on an input); with
    ``order=2``, the gradient of Σ (∂/∂logits)² with respect to the logits."""
    import tensorflow as tf

    zero = tf.UnconnectedGradients.ZERO
    inputs = [tf.constant(logits), tf.constant(truth)] + ([] if valid is None else [tf.constant(valid)])
    activation = activation_of(kind)
    with tf.GradientTape() as outer:
        outer.watch(inputs[0])
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            stats = sums(inputs[0], inputs[1], inputs[2] if valid is not None else None, activation, needed)
            total = tf.reduce_sum(stats * upstream)
        first = tape.gradient(total, inputs, unconnected_gradients=zero)
        square = tf.reduce_sum(first[0] ** 2)
    if order == 2:
        return [outer.gradient(square, inputs[0], unconnected_gradients=zero).numpy()]
    return [g.numpy() for g in first]


def autodiff_sums(logits, truth, valid, activation, needed):
    return _overlap._sums(activation(logits), truth, valid, needed)


def assert_same_gradients(case, order=1):
    written = gradients(_overlap._sums_with_gradient, *case, order=order)
    autodiff = gradients(autodiff_sums, *case, order=order)
    for ours, theirs in zip(written, autodiff):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@tensorflow_only
@given(sums_cases())
def test_hand_written_gradient_equals_autodiff(case):
    assert_same_gradients(case)


@tensorflow_only
@given(sums_cases())
def test_second_derivative_equals_autodiff(case):
    assert_same_gradients(case, order=2)


@tensorflow_only
@pytest.mark.parametrize("kind", ["identity", "sigmoid", "softmax"])
def test_negative_control_wrong_logit_gradient(kind, monkeypatch):
    """The comparison catches a backward that leaves out the activation's derivative (for the identity,
    one that halves the gradient)."""
    wrong = (lambda self, probs, grad: grad) if kind != "identity" else (lambda self, probs, grad: 0.5 * grad)
    monkeypatch.setattr(_overlap._Activation, "backward", wrong)
    with pytest.raises(AssertionError):
        assert_same_gradients(fixed_case(kind))


@tensorflow_only
def test_negative_control_wrong_target_gradient(monkeypatch):
    """The comparison catches a target gradient that drops the intersection's term k_I·p."""
    correct = _overlap._target_gradient

    def wrong(k, probs, truth, sign, needed):
        return correct(k, probs, truth, sign, needed - {_overlap.INTERSECTION})

    monkeypatch.setattr(_overlap, "_target_gradient", wrong)
    with pytest.raises(AssertionError):
        assert_same_gradients(fixed_case("sigmoid"))


def fixed_case(kind):
    rng = np.random.default_rng(3)
    logits = rng.uniform(0.1, 0.9, (2, 5, 3)) if kind == "identity" else rng.normal(0, 2, (2, 5, 3))
    truth = rng.uniform(0, 1, (2, 5, 3))
    needed = frozenset(range(NUM_STATS))
    return kind, logits, truth, rng.uniform(0, 2, (2, 5, 1)), needed, rng.normal(0, 1, (2, 3, NUM_STATS))


# The public losses: finite differences with respect to soft targets and weight maps ---------------


def mean(values):
    """Not ops.mean: on the torch backend it computes float64 input in float32."""
    return ops.sum(values) / values.shape[0]


def soft_case(seed, mode):
    rng = np.random.default_rng(seed)
    y_pred = rng.normal(0, 1, (2, 4, 4, 3 if mode == "multilabel" else 1))
    y_true = rng.uniform(0.05, 0.95, y_pred.shape)
    weight = rng.uniform(0.5, 2.0, y_pred.shape[:-1])
    return y_pred, y_true, weight


OPTIONS = [
    (dice_loss, {}),
    (dice_loss, {"soft_labels": True}),  # Σ v·|p − g|
    (dice_loss, {"squared": True, "log_loss": True}),  # Σ v·p², Σ v·g²
    (tversky_loss, {"alpha": 0.3, "beta": 0.7, "soft_labels": True}),
]


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
@pytest.mark.parametrize(("loss", "options"), OPTIONS)
@pytest.mark.parametrize("argnum", [1, 2])
def test_gradient_of_targets_and_weights(loss, options, mode, argnum):
    y_pred, y_true, weight = soft_case(0, mode)

    def fn(p, t, w):
        return mean(loss(t, p, weight=w, mode=mode, **options))

    check_gradient(fn, y_pred, y_true, weight, argnum=argnum, framework="keras")


def test_gradient_of_targets_negative_control():
    """The check fails for a loss whose target gradient is cut (as a custom gradient that returned
    nothing for the targets would)."""
    y_pred, y_true, weight = soft_case(1, "binary")

    def cut(p, t, w):
        return mean(dice_loss(ops.stop_gradient(t), p, weight=w, mode="binary")) + 0.0 * ops.sum(t)

    with pytest.raises(GradientMismatch):
        check_gradient(cut, y_pred, y_true, weight, argnum=1, framework="keras")
