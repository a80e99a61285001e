"""Correct user-style TensorFlow / Keras losses: the doctor must report nothing."""

import logging

import keras
import tensorflow as tf

SHAPES = {"target_dependent_branch": ((10, 1), (10, 1))}


def mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))


def bce_with_logits(y_true, y_pred):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred))


def soft_dice(y_true, y_pred, eps=1e-6):
    probabilities = tf.sigmoid(y_pred)
    intersection = tf.reduce_sum(probabilities * y_true, axis=-1)
    union = tf.reduce_sum(probabilities, axis=-1) + tf.reduce_sum(y_true, axis=-1)
    return tf.reduce_mean(1 - (2 * intersection + eps) / (union + eps))


def huber(y_true, y_pred, delta=0.3):
    error = tf.abs(y_true - y_pred)
    return tf.reduce_mean(tf.where(error < delta, 0.5 * error**2, delta * (error - 0.5 * delta)))


def masked_mean_nan_safe(y_true, y_pred):
    mask = tf.cast(y_true > 2, tf.float32)  # may be empty: divide_no_nan guards the denominator
    masked = tf.math.divide_no_nan(tf.reduce_sum(tf.square(y_true - y_pred) * mask), tf.reduce_sum(mask))
    return masked + 1e-3 * tf.reduce_mean(tf.square(y_true - y_pred))


def keras_ops_mae(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred))


def builtin_crossentropy(y_true, y_pred):
    return tf.reduce_mean(keras.losses.binary_crossentropy(y_true, y_pred))


def target_dependent_branch(y_true, y_pred):
    # Seed 003: a Python `if` on the target (not the prediction) keeps the gradient in eager mode.
    loss = 0.0
    for i in range(y_true.shape[0]):
        if y_true[i] > 0.5:
            loss += tf.abs(y_true[i] - y_pred[i])
    return tf.reduce_sum(loss) + tf.reduce_mean(tf.square(y_true - y_pred))


class KerasLossClass(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)


def seed_custom_mae_loss(y_true, y_pred):
    # Seed 000: correct; its "No gradients provided" came from the training loop, not the loss.
    abs_diff = tf.abs(y_true - y_pred)
    quadratic_penalty = tf.where(abs_diff > 1, 0.5 * (abs_diff - 1) ** 2, 0.0)
    return tf.reduce_mean(abs_diff + quadratic_penalty)


def seed_dice_loss(y_true, y_pred):
    # Seed 004's repaired Dice.
    y_true_f = tf.reshape(y_true, [-1])
    y_pred_f = tf.reshape(y_pred, [-1])
    intersection = tf.reduce_sum(y_true_f * y_pred_f)
    eps = keras.config.epsilon()
    return 1.0 - (2.0 * intersection + eps) / (tf.reduce_sum(y_true_f) + tf.reduce_sum(y_pred_f) + eps)


def sparse_labels_crossentropy(y_true, y_pred):
    labels = tf.cast(tf.reduce_sum(y_true, axis=-1), tf.int32) % 4
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True))


def masked_with_zeros_like(y_true, y_pred):
    loss = tf.square(y_true - y_pred)
    return tf.reduce_mean(tf.where(y_true > 0.5, loss, tf.zeros_like(loss)))


# Well-known losses, written as users write them: false-alarm controls.


def focal_loss(y_true, y_pred, gamma=2.0, alpha=0.25):
    probabilities = tf.sigmoid(y_pred)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred)
    p_t = probabilities * y_true + (1 - probabilities) * (1 - y_true)
    alpha_t = alpha * y_true + (1 - alpha) * (1 - y_true)
    return tf.reduce_mean(alpha_t * (1 - p_t) ** gamma * ce)


def tversky_loss(y_true, y_pred, alpha=0.3, beta=0.7, smooth=1.0):
    probabilities = tf.sigmoid(y_pred)
    true_pos = tf.reduce_sum(probabilities * y_true)
    false_neg = tf.reduce_sum((1 - probabilities) * y_true)
    false_pos = tf.reduce_sum(probabilities * (1 - y_true))
    return 1 - (true_pos + smooth) / (true_pos + alpha * false_neg + beta * false_pos + smooth)


def label_smoothing_crossentropy(y_true, y_pred):
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(y_true, y_pred)


def info_nce(y_true, y_pred, temperature=0.1):
    # Row i of the prediction and row i of the target are two views of one sample.
    a = tf.math.l2_normalize(y_pred, axis=1)
    b = tf.math.l2_normalize(y_true + 0.1, axis=1)
    logits = tf.matmul(a, b, transpose_b=True) / temperature
    labels = tf.range(tf.shape(a)[0])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def contrastive_pairwise(y_true, y_pred, margin=1.0):
    distances = tf.sqrt(tf.reduce_sum(tf.square(y_pred[:, None, :] - y_true[None, :, :]), -1) + 1e-9)
    same = tf.eye(tf.shape(y_pred)[0])
    return tf.reduce_mean(same * distances**2 + (1 - same) * tf.nn.relu(margin - distances) ** 2)


def chamfer_distance(y_true, y_pred):
    squared = tf.reduce_sum(tf.square(tf.expand_dims(y_pred, 1) - tf.expand_dims(y_true, 0)), -1)
    return tf.reduce_mean(tf.reduce_min(squared, 1)) + tf.reduce_mean(tf.reduce_min(squared, 0))


def mmd_rbf(y_true, y_pred, bandwidth=1.0):
    def kernel(a, b):
        return tf.exp(-tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), -1) / (2 * bandwidth**2))

    return (
        tf.reduce_mean(kernel(y_pred, y_pred))
        + tf.reduce_mean(kernel(y_true, y_true))
        - 2 * tf.reduce_mean(kernel(y_pred, y_true))
    )


def lovasz_hinge(y_true, y_pred):
    logits, labels = tf.reshape(y_pred, [-1]), tf.reshape(y_true, [-1])
    errors = 1 - logits * (2 * labels - 1)
    errors_sorted, perm = tf.nn.top_k(errors, k=tf.shape(errors)[0])
    gt_sorted = tf.gather(labels, perm)
    intersection = tf.reduce_sum(gt_sorted) - tf.cumsum(gt_sorted)
    union = tf.reduce_sum(gt_sorted) + tf.cumsum(1 - gt_sorted)
    jaccard = 1 - intersection / union
    jaccard = tf.concat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)
    return tf.tensordot(tf.nn.relu(errors_sorted), jaccard, 1)


def inactive_penalty_term(y_true, y_pred):
    # The range penalty is zero at these inputs: a term without gradient here is not a dead term.
    return tf.reduce_mean(tf.square(y_true - y_pred)) + tf.reduce_mean(tf.nn.relu(y_pred - 2.0))


def target_only_term(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred)) + 0.1 * tf.math.reduce_variance(y_true)


def correct_custom_gradient(y_true, y_pred):
    @tf.custom_gradient
    def mean_squared_error(x):
        def grad(upstream):
            return upstream * 2 * x / tf.cast(tf.size(x), x.dtype)

        return tf.reduce_mean(x * x), grad

    return mean_squared_error(y_pred - y_true)


def straight_through_round(y_true, y_pred):
    # A straight-through estimator: forward rounds, the gradient passes on, by design.
    @tf.custom_gradient
    def round_straight_through(x):
        return tf.round(x), lambda upstream: upstream

    levels = round_straight_through(y_pred * 4) / 4
    return tf.reduce_mean(tf.square(levels - y_true)) + tf.reduce_mean(tf.square(y_pred - y_true))


def package_straight_through_surrogates(y_true, y_pred):
    from losses.keras import soft_floor, soft_step

    levels = soft_floor(y_pred * 4, 4.0, straight_through=True) / 4
    hits = soft_step(y_pred - 0.5, 10.0, straight_through=True)
    return tf.reduce_mean(tf.square(levels - y_true)) + tf.reduce_mean(tf.abs(hits - y_true))


def package_penalized_mae(y_true, y_pred):
    from losses.keras import penalized_mae

    return penalized_mae(y_true, y_pred, delta=0.3)


def straight_through_stop_gradient_trick(y_true, y_pred):
    # x + stop_gradient(round(x) - x): forward rounds, backward is the identity (VQ-VAE style).
    levels = y_pred * 4 + tf.stop_gradient(tf.round(y_pred * 4) - y_pred * 4)
    return tf.reduce_mean(tf.square(levels / 4 - y_true))


def dice_with_logging(y_true, y_pred):
    # Numbers read off the loss for a log are not terms of it.
    probabilities = tf.sigmoid(y_pred)
    union = tf.reduce_sum(probabilities) + tf.reduce_sum(y_true)
    dice = (2 * tf.reduce_sum(probabilities * y_true) + 1) / (union + 1)
    logging.getLogger(__name__).debug("dice %.3f", float(dice))
    return 0.5 - 0.5 * dice + 0.1 * tf.reduce_mean(tf.square(y_true - y_pred))


def tensorflow_ops_inside_py_function(y_true, y_pred):
    # TensorFlow differentiates a py_function by a tape around it: its TensorFlow ops pass the gradient.
    probabilities = tf.py_function(tf.sigmoid, [y_pred], tf.float32)
    return tf.reduce_mean(tf.square(y_true - probabilities))


def vectorized_map_rows(y_true, y_pred):
    def row_error(pair):
        prediction, target = pair
        return tf.reduce_mean(tf.square(prediction - target))

    return tf.reduce_mean(tf.vectorized_map(row_error, (y_pred, y_true)))


_running_mean = tf.Variable(0.0)


def running_mean_kept_in_a_variable(y_true, y_pred):
    # A statistic of the prediction stored for logging; the loss itself uses the prediction.
    _running_mean.assign(0.9 * _running_mean + 0.1 * tf.reduce_mean(y_pred))
    return tf.reduce_mean(tf.square(y_true - y_pred))
