"""Plain JAX losses that are correct: no finding."""

import jax
import jax.numpy as jnp


@jax.jit
def jitted_mse(y_true, y_pred):
    return jnp.mean((y_pred - y_true) ** 2)
