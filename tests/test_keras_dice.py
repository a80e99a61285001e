"""DiceLoss (Keras 3) against the reference and finite differences, on the active Keras backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from keras import ops

import reference
from dice_cases import IGNORE, dice_cases
from losses._overlap import OverlapOptions, overlap_loss
from losses.keras import DiceLoss, dice_loss
from losses.keras._common import KerasOps
from losses.keras._inputs import prepare_inputs
from losses.keras._overlap import _overlap_stats_keras
from losses.testing import GradientMismatch, check_gradient, value_and_grad

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow-specific")


def mean(values):
    """Not ops.mean: on the torch backend it computes float64 input in float32."""
    return ops.sum(values) / values.shape[0]


def channels_last(array):
    return np.moveaxis(np.asarray(array), 1, -1)


def keras_case(logits, target):
    """The reference's channels-first arrays in Keras' layout (label maps keep theirs)."""
    with_channel_axis = np.ndim(target) == np.ndim(logits)  # per-class targets, or a (B, 1, ...) label map
    return channels_last(logits), channels_last(target) if with_channel_axis else np.asarray(target)


@settings(max_examples=12)
@given(dice_cases())
def test_matches_reference_in_float64(case):
    logits, target, options = case
    y_pred, y_true = keras_case(logits, target)
    ours = np.asarray(ops.convert_to_numpy(dice_loss(y_true, y_pred, **options)))
    expected = reference.dice_loss(logits, target, "none", **options)
    np.testing.assert_allclose(ours, np.broadcast_to(expected, ours.shape), rtol=1e-9, atol=1e-12)


def _clear_of_kinks(logits, target, options):
    if not options["soft_labels"]:
        return True
    p, g, v = reference.dice_probabilities_and_targets(
        logits, target, options["mode"], options["from_logits"], options["ignore_index"]
    )
    return bool(np.all(np.abs(p - g)[v > 0] > 1e-3))


@settings(max_examples=6)
@given(dice_cases(max_side=3))
def test_gradient_matches_central_differences(case):
    logits, target, options = case
    assume(_clear_of_kinks(logits, target, options))
    y_pred, y_true = keras_case(logits, target)
    check_gradient(lambda x: mean(dice_loss(y_true, x, **options)), y_pred, framework="keras", rtol=1e-4, atol=1e-6)


def _dice_with_frozen_denominator(y_true, y_pred):
    """Same value as dice_loss, deliberately wrong gradient: the denominator is held constant."""
    options = OverlapOptions.create(mode="multiclass")
    stats = _overlap_stats_keras(prepare_inputs(y_true, y_pred, options), options)
    frozen = ops.concatenate([stats[..., :1], ops.stop_gradient(stats[..., 1:])], axis=-1)
    weights = ops.ones((stats.shape[1],), dtype=stats.dtype)
    return mean(overlap_loss(KerasOps, frozen, weights, options.form))


def test_negative_control_wrong_backward_fails_the_check():
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(2, 3, 2, 3))
    y_true = rng.integers(0, 3, (2, 3, 2))
    correct = lambda x: mean(dice_loss(y_true, x))  # noqa: E731
    wrong = lambda x: _dice_with_frozen_denominator(y_true, x)  # noqa: E731
    assert value_and_grad(wrong, [y_pred], framework="keras")[0] == pytest.approx(
        value_and_grad(correct, [y_pred], framework="keras")[0], rel=1e-12
    )
    check_gradient(correct, y_pred, framework="keras")
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, y_pred, framework="keras")


def test_ignored_pixels_get_zero_gradient_and_removing_them_changes_nothing():
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(2, 5, 6, 3))
    y_true = rng.integers(0, 3, (2, 5, 6))
    y_true[:, :, -2:] = IGNORE
    options = dict(ignore_index=IGNORE, squared=True, empty_target="penalize")
    value, grad = value_and_grad(lambda x: mean(dice_loss(y_true, x, **options)), [y_pred], framework="keras")
    assert np.count_nonzero(grad[:, :, -2:]) == 0 and np.count_nonzero(grad[:, :, :-2]) > 0
    cropped = mean(dice_loss(y_true[:, :, :-2], y_pred[:, :, :-2], **options))
    assert float(ops.convert_to_numpy(cropped)) == pytest.approx(value, rel=1e-12)


def test_penalize_gradient_pushes_an_empty_target_down():
    y_pred = np.full((1, 4, 4, 1), 0.9)
    y_true = np.zeros((1, 4, 4))
    value, grad = value_and_grad(
        lambda x: mean(dice_loss(y_true, x, mode="binary", from_logits=False, empty_target="penalize")),
        [y_pred],
        framework="keras",
    )
    assert value == pytest.approx(0.9)
    np.testing.assert_allclose(grad, 1 / 16)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_and_extreme_logits_are_finite(dtype):
    rng = np.random.default_rng(2)
    y_pred = ops.cast(np.where(rng.uniform(size=(2, 6, 6, 3)) < 0.5, -1e4, 1e4), dtype)
    y_true = rng.integers(0, 3, (2, 6, 6))
    loss = dice_loss(y_true, y_pred, log_loss=True, smooth_nr=0.0)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert np.all(np.isfinite(ops.convert_to_numpy(loss)))
    _, grad = value_and_grad(
        lambda x: mean(dice_loss(y_true, x, log_loss=True)),
        [np.asarray(ops.convert_to_numpy(ops.cast(y_pred, "float32")))],
        framework="keras",
    )
    assert np.all(np.isfinite(grad))


def test_loss_class_reduces_over_the_batch_and_honours_sample_weight():
    rng = np.random.default_rng(3)
    y_pred = rng.normal(size=(3, 4, 4, 2)).astype("float32")
    y_true = rng.integers(0, 2, (3, 4, 4))
    per_sample = np.asarray(ops.convert_to_numpy(dice_loss(y_true, y_pred)))
    loss = DiceLoss()
    assert float(loss(y_true, y_pred)) == pytest.approx(per_sample.mean(), rel=1e-6)
    weights = np.array([1.0, 0.0, 2.0], dtype="float32")
    assert float(loss(y_true, y_pred, sample_weight=weights)) == pytest.approx(
        (per_sample * weights).sum() / 3, rel=1e-6
    )


def test_get_config_round_trips_every_option():
    loss = DiceLoss(
        mode="multilabel",
        from_logits=False,
        smooth_nr=0.5,
        smooth_dr=2.0,
        squared=True,
        log_loss=True,
        soft_labels=True,
        per_image=False,
        classes=[0, 2],
        class_weights=[1.0, 0.5, 2.0],
        ignore_index=-1,
        empty_target="exclude",
        reduction="sum",
        name="my_dice",
    )
    config = loss.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, DiceLoss) and clone.get_config() == config
    assert clone.options == loss.options


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"mode": "binarie"}, ValueError, "mode must be one of"),
        ({"empty_target": "x"}, ValueError, "empty_target must be one of"),
        ({"class_weights": [1.0]}, ValueError, r"class_weights must have one weight per channel of the input \(3\)"),
        ({"smooth_dr": float("nan")}, ValueError, "smooth_dr must be finite"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        dice_loss(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3), "float32"), **kwargs)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"y_true has shape \(10, 5\) but y_pred has shape \(10, 10, 1\)"):
        dice_loss(np.zeros((10, 5)), np.zeros((10, 10, 1), "float32"), mode="binary")
    with pytest.raises(ValueError, match=r"y_pred must have shape \(B, \*spatial, C\) with at least one spatial"):
        dice_loss(np.zeros((2,)), np.zeros((2, 3), "float32"))
    # Multilabel targets have y_pred's shape: the message offers no label map, which that mode refuses.
    with pytest.raises(ValueError, match=r"expected y_true of shape \(1, 2, 3\) \(y_pred's shape\)\. Shapes"):
        dice_loss(np.zeros((1, 2)), np.zeros((1, 2, 3), "float32"), mode="multilabel")
    with pytest.raises(ValueError, match=r"y_true labels must be in \[0, 3\); found \[3\]"):
        dice_loss(np.array([[0, 3]]), np.zeros((1, 2, 3), "float32"))
    # The first eight distinct values, as in the PyTorch frontend: a whole image of them would be unreadable.
    with pytest.raises(ValueError, match=r"found \[3, 4, 5, 6, 7, 8, 9, 10\]$"):
        dice_loss(np.arange(3, 13)[None], np.zeros((1, 10, 3), "float32"))
    with pytest.raises(TypeError, match="y_pred must have a floating-point dtype.*int"):
        dice_loss(np.zeros((1, 2)), np.zeros((1, 2, 3), "int32"))
    with pytest.raises(TypeError, match="y_pred must have a floating-point dtype"):
        DiceLoss()(np.zeros((1, 2)), np.zeros((1, 2, 3), "int32"))
    with pytest.raises(ValueError, match="reduction"):
        DiceLoss(reduction="avg")


def _segmentation_model(classes=3):
    inputs = keras.Input((16, 16, 1))
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(classes, 1)(hidden)
    return keras.Model(inputs, outputs)


def test_compiled_model_trains_saves_and_reloads_without_custom_objects(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(8, 16, 16, 1)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 0] > 1.5).astype("int32")
    model = _segmentation_model()
    loss = DiceLoss(mode="multiclass", class_weights=[0.5, 1.0, 2.0], empty_target="penalize")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(images, labels, epochs=8, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "import keras, losses.keras; "
        f"m = keras.models.load_model({str(path)!r}); "
        "import json; print(json.dumps({'class': type(m.loss).__name__, 'config': m.loss.get_config()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": BACKEND},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert reloaded["class"] == "DiceLoss"
    assert reloaded["config"] == json.loads(json.dumps(loss.get_config()))


@tensorflow_only
def test_gradient_tape_loop_and_jit_compiled_function():
    import tensorflow as tf

    model = _segmentation_model()
    loss_fn = DiceLoss(ignore_index=IGNORE)
    optimizer = keras.optimizers.SGD(0.1)
    rng = np.random.default_rng(5)
    images = tf.constant(rng.normal(size=(4, 16, 16, 1)), tf.float32)
    labels = tf.constant(rng.integers(0, 3, (4, 16, 16)))

    @tf.function(jit_compile=True)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, grads

    with tf.GradientTape() as tape:
        eager_loss = loss_fn(labels, model(images))
    eager_grads = tape.gradient(eager_loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in eager_grads)
    loss, grads = step(images, labels)
    assert float(loss) == pytest.approx(float(eager_loss), rel=1e-5)
    for g, e in zip(grads, eager_grads):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-6)


@tensorflow_only
def test_images_of_unknown_size_inside_tf_function():
    """A fully convolutional model sees images of any size: traced with unknown spatial sizes, the
    loss counts the positions at run time and equals the eager loss."""
    import tensorflow as tf

    rng = np.random.default_rng(6)
    y_pred = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 5, 6))
    signature = [tf.TensorSpec((None, None, None), tf.int64), tf.TensorSpec((None, None, None, 3), tf.float32)]
    traced = tf.function(lambda t, p: dice_loss(t, p), input_signature=signature)
    np.testing.assert_allclose(
        traced(labels, y_pred).numpy(), ops.convert_to_numpy(dice_loss(labels, y_pred)), rtol=1e-6
    )
