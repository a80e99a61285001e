"""Nothing fails silently (Keras 3, on the active backend; tests/test_keras_backends.py runs this file
on the others): random finite and non-finite inputs, dtypes and options, eager and compiled.

- finite in → finite loss and gradient, equal eager and compiled, and equal to the reference;
- a NaN or ±inf in ``y_pred`` or in a float ``y_true`` → a non-finite loss, and a non-finite gradient
  for every element of the image that holds it, while the other images stay finite;
- bad input → a ``ValueError`` / ``TypeError`` naming the argument (``y_true``, ``y_pred`` or the option);
- a batch of 0 images or 0 positions → the documented result.
"""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import given
from keras import ops

import reference
from robustness_cases import bad_inputs, finite_cases, poisoned_cases
from losses.keras import DiceLoss, dice_loss

BACKEND = keras.backend.backend()


def channels_last(array):
    return np.moveaxis(np.asarray(array), 1, -1)


def keras_case(logits, target):
    with_channel_axis = np.ndim(target) == np.ndim(logits)
    return channels_last(logits), channels_last(target) if with_channel_axis else np.asarray(target)


def compiled(fn):
    """``fn`` compiled the backend's way (tf.function, jax.jit); as it is on torch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def per_image_and_grad(y_true, y_pred, options, compile_=False):
    """The per-image losses and the gradient of their sum with respect to y_pred, as NumPy."""
    y_true = ops.convert_to_tensor(y_true)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                values = dice_loss(y_true, x, **options)
                total = tf.reduce_sum(values)
            return values, tape.gradient(total, x)
    elif BACKEND == "jax":
        import jax

        def step(x):
            values, vjp = jax.vjp(lambda z: dice_loss(y_true, z, **options), x)
            return values, vjp(ops.ones_like(values))[0]
    else:
        import torch

        def step(x):
            x = x.detach().clone().requires_grad_(True)
            values = dice_loss(y_true, x, **options)
            (grad,) = torch.autograd.grad(values.sum(), x)
            return values, grad
    values, grad = (compiled(step) if compile_ else step)(ops.convert_to_tensor(y_pred))
    return np.asarray(ops.convert_to_numpy(values), np.float64), np.asarray(ops.convert_to_numpy(grad), np.float64)


@given(finite_cases(max_side=3))
def test_finite_inputs_give_finite_results_eager_and_compiled_alike(case):
    logits, target, options, dtype, _ = case
    y_pred, y_true = keras_case(logits, target)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), dtype)
    eager = per_image_and_grad(y_true, y_pred, options)
    traced = per_image_and_grad(y_true, y_pred, options, compile_=True)
    for values, grad in (eager, traced):
        assert np.isfinite(values).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(traced[0], eager[0], rtol=1e-5, atol=1e-6)
    scale = max(1.0, float(np.abs(eager[1]).max()))
    np.testing.assert_allclose(traced[1], eager[1], rtol=1e-3, atol=1e-5 * scale)
    extreme = options["smooth_dr"] == 0.0 or np.abs(logits).max() > 50
    if dtype in ("float32", "float64") and not extreme and not (options["soft_labels"] and options["log_loss"]):
        rows = reference.dice_loss(logits, target, "none", **options)
        expected = np.broadcast_to(rows, eager[0].shape)
        np.testing.assert_allclose(eager[0], expected, rtol=2e-5, atol=2e-6)


@given(poisoned_cases(max_side=3))
def test_a_non_finite_value_comes_out_in_the_loss_and_the_gradient_of_its_image(case):
    logits, target, options, image = case
    y_pred, y_true = keras_case(logits, target)
    values, grad = per_image_and_grad(y_true, y_pred.astype("float32"), options)
    clean = [b for b in range(logits.shape[0]) if b != image]
    if options["per_image"]:
        assert not np.isfinite(values[image]) and np.isfinite(values[clean]).all()
        assert not np.isfinite(grad[image]).any() and np.isfinite(grad[clean]).all()
    else:
        assert not np.isfinite(values).any() and not np.isfinite(grad).any()
    assert not np.isfinite(float(DiceLoss(**options)(y_true, y_pred.astype("float32"))))


@given(bad_inputs())
def test_bad_input_is_a_clear_error_naming_the_argument(bad):
    name, (logits, target, options), error, text = bad
    y_pred, y_true = keras_case(logits, target)
    text = text.replace("target", "y_true").replace("input", "y_pred")
    with pytest.raises(error, match=text):
        dice_loss(y_true, y_pred.astype("float32"), **options)


@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (2, 0, 4, 3)])
def test_empty_inputs(shape):
    """As in the PyTorch frontend: per-image losses of 0 images are empty, their sum 0 and their
    mean NaN; an image of 0 positions has every class empty in prediction and target (loss 0)."""
    y_pred = np.zeros(shape, "float32")
    labels = np.zeros(shape[:-1], "int64")
    values = ops.convert_to_numpy(dice_loss(labels, y_pred))
    assert values.shape == (shape[0],) and (values == 0).all()
    assert float(DiceLoss(reduction="sum")(labels, y_pred)) == 0.0
    mean = float(DiceLoss()(labels, y_pred))
    assert np.isnan(mean) if shape[0] == 0 else mean == 0.0


def test_labels_and_ignore_index_beyond_32_bits():
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(1, 3, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, (1, 3, 4))
    big = labels.copy()
    big[0, 0] = 2**40  # ignored: exactly as if those positions were cropped away
    ignored = float(DiceLoss(ignore_index=2**40)(big, y_pred))
    cropped = float(DiceLoss()(labels[:, 1:], y_pred[:, 1:]))
    assert ignored == pytest.approx(cropped, rel=1e-6)
    with pytest.raises(ValueError, match=r"y_true labels must be in \[0, 3\).*1099511627777"):
        DiceLoss(ignore_index=2**40)(np.where(big == 2**40, 2**40 + 1, big), y_pred)


def test_float16_gradient_saturates_instead_of_overflowing():
    """Probabilities exactly 0 on an empty target: the gradient is 1/smooth_dr = 1e5 per position,
    beyond float16's largest value; it comes back as 65504, not inf."""
    y_pred = np.zeros((1, 4, 4, 1), "float16")
    labels = np.zeros((1, 4, 4), "int64")
    _, grad = per_image_and_grad(labels, y_pred, {"mode": "binary", "from_logits": False})
    assert np.isfinite(grad).all() and grad.max() == 65504.0


def test_config_keeps_dtype_and_every_option():
    loss = DiceLoss(mode="binary", dtype="float64", smooth_nr=0.5, smooth_dr=1.0)
    config = loss.get_config()
    assert config["dtype"] == "float64"
    again = DiceLoss.from_config(config)
    assert again.dtype == "float64" and again.get_config() == config


def test_unknown_rank_inside_tf_function_is_a_clear_error():
    if BACKEND != "tensorflow":
        pytest.skip("TensorFlow-specific")
    import tensorflow as tf

    fn = tf.function(lambda t, p: DiceLoss()(t, p),
                     input_signature=[tf.TensorSpec(None, tf.int64), tf.TensorSpec((None, None, None, 3))])
    with pytest.raises(ValueError, match="y_true must have a known rank"):
        fn(np.zeros((1, 2, 2), "int64"), np.zeros((1, 2, 2, 3), "float32"))


@pytest.mark.parametrize("weight, text", [
    (np.ones((2, 4, 5)), r"weight has shape \(2, 4, 5\); expected a weight per position"),
    (-np.ones((2, 4, 4)), r"weight must be finite and >= 0; found \[-1.0\]"),
    (np.full((2, 4, 4), np.nan), r"weight must be finite and >= 0; found \[nan\]"),
])
def test_a_bad_weight_map_is_a_clear_error(weight, text):
    y_pred = np.zeros((2, 4, 4, 3), "float32")
    with pytest.raises(ValueError, match=text):
        DiceLoss()(np.zeros((2, 4, 4), "int64"), y_pred, sample_weight=weight)


def test_the_loss_function_reloads_from_a_keras_file_without_custom_objects(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss=dice_loss)
    path = tmp_path / "model.keras"
    model.save(path)
    code = ("import keras, losses.keras; "
            f"m = keras.models.load_model({str(path)!r}); "
            "print(m.loss.__module__, m.loss.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": BACKEND})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "losses.keras._overlap dice_loss"
