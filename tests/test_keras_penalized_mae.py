"""PenalizedMAELoss / penalized_mae in Keras 3 (any backend): values, hand-written gradients, errors."""

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from keras import ops

import reference
from penalized_mae_cases import check_float32_range, float32_range_cases, penalized_mae_cases
from losses.keras import PenalizedMAELoss, penalized_mae
from losses.testing import GradientMismatch, check_gradient, value_and_grad

BACKEND = keras.backend.backend()
KERAS_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
only_tensorflow = pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow-specific")


@pytest.fixture(autouse=True, scope="module")
def float64_on_jax():
    """Gradient checks run in float64, which JAX disables by default: enable it for this module only."""
    if BACKEND != "jax":
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


# A few shapes of rank 1 to 3: on JAX every new shape costs a compilation of each op.
SHAPES = st.sampled_from([(1,), (4,), (2, 3), (3, 1, 2)])


def cases(min_delta=0.05):
    return penalized_mae_cases(SHAPES, min_delta)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def expected_reduced(per_sample, sample_weight, reduction):
    weighted = per_sample * sample_weight
    if reduction in (None, "none"):
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean_with_sample_weight":
        return weighted.sum() / sample_weight.sum()
    return weighted.sum() / weighted.size


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@given(cases(min_delta=0.0))
def test_function_value_matches_reference(case):
    y_pred, y_true, delta, penalty = case
    loss = penalized_mae(y_true, y_pred, delta, penalty)
    expected = reference.penalized_mae(y_pred, y_true, delta, penalty, "per_sample")
    assert tuple(loss.shape) == expected.shape
    np.testing.assert_allclose(numpy(loss), expected, rtol=1e-12, atol=1e-12)


# Keras' own ops.divide_no_nan returns float32 for float64 inputs on the torch backend (Keras
# 3.15), so the reductions that divide are only float32-accurate there, whatever the loss does.
DIVIDING = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def class_rtol(reduction):
    return 1e-6 if BACKEND == "torch" and reduction in DIVIDING else 1e-10


@given(cases(), st.sampled_from(KERAS_REDUCTIONS))
@settings(max_examples=20)
def test_class_value_matches_reference_with_sample_weight(case, reduction):
    y_pred, y_true, delta, penalty = case
    sample_weight = np.random.default_rng(0).uniform(0.0, 2.0, size=y_pred.shape[:1])
    loss = PenalizedMAELoss(delta, penalty, reduction=reduction, dtype="float64")(y_true, y_pred, sample_weight)
    per_sample = reference.penalized_mae(y_pred, y_true, delta, penalty, "per_sample")
    expected = expected_reduced(per_sample, sample_weight, reduction)
    np.testing.assert_allclose(numpy(loss), expected, rtol=class_rtol(reduction))


def test_known_values_and_defaults():
    y_pred = np.array([[0.5, -2.0, 3.0, 0.0]], dtype="float32")
    # per element |e| + 0.5 max(|e| - 1, 0)^2: 0.5, 2.5, 5.0, 0 -> mean 2.0
    np.testing.assert_allclose(numpy(penalized_mae(np.zeros((1, 4), "float32"), y_pred)), [2.0])
    np.testing.assert_allclose(numpy(PenalizedMAELoss()(np.zeros((1, 4)), y_pred)), 2.0)
    loss = PenalizedMAELoss()
    assert (loss.delta, loss.penalty, loss.reduction, loss.name) == (1.0, 0.5, "sum_over_batch_size", "penalized_mae")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_is_computed_in_float32(dtype):
    y_pred = ops.cast(ops.convert_to_tensor(np.array([[0.5, -2.0], [3.0, 0.25]])), dtype)
    loss = penalized_mae(ops.zeros((2, 2), dtype=dtype), y_pred)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(numpy(loss), [1.5, 2.625], rtol=1e-6)


def test_extreme_finite_inputs_give_no_nan():
    y_pred = np.array([[3e38, -3e38, 1e-45, 0.0, 1e20]], dtype="float32")
    y_true = np.zeros_like(y_pred)
    _, grad = value_and_grad(lambda p, t: ops.sum(penalized_mae(t, p)), [y_pred, y_true], framework="keras")
    assert np.all(np.isfinite(grad))
    assert not np.isnan(numpy(penalized_mae(y_true, y_pred))).any()


@given(case=float32_range_cases())
def test_beyond_float32s_range_is_inf_never_nan(case):
    """Finite float32 input anywhere in the range (errors that overflow, penalty 0 among them):
    per-element terms beyond the range are +inf and never NaN, and the mean of a sample is its
    true mean where that is in range, also where its terms or their sum are beyond the range."""
    prediction, target, delta, penalty = case
    if BACKEND != "torch":  # XLA flushes subnormal numbers to 0 on the CPU, inputs and errors alike
        tiny = np.finfo(np.float32).tiny
        prediction, target = (np.where(np.abs(a) < tiny, np.float32(0), a) for a in (prediction, target))
        assume(not np.any((np.abs(prediction.astype(np.float64) - target) < tiny) & (prediction != target)))
    per_element = numpy(penalized_mae(target, prediction, delta, penalty))  # one-element samples
    mean, grad = value_and_grad(
        lambda p, t: penalized_mae(t, p, delta, penalty)[0], [prediction[None], target[None]], framework="keras"
    )
    check_float32_range(
        *(prediction, target, delta, penalty, per_element, mean, grad[0], BACKEND),
        mean_of_float32_terms=BACKEND == "torch",
        # XLA flushes subnormal numbers, also the terms divided by N before they are summed
        smallest=np.finfo(np.float32).smallest_subnormal
        if BACKEND == "torch"
        else np.finfo(np.float32).tiny * prediction.size,
    )


def test_one_dimensional_inputs_are_batches_of_one_element_samples():
    y_pred, y_true = np.array([0.5, -2.0, 3.0, 0.0, 1.25]), np.array([0.0, 0.5, -1.0, 0.0, 1.0])
    loss = penalized_mae(y_true, y_pred, 0.7, 0.4)
    assert tuple(loss.shape) == (5,)
    np.testing.assert_allclose(numpy(loss), reference.penalized_mae(y_pred, y_true, 0.7, 0.4, "none"), rtol=1e-12)
    weights = ops.convert_to_tensor(np.arange(1.0, 6.0))
    _, grad = value_and_grad(
        lambda p, t: ops.sum(ops.multiply(penalized_mae(t, p, 0.7, 0.4), weights)), [y_pred, y_true], framework="keras"
    )
    expected = reference.penalized_mae_grad(y_pred, y_true, 0.7, 0.4, "none") * np.arange(1.0, 6.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-12)
    mean = PenalizedMAELoss(0.7, 0.4, dtype="float64")(y_true, y_pred)
    np.testing.assert_allclose(
        numpy(mean), reference.penalized_mae(y_pred, y_true, 0.7, 0.4), rtol=class_rtol("sum_over_batch_size")
    )


@pytest.mark.parametrize("shape, per_sample", [((0, 4), (0,)), ((0,), (0,)), ((3, 0), (3,)), ((2, 0, 3), (2,))])
def test_empty_inputs(shape, per_sample):
    """The mean of nothing is NaN, the sum 0, as in torch.nn.functional: an empty batch has no
    per-sample losses and reduces to 0 with "sum" and NaN with the means; a sample without elements
    has a NaN loss. The gradient has the input's (empty) shape."""
    y_true, y_pred = np.zeros(shape, "float32"), np.ones(shape, "float32")
    loss = numpy(penalized_mae(y_true, y_pred))
    assert loss.shape == per_sample and np.all(np.isnan(loss))
    empty_batch = shape[0] == 0
    for reduction in ("sum_over_batch_size", "sum", "mean"):
        reduced = float(numpy(PenalizedMAELoss(reduction=reduction)(y_true, y_pred)))
        if empty_batch and reduction == "sum":
            assert reduced == 0.0
        else:
            assert np.isnan(reduced)
    _, grad = value_and_grad(lambda p, t: ops.sum(penalized_mae(t, p)), [y_pred, y_true], framework="keras")
    assert grad.shape == shape


@pytest.mark.parametrize("where", ["y_pred", "y_true"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_give_non_finite_losses_and_gradients(where, bad):
    y_pred, y_true = np.array([[0.5, -2.0, 3.0], [1.0, 0.0, 0.25]]), np.zeros((2, 3))
    (y_pred if where == "y_pred" else y_true)[0, 1] = bad
    loss = numpy(penalized_mae(y_true, y_pred))
    assert not np.isfinite(loss[0]) and np.isfinite(loss[1])
    assert not np.isfinite(numpy(PenalizedMAELoss()(y_true, y_pred)))
    _, grad = value_and_grad(lambda p, t: ops.sum(penalized_mae(t, p)), [y_pred, y_true], framework="keras")
    assert not np.isfinite(grad[0, 1]) and np.all(np.isfinite(np.delete(grad.reshape(-1), 1)))


@only_tensorflow
def test_no_retracing_for_new_shapes_or_option_values(monkeypatch):
    import tensorflow as tf

    from losses.keras import _elementwise

    monkeypatch.setattr(_elementwise, "_TENSORFLOW", {})  # functions of this test only

    def step(y_true, y_pred, delta):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = tf.reduce_sum(penalized_mae(y_true, y_pred, delta=delta))
        return tape.gradient(value, y_pred)

    graph_step = tf.function(step, reduce_retracing=True)
    for run in (step, graph_step):  # eagerly, and inside a graph (where the clusters are XLA's)
        before = dict(_elementwise._TENSORFLOW)
        for batch, delta in [(2, 0.5), (3, 1.0), (5, 1.5), (7, 2.0), (11, 0.1)]:
            x = tf.constant(np.random.default_rng(batch).normal(size=(batch, 4)))
            grad = run(tf.zeros_like(x), x, delta)
            expected = reference.penalized_mae_grad(x.numpy(), 0.0, delta, 0.5, "per_sample")
            np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12)
        added = [function for key, function in _elementwise._TENSORFLOW.items() if key not in before]
        assert len(added) == 2  # the loss and its gradient, once each
        assert all(function.experimental_get_tracing_count() == 1 for function in added)


# ---------------------------------------------------------------------------------------------
# Gradients: finite differences, kinks, negative control
# ---------------------------------------------------------------------------------------------


@given(cases(), st.sampled_from([0, 1]))
def test_function_gradient_matches_finite_differences(case, argnum):
    y_pred, y_true, delta, penalty = case
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=y_pred.shape[:1])

    def fn(p, t, w):  # weighted, so that a wrong use of the upstream gradient shows
        return ops.sum(ops.multiply(penalized_mae(t, p, delta, penalty), w))

    check_gradient(fn, y_pred, y_true, w, argnum=argnum, framework="keras")


@given(cases(), st.sampled_from(KERAS_REDUCTIONS))
@settings(max_examples=15)
def test_class_gradient_matches_finite_differences(case, reduction):
    y_pred, y_true, delta, penalty = case
    sample_weight = np.random.default_rng(1).uniform(0.5, 2.0, size=y_pred.shape[:1])
    loss = PenalizedMAELoss(delta, penalty, reduction=reduction, dtype="float64")

    def fn(p, t, w):
        return ops.sum(loss(t, p, w))

    if class_rtol(reduction) > 1e-10:  # float32 division (see DIVIDING): compare with the reference instead
        _, grad = value_and_grad(fn, [y_pred, y_true, sample_weight], framework="keras")
        per_sample_grad = reference.penalized_mae_grad(y_pred, y_true, delta, penalty, "per_sample")
        weight = sample_weight.reshape((-1,) + (1,) * (y_pred.ndim - 1))
        divisor = sample_weight.sum() if reduction == "mean_with_sample_weight" else sample_weight.size
        expected = per_sample_grad * weight / divisor
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-9)
        return
    check_gradient(fn, y_pred, y_true, sample_weight, framework="keras")


@pytest.mark.parametrize("delta", [0.0, 0.5, 2.0])
def test_gradient_at_kinks_is_documented_subgradient(delta):
    # e = 0 -> 0; |e| = delta -> sign(e) (both one-sided derivatives agree there); / 5 per sample
    y_true = np.array([[1.0, -2.0, 0.5, 0.5, 3.0]])
    y_pred = y_true + np.array([[0.0, 0.0, delta, -delta, 0.0]])
    _, grad = value_and_grad(lambda p, t: ops.sum(penalized_mae(t, p, delta, 1.5)), [y_pred, y_true], framework="keras")
    expected = np.array([[0.0, 0.0, 1.0, -1.0, 0.0]]) / 5
    if delta == 0.0:
        expected[0, 2:4] = 0.0
    np.testing.assert_array_equal(grad, expected)
    _, grad_true = value_and_grad(
        lambda t, p: ops.sum(penalized_mae(t, p, delta, 1.5)), [y_true, y_pred], framework="keras"
    )
    np.testing.assert_array_equal(grad_true, -expected)


def weighted_second_derivative(fn, x, t, w):
    """d/dx sum(w * d fn(x, t)/dx) with the active backend's autodiff (differentiating the gradient)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xv = tf.constant(x)
        with tf.GradientTape() as outer:
            outer.watch(xv)
            with tf.GradientTape() as inner:
                inner.watch(xv)
                value = fn(xv, tf.constant(t))
            weighted = tf.reduce_sum(inner.gradient(value, xv) * w)
        return outer.gradient(weighted, xv).numpy()
    if BACKEND == "jax":
        import jax

        return np.asarray(jax.grad(lambda xv: (jax.grad(lambda z: fn(z, t))(xv) * w).sum())(x))
    import torch

    xv = torch.tensor(x, requires_grad=True)
    (grad,) = torch.autograd.grad(fn(xv, torch.tensor(t)), xv, create_graph=True)
    (second,) = torch.autograd.grad((grad * torch.tensor(w)).sum(), xv)
    return second.numpy()


@pytest.mark.parametrize("delta, penalty", [(1.0, 0.5), (0.3, 2.0)])
def test_gradient_is_differentiable_with_the_documented_second_derivative(delta, penalty):
    y_true = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, -2.0, 0.5]])
    y_pred = y_true + np.array([[-3.0, -0.5, 0.2, 2.0], [0.9, -1.4, 4.0, 0.05]])
    w = np.arange(1.0, 9.0).reshape(2, 4)
    second = weighted_second_derivative(lambda p, t: ops.sum(penalized_mae(t, p, delta, penalty)), y_pred, y_true, w)
    curvature = 2 * penalty * (np.abs(y_pred - y_true) > delta) / 4  # 2·penalty·[|e| > delta], mean over 4
    np.testing.assert_allclose(second, w * curvature, rtol=1e-12)


def seed_loss(y_pred, y_true):
    """The article's Scenario 3 backward, ported to keras.ops.custom_gradient, as a negative control:
    it drops the 1/N of the mean and the linear term (and the sign) past the threshold."""

    @ops.custom_gradient
    def loss(y_true, y_pred):
        abs_diff = ops.abs(y_true - y_pred)
        value = ops.mean(abs_diff + ops.where(abs_diff > 1, 0.5 * (abs_diff - 1) ** 2, 0.0))

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            g = upstream * ops.where(abs_diff > 1, abs_diff - 1, ops.sign(y_pred - y_true))
            return -g, g

        return value, grad

    return loss(y_true, y_pred)


def test_negative_control_seed_backward_fails_the_same_check():
    y_pred, y_true = np.array([[0.4, -0.3, 2.5, -3.0]]), np.zeros((1, 4))
    np.testing.assert_allclose(numpy(seed_loss(y_pred, y_true)), numpy(penalized_mae(y_true, y_pred))[0])
    check_gradient(lambda p, t: ops.sum(penalized_mae(t, p)), y_pred, y_true, framework="keras")
    with pytest.raises(GradientMismatch):
        check_gradient(seed_loss, y_pred, y_true, framework="keras")
    with pytest.raises(GradientMismatch):  # one element: only the dropped linear term is wrong
        check_gradient(seed_loss, np.array([2.5]), np.zeros(1), framework="keras")


# ---------------------------------------------------------------------------------------------
# Graph modes and backends
# ---------------------------------------------------------------------------------------------


def _case():
    rng = np.random.default_rng(2)
    return rng.normal(size=(3, 4, 2)) * 3, rng.normal(size=(3, 4, 2))


@only_tensorflow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_and_xla(jit_compile):
    import tensorflow as tf

    y_pred, y_true = _case()
    loss = PenalizedMAELoss(0.7, 0.4, dtype="float64")

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def value_and_gradient(p, t):
        with tf.GradientTape() as tape:
            tape.watch(p)
            value = loss(t, p)
        return value, tape.gradient(value, p)

    value, grad = value_and_gradient(tf.constant(y_pred), tf.constant(y_true))
    per_sample_grad = reference.penalized_mae_grad(y_pred, y_true, 0.7, 0.4, "per_sample") / 3
    np.testing.assert_allclose(value.numpy(), reference.penalized_mae(y_pred, y_true, 0.7, 0.4), rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), per_sample_grad, rtol=1e-12)
    # Unknown batch size inside the graph.
    spec = tf.TensorSpec((None, 4, 2), tf.float64)
    traced = tf.function(lambda p, t: value_and_gradient.python_function(p, t), input_signature=[spec, spec])
    _, grad = traced(tf.constant(y_pred), tf.constant(y_true))
    np.testing.assert_allclose(grad.numpy(), per_sample_grad, rtol=1e-12)


@pytest.mark.skipif(BACKEND != "jax", reason="JAX-specific")
def test_jax_jit_grad():
    import jax

    y_pred, y_true = _case()
    grad = jax.jit(jax.grad(lambda p, t: penalized_mae(t, p, 0.7, 0.4).sum()))(y_pred, y_true)
    expected = reference.penalized_mae_grad(y_pred, y_true, 0.7, 0.4, "per_sample")
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6)


def test_model_trains_and_saved_model_reloads(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 3)).astype("float32"), 4 * rng.normal(size=(16, 2)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=PenalizedMAELoss(delta=0.5, penalty=0.25))
    before = [numpy(w).copy() for w in model.weights]
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert all(not np.array_equal(b, numpy(w)) for b, w in zip(before, model.weights))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.loss, PenalizedMAELoss)
    assert (reloaded.loss.delta, reloaded.loss.penalty) == (0.5, 0.25)


def test_config_round_trip_and_registration():
    loss = PenalizedMAELoss(delta=0.3, penalty=2.0, reduction="sum", name="pmae", dtype="float64")
    config = loss.get_config()
    assert config == {"name": "pmae", "reduction": "sum", "delta": 0.3, "penalty": 2.0, "dtype": "float64"}
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, PenalizedMAELoss) and clone.get_config() == config
    assert keras.saving.get_registered_name(PenalizedMAELoss) == "losses>PenalizedMAELoss"
    assert keras.saving.get_registered_name(penalized_mae) == "losses>penalized_mae"


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_mismatched_shapes_raise_naming_both():
    with pytest.raises(ValueError, match=r"y_true has shape \(4,\) but y_pred has shape \(4, 1\)"):
        penalized_mae(np.zeros(4, "float32"), np.zeros((4, 1), "float32"))
    with pytest.raises(ValueError, match=r"y_true has shape \(2, 3\) but y_pred has shape \(2, 4\)"):
        PenalizedMAELoss()(np.zeros((2, 3)), np.zeros((2, 4)))
    # shapes that would broadcast, differing in every axis: never silently
    with pytest.raises(ValueError, match=r"y_true has shape \(2, 1\) but y_pred has shape \(1, 2\)"):
        penalized_mae(np.zeros((2, 1), "float32"), np.zeros((1, 2), "float32"))


@pytest.mark.parametrize("name", ["delta", "penalty"])
@pytest.mark.parametrize(
    "value, error, message",
    [
        (-0.5, ValueError, ">= 0; got -0.5"),
        (float("inf"), ValueError, "finite"),
        (None, TypeError, "real number"),
        (1e39, ValueError, r"<= 1e\+38 \(beyond, the float32 computation overflows\); got 1e\+39"),
    ],
)
def test_bad_delta_or_penalty_raise(name, value, error, message):
    with pytest.raises(error, match=f"{name} must be .*{message}"):
        penalized_mae(np.zeros((1, 3)), np.zeros((1, 3)), **{name: value})
    with pytest.raises(error, match=name):
        PenalizedMAELoss(**{name: value})


def test_non_float_prediction_raises():
    with pytest.raises(TypeError, match="y_pred must have a floating-point dtype.*int32"):
        penalized_mae(np.zeros((2, 3), "float32"), np.zeros((2, 3), "int32"))
    with pytest.raises(TypeError, match="y_pred must have a floating-point dtype.*int64"):
        PenalizedMAELoss()(np.zeros((2, 3)), np.zeros((2, 3), "int64"))


def test_complex_target_raises_naming_y_true():
    with pytest.raises(TypeError, match="y_true must have a real dtype.*complex64"):
        penalized_mae(np.zeros((2, 3), "complex64"), np.zeros((2, 3), "float32"))
