"""JAX losses whose break sits inside a loop, a branch or a checkpoint (the doctor looks into their
bodies), a wrong jax.custom_jvp rule, and healthy ones of the same shapes (no false alarm from a
loop's own counter or a right rule)."""

import jax
import jax.numpy as jnp


def stop_gradient_in_scan(y_true, y_pred):
    def body(total, row):
        return total + jnp.sum(jax.lax.stop_gradient(row) ** 2), None  # expect: DISCONNECTED

    total, _ = jax.lax.scan(body, 0.0, y_pred - y_true)
    return total / y_pred.size


def round_in_fori_loop(y_true, y_pred):
    def body(i, total):
        return total + jnp.mean((jnp.round(y_pred[i]) - y_true[i]) ** 2)

    return jax.lax.fori_loop(0, y_pred.shape[0], body, 0.0)  # expect: ZERO_GRADIENT


def stop_gradient_in_the_branch_taken(y_true, y_pred):
    error = y_pred - y_true
    return jax.lax.cond(
        jnp.sum(y_true) > -1.0,
        lambda e: jnp.mean(jax.lax.stop_gradient(e) ** 2),  # expect: DISCONNECTED
        lambda e: jnp.mean(e**2),
        error,
    )


def stop_gradient_in_checkpoint(y_true, y_pred):
    # A checkpointed function is followed as a call: the line of the call is reported.
    squared = jax.checkpoint(lambda p: jax.lax.stop_gradient(p) ** 2)
    return jnp.mean(squared(y_pred) - y_true)  # expect: DISCONNECTED


def healthy_scan(y_true, y_pred):
    def body(total, pair):
        return total + jnp.sum((pair[0] - pair[1]) ** 2), None

    total, _ = jax.lax.scan(body, 0.0, (y_pred, y_true))
    return total / y_pred.size


def healthy_fori_loop(y_true, y_pred):
    def body(i, total):
        return total + jnp.mean((y_pred[i] - y_true[i]) ** 2)

    return jax.lax.fori_loop(0, y_pred.shape[0], body, 0.0)


def healthy_cond(y_true, y_pred):
    error = y_pred - y_true
    return jax.lax.cond(jnp.sum(y_true) > -1.0, lambda e: jnp.mean(e**2), lambda e: jnp.mean(jnp.abs(e)), error)


@jax.custom_jvp
def _softplus(x):
    return jnp.log1p(jnp.exp(x))


@_softplus.defjvp
def _softplus_wrong_jvp(primals, tangents):  # expect(softplus_with_a_wrong_jvp): WRONG_GRADIENT
    (x,), (t,) = primals, tangents
    return _softplus(x), t * jnp.exp(x)  # the derivative is sigmoid(x), not exp(x)


def softplus_with_a_wrong_jvp(y_true, y_pred):
    return jnp.mean((_softplus(y_pred) - y_true) ** 2)


@jax.custom_jvp
def _softplus_right(x):
    return jnp.log1p(jnp.exp(x))


@_softplus_right.defjvp
def _softplus_right_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus_right(x), t * jax.nn.sigmoid(x)


def healthy_custom_jvp(y_true, y_pred):
    return jnp.mean((_softplus_right(y_pred) - y_true) ** 2)
