"""How the Keras frontend runs its elementwise functions (penalized MAE, the surrogates) natively.

Each function's value and derivative are written once in ``keras.ops`` (in ``_penalized_mae.py``
and ``_surrogates.py``). The forward evaluates the value, the hand-written gradient the
derivative times the upstream gradient, each as one compiled function of the backend
(:func:`compiled`), so that the chain of elementwise ops is one pass over memory:

- TensorFlow: inside a traced graph (``tf.function``, ``model.fit``) one XLA cluster; executing
  eagerly a graph of ops without XLA, which would otherwise compile again for every new shape.
  Each function is traced once per rank and dtype of its arguments (an input signature with
  unknown sizes), and option values are passed as tensors: neither a new shape nor a new option
  value retraces.
- JAX: ``jax.jit`` (option values are traced arguments, Python floats: a new value does not recompile).
- torch: the PyTorch frontend's own kernels (the C library on the CPU, Triton on CUDA), called by
  the two modules directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

_TENSORFLOW: dict[tuple[Any, ...], Callable[..., Any]] = {}
_JAX: dict[Callable[..., Any], Callable[..., Any]] = {}


def options(x: Any, *values: float) -> list[Any]:
    """Option values as arguments of a compiled function, not constants of its trace: scalar tensors
    of ``x``'s dtype on TensorFlow (the function's signature), Python floats on JAX (``jax.jit``
    traces them as weakly typed scalars, of ``x``'s dtype, and a concrete array closed over by a
    custom gradient would become a constant of every enclosing trace)."""
    if keras.backend.backend() == "jax":
        return [float(value) for value in values]
    return [ops.convert_to_tensor(value, dtype=x.dtype) for value in values]


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (of tensors only) compiled by the backend, as described in the module docstring."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return lambda *args: _tensorflow_function(fn, args)(*args)
    if backend == "jax":
        if fn not in _JAX:
            import jax

            _JAX[fn] = jax.jit(fn)
        return _JAX[fn]
    return fn


def _tensorflow_function(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any]:
    import tensorflow as tf

    if any(arg.shape.rank is None for arg in args):  # unknown rank: no signature fits, run the ops
        return fn
    jit = not tf.executing_eagerly()
    signature = tuple(tf.TensorSpec([None] * arg.shape.rank, arg.dtype) for arg in args)
    key = (fn, jit, signature)
    if key not in _TENSORFLOW:
        _TENSORFLOW[key] = tf.function(fn, input_signature=signature, jit_compile=jit)
    return _TENSORFLOW[key]
