"""Correct Keras 3 losses in ``keras.ops`` only: the doctor must report nothing, on the TensorFlow
and on the JAX backend."""

import keras
from keras import ops

SHAPES = {"class_indices_crossentropy": ((8, 4), (8,))}


def mse(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred))


def builtin_binary_crossentropy(y_true, y_pred):
    return ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))


def ops_binary_crossentropy(y_true, y_pred):
    return ops.mean(ops.binary_crossentropy(y_true, y_pred, from_logits=True))


def class_indices_crossentropy(y_true, y_pred):
    labels = ops.cast(y_true * 3, "int32")
    return ops.mean(ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True))


def focal_loss(y_true, y_pred, gamma=2.0, alpha=0.25):
    probabilities = ops.sigmoid(y_pred)
    ce = ops.binary_crossentropy(y_true, y_pred, from_logits=True)
    p_t = probabilities * y_true + (1 - probabilities) * (1 - y_true)
    alpha_t = alpha * y_true + (1 - alpha) * (1 - y_true)
    return ops.mean(alpha_t * (1 - p_t) ** gamma * ce)


def tversky_loss(y_true, y_pred, alpha=0.3, beta=0.7, smooth=1.0):
    probabilities = ops.sigmoid(y_pred)
    true_pos = ops.sum(probabilities * y_true)
    false_neg = ops.sum((1 - probabilities) * y_true)
    false_pos = ops.sum(probabilities * (1 - y_true))
    return 1 - (true_pos + smooth) / (true_pos + alpha * false_neg + beta * false_pos + smooth)


def label_smoothing_crossentropy(y_true, y_pred):
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(y_true, y_pred)


def info_nce(y_true, y_pred, temperature=0.1):
    a = y_pred / ops.norm(y_pred, axis=1, keepdims=True)
    b = (y_true + 0.1) / ops.norm(y_true + 0.1, axis=1, keepdims=True)
    logits = ops.matmul(a, ops.transpose(b)) / temperature
    labels = ops.arange(ops.shape(a)[0])
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def chamfer_distance(y_true, y_pred):
    squared = ops.sum(ops.square(ops.expand_dims(y_pred, 1) - ops.expand_dims(y_true, 0)), axis=-1)
    return ops.mean(ops.min(squared, axis=1)) + ops.mean(ops.min(squared, axis=0))


def mmd_rbf(y_true, y_pred, bandwidth=1.0):
    def kernel(a, b):
        return ops.exp(-ops.sum(ops.square(a[:, None, :] - b[None, :, :]), axis=-1) / (2 * bandwidth**2))

    return ops.mean(kernel(y_pred, y_pred)) + ops.mean(kernel(y_true, y_true)) - 2 * ops.mean(kernel(y_pred, y_true))


def lovasz_hinge(y_true, y_pred):
    logits, labels = ops.reshape(y_pred, (-1,)), ops.reshape(y_true, (-1,))
    errors = 1 - logits * (2 * labels - 1)
    perm = ops.flip(ops.argsort(errors), 0)
    errors_sorted = ops.take(errors, perm)
    gt_sorted = ops.take(labels, perm)
    intersection = ops.sum(gt_sorted) - ops.cumsum(gt_sorted)
    union = ops.sum(gt_sorted) + ops.cumsum(1 - gt_sorted)
    jaccard = 1 - intersection / union
    jaccard = ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)
    return ops.sum(ops.relu(errors_sorted) * jaccard)


def inactive_penalty_term(y_true, y_pred):
    return ops.mean(ops.square(y_true - y_pred)) + ops.mean(ops.relu(y_pred - 2.0))


def correct_custom_gradient(y_true, y_pred):
    @ops.custom_gradient
    def mean_squared_error(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream * 2 * x / 32.0

        return ops.mean(x * x), grad

    return mean_squared_error(y_pred - y_true)


def straight_through_round(y_true, y_pred):
    @ops.custom_gradient
    def round_straight_through(x):
        def grad(*args, upstream=None):
            return args[0] if upstream is None else upstream

        return ops.round(x), grad

    levels = round_straight_through(y_pred * 4) / 4
    return ops.mean(ops.square(levels - y_true)) + ops.mean(ops.square(y_pred - y_true))


def package_straight_through_surrogates(y_true, y_pred):
    from losses.keras import soft_floor, soft_step

    levels = soft_floor(y_pred * 4, 4.0, straight_through=True) / 4
    hits = soft_step(y_pred - 0.5, 10.0, straight_through=True)
    return ops.mean(ops.square(levels - y_true)) + ops.mean(ops.abs(hits - y_true))


def package_dice_and_penalized_mae(y_true, y_pred):
    from losses.keras import dice_loss, penalized_mae

    # Hand-written gradients of this package (penalized MAE).
    logits, labels = ops.reshape(y_pred, (2, 4, 4)), ops.argmax(ops.reshape(y_true, (2, 4, 4)), axis=-1)
    return ops.mean(penalized_mae(y_true, y_pred, delta=0.3)) + ops.mean(dice_loss(labels, logits))


class KerasLossClass(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return ops.mean(ops.square(y_true - y_pred), axis=-1)


def straight_through_stop_gradient_trick(y_true, y_pred):
    levels = y_pred * 4 + ops.stop_gradient(ops.round(y_pred * 4) - y_pred * 4)
    return ops.mean(ops.square(levels / 4 - y_true))
