"""The overlap family in Keras 3 (on the active backend): every member against the float64 reference,
finite differences with a negative control, per-pixel sample weights, configs and reloading."""

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
from dice_cases import IGNORE, overlap_cases
from losses._overlap import OverlapOptions, overlap_loss
from losses.keras import (
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    TverskyLoss,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    tversky_loss,
)
from losses.keras._common import KerasOps
from losses.keras._inputs import prepare_inputs
from losses.keras._overlap import _overlap_stats_keras
from losses.testing import GradientMismatch, check_gradient, value_and_grad

BACKEND = keras.backend.backend()
FUNCTIONS = {
    "dice": dice_loss,
    "jaccard": jaccard_loss,
    "tversky": tversky_loss,
    "focal_tversky": focal_tversky_loss,
    "generalized_dice": generalized_dice_loss,
}
CLASSES = {
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "generalized_dice": GeneralizedDiceLoss,
}


def channels_last(array):
    return np.moveaxis(np.asarray(array), 1, -1)


def keras_case(logits, target):
    with_channel_axis = np.ndim(target) == np.ndim(logits)
    return channels_last(logits), channels_last(target) if with_channel_axis else np.asarray(target)


def mean(values):
    """Not ops.mean: on the torch backend it computes float64 input in float32."""
    return ops.sum(values) / values.shape[0]


@settings(max_examples=12)
@given(overlap_cases())
def test_every_member_matches_the_reference_in_float64(case):
    member, logits, target, options, weight = case
    y_pred, y_true = keras_case(logits, target)
    ours = np.asarray(ops.convert_to_numpy(FUNCTIONS[member](y_true, y_pred, weight=weight, **options)))
    rows = reference.OVERLAP_LOSSES[member](logits, target, "none", weight, **options)
    np.testing.assert_allclose(ours, np.broadcast_to(rows, ours.shape), rtol=1e-9, atol=1e-11)


@settings(max_examples=6)
@given(overlap_cases(max_side=3, with_weight=False))
def test_every_member_gradient_matches_central_differences(case):
    member, logits, target, options, _ = case
    if options["soft_labels"]:
        p, g, v = reference.dice_probabilities_and_targets(
            logits, target, options["mode"], options["from_logits"], options["ignore_index"]
        )
        assume(bool(np.all(np.abs(p - g)[v > 0] > 1e-3)))  # |p − g| has a kink at p = g
    y_pred, y_true = keras_case(logits, target)
    check_gradient(
        lambda x: mean(FUNCTIONS[member](y_true, x, **options)), y_pred, framework="keras", rtol=1e-4, atol=1e-6
    )


def _tversky_with_frozen_false_positives(y_true, y_pred):
    """Same value as tversky_loss, deliberately wrong gradient: Σp (and so FP) held constant."""
    options = OverlapOptions.create("tversky", alpha=0.7, beta=0.3)
    stats = _overlap_stats_keras(prepare_inputs(y_true, y_pred, options), options)
    frozen = ops.concatenate([stats[..., :1], ops.stop_gradient(stats[..., 1:2]), stats[..., 2:]], axis=-1)
    weights = ops.ones((stats.shape[1],), dtype=stats.dtype)
    return mean(overlap_loss(KerasOps, frozen, weights, options.form))


def test_negative_control_wrong_backward_fails_the_check():
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(2, 3, 2, 3))
    y_true = rng.integers(0, 3, (2, 3, 2))
    correct = lambda x: mean(tversky_loss(y_true, x, alpha=0.7, beta=0.3))  # noqa: E731
    wrong = lambda x: _tversky_with_frozen_false_positives(y_true, x)  # noqa: E731
    assert value_and_grad(wrong, [y_pred], framework="keras")[0] == pytest.approx(
        value_and_grad(correct, [y_pred], framework="keras")[0], rel=1e-12
    )
    check_gradient(correct, y_pred, framework="keras")
    with pytest.raises(GradientMismatch):
        check_gradient(wrong, y_pred, framework="keras")


@pytest.mark.parametrize("member", sorted(FUNCTIONS))
def test_the_functions_give_one_loss_per_sample_and_the_batch_loss_in_each_without_per_image(member):
    """Documented: shape (B,); with per_image=False the batch loss in every entry. A batch of 3
    with spatial sides 4 and 5 and 2 classes, so that no other axis has the batch's length."""
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(3, 2, 4, 5)), rng.integers(0, 2, size=(3, 4, 5))
    y_pred, y_true = keras_case(logits, labels)
    per_image = np.asarray(ops.convert_to_numpy(FUNCTIONS[member](y_true, y_pred)))
    batch = np.asarray(ops.convert_to_numpy(FUNCTIONS[member](y_true, y_pred, per_image=False)))
    assert per_image.shape == (3,) and batch.shape == (3,)
    expected = reference.OVERLAP_LOSSES[member](logits, labels, "none", None, per_image=False)
    np.testing.assert_allclose(batch, np.full(3, np.asarray(expected).item()), rtol=1e-9)
    rows = reference.OVERLAP_LOSSES[member](logits, labels, "none", None)
    np.testing.assert_allclose(per_image, rows, rtol=1e-9)


@pytest.mark.parametrize("spatial", [(4, 6), (6,)], ids=["2d", "1d"])
@pytest.mark.parametrize("member", sorted(CLASSES))
def test_a_per_pixel_sample_weight_is_a_weight_map(member, spatial):
    """In the loss class, sample_weight (B, *spatial) weighs every position of every sum (zeros are
    ignore_index); (B,) and (B, 1) still weigh the images. With one spatial axis the map is (B, L),
    of the rank of a weight per image (B, 1)."""
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(2, *spatial, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, *spatial))
    weight = np.ones((2, *spatial), "float32")
    weight[..., -2:] = 0
    ignored = labels.copy()
    ignored[..., -2:] = IGNORE
    loss = CLASSES[member]()
    assert float(loss(labels, y_pred, sample_weight=weight)) == pytest.approx(
        float(CLASSES[member](ignore_index=IGNORE)(ignored, y_pred)), rel=1e-5
    )
    assert float(loss(labels, y_pred, sample_weight=weight[..., None])) == pytest.approx(
        float(loss(labels, y_pred, sample_weight=weight)), rel=1e-6
    )
    per_image = np.asarray(ops.convert_to_numpy(FUNCTIONS[member](labels, y_pred)))
    for per_image_weight in (np.array([1.0, 0.0]), np.array([[1.0], [0.0]])):  # (B,) and (B, 1)
        assert float(loss(labels, y_pred, sample_weight=per_image_weight)) == pytest.approx(per_image[0] / 2, rel=1e-5)


@pytest.mark.parametrize("member", sorted(CLASSES))
def test_config_round_trips_every_option(member):
    loss = CLASSES[member](mode="multilabel", class_weights=[1.0, 2.0], reduction="sum", name="mine", dtype="float64")
    config = loss.get_config()
    again = CLASSES[member].from_config(config)
    assert again.get_config() == config
    assert config["dtype"] == "float64" and config["name"] == "mine"
    assert set(config) >= set(OverlapOptions.create(CLASSES[member].loss_name).to_dict())


def test_a_model_with_tversky_trains_saves_and_reloads_without_custom_objects(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(8, 16, 16, 1)).astype("float32")
    labels = (images[..., 0] > 0.5).astype("int32") + (images[..., 0] > 1.5).astype("int32")
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(3, 1)(keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs))
    model = keras.Model(inputs, outputs)
    loss = TverskyLoss(alpha=0.3, beta=0.7, empty_target="penalize")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(
        images, labels, sample_weight=np.ones((8, 16, 16), "float32"), epochs=6, batch_size=4, verbose=0
    )
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
    assert reloaded["class"] == "TverskyLoss"
    assert reloaded["config"] == json.loads(json.dumps(loss.get_config()))


def test_keras_tversky_weighs_false_negatives_with_alpha():
    """keras.losses.Tversky(alpha=a, beta=b) is TverskyLoss(alpha=b, beta=a) here: its alpha weighs
    the false negatives. Checked on one image and class of probabilities, without smoothing."""
    rng = np.random.default_rng(5)
    probs = rng.uniform(0.05, 0.95, size=(1, 6, 7, 1)).astype("float32")
    target = (rng.uniform(size=(1, 6, 7, 1)) < 0.4).astype("float32")
    theirs = float(keras.losses.Tversky(alpha=0.8, beta=0.2)(target, probs))
    ours = float(
        TverskyLoss(
            mode="binary", from_logits=False, alpha=0.2, beta=0.8, smooth_nr=0.0, smooth_dr=keras.backend.epsilon()
        )(target, probs)
    )
    swapped = float(
        TverskyLoss(
            mode="binary", from_logits=False, alpha=0.8, beta=0.2, smooth_nr=0.0, smooth_dr=keras.backend.epsilon()
        )(target, probs)
    )
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert abs(swapped - theirs) > 1e-3


@pytest.mark.parametrize("argument", ["y_true", "y_pred"])
def test_a_non_array_argument_of_the_function_is_a_type_error_naming_it(argument):
    """The loss classes convert what Keras gives them; the functions take tensors or arrays."""
    values = dict(y_true=np.zeros((1, 4, 4, 1), "float32"), y_pred=np.zeros((1, 4, 4, 1), "float32"))
    values[argument] = values[argument].tolist()
    with pytest.raises(TypeError, match=f"^{argument} must be a tensor or an array; got list$"):
        dice_loss(values["y_true"], values["y_pred"], mode="binary")


def test_generalized_dice_with_large_smoothing_is_finite():
    """Target sums of 12 pixels scaled a smoothing of 1e37 by 144, beyond float32's range: inf / inf,
    a NaN loss and gradient. The smoothing scale is now at most 1 (losses._overlap)."""
    logits = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    labels = (np.arange(36) % 3).reshape(1, 6, 6).repeat(2, 0)  # 12 pixels of each class
    options = {"smooth_nr": 1e37, "smooth_dr": 1e37}
    value, grad = value_and_grad(
        lambda p: ops.sum(generalized_dice_loss(ops.convert_to_tensor(labels), p, **options)),
        [logits],
        framework="keras",
    )
    want = reference.generalized_dice_loss(np.moveaxis(logits, -1, 1).astype(np.float64), labels, "sum", **options)
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)
    assert np.isfinite(grad).all()
