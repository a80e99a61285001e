"""A Keras model with a frozen layer, for diagnose_model."""

import keras
import tensorflow as tf


class Encoder(keras.Model):
    def __init__(self):
        super().__init__()
        self.encoder = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(2)

    def call(self, x):
        h = self.encoder(x)  # expect-frozen: NO_GRADIENT_VARIABLES
        return self.head(h)


def frozen_model():
    model = Encoder()
    model(tf.zeros((1, 4)))
    model.encoder.trainable = False
    return model


def mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred))
