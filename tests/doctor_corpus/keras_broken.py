"""Keras 3 losses in ``keras.ops`` only that give no gradient (or a wrong one): diagnosed on the
TensorFlow backend in the test process and on the JAX backend in a subprocess."""

import keras
import numpy as np
from keras import ops

SHAPES = {
    "shape_n_vs_n1": ((8, 1), (8,)),
    "crossentropy_rank_mismatch": ((8, 1), (8,)),
    "crossentropy_width_mismatch": ((8, 4), (8, 3)),
}


def stop_gradient(y_true, y_pred):
    probabilities = ops.stop_gradient(ops.sigmoid(y_pred))  # expect: DISCONNECTED
    return ops.mean(ops.square(y_true - probabilities))


def python_float(y_true, y_pred):
    scale = float(ops.mean(ops.abs(y_pred)))  # expect: DISCONNECTED
    return scale * ops.mean(y_true)


def numpy_round_trip(y_true, y_pred):
    values = np.asarray(y_pred)  # expect: DISCONNECTED
    return ops.mean(ops.abs(y_true - ops.convert_to_tensor(values)))


def ignores_prediction(y_true, y_pred):
    return ops.mean(ops.abs(y_true - ops.mean(y_true)))  # expect: DISCONNECTED


def rounded(y_true, y_pred):
    return ops.mean(ops.square(y_true - ops.round(y_pred)))  # expect: ZERO_GRADIENT


def comparison_as_float(y_true, y_pred):
    hard = ops.cast(ops.greater(y_pred, 0.5), "float32")  # expect: ZERO_GRADIENT
    return ops.mean(ops.abs(y_true - hard))


def argmax_accuracy(y_true, y_pred):
    hits = ops.equal(ops.argmax(y_pred, axis=-1), ops.argmax(y_true, axis=-1))  # expect: ZERO_GRADIENT
    return 1.0 - ops.mean(ops.cast(hits, "float32"))


def value_dependent_if(y_true, y_pred):
    error = ops.mean(ops.abs(y_true - y_pred))
    if error > 0.25:  # expect: ZERO_GRADIENT
        return ops.convert_to_tensor(1.0)
    return ops.convert_to_tensor(0.0)


def shape_n_vs_n1(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))  # expect: BROADCAST


def zero_denominator(y_true, y_pred):
    mask = ops.cast(y_true > 2, "float32")  # no element passes: an empty mask
    return ops.sum(ops.square(y_true - y_pred) * mask) / ops.sum(mask)  # expect: NON_FINITE


def sqrt_at_zero(y_true, y_pred):
    distance = ops.sqrt(ops.sum(ops.square(y_pred - y_pred)))  # expect: NON_FINITE
    return distance + ops.mean(ops.square(y_true - y_pred))


def swapped_binary_crossentropy(y_true, y_pred):
    return ops.mean(ops.binary_crossentropy(y_pred, y_true))  # expect: SWAPPED_ARGUMENTS


def swapped_categorical_crossentropy(y_true, y_pred):
    probabilities = ops.softmax(y_pred, axis=-1)
    return ops.mean(ops.categorical_crossentropy(probabilities, y_true))  # expect: SWAPPED_ARGUMENTS


def swapped_parameters(y_pred, y_true):  # expect: SWAPPED_ARGUMENTS
    return ops.mean(ops.square(y_true - y_pred))


def dead_argmax_term(y_true, y_pred):
    hits = ops.equal(ops.argmax(y_pred, axis=-1), ops.argmax(y_true, axis=-1))  # expect: DEAD_TERM
    ce = ops.mean(ops.categorical_crossentropy(y_true, y_pred, from_logits=True))
    return ce + 0.5 * (1.0 - ops.mean(ops.cast(hits, "float32")))


def dead_round_term(y_true, y_pred):
    counts = ops.round(y_pred * 4)  # expect: DEAD_TERM
    return ops.mean(ops.square(y_true - y_pred)) + 0.1 * ops.mean(ops.abs(counts - 4 * y_true))


def dead_stop_gradient_term(y_true, y_pred):
    smoothness = ops.mean(ops.square(ops.stop_gradient(y_pred[:, 1:] - y_pred[:, :-1])))  # expect: DEAD_TERM
    return ops.mean(ops.square(y_true - y_pred)) + 0.1 * smoothness


@ops.custom_gradient
def _mean_absolute_error_without_1_over_n(diff):
    def grad(*args, upstream=None):  # expect(custom_gradient_without_1_over_n): WRONG_GRADIENT
        if upstream is None:
            (upstream,) = args
        return upstream * ops.sign(diff)  # forgets the 1/N of the mean

    return ops.mean(ops.abs(diff)), grad


def custom_gradient_without_1_over_n(y_true, y_pred):
    return _mean_absolute_error_without_1_over_n(y_pred - y_true)


def custom_gradient_sign_flipped(y_true, y_pred):
    @ops.custom_gradient
    def squared_error(x):
        def grad(*args, upstream=None):  # expect: WRONG_GRADIENT
            if upstream is None:
                (upstream,) = args
            return -upstream * 2 * x

        return ops.sum(x * x), grad

    return squared_error(y_pred - y_true) / 32.0


class SwappedLossClass(keras.losses.Loss):
    def call(self, y_pred, y_true):  # expect: SWAPPED_ARGUMENTS
        return ops.mean(ops.square(y_true - ops.sigmoid(y_pred)), axis=-1)


def argmax_one_hot(y_true, y_pred):
    # keras.ops.argmax on TensorFlow compares with 0 first (its -0.0 workaround): the argmax is named.
    hard = ops.one_hot(ops.argmax(y_pred, axis=-1), 4)  # expect: ZERO_GRADIENT
    return 1.0 - ops.mean(hard * y_true)


def argsort_ranks(y_true, y_pred):
    # On JAX, argsort is a sort that carries the indices beside the values: the indices are named.
    ranks = ops.cast(ops.argsort(y_pred, axis=-1), "float32")  # expect: ZERO_GRADIENT
    return ops.mean(ops.square(ranks - 3 * y_true))


def top_k_indices(y_true, y_pred):
    _, indices = ops.top_k(y_pred, k=2)  # expect: ZERO_GRADIENT
    hard = ops.sum(ops.one_hot(indices, 4), axis=1)
    return 1.0 - ops.mean(hard * y_true)


def saturated_where_branch(y_true, y_pred):
    # Connected, but the branch with the prediction is never picked: the where is named.
    chosen = ops.where(y_true > 2.0, y_pred, 0.0)  # expect: ZERO_GRADIENT
    return ops.mean(ops.square(chosen - y_true))


# Keras's crossentropies raise on shapes that differ: a shape finding, not a crash or a swap.


def crossentropy_rank_mismatch(y_true, y_pred):
    return ops.mean(keras.losses.binary_crossentropy(y_true, ops.sigmoid(y_pred)))  # expect: BROADCAST


def crossentropy_width_mismatch(y_true, y_pred):
    return ops.mean(ops.categorical_crossentropy(y_true, ops.softmax(y_pred)))  # expect: BROADCAST
