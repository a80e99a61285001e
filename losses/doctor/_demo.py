"""The doctor's part of ``python -m losses demo``: a broken loss, then the same loss repaired with
a smooth surrogate of this package, in each installed framework."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any


def broken_quantized_mse(input: Any, target: Any) -> Any:
    levels = input.mul(4).round().div(4)  # quantize the prediction to quarter steps: zero gradient
    return ((levels - target) ** 2).mean()


def repaired_quantized_mse(input: Any, target: Any) -> Any:
    from losses.torch import soft_round

    levels = soft_round(input * 4, 4.0) / 4  # the same quantization, with a gradient
    return ((levels - target) ** 2).mean()


def keras_broken_quantized_mse(y_true: Any, y_pred: Any) -> Any:
    import keras

    levels = keras.ops.round(y_pred * 4) / 4  # zero gradient
    return keras.ops.mean(keras.ops.square(levels - y_true))


def keras_repaired_quantized_mse(y_true: Any, y_pred: Any) -> Any:
    import keras

    from losses.keras import soft_round

    levels = soft_round(y_pred * 4, 4.0) / 4
    return keras.ops.mean(keras.ops.square(levels - y_true))


def run_doctor_demo(print_fn: Callable[[str], None] = print, frameworks: Sequence[str] | None = None) -> int:
    """Diagnose the broken and the repaired loss in each framework; 0 when every repair is clean.

    ``frameworks``: ``"torch"`` and/or ``"keras"`` (Keras on TensorFlow); default: every installed one.
    """
    import numpy as np

    from losses.doctor import diagnose

    installed = [
        f for f, module in (("torch", "torch"), ("keras", "tensorflow")) if importlib.util.find_spec(module) is not None
    ]
    status = 0
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(size=(8, 4)).astype(np.float32)
    y_true = rng.uniform(size=(8, 4)).astype(np.float32)
    for framework in frameworks or installed:
        if framework not in installed:
            print_fn(f"doctor: {framework} is not installed; skipped")
            continue
        broken: Callable[[Any, Any], Any]
        repaired: Callable[[Any, Any], Any]
        if framework == "torch":
            import torch

            inputs = (torch.from_numpy(y_true), torch.from_numpy(y_pred))
            broken, repaired, surrogate = broken_quantized_mse, repaired_quantized_mse, "losses.torch"
        else:
            import tensorflow as tf

            inputs = (tf.constant(y_true), tf.constant(y_pred))
            broken, repaired = keras_broken_quantized_mse, keras_repaired_quantized_mse
            surrogate = "losses.keras"
        print_fn(f"doctor ({framework}): a loss that rounds its prediction")
        print_fn(diagnose(broken, *inputs, framework="torch" if framework == "torch" else "tensorflow").to_text())
        print_fn(f"doctor ({framework}): the same loss with {surrogate}.soft_round")
        report = diagnose(repaired, *inputs, framework="torch" if framework == "torch" else "tensorflow")
        print_fn(report.to_text())
        status |= 0 if report.ok else 1
    return status
