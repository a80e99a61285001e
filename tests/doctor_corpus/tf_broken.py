"""TensorFlow / Keras losses that give no gradient (or a wrong one), as in the seed articles."""

import keras
import numpy as np
import tensorflow as tf

SHAPES = {
    "shape_10x10_vs_10x5": ((10, 10), (10, 5)),
    "shape_n_vs_n1": ((8, 1), (8,)),
}


def stop_gradient(y_true, y_pred):
    probabilities = tf.stop_gradient(tf.sigmoid(y_pred))  # expect: DISCONNECTED
    return tf.reduce_mean(tf.square(y_true - probabilities))


def numpy_floor(y_true, y_pred):
    bins = np.floor(y_pred * 4)  # expect: DISCONNECTED
    return tf.reduce_mean(tf.square(y_true - bins / 4))


def numpy_round_trip(y_true, y_pred):
    values = y_pred.numpy()  # expect: DISCONNECTED
    return tf.reduce_mean(tf.abs(y_true - tf.convert_to_tensor(values)))


def python_float(y_true, y_pred):
    scale = float(tf.reduce_mean(tf.abs(y_pred)))  # expect: DISCONNECTED
    return tf.constant(scale) * tf.reduce_mean(y_true)


def constant_from_list(y_true, y_pred):
    rows = [float(tf.reduce_mean(tf.square(y_true[i] - y_pred[i]))) for i in range(4)]  # expect: DISCONNECTED
    return tf.reduce_mean(tf.constant(rows))


def argmax_python_loop(y_true, y_pred):
    predicted = tf.argmax(y_pred, axis=-1)  # expect: ZERO_GRADIENT
    wrong = 0.0
    for i in range(predicted.shape[0]):
        wrong += tf.cast(predicted[i] != tf.argmax(y_true[i]), tf.float32)
    return wrong / predicted.shape[0]


def rounded(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - tf.round(y_pred)))  # expect: ZERO_GRADIENT


def floored(y_true, y_pred):
    levels = tf.floor(y_pred * 4) / 4  # expect: ZERO_GRADIENT
    return tf.reduce_mean(tf.abs(y_true - levels))


def signed(y_true, y_pred):
    direction = tf.sign(y_pred - 0.5)  # expect: ZERO_GRADIENT
    return -tf.reduce_mean(direction * (2 * y_true - 1))


def comparison_as_float(y_true, y_pred):
    hard = tf.cast(y_pred > 0.5, tf.float32)  # expect: ZERO_GRADIENT
    return tf.reduce_mean(tf.abs(y_true - hard))


def value_dependent_if(y_true, y_pred):
    error = tf.reduce_mean(tf.abs(y_true - y_pred))
    if error > 0.25:  # expect: ZERO_GRADIENT
        return tf.constant(1.0)
    return tf.constant(0.0)


def ignores_prediction(y_true, y_pred):
    # Seed 001: the loss is built from another tensor than the model's output.
    return tf.reduce_mean(tf.abs(y_true - tf.reduce_mean(y_true)))  # expect: DISCONNECTED


def shape_10x10_vs_10x5(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))  # expect: BROADCAST


def shape_n_vs_n1(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))  # expect: BROADCAST


def zero_denominator(y_true, y_pred):
    mask = tf.cast(y_true > 2, tf.float32)  # no element passes: an empty mask
    return tf.reduce_sum(tf.square(y_true - y_pred) * mask) / tf.reduce_sum(mask)  # expect: NON_FINITE


def sqrt_at_zero(y_true, y_pred):
    distance = tf.sqrt(tf.reduce_sum(tf.square(y_pred - y_pred)))  # expect: NON_FINITE
    return distance + tf.reduce_mean(tf.square(y_true - y_pred))


def swapped_keras_loss(y_true, y_pred):
    return tf.reduce_mean(tf.keras.losses.binary_crossentropy(y_pred, y_true))  # expect: SWAPPED_ARGUMENTS


def swapped_parameters(y_pred, y_true):  # expect: SWAPPED_ARGUMENTS
    return tf.reduce_mean(tf.square(y_true - y_pred))


def dice_stop_gradient(y_true, y_pred):
    # Seed 004.
    y_pred = tf.sigmoid(y_pred)
    intersection = tf.reduce_sum(y_pred * y_true)
    union = tf.reduce_sum(y_pred) + tf.reduce_sum(y_true)
    dice = (2.0 * intersection + 1e-5) / (union + 1e-5)
    dice = tf.stop_gradient(dice)  # expect: DISCONNECTED
    return 1.0 - dice


def numpy_function(y_true, y_pred):
    bins = tf.numpy_function(np.floor, [y_pred * 4], tf.float32)  # expect: DISCONNECTED
    return tf.reduce_mean(tf.square(y_true - bins / 4))


def integer_cast(y_true, y_pred):
    buckets = tf.cast(tf.cast(y_pred * 4, tf.int32), tf.float32) / 4  # expect: ZERO_GRADIENT
    return tf.reduce_mean(tf.abs(y_true - buckets))


def partial_stop_gradient(y_true, y_pred):
    first = y_pred[:, 0]
    second = tf.stop_gradient(y_pred[:, 1])  # expect: DISCONNECTED
    return tf.reduce_mean(tf.square(first / (second + 1.0) - y_true[:, 0]))


class SwappedLossClass(keras.losses.Loss):
    def call(self, y_pred, y_true):  # expect: SWAPPED_ARGUMENTS
        return tf.reduce_mean(tf.square(y_true - tf.sigmoid(y_pred)), axis=-1)


# Hand-written gradients that are wrong: WRONG_GRADIENT points at the gradient function.


@tf.custom_gradient
def _mean_absolute_error_without_1_over_n(diff):
    def grad(upstream):  # expect(custom_gradient_without_1_over_n): WRONG_GRADIENT
        return upstream * tf.sign(diff)  # forgets the 1/N of the mean

    return tf.reduce_mean(tf.abs(diff)), grad


def custom_gradient_without_1_over_n(y_true, y_pred):
    # The custom gradient is defined above, at module level, as users usually write it.
    return _mean_absolute_error_without_1_over_n(y_pred - y_true)


def custom_gradient_sign_flipped(y_true, y_pred):
    @tf.custom_gradient
    def squared_error(x):
        def grad(upstream):  # expect: WRONG_GRADIENT
            return -upstream * 2 * x

        return tf.reduce_sum(x * x), grad

    return squared_error(y_pred - y_true) / tf.cast(tf.size(y_pred), tf.float32)


# A dead term next to a working one.


def dead_argmax_term(y_true, y_pred):
    correct = tf.cast(tf.equal(tf.argmax(y_pred, -1), tf.argmax(y_true, -1)), tf.float32)  # expect: DEAD_TERM
    ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=y_pred))
    return ce + 0.5 * (1.0 - tf.reduce_mean(correct))


def dead_round_term(y_true, y_pred):
    counts = tf.round(y_pred * 4)  # expect: DEAD_TERM
    mse = tf.reduce_mean(tf.square(y_true - y_pred))
    return mse + 0.1 * tf.reduce_mean(tf.abs(counts - 4 * y_true))


def dead_comparison_term(y_true, y_pred):
    positives = tf.cast(y_pred > 0.5, tf.float32)  # expect: DEAD_TERM
    mse = tf.reduce_mean(tf.square(y_true - y_pred))
    return mse + 0.1 * tf.square(tf.reduce_mean(positives) - tf.reduce_mean(y_true))


def dead_python_float_term(y_true, y_pred):
    sparsity = float(tf.reduce_mean(tf.abs(y_pred)))  # expect: DEAD_TERM
    return tf.reduce_mean(tf.square(y_true - y_pred)) + 0.1 * sparsity


def dead_stop_gradient_term(y_true, y_pred):
    mse = tf.reduce_mean(tf.square(y_true - y_pred))
    smoothness = tf.reduce_mean(tf.square(tf.stop_gradient(y_pred[:, 1:] - y_pred[:, :-1])))  # expect: DEAD_TERM
    return mse + 0.1 * smoothness


def round_inside_map_fn(y_true, y_pred):
    # tf.map_fn runs an autograph copy of the function from a temporary file, not a line of the
    # user's: the line of the map_fn call is reported.
    def row_error(pair):
        return tf.reduce_mean((tf.round(pair[0]) - pair[1]) ** 2)

    per_row = tf.map_fn(row_error, (y_pred, y_true), fn_output_signature=tf.float32)  # expect: ZERO_GRADIENT
    return tf.reduce_mean(per_row)


# Python functions run by TensorFlow on the prediction, and a function graph that TensorFlow traces.


def numpy_inside_py_function(y_true, y_pred):
    def host_floor(x):
        return np.floor(x.numpy() * 4)  # expect: DISCONNECTED

    bins = tf.py_function(host_floor, [y_pred], tf.float32)
    return tf.reduce_mean(tf.square(y_true - bins / 4))


def dead_numpy_function_term(y_true, y_pred):
    mse = tf.reduce_mean(tf.square(y_true - y_pred))
    spread = tf.numpy_function(lambda x: np.std(x).astype(np.float32), [y_pred], tf.float32)  # expect: DEAD_TERM
    return mse + 0.1 * spread


def numpy_inside_py_function_term(y_true, y_pred):
    # Not a dead term: TensorFlow's gradient of the cut-off py_function is a scalar 0 that cannot be
    # added to the other term's, and the training fails.
    def host_spread(x):
        return np.std(x.numpy())  # expect: DISCONNECTED

    mse = tf.reduce_mean(tf.square(y_true - y_pred))
    return mse + 0.1 * tf.py_function(host_spread, [y_pred], tf.float32)


def stop_gradient_inside_vectorized_map(y_true, y_pred):
    def row_error(pair):
        prediction, target = pair
        return tf.reduce_mean(tf.square(tf.stop_gradient(prediction) - target))  # expect: DISCONNECTED

    return tf.reduce_mean(tf.vectorized_map(row_error, (y_pred, y_true)))


def partial_nan_replaced_by_where(y_true, y_pred):
    # sqrt of a negative number is NaN; the where hides it, and those elements get no gradient.
    distance = tf.sqrt(y_pred - 0.5)  # expect: NON_FINITE
    distance = tf.where(tf.math.is_nan(distance), tf.zeros_like(distance), distance)
    return tf.reduce_mean(tf.square(distance - y_true))


def custom_gradient_returns_zeros(y_true, y_pred):
    @tf.custom_gradient
    def squared_error(x):
        def grad(upstream):  # expect: WRONG_GRADIENT
            return tf.zeros_like(x)

        return tf.reduce_mean(x * x), grad

    return squared_error(y_pred - y_true)


def custom_gradient_returns_none(y_true, y_pred):
    @tf.custom_gradient
    def squared_error(x):
        def grad(upstream):  # expect: WRONG_GRADIENT
            return None

        return tf.reduce_mean(x * x), grad

    return squared_error(y_pred - y_true)


def custom_gradient_with_a_float32_constant(y_true, y_pred):
    # The gradient function divides by a float32 count: it runs only in float32, where the check runs it.
    @tf.custom_gradient
    def squared_error(x):
        def grad(upstream):  # expect: WRONG_GRADIENT
            return upstream * 4 * x / tf.cast(tf.size(x), tf.float32)  # twice the derivative

        return tf.reduce_mean(x * x), grad

    return squared_error(y_pred - y_true)


# Connected, but saturated for every element: the line where the gradient dies is named.


def saturated_clip(y_true, y_pred):
    capped = tf.clip_by_value(y_pred, 1.0, 2.0)  # expect: ZERO_GRADIENT
    return tf.reduce_mean(tf.square(capped - y_true))


def saturated_relu(y_true, y_pred):
    margin = tf.nn.relu(y_pred - 2.0)  # expect: ZERO_GRADIENT
    return tf.reduce_mean(margin * y_true)


def prediction_stored_in_a_variable(y_true, y_pred):
    held = tf.Variable(tf.zeros_like(y_pred))
    held.assign(y_pred)  # expect: DISCONNECTED
    return tf.reduce_mean(tf.square(held - y_true))
