"""Central finite differences in float64 against a framework's autodiff gradient."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FRAMEWORKS = ("torch", "keras")


class GradientMismatch(AssertionError):
    """The autodiff gradient and the finite-difference gradient disagree.

    Raised by :func:`check_gradient`; an ``AssertionError``, so test runners report it as a failed
    assertion. The message names the element furthest out of tolerance, both values there and the
    largest absolute error.

    Example:

    >>> import numpy as np
    >>> from losses.testing import GradientMismatch, check_gradient
    >>> try:   # detach() hides x² from autodiff: the gradient is 1 where it should be 1 + 2x
    ...     check_gradient(lambda x: (x.detach() ** 2).sum() + x.sum(), np.array([1.0, 2.0]))
    ... except GradientMismatch as error:
    ...     print(str(error).split(":")[0])
    autodiff and finite differences disagree at index (1,)
    """


def _to_framework(array: np.ndarray, framework: str) -> Any:
    if framework == "torch":
        import torch

        return torch.from_numpy(np.array(array))
    import keras

    return keras.ops.convert_to_tensor(np.array(array))


def _to_float(value: Any) -> float:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return float(np.asarray(value))


def value_and_grad(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray], argnum: int = 0, framework: str = "torch"
) -> tuple[float, np.ndarray]:
    """The scalar ``fn(*inputs)`` and its gradient with respect to ``inputs[argnum]``.

    ``inputs`` are NumPy arrays; they are converted to ``framework`` tensors of the same dtype.
    For ``framework="keras"`` the gradient is taken with the active Keras backend's autodiff
    (``tf.GradientTape``, ``jax.grad`` or ``torch.autograd``).

    Args:
        fn: a function of the converted ``inputs`` that returns a scalar tensor.
        inputs: NumPy arrays, the positional arguments of ``fn``.
        argnum: the index in ``inputs`` of the argument to differentiate.
        framework: ``"torch"`` or ``"keras"`` (the active Keras backend).

    Returns:
        ``(value, gradient)``: ``fn(*inputs)`` as a Python float and its gradient as a NumPy
        array of ``inputs[argnum]``'s shape (zeros when ``fn`` does not depend on that input).

    Raises:
        ValueError: ``framework`` is not ``"torch"`` or ``"keras"``, or the Keras backend is not
            TensorFlow, JAX or PyTorch.

    Example:

    >>> import numpy as np
    >>> from losses.testing import value_and_grad
    >>> value, grad = value_and_grad(lambda x: (x ** 3).sum(), [np.array([0.5, -1.0, 2.0])])
    >>> value, grad.tolist()   # Σx³ and 3x²
    (7.125, [0.75, 3.0, 12.0])
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}; got {framework!r}")
    tensors = [_to_framework(np.asarray(a), framework) for a in inputs]
    backend = "torch"
    if framework == "keras":
        import keras

        backend = keras.backend.backend()
    if backend == "torch":
        import torch

        tensors[argnum] = tensors[argnum].detach().clone().requires_grad_(True)
        value = fn(*tensors)
        (grad,) = torch.autograd.grad(value, tensors[argnum], allow_unused=True)
        grad = torch.zeros_like(tensors[argnum]) if grad is None else grad.detach().cpu()
        if grad.dtype == torch.bfloat16:  # NumPy has no bfloat16: float32 holds it exactly
            grad = grad.float()
        return _to_float(value), grad.numpy()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(tensors[argnum])
            value = fn(*tensors)
        grad = tape.gradient(value, tensors[argnum])
        grad = tf.zeros_like(tensors[argnum]) if grad is None else grad
        return _to_float(value), np.asarray(grad)
    if backend == "jax":
        import jax

        def scalar(x: Any) -> Any:
            args = list(tensors)
            args[argnum] = x
            return fn(*args)

        value, grad = jax.value_and_grad(scalar)(tensors[argnum])
        return _to_float(value), np.asarray(grad)
    raise ValueError(f"unsupported Keras backend {backend!r}")


def numeric_gradient(
    fn: Callable[..., Any], inputs: Sequence[np.ndarray], argnum: int = 0, framework: str = "torch", eps: float = 1e-6
) -> np.ndarray:
    """Central differences ``(f(x + eps) - f(x - eps)) / (2 eps)``, one element at a time.

    Where one side is not finite (a singularity within ``eps``, such as ``sqrt`` just above 0), the
    one-sided difference from the finite side is used; where neither is finite, the element is NaN.

    Args:
        fn: a function of the converted ``inputs`` that returns a scalar tensor.
        inputs: NumPy arrays, the positional arguments of ``fn``; ``inputs[argnum]`` is perturbed
            in float64.
        argnum: the index in ``inputs`` of the argument to differentiate.
        framework: ``"torch"``, or ``"keras"`` (the active Keras backend; ``fn`` is compiled with
            ``jax.jit`` on JAX).
        eps: the step of the differences.

    Returns:
        The gradient, a float64 NumPy array of ``inputs[argnum]``'s shape (2·N evaluations of
        ``fn`` for N elements).

    Raises:
        Exception: whatever ``fn`` raises, unchanged.

    Example:

    >>> import numpy as np
    >>> from losses.testing import numeric_gradient
    >>> np.round(numeric_gradient(lambda x: (x ** 3).sum(), [np.array([0.5, -1.0, 2.0])]), 6).tolist()
    [0.75, 3.0, 12.0]
    """
    if framework == "keras":
        import keras

        if keras.backend.backend() == "jax":
            import jax

            fn = jax.jit(fn)  # compiled once: eager JAX dispatch would dominate 2·N evaluations
    base = [np.array(a, dtype=np.float64, order="C") if i == argnum else np.asarray(a) for i, a in enumerate(inputs)]
    x = base[argnum]
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: x is C-contiguous

    def value() -> float:
        return _to_float(fn(*[_to_framework(a, framework) for a in base]))

    center = None
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = value()
        flat[i] = saved - eps
        minus = value()
        flat[i] = saved
        slope = (plus - minus) / (2 * eps)
        if not np.isfinite(slope):
            center = value() if center is None else center
            if np.isfinite(plus) and np.isfinite(center):
                slope = (plus - center) / eps
            elif np.isfinite(minus) and np.isfinite(center):
                slope = (center - minus) / eps
        grad.flat[i] = slope
    return grad


def check_gradient(
    fn: Callable[..., Any],
    *inputs: np.ndarray,
    argnum: int = 0,
    framework: str = "torch",
    eps: float = 1e-6,
    rtol: float = 1e-4,
    atol: float = 1e-6,
) -> None:
    """Raise :class:`GradientMismatch` unless autodiff and central differences agree.

    The input that is differentiated is converted to float64; the check passes when every element
    satisfies ``|autodiff - numeric| <= atol + rtol * |numeric|``. Keep inputs away from kinks
    (``|x| = 0`` for an absolute value, thresholds): there the two sides legitimately differ. Where
    the finite differences are NaN or infinite although autodiff is finite (a singularity within
    ``eps``), the gradient cannot be checked and the check fails, saying so.

    Args:
        fn: a function of the converted ``inputs`` that returns a scalar tensor.
        *inputs: NumPy arrays, the positional arguments of ``fn``.
        argnum: the index in ``inputs`` of the argument to differentiate.
        framework: ``"torch"`` or ``"keras"`` (the active Keras backend).
        eps: the step of the central differences.
        rtol: the relative tolerance.
        atol: the absolute tolerance.

    Returns:
        None: the check passed.

    Raises:
        GradientMismatch: an element out of tolerance, a non-finite autodiff gradient, a gradient
            of the wrong shape, or finite differences that are not finite where autodiff is.
        ValueError: ``framework`` is not ``"torch"`` or ``"keras"``.

    Example:

    >>> import numpy as np
    >>> from losses.testing import check_gradient
    >>> check_gradient(lambda x, w: (w * x ** 2).sum(), np.array([0.5, -1.0]), np.array([2.0, 3.0]))
    >>> check_gradient(lambda x, w: (w * x ** 2).sum(), np.array([0.5, -1.0]), np.array([2.0, 3.0]), argnum=1)
    """
    inputs = tuple(np.array(a, dtype=np.float64) if i == argnum else np.asarray(a) for i, a in enumerate(inputs))
    _, analytic = value_and_grad(fn, inputs, argnum=argnum, framework=framework)
    numeric = numeric_gradient(fn, inputs, argnum=argnum, framework=framework, eps=eps)
    if analytic.shape != numeric.shape:
        raise GradientMismatch(f"gradient has shape {analytic.shape}; the input has shape {numeric.shape}")
    unchecked = ~np.isfinite(numeric) & np.isfinite(analytic)
    if np.any(unchecked):
        index = np.unravel_index(int(np.argmax(unchecked)), numeric.shape)
        raise GradientMismatch(
            f"finite differences are {numeric[index]!r} at index {tuple(int(i) for i in index)} where autodiff "
            f"gives {analytic[index]!r}: a singularity lies within eps={eps:g} of the input, so the gradient "
            "cannot be checked here; move the input away from it"
        )
    error = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    if not np.all(np.isfinite(analytic)) or np.any(error > bound):
        worst = int(np.argmax(np.where(np.isfinite(error), error - bound, np.inf)))
        index = np.unravel_index(worst, numeric.shape)
        finite = error[np.isfinite(error)]
        raise GradientMismatch(
            f"autodiff and finite differences disagree at index {tuple(int(i) for i in index)}: "
            f"autodiff {analytic[index]!r}, numeric {numeric[index]!r} "
            f"(max abs error {float(finite.max()) if finite.size else float('nan'):.3g}, atol={atol:g}, rtol={rtol:g})"
        )
