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


class ScaledDense(keras.layers.Layer):
    def __init__(self, units):
        super().__init__()
        self.dense = keras.layers.Dense(units)
        self.units = units

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")  # never used

    def call(self, x):  # expect-weight: NO_GRADIENT_VARIABLES
        return self.dense(x)


class Backbone(keras.Model):
    """Two frozen layers called at one line, a layer with an unused weight, a discarded call."""

    def __init__(self):
        super().__init__()
        self.stages = keras.Sequential(
            [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(8), keras.layers.Dense(8)]
        )
        self.project = ScaledDense(2)
        self.probe = keras.layers.Dense(1)

    def call(self, x):
        h = self.stages(x)  # expect-frozen: NO_GRADIENT_VARIABLES
        self.probe(h)  # expect-discarded: NO_GRADIENT_VARIABLES
        return self.project(h)


def backbone_model():
    model = Backbone()
    model(tf.zeros((1, 4)))
    model.stages.layers[0].trainable = False
    model.stages.layers[1].trainable = False
    return model


class TupleHeads(keras.Model):
    def __init__(self):
        super().__init__()
        self.body = keras.layers.Dense(8, activation="relu")
        self.logits = keras.layers.Dense(2)
        self.embedding = keras.layers.Dense(3)

    def call(self, x):
        h = self.body(x)
        return self.logits(h), self.embedding(h)


class DictHeads(TupleHeads):
    def call(self, x):
        logits, embedding = super().call(x)
        return {"logits": logits, "embedding": embedding}


def first_output_mse(y_true, y_pred):  # expect-ignored: NO_GRADIENT_VARIABLES
    return tf.reduce_mean(tf.square(y_true - y_pred[0]))


def logits_mse(y_true, y_pred):  # expect-ignored: NO_GRADIENT_VARIABLES
    return tf.reduce_mean(tf.square(y_true - y_pred["logits"]))
