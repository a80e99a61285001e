"""Correct user-style TensorFlow / Keras losses: the doctor must report nothing."""

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
    return tf.reduce_mean(tf.where(error < delta, 0.5 * error ** 2, delta * (error - 0.5 * delta)))


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
