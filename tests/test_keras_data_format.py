"""``data_format`` in the Keras frontend (on the active backend): a channels-first input ``(B, C, *spatial)``
gives every loss with a class axis the value and the gradient (transposed) of the same input channels
last, with label maps in both forms, per-class targets, ignore_index and weight maps; None follows
``keras.config.image_data_format()``; the value survives configs and ``.keras`` files; errors speak in
the user's layout. A negative control shows that reading channels-first tensors channels last
changes the loss without an error, which is what these tests guard against."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pytest
from keras import ops

from losses.keras import (
    DiceCELoss,
    DiceFocalLoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    LovaszHingeLoss,
    LovaszSoftmaxLoss,
    TverskyLoss,
    dice_ce_loss,
    dice_focal_loss,
    dice_loss,
    focal_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
    tversky_loss,
)
from losses.testing import value_and_grad

BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function needs the TensorFlow backend")

IGNORE = 255
BATCH, CLASSES, SPATIAL = 2, 3, (3, 4)  # H != W: a transposition of the spatial axes would show


@dataclass(frozen=True)
class Loss:
    """A loss with a class axis: its class, its function, the options both take, the number of
    channels it reads and the target kinds it accepts."""

    cls: type
    function: Callable[..., Any]
    options: dict[str, Any] = field(default_factory=dict)
    channels: int = CLASSES
    per_class_targets: bool = True
    weight_map: bool = True


LOSSES = {
    "dice": Loss(DiceLoss, dice_loss),
    "dice_multilabel": Loss(DiceLoss, dice_loss, {"mode": "multilabel"}),
    "jaccard": Loss(JaccardLoss, jaccard_loss),
    "tversky": Loss(TverskyLoss, tversky_loss, {"alpha": 0.3, "beta": 0.7}),
    "focal_tversky": Loss(FocalTverskyLoss, focal_tversky_loss),
    "generalized_dice": Loss(GeneralizedDiceLoss, generalized_dice_loss),
    "focal": Loss(FocalLoss, focal_loss, {"alpha": [0.2, 0.3, 0.5]}),
    "focal_binary": Loss(FocalLoss, focal_loss, {"mode": "binary"}, channels=1),
    "dice_ce": Loss(DiceCELoss, dice_ce_loss, {"class_weights": [1.0, 2.0, 0.5]}),
    "dice_focal": Loss(DiceFocalLoss, dice_focal_loss, {"overlap": "tversky"}),
    "lovasz_softmax": Loss(LovaszSoftmaxLoss, lovasz_softmax_loss, per_class_targets=False, weight_map=False),
    "lovasz_hinge": Loss(LovaszHingeLoss, lovasz_hinge_loss, channels=1, per_class_targets=False, weight_map=False),
}
MULTILABEL = {"dice_multilabel"}  # targets of y_pred's shape only

# How y_true (and the weight) come: a label map without and with a class axis of size 1, per-class
# targets of y_pred's shape, a label map with ignored positions, and a weight map without and with
# a class axis of size 1.
TARGETS = ("labels", "labels_with_axis", "per_class", "ignore_index", "weight_map", "weight_map_with_axis")


def cases() -> list[Any]:
    found = []
    for name, loss in LOSSES.items():
        for target in TARGETS:
            if name in MULTILABEL and target != "per_class":
                continue
            if target == "per_class" and not loss.per_class_targets:
                continue
            if target.startswith("weight_map") and not loss.weight_map:
                continue
            found.append(pytest.param(name, target, id=f"{name}-{target}"))
    return found


def channels_last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1)


def inputs(name: str, target: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(options, channels_first, channels_last)``: the loss's options for ``target`` and the same
    inputs in both layouts, ``{"y_true", "y_pred", "weight"}`` (weight None where there is none)."""
    loss = LOSSES[name]
    rng = np.random.default_rng(seed)
    y_pred = rng.normal(size=(BATCH, loss.channels, *SPATIAL)).astype("float32")
    options = dict(loss.options)
    upper = 2 if loss.channels == 1 else loss.channels
    labels = rng.integers(0, upper, size=(BATCH, *SPATIAL))
    weight = None
    if target == "per_class":
        if name in MULTILABEL:
            y_true = rng.integers(0, 2, size=y_pred.shape).astype("float32")
        elif loss.channels == 1:  # binary: the probability of the foreground
            y_true = labels[:, None].astype("float32")
        else:
            y_true = np.moveaxis(np.eye(loss.channels, dtype="float32")[labels], -1, 1)
    elif target == "labels_with_axis":
        y_true = labels[:, None]
    elif target == "ignore_index":
        labels[:, 0, :2] = IGNORE
        y_true = labels
        options["ignore_index"] = IGNORE
    else:
        y_true = labels
    if target.startswith("weight_map"):
        weight = rng.uniform(0.0, 2.0, size=(BATCH, *SPATIAL)).astype("float32")
        weight[0, 1, 1] = 0.0
        if target == "weight_map_with_axis":
            weight = weight[:, None]
    first = {"y_true": y_true, "y_pred": y_pred, "weight": weight}
    last = {
        "y_true": channels_last(y_true) if y_true.ndim == y_pred.ndim else y_true,
        "y_pred": channels_last(y_pred),
        "weight": None if weight is None else (channels_last(weight) if weight.ndim == y_pred.ndim else weight),
    }
    return options, first, last


def target_with_class_axis(name: str) -> str:
    """A target kind that has a class axis, so that reading it in the wrong layout fails."""
    return "per_class" if name in MULTILABEL else "labels_with_axis"


def loss_fn(name: str, api: str, data_format: str | None, options: dict[str, Any]) -> Callable[..., Any]:
    """``f(y_true, y_pred, weight)``, a scalar: the class with a weight map as ``sample_weight``, or
    the mean of the function's per-sample losses with ``weight``."""
    loss = LOSSES[name]
    format_option = {} if data_format is None else {"data_format": data_format}
    if api == "class":
        instance = loss.cls(**options, **format_option)
        return lambda y_true, y_pred, weight: instance(y_true, y_pred, sample_weight=weight)

    def function(y_true: Any, y_pred: Any, weight: Any) -> Any:
        weight_option = {} if weight is None else {"weight": weight}
        values = loss.function(y_true, y_pred, **options, **format_option, **weight_option)
        return ops.sum(values) / values.shape[0]

    return function


def value_and_gradient(fn: Callable[..., Any], case: dict[str, Any]) -> tuple[float, np.ndarray]:
    weight = case["weight"]
    return value_and_grad(
        lambda y_pred: fn(case["y_true"], y_pred, None if weight is None else ops.convert_to_tensor(weight)),
        [case["y_pred"]],
        framework="keras",
    )


def assert_same_loss(first: tuple[float, np.ndarray], last: tuple[float, np.ndarray]) -> None:
    """The channels-first value and gradient are the channels-last ones (the gradient transposed)."""
    assert first[0] == pytest.approx(last[0], rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(channels_last(first[1]), last[1], rtol=1e-5, atol=1e-7)


@pytest.fixture
def channels_first_by_default():
    """Keras' global setting channels first for the test, restored after it whatever happens."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


# ------------------------------------------------------------------------------------------------
# The same loss and gradient in both layouts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["class", "function"])
@pytest.mark.parametrize("name, target", cases())
def test_channels_first_gives_the_channels_last_loss_and_gradient(name, target, api):
    options, first, last = inputs(name, target)
    expected = value_and_gradient(loss_fn(name, api, "channels_last", options), last)
    got = value_and_gradient(loss_fn(name, api, "channels_first", options), first)
    assert np.isfinite(expected[0]) and np.any(expected[1] != 0)
    assert_same_loss(got, expected)


@tensorflow_only
@pytest.mark.parametrize("name, target", cases())
def test_channels_first_under_tf_function_gives_the_channels_last_loss_and_gradient(name, target):
    import tensorflow as tf

    options, first, last = inputs(name, target, seed=1)

    def traced(data_format: str, case: dict[str, Any]) -> tuple[float, np.ndarray]:
        fn = loss_fn(name, "class", data_format, options)
        weight = None if case["weight"] is None else tf.constant(case["weight"])

        @tf.function
        def step(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                tape.watch(y_pred)
                value = fn(y_true, y_pred, weight)
            return value, tape.gradient(value, y_pred)

        value, gradient = step(tf.constant(case["y_true"]), tf.constant(case["y_pred"]))
        return float(value), gradient.numpy()

    assert_same_loss(traced("channels_first", first), traced("channels_last", last))


@tensorflow_only
@pytest.mark.parametrize("name", ["dice", "dice_ce", "lovasz_softmax"])
def test_channels_first_under_tf_function_with_unknown_sizes(name):
    """An input signature of unknown sizes but the class axes (a target of unknown size there could
    be per-class targets): the weight map's axis of size 1 is known only when the function runs."""
    import tensorflow as tf

    target = "labels_with_axis" if name == "lovasz_softmax" else "weight_map_with_axis"
    options, first, last = inputs(name, target, seed=2)
    if name != "lovasz_softmax":
        first["y_true"] = first["y_true"][:, None]
        last["y_true"] = last["y_true"][..., None]
    loss = LOSSES[name].cls(**options, data_format="channels_first")
    unknown = [None] * 4

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 1, None, None], "int64"),
            tf.TensorSpec([None, CLASSES, None, None]),
            tf.TensorSpec(unknown),
        ]
    )
    def step(y_true: Any, y_pred: Any, weight: Any) -> Any:
        return loss(y_true, y_pred, sample_weight=None if name == "lovasz_softmax" else weight)

    weight = first["weight"] if first["weight"] is not None else np.ones((BATCH, 1, *SPATIAL), "float32")
    got = step(first["y_true"].astype("int64"), first["y_pred"], weight)
    expected = LOSSES[name].cls(**options, data_format="channels_last")(
        last["y_true"], last["y_pred"], sample_weight=last["weight"]
    )
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_a_per_image_sample_weight_is_unchanged_channels_first():
    options, first, last = inputs("dice", "labels")
    per_image = np.array([1.0, 0.25], "float32")
    got = DiceLoss(data_format="channels_first")(first["y_true"], first["y_pred"], sample_weight=per_image)
    expected = DiceLoss(data_format="channels_last")(last["y_true"], last["y_pred"], sample_weight=per_image)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_three_spatial_axes_channels_first():
    rng = np.random.default_rng(3)
    y_pred = rng.normal(size=(2, 3, 2, 3, 4)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 2, 3, 4))
    for loss in (DiceCELoss, LovaszSoftmaxLoss):
        got = loss(data_format="channels_first")(labels[:, None], y_pred)
        assert float(got) == pytest.approx(float(loss(data_format="channels_last")(labels, channels_last(y_pred))))


# ------------------------------------------------------------------------------------------------
# Negative control: the failure data_format exists to prevent is silent
# ------------------------------------------------------------------------------------------------


SILENT = [name for name, loss in LOSSES.items() if loss.per_class_targets and loss.channels > 1]


@pytest.mark.parametrize("name", SILENT)
def test_a_channels_first_tensor_read_channels_last_gives_another_loss_without_an_error(name):
    """Square images with as many columns as classes, so that a (B, C, H, W) tensor and its one-hot
    target read channels last pass every shape check: the loss is computed over the wrong axis and
    differs from the right one by more than the tolerance of the tests above, which would catch it.
    (A label map, or a binary loss's single channel, gives a shape error instead.)"""
    loss = LOSSES[name]
    rng = np.random.default_rng(5)
    y_pred = rng.normal(size=(2, CLASSES, CLASSES, CLASSES)).astype("float32")
    if name in MULTILABEL:
        y_true = rng.integers(0, 2, size=y_pred.shape).astype("float32")
    else:
        labels = rng.integers(0, CLASSES, size=(2, CLASSES, CLASSES))
        y_true = np.moveaxis(np.eye(CLASSES, dtype="float32")[labels], -1, 1)
    case = {"y_true": y_true, "y_pred": y_pred, "weight": None}
    right = value_and_gradient(loss_fn(name, "class", "channels_first", loss.options), case)
    wrong = value_and_gradient(loss_fn(name, "class", "channels_last", loss.options), case)
    assert np.isfinite(wrong[0])
    with pytest.raises(AssertionError):
        assert_same_loss(wrong, right)


def test_binary_and_label_map_inputs_read_in_the_wrong_layout_are_refused():
    y_pred = np.zeros((2, 1, 4, 5), "float32")
    with pytest.raises(ValueError, match="exactly 1 channel"):
        dice_loss(np.zeros((2, 4, 5), "int32"), y_pred, mode="binary", data_format="channels_last")
    with pytest.raises(ValueError, match=r"label map of shape \(2, 3, 4\) or \(2, 3, 4, 1\)"):
        lovasz_softmax_loss(
            np.zeros((2, 4, 5), "int32"), np.zeros((2, 3, 4, 5), "float32"), data_format="channels_last"
        )


# ------------------------------------------------------------------------------------------------
# None: Keras' global setting
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_class_built_under_channels_first_reads_channels_first(name, channels_first_by_default):
    options, first, last = inputs(name, target_with_class_axis(name))
    loss = LOSSES[name].cls(**options)
    assert loss.data_format == "channels_first"
    expected = LOSSES[name].cls(**options, data_format="channels_last")(last["y_true"], last["y_pred"])
    assert float(loss(first["y_true"], first["y_pred"])) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_function_reads_the_setting_at_each_call(name, channels_first_by_default):
    options, first, last = inputs(name, target_with_class_axis(name))
    function = LOSSES[name].function
    expected = ops.convert_to_numpy(function(last["y_true"], last["y_pred"], **options, data_format="channels_last"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(function(first["y_true"], first["y_pred"], **options)), expected, rtol=1e-5
    )
    keras.config.set_image_data_format("channels_last")
    np.testing.assert_allclose(
        ops.convert_to_numpy(function(last["y_true"], last["y_pred"], **options)), expected, rtol=1e-5
    )


def test_the_setting_is_read_when_the_loss_is_built(channels_first_by_default):
    built_channels_first = DiceLoss()
    keras.config.set_image_data_format("channels_last")
    assert built_channels_first.data_format == "channels_first"
    assert DiceLoss().data_format == "channels_last"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_an_explicit_data_format_overrides_the_setting(name, channels_first_by_default):
    options, _, last = inputs(name, target_with_class_axis(name))
    loss = LOSSES[name].cls(**options, data_format="channels_last")
    assert loss.data_format == "channels_last"
    value = float(loss(last["y_true"], last["y_pred"]))
    function = LOSSES[name].function(last["y_true"], last["y_pred"], **options, data_format="channels_last")
    assert float(ops.sum(function)) / BATCH == pytest.approx(value, rel=1e-5)


def test_the_global_setting_is_channels_last_outside_the_fixture():
    """The fixture restored it (a leak would change every later Keras test)."""
    assert keras.config.image_data_format() == "channels_last"


# ------------------------------------------------------------------------------------------------
# Configs and .keras files
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_config_keeps_data_format(name, channels_first_by_default):
    loss = LOSSES[name].cls(**LOSSES[name].options)
    config = loss.get_config()
    assert config["data_format"] == "channels_first"
    keras.config.set_image_data_format("channels_last")
    again = type(loss).from_config(config)
    assert again.data_format == "channels_first" and again.get_config() == config
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == config


def test_a_channels_first_model_trains_saves_and_reloads_with_its_data_format(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.normal(size=(8, 1, 6, 6)).astype("float32")
    labels = (images[:, 0] > 0.5).astype("int32") + (images[:, 0] > 1.5).astype("int32")
    inputs_ = keras.Input((1, 6, 6))
    outputs = keras.layers.Conv2D(3, 1, data_format="channels_first")(inputs_)
    model = keras.Model(inputs_, outputs)
    loss = DiceCELoss(data_format="channels_first")
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=loss)
    history = model.fit(images, labels, sample_weight=np.ones((8, 6, 6), "float32"), epochs=4, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.loss) is DiceCELoss and reloaded.loss.get_config() == loss.get_config()
    assert reloaded.loss.data_format == "channels_first"
    predictions = model.predict(images, verbose=0)
    assert float(reloaded.loss(labels, predictions)) == pytest.approx(float(loss(labels, predictions)), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["NCHW", "channels-first", "", 1, True])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_bad_data_format_is_a_clear_error(name, bad):
    message = r"data_format must be 'channels_last' .*'channels_first' .* or None .*; got "
    with pytest.raises(ValueError, match=message + re.escape(repr(bad))):
        LOSSES[name].cls(**LOSSES[name].options, data_format=bad)
    options, first, _ = inputs(name, target_with_class_axis(name))
    with pytest.raises(ValueError, match=message):
        LOSSES[name].function(first["y_true"], first["y_pred"], **options, data_format=bad)


def test_shape_errors_name_the_channels_first_shapes():
    y_pred = np.zeros((2, 3, 4, 5), "float32")
    loss = DiceLoss(data_format="channels_first")
    expected = r"label map of shape \(2, 4, 5\) or \(2, 1, 4, 5\)"
    with pytest.raises(ValueError, match=r"y_pred has shape \(2, 3, 4, 5\) \(data_format='channels_first'\)"):
        loss(np.zeros((2, 4, 4), "int32"), y_pred)
    with pytest.raises(ValueError, match=expected):
        loss(np.zeros((2, 5, 4), "int32"), y_pred)
    with pytest.raises(ValueError, match=r"expected a weight per position, \(2, 4, 5\) or \(2, 1, 4, 5\)"):
        loss(np.zeros((2, 4, 5), "int32"), y_pred, sample_weight=np.ones((2, 4, 5, 1), "float32"))
    with pytest.raises(ValueError, match=r"expected y_true of shape \(2, 3, 4, 5\) \(y_pred's shape\)"):
        dice_loss(np.zeros((2, 4, 5, 3)), y_pred, mode="multilabel", data_format="channels_first")
    with pytest.raises(ValueError, match=expected):
        LovaszSoftmaxLoss(data_format="channels_first")(np.zeros((2, 4, 5, 1), "int32"), y_pred)
    with pytest.raises(ValueError, match=r"y_pred must have shape \(B, C, \*spatial\) with at least one spatial"):
        focal_loss(np.zeros((2,), "int32"), np.zeros((2, 3), "float32"), data_format="channels_first")
    with pytest.raises(ValueError, match="exactly 1 channel"):  # channels first, C is the second axis
        LovaszHingeLoss(data_format="channels_first")(np.zeros((2, 4, 1), "int32"), np.zeros((2, 4, 1), "float32"))
