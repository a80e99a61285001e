"""The Lovász losses in Keras 3 (on the active backend; tests/test_keras_backends.py runs this file on
the others): the float64 reference, agreement with losses.torch, finite differences away from ties
with a negative control, the stable order's subgradient at ties, eager and compiled, non-finite and
empty inputs, bad input, configs and reloading."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from keras import ops

from lovasz_cases import IGNORE, clear_of_kinks, hinge_gradient, lovasz_cases, reference_loss, softmax_gradient
from losses._lovasz import LovaszOptions, class_average
from losses.keras import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge_loss, lovasz_softmax_loss
from losses.keras._lovasz import lovasz_per_sample
from losses.testing import GradientMismatch, check_gradient, value_and_grad

BACKEND = keras.backend.backend()
# Eager JAX compiles every op for every new shape (seconds per shape on a small machine): the
# property tests, whose shapes vary, run compiled there; the fixed-shape tests run eagerly too.
MODES = (True,) if BACKEND == "jax" else (False, True)
FUNCTIONS = {"lovasz_softmax": lovasz_softmax_loss, "lovasz_hinge": lovasz_hinge_loss}
CLASSES = {"lovasz_softmax": LovaszSoftmaxLoss, "lovasz_hinge": LovaszHingeLoss}


def channels_last(logits, labels):
    labels = np.asarray(labels)
    if labels.ndim == np.ndim(logits):
        labels = np.moveaxis(labels, 1, -1)
    return np.moveaxis(np.asarray(logits), 1, -1), labels


def mean(values):
    """Not ops.mean: on the torch backend it computes float64 input in float32."""
    return ops.sum(values) / values.shape[0]


def compiled(fn):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def examples(n):
    """At most ``n`` examples, and no more than the profile's (fewer on the torch and JAX re-runs)."""
    return settings(max_examples=min(n, settings.default.max_examples))


def per_image_and_grad(loss, y_true, y_pred, options, compile_=BACKEND == "jax"):
    """The per-image losses and the gradient of their sum with respect to y_pred (channels last),
    compiled by default on JAX only (see MODES)."""
    y_true = ops.convert_to_tensor(y_true)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                values = FUNCTIONS[loss](y_true, x, **options)
                total = tf.reduce_sum(values)
            return values, tape.gradient(total, x)
    elif BACKEND == "jax":
        import jax

        def step(x):
            values, vjp = jax.vjp(lambda z: FUNCTIONS[loss](y_true, z, **options), x)
            return values, vjp(ops.ones_like(values))[0]
    else:
        import torch

        def step(x):
            x = x.detach().clone().requires_grad_(True)
            values = FUNCTIONS[loss](y_true, x, **options)
            (grad,) = torch.autograd.grad(values.sum(), x)
            return values, grad

    values, grad = (compiled(step) if compile_ else step)(ops.convert_to_tensor(y_pred))
    return np.asarray(ops.convert_to_numpy(values), np.float64), np.asarray(ops.convert_to_numpy(grad), np.float64)


@examples(12)
@given(lovasz_cases())
def test_both_losses_match_the_reference_in_float64(case):
    loss, logits, labels, options = case
    y_pred, y_true = channels_last(logits, labels)
    fn = lambda x: FUNCTIONS[loss](y_true, x, **options)  # noqa: E731
    values = np.asarray(ops.convert_to_numpy((compiled(fn) if BACKEND == "jax" else fn)(y_pred)))
    rows = reference_loss(loss, logits, labels, **options)
    np.testing.assert_allclose(values, np.broadcast_to(rows, values.shape), rtol=1e-10, atol=1e-12)


@examples(6)
@given(lovasz_cases(max_side=3))
def test_gradient_matches_central_differences_away_from_ties(case):
    loss, logits, labels, options = case
    assume(clear_of_kinks(loss, logits, labels, options))
    y_pred, y_true = channels_last(logits, labels)
    fn = lambda x: mean(FUNCTIONS[loss](y_true, x, **options))  # noqa: E731
    check_gradient(compiled(fn) if BACKEND == "jax" else fn, y_pred, framework="keras", rtol=1e-5, atol=1e-7)


def _softmax_with_frozen_foreground_errors(y_true, y_pred):
    """Same value as lovasz_softmax_loss, deliberately wrong gradient: the errors of the foreground
    positions held constant (as if only false positives moved the loss)."""
    p = ops.softmax(y_pred, axis=-1)
    foreground = ops.cast(ops.equal(ops.convert_to_tensor(y_true)[..., None], ops.arange(p.shape[-1])), p.dtype)
    frozen = foreground * ops.stop_gradient(p) + (1.0 - foreground) * p
    options = LovaszOptions.create("lovasz_softmax", from_logits=False, classes="all")
    return mean(lovasz_per_sample(y_true, frozen, options))


def test_negative_control_a_wrong_gradient_fails_the_check():
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(2, 3, 3, 3))
    y_true = rng.integers(0, 3, (2, 3, 3))
    correct = lambda x: mean(lovasz_softmax_loss(y_true, x, classes="all"))  # noqa: E731
    wrong = lambda x: _softmax_with_frozen_foreground_errors(y_true, x)  # noqa: E731
    if BACKEND == "jax":
        correct, wrong = compiled(correct), compiled(wrong)
    assert value_and_grad(wrong, [y_pred], framework="keras")[0] == pytest.approx(
        value_and_grad(correct, [y_pred], framework="keras")[0], rel=1e-12
    )
    check_gradient(correct, y_pred, framework="keras", rtol=1e-5, atol=1e-7)
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, y_pred, framework="keras", rtol=1e-5, atol=1e-7)


@examples(8)
@given(lovasz_cases(max_side=5))
def test_the_gradient_is_the_reference_weights_put_back_in_place(case):
    """Also at ties and kinks (there: the subgradient of the stable order), eager and compiled."""
    loss, logits, labels, options = case
    assume(options.pop("from_logits", True))
    y_pred, y_true = channels_last(logits, labels)
    expected = (softmax_gradient if loss == "lovasz_softmax" else hinge_gradient)(
        logits, labels, reduction="sum", **options
    )
    if not options["per_image"]:
        expected = expected * logits.shape[0]  # every sample carries the batch loss
    for compile_ in MODES:
        _, grad = per_image_and_grad(loss, y_true, y_pred, options, compile_)
        np.testing.assert_allclose(np.moveaxis(grad, -1, 1), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("per_image", [True, False])
def test_ties_give_the_subgradient_of_the_stable_order(per_image):
    """Logits of 0: every error tied; as in losses.torch, the earlier position counts as the larger error."""
    labels = np.array([[[0, 1, 1, 0, 1, 0]], [[1, 1, 0, 0, 0, 1]]])
    for loss, expected_grad, channels in (("lovasz_softmax", softmax_gradient, 2), ("lovasz_hinge", hinge_gradient, 1)):
        logits = np.zeros((2, channels, 1, 6))
        y_pred, y_true = channels_last(logits, labels)
        for dtype in ("float32", "float64"):
            values, grad = per_image_and_grad(loss, y_true, y_pred.astype(dtype), {"per_image": per_image})
            expected = expected_grad(logits, labels, per_image=per_image, reduction="sum")
            if not per_image:
                expected = expected * 2
            np.testing.assert_allclose(np.moveaxis(grad, -1, 1), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("loss", sorted(FUNCTIONS))
@pytest.mark.parametrize("per_image", [True, False])
def test_keras_and_torch_agree_on_values_and_gradients(loss, per_image):
    import torch

    from losses.torch import functional as F

    rng = np.random.default_rng(1)
    channels = 4 if loss == "lovasz_softmax" else 1
    logits = rng.normal(scale=2.0, size=(3, channels, 5, 6)).astype("float32")
    labels = rng.integers(0, channels if channels > 1 else 2, (3, 5, 6))
    labels[0, 0] = IGNORE
    options = {"per_image": per_image, "ignore_index": IGNORE}
    x = torch.tensor(logits, requires_grad=True)
    theirs = getattr(F, f"{loss}_loss")(x, torch.as_tensor(labels), reduction="sum", **options)
    (torch_grad,) = torch.autograd.grad(theirs, x)
    y_pred, y_true = channels_last(logits, labels)
    values, grad = per_image_and_grad(loss, y_true, y_pred, options)
    total = values.sum() if per_image else values[0]
    assert total == pytest.approx(theirs.item(), rel=1e-5)
    scale = 1.0 if per_image else 3.0  # every sample carries the batch loss
    np.testing.assert_allclose(np.moveaxis(grad, -1, 1) / scale, torch_grad.numpy(), rtol=1e-4, atol=1e-6)


# --- nothing fails silently -----------------------------------------------------------------------


@examples(6)
@given(
    lovasz_cases(max_side=3),
    st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
    st.sampled_from([1.0, 1e4]),
)
def test_finite_input_gives_finite_results_eager_and_compiled(case, dtype, scale):
    loss, logits, labels, options = case
    if options.get("from_logits", True):
        logits = logits * scale
    if dtype == "float16":
        logits = np.clip(logits, -6e4, 6e4)  # finite in float16 too
    y_pred, y_true = channels_last(logits, labels)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), dtype)
    results = [per_image_and_grad(loss, y_true, y_pred, options, compile_) for compile_ in MODES]
    for values, grad in results:
        assert np.isfinite(values).all() and np.isfinite(grad).all()
    for values, grad in results[1:]:
        np.testing.assert_allclose(values, results[0][0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(grad, results[0][1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", sorted(FUNCTIONS))
def test_a_non_finite_input_gives_its_image_a_nan_loss_and_gradient(loss):
    """Image 1 holds a NaN at an ignored position, image 2 an inf, image 3 a −inf; image 0 stays
    finite, and with per_image=False the whole batch is NaN."""
    rng = np.random.default_rng(2)
    channels = 3 if loss == "lovasz_softmax" else 1
    logits = rng.normal(size=(4, channels, 2, 3)).astype("float32")
    labels = rng.integers(0, channels if channels > 1 else 2, (4, 2, 3))
    labels[1, 0, 0] = IGNORE
    logits[1, 0, 0, 0], logits[2, 0, 1, 1], logits[3, 0, 1, 2] = np.nan, np.inf, -np.inf
    y_pred, y_true = channels_last(logits, labels)
    values, grad = per_image_and_grad(loss, y_true, y_pred, {"ignore_index": IGNORE})
    assert np.isnan(values[1:]).all() and np.isnan(grad[1:]).all()
    assert np.isfinite(values[0]) and np.isfinite(grad[0]).all()
    values, grad = per_image_and_grad(loss, y_true, y_pred, {"ignore_index": IGNORE, "per_image": False})
    assert np.isnan(values).all() and np.isnan(grad).all()


@pytest.mark.parametrize("loss", sorted(CLASSES))
@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 4)])
def test_empty_inputs(loss, shape):
    channels = 3 if loss == "lovasz_softmax" else 1
    y_pred = np.zeros((*shape, channels), "float32")
    labels = np.zeros(shape, "int64")
    values = ops.convert_to_numpy(FUNCTIONS[loss](labels, y_pred))
    assert values.shape == (shape[0],) and (values == 0).all()
    assert float(CLASSES[loss](reduction="sum")(labels, y_pred)) == 0.0
    mean_value = float(CLASSES[loss]()(labels, y_pred))
    assert np.isnan(mean_value) if shape[0] == 0 else mean_value == 0.0


def test_labels_and_ignore_index_beyond_32_bits():
    rng = np.random.default_rng(3)
    y_pred = rng.normal(size=(1, 3, 4, 3)).astype("float32")
    labels = rng.integers(0, 3, (1, 3, 4))
    big = labels.copy()
    big[0, 0] = 2**40
    ignored = float(LovaszSoftmaxLoss(ignore_index=2**40)(big, y_pred))
    assert ignored == pytest.approx(
        reference_loss("lovasz_softmax", np.moveaxis(y_pred, -1, 1), big, "mean", ignore_index=2**40), rel=1e-6
    )
    with pytest.raises(ValueError, match=r"y_true labels must be in \[0, 3\).*1099511627777"):
        LovaszSoftmaxLoss(ignore_index=2**40)(np.where(big == 2**40, 2**40 + 1, big), y_pred)


BAD = [
    ("lovasz_softmax", (2, 4, 3), (2, 5), {}, ValueError, "y_true has shape"),
    ("lovasz_softmax", (2, 4, 3), (2, 4, 3), {}, ValueError, "label map"),
    ("lovasz_softmax", (2, 4, 1), (2, 4), {}, ValueError, "at least 2 channels"),
    ("lovasz_softmax", (2, 3), (2,), {}, ValueError, "y_pred must have shape"),
    ("lovasz_softmax", (2, 4, 3), (2, 4), {"classes": "some"}, ValueError, "classes"),
    ("lovasz_softmax", (2, 4, 3), (2, 4), {"classes": [3]}, ValueError, "classes"),
    ("lovasz_softmax", (2, 4, 3), (2, 4), {"per_image": 1}, TypeError, "per_image"),
    ("lovasz_softmax", (2, 4, 3), (2, 4), {"ignore_index": 1.5}, TypeError, "ignore_index"),
    ("lovasz_hinge", (2, 4, 2), (2, 4), {}, ValueError, "exactly 1 channel"),
]


@pytest.mark.parametrize("loss, pred_shape, true_shape, options, error, text", BAD)
def test_bad_input_names_the_argument(loss, pred_shape, true_shape, options, error, text):
    with pytest.raises(error, match=text):
        FUNCTIONS[loss](np.zeros(true_shape, "int64"), np.zeros(pred_shape, "float32"), **options)


def test_bad_values_name_the_argument():
    y_pred = np.zeros((1, 4, 3), "float32")
    with pytest.raises(ValueError, match=r"y_true labels must be in \[0, 3\).*found \[3\]"):
        lovasz_softmax_loss(np.array([[0, 1, 2, 3]]), y_pred)
    with pytest.raises(ValueError, match="y_true labels must be 0 or 1.*found \\[2\\]"):
        lovasz_hinge_loss(np.array([[0, 1, 2, 0]]), y_pred[..., :1])
    with pytest.raises(ValueError, match="y_pred must be probabilities"):
        lovasz_softmax_loss(np.array([[0, 1, 2, 0]]), y_pred + 2.0, from_logits=False)
    with pytest.raises(TypeError, match="y_pred must have a floating-point dtype"):
        lovasz_softmax_loss(np.array([[0, 1, 2, 0]]), np.zeros((1, 4, 3), "int32"))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(B,\)"):
        LovaszSoftmaxLoss()(np.array([[0, 1, 2, 0]]), y_pred, sample_weight=np.ones((1, 4)))


# --- classes, configs, training -------------------------------------------------------------------


def test_the_class_average_of_a_row_without_classes_is_zero():
    per_class = ops.convert_to_tensor(np.array([[0.5, 0.25], [0.5, 0.25]]))
    selected = ops.convert_to_tensor(np.array([[1.0, 1.0], [0.0, 0.0]]))
    from losses.keras._lovasz import _LovaszOps

    np.testing.assert_allclose(ops.convert_to_numpy(class_average(_LovaszOps, per_class, selected)), [0.375, 0.0])


@pytest.mark.parametrize("loss", sorted(CLASSES))
def test_config_round_trips_every_option_and_deserializes(loss):
    options = {"per_image": False, "ignore_index": 7}
    if loss == "lovasz_softmax":
        options.update(classes=[0, 2], from_logits=False)
    instance = CLASSES[loss](**options, reduction="sum", name="mine", dtype="float64")
    config = instance.get_config()
    assert CLASSES[loss].from_config(config).get_config() == config
    assert config["dtype"] == "float64" and config["name"] == "mine" and config["per_image"] is False
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(instance))
    assert type(again) is CLASSES[loss] and again.get_config() == config
    function = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(FUNCTIONS[loss]))
    assert function is FUNCTIONS[loss]


def test_a_model_trains_with_the_lovasz_softmax_loss_and_reloads(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 0] > 1.5).astype("int32")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 1)])
    loss = LovaszSoftmaxLoss(classes="all")
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss)
    history = model.fit(images, labels, epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.loss) is LovaszSoftmaxLoss and reloaded.loss.get_config() == loss.get_config()
