"""Nothing fails silently (Keras 3, on the active backend; tests/test_keras_backends.py runs this file
on the others): every segmentation loss (Dice, focal, Dice + cross-entropy, Dice + focal,
Lovász-softmax, Lovász hinge) on random finite and non-finite inputs, dtypes, options and weight
maps, eager and compiled.

- finite in → finite loss and gradient, equal eager and compiled, and equal to the reference;
- a NaN or ±inf in ``y_pred`` or in a float ``y_true`` → a non-finite loss for its image (the batch
  with ``per_image=False``) and a non-finite gradient for every element of that row and no other;
  for the focal loss, a mean of independent terms, at its element (and at most the other classes
  of its position);
- bad input → a ``ValueError`` / ``TypeError`` naming the argument (``y_true``, ``y_pred`` or the option);
- a batch of 0 images or 0 positions → the documented result.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from robustness_cases import (
    LOSSES,
    LOVASZ,
    Case,
    bad_inputs,
    finite_cases,
    matches_reference_in,
    non_finite_gradient,
    non_finite_values,
    poisoned_cases,
    reference_per_sample,
)
from losses.keras import (
    DiceCELoss,
    DiceFocalLoss,
    DiceLoss,
    FocalLoss,
    LovaszHingeLoss,
    LovaszSoftmaxLoss,
    dice_ce_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
)

BACKEND = keras.backend.backend()
FUNCTIONS = {
    "dice": dice_loss,
    "focal": focal_loss,
    "dice_ce": dice_ce_loss,
    "dice_focal": dice_focal_loss,
    "lovasz_softmax": lovasz_softmax_loss,
    "lovasz_hinge": lovasz_hinge_loss,
}
CLASSES = {
    "dice": DiceLoss,
    "focal": FocalLoss,
    "dice_ce": DiceCELoss,
    "dice_focal": DiceFocalLoss,
    "lovasz_softmax": LovaszSoftmaxLoss,
    "lovasz_hinge": LovaszHingeLoss,
}
WITH_WEIGHT_MAP = ("dice", "focal", "dice_ce", "dice_focal")
# The profile's examples shared among the losses: a third of them for each of the six (at least 2).
_EXAMPLES = settings.default.max_examples
PER_LOSS = settings(max_examples=max(2, math.ceil(2 * _EXAMPLES / len(LOSSES))))
# Every kind of bad input of every loss, each with a few random values.
PER_BAD_INPUT = settings(max_examples=max(1, _EXAMPLES // 10))


def channels_last(array):
    return np.moveaxis(np.asarray(array), 1, -1)


def channels_first(array):
    return np.moveaxis(np.asarray(array), -1, 1)


def keras_case(logits, target):
    with_channel_axis = np.ndim(target) == np.ndim(logits)
    return channels_last(logits), channels_last(target) if with_channel_axis else np.asarray(target)


def compiled(fn, xla=False):
    """``fn`` compiled the backend's way (tf.function, with ``xla`` jit_compile; jax.jit); as it is on torch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=xla)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def per_image_and_grad(case, y_true, y_pred, compile_=False, xla=False):
    """The per-image losses of ``case`` and the gradient of their sum with respect to y_pred, as NumPy."""
    y_true = ops.convert_to_tensor(y_true)
    options = dict(case.options)
    if case.weight is not None:
        options["weight"] = ops.convert_to_tensor(case.weight.astype("float32"))
    fn = FUNCTIONS[case.loss]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                values = fn(y_true, x, **options)
                total = tf.reduce_sum(values)
            return values, tape.gradient(total, x)
    elif BACKEND == "jax":
        import jax

        def step(x):
            values, vjp = jax.vjp(lambda z: fn(y_true, z, **options), x)
            return values, vjp(ops.ones_like(values))[0]
    else:
        import torch

        def step(x):
            x = x.detach().clone().requires_grad_(True)
            values = fn(y_true, x, **options)
            (grad,) = torch.autograd.grad(values.sum(), x)
            return values, grad

    values, grad = (compiled(step, xla) if compile_ else step)(ops.convert_to_tensor(y_pred))
    return np.asarray(ops.convert_to_numpy(values), np.float64), np.asarray(ops.convert_to_numpy(grad), np.float64)


@pytest.mark.parametrize("loss", LOSSES)
@PER_LOSS
@given(data=st.data())
def test_finite_inputs_give_finite_results_eager_and_compiled_alike(loss, data):
    case, dtype, _ = data.draw(finite_cases(loss, max_side=3))
    y_pred, y_true = keras_case(case.logits, case.target)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), dtype)
    eager = per_image_and_grad(case, y_true, y_pred)
    traced = per_image_and_grad(case, y_true, y_pred, compile_=True)
    for values, grad in (eager, traced):
        assert np.isfinite(values).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(traced[0], eager[0], rtol=1e-5, atol=1e-6)
    scale = max(1.0, float(np.abs(eager[1]).max()))
    np.testing.assert_allclose(traced[1], eager[1], rtol=1e-3, atol=1e-5 * scale)
    if matches_reference_in(case, dtype):
        expected = reference_per_sample(case, case.logits)
        np.testing.assert_allclose(eager[0], expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("loss", LOSSES)
@PER_LOSS
@given(data=st.data())
def test_a_non_finite_value_comes_out_in_the_loss_and_the_gradient_where_it_entered(loss, data):
    case, where, index = data.draw(poisoned_cases(loss, max_side=3))
    y_pred, y_true = keras_case(case.logits, case.target)
    values, grad = per_image_and_grad(case, y_true, y_pred.astype("float32"))
    np.testing.assert_array_equal(
        ~np.isfinite(values), non_finite_values(case, index, per_sample=True), err_msg=f"{where} {index}"
    )
    must, may = (channels_last(mask) for mask in non_finite_gradient(case, index))
    assert not np.isfinite(grad[must]).any(), (where, index)
    assert np.isfinite(grad[~may]).all(), (where, index)
    options = {k: v for k, v in case.options.items() if k != "mode"}
    criterion = CLASSES[loss](case.options["mode"], **options) if "mode" in case.options else CLASSES[loss](**options)
    assert not np.isfinite(float(criterion(y_true, y_pred.astype("float32"), sample_weight=case.weight)))


@pytest.mark.parametrize("loss", LOSSES)
@PER_LOSS
@given(data=st.data())
def test_a_non_finite_value_comes_out_of_the_loss_under_xla(loss, data):
    """Compiled by XLA (jit_compile, jax.jit), which rewrites a product with a 0/1 weight as a select:
    a NaN or ±inf at an ignored or zero-weight position still makes its row's loss non-finite, and
    its row's gradient (XLA may leave 0 at such a position, where eager code has NaN)."""
    case, where, index = data.draw(poisoned_cases(loss, max_side=3))
    y_pred, y_true = keras_case(case.logits, case.target)
    values, grad = per_image_and_grad(case, y_true, y_pred.astype("float32"), compile_=True, xla=True)
    np.testing.assert_array_equal(
        ~np.isfinite(values), non_finite_values(case, index, per_sample=True), err_msg=f"{where} {index}"
    )
    _, may = (channels_last(mask) for mask in non_finite_gradient(case, index))
    assert np.isfinite(grad[~may]).all(), (where, index)
    assert not np.isfinite(grad[may]).all(), (where, index)


@pytest.mark.parametrize(
    "mode, y_pred, y_true, weight",
    [
        # a NaN target in class 0 of a position that class 1's target (ignore_index) leaves out
        ("multiclass", [[[[0.53, 0.47]]]], [[[[np.nan, 255.0]]]], None),
        # a NaN target at a position of weight 0
        ("multilabel", [[[[0.3, 0.6]], [[0.2, 0.9]]]], [[[[np.nan, 1.0]], [[0.0, 1.0]]]], [[[0.0], [1.0]]]),
        ("binary", [[[[0.3]], [[0.8]]]], [[[[np.nan]], [[1.0]]]], [[[0.0], [1.0]]]),
    ],
)
def test_a_nan_target_left_out_of_the_sums_still_comes_out_under_xla(mode, y_pred, y_true, weight):
    """XLA rewrites the product with a 0/1 validity or a 0 weight as a select, which drops the NaN of
    a position left out: the focal term adds the float target's NaN after the weights, as it does
    the prediction's."""
    options = dict(mode=mode, from_logits=False, ignore_index=255)
    if weight is not None:
        options["weight"] = ops.convert_to_tensor(np.asarray(weight, "float32"))
    y_pred = ops.convert_to_tensor(np.asarray(y_pred, "float32"))
    y_true = ops.convert_to_tensor(np.asarray(y_true, "float32"))
    for fn in (focal_loss, dice_focal_loss, dice_ce_loss):
        value = compiled(lambda t, p, fn=fn: fn(t, p, **options), xla=True)(y_true, y_pred)
        assert np.isnan(np.asarray(ops.convert_to_numpy(value))).all(), fn.__name__


@pytest.mark.parametrize("loss", LOSSES)
def test_a_nan_label_in_a_float_label_map_comes_out_of_the_compiled_loss(loss):
    """Eagerly a NaN label is a ValueError; traced, where values are not checked, the loss of its image
    is NaN (cast to int32, the NaN would pick a class: which one depends on the backend and XLA)."""
    rng = np.random.default_rng(3)
    binary = loss == "lovasz_hinge"
    y_pred = rng.normal(size=(2, 3, 4, 1 if binary else 3)).astype("float32")
    labels = rng.integers(0, 2 if binary else 3, (2, 3, 4)).astype("float32")
    labels[0, 1, 2] = np.nan
    fn = FUNCTIONS[loss]
    options = {"per_image": True} if loss not in LOVASZ + ("focal",) else {}
    with pytest.raises(ValueError, match="y_true"):
        fn(ops.convert_to_tensor(labels), ops.convert_to_tensor(y_pred), **options)
    if BACKEND == "torch":  # no tracing: the ValueError above
        return
    for xla in (False, True) if BACKEND == "tensorflow" else (False,):
        traced = compiled(lambda t, p: fn(t, p, **options), xla)
        values = ops.convert_to_numpy(traced(ops.convert_to_tensor(labels), ops.convert_to_tensor(y_pred)))
        assert np.isnan(values[0]) and np.isfinite(values[1]), (xla, values)


@pytest.mark.parametrize(
    "loss, build, error, text",
    [pytest.param(loss, build, error, text, id=f"{loss}: {name}") for loss, name, build, error, text in bad_inputs()],
)
@PER_BAD_INPUT
@given(seed=st.integers(0, 2**32 - 1))
def test_bad_input_is_a_clear_error_naming_the_argument(loss, build, error, text, seed):
    logits, target, options, weight = build(np.random.default_rng(seed))
    y_pred, y_true = keras_case(logits, target)
    if weight is not None:
        options = {**options, "weight": weight}
    text = text.replace("target", "y_true").replace("input", "y_pred")
    with pytest.raises(error, match=text):
        FUNCTIONS[loss](y_true, y_pred.astype("float32"), **options)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 4)])
def test_empty_inputs(loss, shape):
    """As in the PyTorch frontend: per-image losses of 0 images are empty, their sum 0 and their
    mean NaN; an image of 0 positions has every class empty in prediction and target (loss 0), and
    no valid position (its focal loss, a mean over them, 0)."""
    y_pred = np.zeros((*shape, 1 if loss == "lovasz_hinge" else 3), "float32")
    labels = np.zeros(shape, "int64")
    values = ops.convert_to_numpy(FUNCTIONS[loss](labels, y_pred))
    assert values.shape == (shape[0],) and (values == 0).all()
    assert float(CLASSES[loss](reduction="sum")(labels, y_pred)) == 0.0
    mean = float(CLASSES[loss]()(labels, y_pred))
    assert np.isnan(mean) if shape[0] == 0 else mean == 0.0


@pytest.mark.parametrize("loss", ["dice", "focal", "dice_ce", "dice_focal", "lovasz_softmax"])
def test_labels_and_ignore_index_beyond_32_bits(loss):
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(1, 3, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, (1, 3, 4))
    big = labels.copy()
    big[0, 0] = 2**40  # ignored: exactly as if those positions were cropped away
    ignored = float(CLASSES[loss](ignore_index=2**40)(big, y_pred))
    cropped = float(CLASSES[loss]()(labels[:, 1:], y_pred[:, 1:]))
    assert ignored == pytest.approx(cropped, rel=1e-6)
    with pytest.raises(ValueError, match=r"y_true labels must be in \[0, 3\).*1099511627777"):
        CLASSES[loss](ignore_index=2**40)(np.where(big == 2**40, 2**40 + 1, big), y_pred)


def test_float16_gradient_saturates_instead_of_overflowing():
    """Probabilities exactly 0 on an empty target: the gradient is 1/smooth_dr = 1e5 per position,
    beyond float16's largest value; it comes back as 65504, not inf."""
    y_pred = np.zeros((1, 4, 4, 1), "float16")
    labels = np.zeros((1, 4, 4), "int64")
    case = Case("dice", channels_first(y_pred), labels, {"mode": "binary", "from_logits": False})
    _, grad = per_image_and_grad(case, labels, y_pred)
    assert np.isfinite(grad).all() and grad.max() == 65504.0


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_float16_gradient_keeps_an_infinity_from_a_non_finite_input(value):
    """Saturation is for finite input only: an infinite soft target makes the focal term's gradient
    infinite at its element, and in float16 it stays so (it came back as a finite ∓65504)."""
    y_pred = np.full((1, 1, 1, 1), 0.6, "float16")
    y_true = np.full((1, 1, 1, 1), value)
    case = Case(
        "focal", channels_first(y_pred), channels_first(y_true), {"mode": "binary", "from_logits": False, "gamma": 0.0}
    )
    _, grad = per_image_and_grad(case, y_true, y_pred)
    assert np.isinf(grad).all(), grad


def test_config_keeps_dtype_and_every_option():
    loss = DiceLoss(mode="binary", dtype="float64", smooth_nr=0.5, smooth_dr=1.0)
    config = loss.get_config()
    assert config["dtype"] == "float64"
    again = DiceLoss.from_config(config)
    assert again.dtype == "float64" and again.get_config() == config


@pytest.mark.parametrize("loss", LOSSES)
def test_unknown_rank_inside_tf_function_is_a_clear_error(loss):
    if BACKEND != "tensorflow":
        pytest.skip("TensorFlow-specific")
    import tensorflow as tf

    channels = 1 if loss == "lovasz_hinge" else 3
    fn = tf.function(
        lambda t, p: CLASSES[loss]()(t, p),
        input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec((None, None, None, channels))],
    )
    with pytest.raises(ValueError, match="y_true must have a known rank"):
        fn(np.zeros((1, 2, 2), "int64"), np.zeros((1, 2, 2, channels), "float32"))


@pytest.mark.parametrize("loss", WITH_WEIGHT_MAP)
@pytest.mark.parametrize(
    "weight, text",
    [
        (np.ones((2, 4, 5)), r"weight has shape \(2, 4, 5\); expected a weight per position"),
        (-np.ones((2, 4, 4)), r"weight must be finite and >= 0; found \[-1.0\]"),
        (np.full((2, 4, 4), np.nan), r"weight must be finite and >= 0; found \[nan\]"),
    ],
)
def test_a_bad_weight_map_is_a_clear_error(loss, weight, text):
    y_pred = np.zeros((2, 4, 4, 3), "float32")
    with pytest.raises(ValueError, match=text):
        CLASSES[loss]()(np.zeros((2, 4, 4), "int64"), y_pred, sample_weight=weight)


@pytest.mark.parametrize("loss", ["lovasz_softmax", "lovasz_hinge"])
def test_a_weight_map_for_a_loss_without_one_is_a_clear_error(loss):
    """The Lovász losses take one weight per image: a weight per position is no silent broadcast."""
    channels = 1 if loss == "lovasz_hinge" else 3
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(B,\)"):
        CLASSES[loss]()(
            np.zeros((2, 4, 4), "int64"), np.zeros((2, 4, 4, channels), "float32"), sample_weight=np.ones((2, 4, 4))
        )


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weight", [np.array([2.0]), np.ones(3), np.ones((1, 1))])
def test_a_per_image_weight_of_another_length_than_the_batch_is_a_clear_error(loss, weight):
    """One weight per image, (B,): a (1,) vector is not broadcast over a batch of 2, and a (3,) one is
    no backend error that names no argument. A scalar still scales every image (Keras' convention)."""
    channels = 1 if loss == "lovasz_hinge" else 3
    y_true, y_pred = np.zeros((2, 4, 4), "int64"), np.zeros((2, 4, 4, channels), "float32")
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(B,\).*for a batch of 2 samples"):
        CLASSES[loss]()(y_true, y_pred, sample_weight=weight)
    criterion = CLASSES[loss]()
    assert np.isclose(float(criterion(y_true, y_pred, sample_weight=2.0)), 2 * float(criterion(y_true, y_pred)))


def test_the_loss_function_reloads_from_a_keras_file_without_custom_objects(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss=dice_loss)
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "import keras, losses.keras; "
        f"m = keras.models.load_model({str(path)!r}); "
        "print(m.loss.__module__, m.loss.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "losses.keras._overlap dice_loss"
