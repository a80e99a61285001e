"""Plain JAX losses that give no gradient: a loss under ``jax.jit`` (the doctor names the line
inside it)."""

import jax
import jax.numpy as jnp


@jax.jit
def jitted_round(y_true, y_pred):
    levels = jnp.round(y_pred * 4) / 4  # expect: ZERO_GRADIENT
    return jnp.mean((levels - y_true) ** 2)
