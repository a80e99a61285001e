"""FocalLoss, DiceCELoss and DiceFocalLoss in Keras 3 (on the active backend): against the float64
reference and the PyTorch frontend, finite differences with a negative control, extreme and
non-finite inputs, Keras' own focal losses, configs and reloading."""

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
from dice_cases import IGNORE
from focal_cases import focal_cases, pair_cases
from losses.keras import DiceCELoss, DiceFocalLoss, FocalLoss, dice_ce_loss, dice_focal_loss, focal_loss
from losses.testing import GradientMismatch, check_gradient, value_and_grad

BACKEND = keras.backend.backend()
PAIRS = {"dice_ce": dice_ce_loss, "dice_focal": dice_focal_loss}


def examples(n):
    """At most n examples, fewer when the profile asks for fewer (the re-runs on other backends)."""
    return settings(max_examples=min(n, settings.default.max_examples))


def channels_last(array):
    return np.moveaxis(np.asarray(array), 1, -1)


def keras_case(logits, target):
    with_channel_axis = np.ndim(target) == np.ndim(logits)
    return channels_last(logits), channels_last(target) if with_channel_axis else np.asarray(target)


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def mean(values):
    """Not ops.mean: on the torch backend it computes float64 input in float32."""
    return ops.sum(values) / values.shape[0]


@examples(12)
@given(focal_cases())
def test_focal_loss_matches_the_reference_in_float64(case):
    logits, target, options, weight = case
    y_pred, y_true = keras_case(logits, target)
    ours = numpy(focal_loss(y_true, y_pred, weight=weight, **options))
    np.testing.assert_allclose(
        ours, reference.focal_image_means(logits, target, weight, **options), rtol=1e-9, atol=1e-12
    )


@examples(12)
@given(pair_cases())
def test_pairs_match_the_reference_in_float64(case):
    kind, logits, target, arguments, weight, reference_kwargs = case
    y_pred, y_true = keras_case(logits, target)
    ours = numpy(PAIRS[kind](y_true, y_pred, weight=weight, **arguments))
    rows = reference.pair_loss(logits, target, "none", weight, **reference_kwargs)
    np.testing.assert_allclose(ours, np.broadcast_to(rows, ours.shape), rtol=1e-9, atol=1e-11)


@examples(8)
@given(pair_cases(max_side=4))
def test_pairs_agree_with_the_pytorch_frontend_in_float32(case):
    import torch

    from losses.torch.functional import dice_ce_loss as torch_dice_ce
    from losses.torch.functional import dice_focal_loss as torch_dice_focal

    kind, logits, target, arguments, weight, _ = case
    y_pred, y_true = keras_case(logits.astype(np.float32), target)
    ours = numpy(PAIRS[kind](y_true, y_pred, weight=None if weight is None else weight.astype(np.float32), **arguments))
    torch_fn = torch_dice_ce if kind == "dice_ce" else torch_dice_focal
    theirs = torch_fn(
        torch.as_tensor(logits, dtype=torch.float32),
        torch.as_tensor(target),
        weight=None if weight is None else torch.as_tensor(weight, dtype=torch.float32),
        reduction="none",
        **arguments,
    ).numpy()
    np.testing.assert_allclose(ours, np.broadcast_to(theirs, ours.shape), rtol=1e-4, atol=1e-5)


def _clear_of_kinks(logits, target, options):
    """Soft binary targets: away from p = t, where the focal factor |p − t|^γ has a kink for γ <= 1."""
    if options["mode"] == "multiclass" or np.ndim(target) != np.ndim(logits):
        return True
    p = 1 / (1 + np.exp(-logits)) if options["from_logits"] else logits
    return bool(np.all(np.abs(p - np.asarray(target, float)) > 1e-3))


@examples(6)
@given(focal_cases(max_side=3, with_weight=False))
def test_focal_gradient_matches_central_differences(case):
    logits, target, options, _ = case
    assume(_clear_of_kinks(logits, target, options))
    y_pred, y_true = keras_case(logits, target)
    check_gradient(lambda x: mean(focal_loss(y_true, x, **options)), y_pred, framework="keras", rtol=1e-4, atol=1e-6)


@examples(6)
@given(pair_cases(max_side=3, with_weight=False))
def test_pair_gradient_matches_central_differences(case):
    kind, logits, target, arguments, _, _ = case
    assume(_clear_of_kinks(logits, target, arguments))
    if arguments.get("soft_labels"):
        p, g, v = reference.dice_probabilities_and_targets(
            logits, target, arguments["mode"], arguments["from_logits"], arguments["ignore_index"]
        )
        assume(bool(np.all(np.abs(p - g)[v > 0] > 1e-3)))
    y_pred, y_true = keras_case(logits, target)
    check_gradient(lambda x: mean(PAIRS[kind](y_true, x, **arguments)), y_pred, framework="keras", rtol=1e-4, atol=1e-6)


def _focal_with_a_frozen_focal_factor(y_true, y_pred):
    """Same value as the focal loss, deliberately wrong gradient: (1 − p_t)^γ held constant."""
    p = ops.softmax(y_pred, axis=-1)
    one_hot = ops.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype)
    p_t = ops.sum(p * one_hot, axis=-1)
    log_p_t = ops.sum(ops.log_softmax(y_pred, axis=-1) * one_hot, axis=-1)
    terms = -ops.stop_gradient((1 - p_t) ** 2) * log_p_t
    return ops.sum(terms) / terms.shape[0] / (terms.shape[1] * terms.shape[2])


def test_negative_control_wrong_backward_fails_the_check():
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(2, 3, 2, 3))
    y_true = rng.integers(0, 3, (2, 3, 2))
    correct = lambda x: mean(focal_loss(y_true, x, gamma=2.0))  # noqa: E731
    wrong = lambda x: _focal_with_a_frozen_focal_factor(y_true, x)  # noqa: E731
    assert value_and_grad(wrong, [y_pred], framework="keras")[0] == pytest.approx(
        value_and_grad(correct, [y_pred], framework="keras")[0], rel=1e-10
    )
    check_gradient(correct, y_pred, framework="keras")
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, y_pred, framework="keras")


def _binary_focal_with_relu_and_abs(y_true, y_pred):
    """The binary focal loss (γ = 2) with ``max(x, 0) + log(1 + e^−|x|)`` written with relu and abs:
    the same value, but at x = 0 the derivatives TensorFlow and JAX take of both (0) miss σ(0) = 1/2."""
    y_true = ops.convert_to_tensor(y_true, y_pred.dtype)
    p = ops.sigmoid(y_pred)
    ce = ops.relu(y_pred) - y_true * y_pred + ops.log1p(ops.exp(-ops.abs(y_pred)))
    terms = (p + y_true * (1.0 - 2.0 * p)) ** 2 * ce
    return ops.sum(terms) / terms.shape[0] / (terms.shape[1] * terms.shape[2])


@pytest.mark.parametrize("gamma", [0.0, 2.0, 1.5])
def test_binary_gradient_at_zero_logits(gamma):
    """Logits exactly 0 (a zero-initialised last layer): the cross-entropy's derivative there is
    σ(0) − t = 1/2 − t, from both sides, whichever branch the formula's select takes."""
    rng = np.random.default_rng(0)
    y_pred = np.zeros((2, 3, 2, 1))
    y_pred[0, 0, 0, 0] = 0.7
    y_true = rng.uniform(0.1, 0.9, y_pred.shape)
    check_gradient(lambda x: mean(focal_loss(y_true, x, mode="binary", gamma=gamma)), y_pred, framework="keras")


def test_binary_gradient_at_zero_negative_control():
    rng = np.random.default_rng(0)
    y_pred = np.zeros((2, 3, 2, 1))
    y_true = rng.uniform(0.1, 0.9, y_pred.shape)
    correct = lambda x: mean(focal_loss(y_true, x, mode="binary", gamma=2.0))  # noqa: E731
    wrong = lambda x: _binary_focal_with_relu_and_abs(y_true, x)  # noqa: E731
    assert value_and_grad(wrong, [y_pred], framework="keras")[0] == pytest.approx(
        value_and_grad(correct, [y_pred], framework="keras")[0], rel=1e-10
    )
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, y_pred, framework="keras")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: FocalLoss(),
        lambda: DiceCELoss(),
        lambda: DiceFocalLoss(gamma=0.5),
        lambda: FocalLoss(mode="multilabel", alpha=0.25),
    ],
)
def test_extreme_logits_give_finite_losses_and_gradients(make, dtype):
    rng = np.random.default_rng(2)
    logits = np.where(rng.uniform(size=(2, 4, 4, 3)) < 0.5, -1e4, 1e4)
    labels = rng.integers(0, 3, (2, 4, 4))
    loss = make()
    target = (
        labels
        if loss.options.__class__.__name__ != "FocalOptions" or loss.options.mode == "multiclass"
        else (rng.uniform(size=(2, 4, 4, 3)) < 0.5).astype("float32")
    )
    x = np.clip(logits, -60000, 60000).astype("float32")  # within float16's range
    value, grad = value_and_grad(lambda v: loss(target, ops.cast(v, dtype)), [x], framework="keras")
    assert np.isfinite(value)
    assert np.isfinite(np.asarray(grad, np.float64)).all()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "make", [lambda: FocalLoss(), lambda: DiceFocalLoss(), lambda: FocalLoss(mode="multilabel", gamma=0.0)]
)
def test_a_non_finite_logit_comes_out(make, value):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    logits[1, 2, 2, 1] = value
    loss = make()
    target = (
        rng.integers(0, 3, (2, 4, 4))
        if getattr(loss.options, "mode", "multiclass") == "multiclass"
        else (rng.uniform(size=(2, 4, 4, 3)) < 0.5).astype("float32")
    )
    per_sample = numpy(loss.loss_per_sample(target, ops.convert_to_tensor(logits), None))
    assert np.isnan(per_sample[1]) and np.isfinite(per_sample[0])
    _, grad = value_and_grad(lambda v: loss(target, v), [logits], framework="keras")
    assert np.isnan(grad[1, 2, 2]).any()
    assert np.isfinite(grad[0]).all()


def test_gamma_zero_is_keras_categorical_crossentropy_and_the_pair_is_the_sum_of_its_terms():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 5, 5))
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(FocalLoss(gamma=0.0)(labels, logits)) == pytest.approx(float(theirs), rel=1e-5)
    from losses.keras import dice_loss

    pair = numpy(dice_focal_loss(labels, logits, lambda_dice=0.5, lambda_focal=2.0, gamma=2.0))
    parts = 0.5 * numpy(dice_loss(labels, logits)) + 2.0 * numpy(focal_loss(labels, logits, gamma=2.0))
    np.testing.assert_allclose(pair, parts, rtol=1e-5)


def test_keras_categorical_focal_crossentropy_is_focal_loss_with_alpha_per_class():
    """keras.losses.CategoricalFocalCrossentropy(alpha=a, gamma=g) sums over the classes with the same
    alpha for each: FocalLoss(gamma=g, alpha=[a] * C) on one-hot targets."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    one_hot = np.eye(3, dtype="float32")[rng.integers(0, 3, (2, 4, 5))]
    theirs = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=True)(one_hot, logits)
    ours = FocalLoss(gamma=2.0, alpha=[0.25] * 3)(one_hot, logits)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_keras_binary_focal_crossentropy_with_class_balancing_is_the_multilabel_focal_loss():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 4, 5, 2)).astype("float32")
    target = (rng.uniform(size=(2, 4, 5, 2)) < 0.3).astype("float32")
    theirs = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.25, gamma=2.0, from_logits=True)(
        target, logits
    )
    ours = FocalLoss(mode="multilabel", alpha=0.25, gamma=2.0)(target, logits)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_a_per_pixel_sample_weight_is_a_weight_map():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 4, 6, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 4, 6))
    weight = np.ones((2, 4, 6), "float32")
    weight[:, :, -2:] = 0
    ignored = labels.copy()
    ignored[:, :, -2:] = IGNORE
    for make in (FocalLoss, DiceCELoss, DiceFocalLoss):
        assert float(make()(labels, logits, sample_weight=weight)) == pytest.approx(
            float(make(ignore_index=IGNORE)(ignored, logits)), rel=1e-5
        )


def test_an_image_without_a_valid_position_adds_zero():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(2, 3, 3, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 3, 3))
    labels[0] = IGNORE
    for fn in (focal_loss, dice_ce_loss):
        values = numpy(fn(labels, logits, ignore_index=IGNORE))
        assert values[0] == 0.0 and values[1] > 0


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(gamma=-1.0), ValueError, "gamma"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(alpha=0.25), ValueError, "alpha"),
        (dict(mode="binary", alpha=[0.5]), ValueError, "alpha"),
        (dict(mode="multilabel", alpha=1.5), ValueError, "alpha"),
    ],
)
def test_bad_focal_options_name_the_argument(kwargs, error, text):
    with pytest.raises(error, match=text):
        FocalLoss(**kwargs)


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda: DiceCELoss(lambda_dice=0.0, lambda_ce=0.0), ValueError, "lambda_dice and lambda_ce"),
        (lambda: DiceFocalLoss(lambda_focal=-1.0), ValueError, "lambda_focal"),
        (lambda: DiceCELoss(overlap="cosine"), ValueError, "overlap"),
        (lambda: DiceCELoss(overlap="tversky", squared=True), TypeError, "squared"),
        (lambda: DiceFocalLoss(gamma=-0.5), ValueError, "gamma"),
    ],
)
def test_bad_pair_options_name_the_argument(make, error, text):
    with pytest.raises(error, match=text):
        make()


def test_an_unknown_option_of_a_pair_function_is_an_error():
    with pytest.raises(TypeError, match="smoth_nr"):
        dice_ce_loss(np.zeros((1, 2, 2), "int64"), np.zeros((1, 2, 2, 2), "float32"), smoth_nr=1.0)


def test_a_label_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="labels"):
        FocalLoss()(np.array([[[0, 5]]]), np.zeros((1, 1, 2, 3), "float32"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FocalLoss(
            mode="multilabel",
            gamma=1.5,
            alpha=0.3,
            label_smoothing=0.1,
            class_weights=[1.0, 2.0],
            ignore_index=-1,
            reduction="sum",
            name="mine",
            dtype="float64",
        ),
        lambda: DiceCELoss(
            lambda_dice=0.5,
            lambda_ce=2.0,
            overlap="tversky",
            overlap_options={"alpha": 0.3, "beta": 0.7},
            label_smoothing=0.1,
            per_image=False,
            classes=[1, 2],
            ignore_index=255,
        ),
        lambda: DiceFocalLoss(
            gamma=1.0,
            alpha=[0.2, 0.3, 0.5],
            overlap="focal_tversky",
            overlap_options={"gamma": 1.5},
            class_weights=[1.0, 1.0, 3.0],
        ),
    ],
)
def test_config_round_trips_every_option(make):
    loss = make()
    config = loss.get_config()
    again = type(loss).from_config(config)
    assert again.get_config() == config
    assert again.options == loss.options
    assert json.loads(json.dumps(config)) == config


def test_a_model_with_dice_focal_trains_saves_and_reloads_without_custom_objects(tmp_path):
    rng = np.random.default_rng(9)
    images = rng.normal(size=(8, 16, 16, 1)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 0] > 1.5).astype("int32")
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(3, 1)(keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    loss = DiceFocalLoss(gamma=2.0, overlap="jaccard", class_weights=[0.5, 1.0, 1.0])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(images, labels, epochs=6, batch_size=4, verbose=0)
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
    assert reloaded["class"] == "DiceFocalLoss"
    assert reloaded["config"] == json.loads(json.dumps(loss.get_config()))


@pytest.mark.parametrize("empty", ["ignored", "zero weight"])
def test_a_nan_in_a_row_without_valid_positions_comes_out(empty):
    """A NaN logit at an ignored (or zero-weight) position makes its image's loss NaN, as in the
    overlap losses, also where the image has no valid position."""
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(2, 2, 2, 3)).astype("float32")
    logits[0, 0, 0, 1] = np.nan
    labels = rng.integers(0, 3, (2, 2, 2))
    weight = None
    if empty == "ignored":
        labels[0] = IGNORE
    else:
        weight = np.ones((2, 2, 2), "float32")
        weight[0] = 0.0
    values = numpy(focal_loss(labels, logits, weight=weight, ignore_index=IGNORE))
    assert np.isnan(values[0]) and np.isfinite(values[1])


@pytest.mark.parametrize("make", [FocalLoss, DiceCELoss, DiceFocalLoss])
def test_a_nan_comes_out_of_the_weighted_mean_when_every_sample_weight_is_zero(make):
    """reduction="mean_with_sample_weight" divides by the sum of the weights, 0 when every weight
    is 0 (Keras' convention for finite losses); a NaN sample then makes the loss NaN, as with any
    other reduction, rather than 0 beside a NaN gradient."""
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(2, 3, 3, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 3, 3))
    loss = make(reduction="mean_with_sample_weight")
    zero = np.zeros(2, "float32")
    assert float(numpy(loss(labels, logits, sample_weight=zero))) == 0.0
    logits[1, 0, 0, 0] = np.nan
    assert np.isnan(float(numpy(loss(labels, logits, sample_weight=zero))))


@pytest.mark.skipif(BACKEND == "jax", reason="JAX computes float64 as float32 unless x64 is enabled")
def test_the_weighted_mean_of_a_float64_loss_is_float64():
    """The torch backend's divide_no_nan returned float32 for float64 operands."""
    rng = np.random.default_rng(13)
    logits, labels = rng.normal(size=(2, 3, 3, 3)), rng.integers(0, 3, (2, 3, 3))
    loss = FocalLoss(reduction="mean_with_sample_weight", dtype="float64")
    value = loss(labels, logits, sample_weight=np.array([0.5, 1.0]))
    assert keras.backend.standardize_dtype(value.dtype) == "float64"
    per_sample = numpy(FocalLoss(reduction=None, dtype="float64")(labels, logits))
    assert float(numpy(value)) == pytest.approx((0.5 * per_sample[0] + per_sample[1]) / 1.5, rel=1e-14)
