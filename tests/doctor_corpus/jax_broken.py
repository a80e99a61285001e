"""Plain JAX losses that give no gradient: a loss under ``jax.jit`` (the doctor names the line
inside it) and host callbacks, which have no derivative (also inside a loop body or a branch)."""

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def jitted_round(y_true, y_pred):
    levels = jnp.round(y_pred * 4) / 4  # expect: ZERO_GRADIENT
    return jnp.mean((levels - y_true) ** 2)


def pure_callback(y_true, y_pred):
    shape = jax.ShapeDtypeStruct(y_pred.shape, y_pred.dtype)
    bins = jax.pure_callback(np.floor, shape, y_pred * 4)  # expect: DISCONNECTED
    return jnp.mean((bins / 4 - y_true) ** 2)


def pure_callback_term(y_true, y_pred):
    # Not a dead term: the user's jax.grad raises on the callback, whatever the other term carries.
    mse = jnp.mean((y_pred - y_true) ** 2)
    shape = jax.ShapeDtypeStruct((), y_pred.dtype)
    spread = jax.pure_callback(lambda x: np.std(x).astype(x.dtype), shape, y_pred)  # expect: DISCONNECTED
    return mse + 0.1 * spread


def pure_callback_in_scan(y_true, y_pred):
    # Inside a loop body, which the doctor runs as the user's primitive: jax.grad raises there too.
    def step(total, row):
        shape = jax.ShapeDtypeStruct(row.shape, row.dtype)
        bins = jax.pure_callback(np.floor, shape, row * 4)  # expect: DISCONNECTED
        return total + jnp.sum(bins), None

    total, _ = jax.lax.scan(step, 0.0, y_pred - y_true)
    return total / y_pred.size


def pure_callback_in_cond(y_true, y_pred):
    def host(x):
        return jnp.mean(jax.pure_callback(np.floor, jax.ShapeDtypeStruct(x.shape, x.dtype), x))  # expect: DISCONNECTED

    return jax.lax.cond(jnp.all(y_true >= 0), host, jnp.mean, y_pred * 4)


def saturated_clip(y_true, y_pred):
    # Connected, but clipped for every element: the clip is named.
    capped = jnp.clip(y_pred, 1.0, 2.0)  # expect: ZERO_GRADIENT
    return jnp.mean((capped - y_true) ** 2)
