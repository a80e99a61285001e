"""Smooth surrogates of round, floor, ceil, step and sign for PyTorch, with straight-through forms.

The formulas, the range of ``alpha`` and the docstrings live in :mod:`losses._surrogates`, shared
with the Keras frontend.

Two paths compute the same thing. On CPU tensors (the C library) and CUDA tensors (Triton), one
``autograd.Function`` runs a kernel that writes the value (or, straight through, the exact hard
value). On the CPU the backward computes upstream · derivative from the saved input in one more
pass (written over the upstream gradient when nothing else holds it: a step allocates no
input-sized buffer beyond the value and the gradient); on CUDA the forward's pass also writes the
derivative and the backward scales it in place. Each function and its derivative are one
definition in the kernels. Elsewhere (float64 on CUDA, no compiler,
``LOSSES_KERNELS=torch``, inside ``torch.compile`` and torch.func transforms, and for second
derivatives) the portable path composes PyTorch ops: autograd differentiates the soft forms, and
the straight-through forms are one ``torch.autograd.Function`` whose backward is the surrogate's
derivative, written out (not autodiff of the surrogate, and not the ``x + (hard - x).detach()``
trick, which would evaluate the surrogate in the forward pass too).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from losses import _surrogates as _spec
from losses._validation import describe, floating_dtype_error
from losses.torch._kernels import cpu_elementwise
from losses.torch._kernels import elementwise as triton_elementwise

__all__ = ["soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign"]

_KEPT_DTYPES = (torch.float32, torch.float64)


def _check(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {describe(x)}")
    if not x.is_floating_point():
        raise floating_dtype_error("x", x.dtype)
    return x


def _sech2(y: torch.Tensor) -> torch.Tensor:
    # 1 - tanh(y)**2 = 4e / (1 + e)**2 with e = exp(-2|y|): no cancellation in the tails, exactly 1 at 0.
    e = torch.exp(-2.0 * y.abs())
    return 4.0 * e / (1.0 + e).square()


# Values (autodiff gives the soft forms' gradients) and derivatives (the straight-through backward).


# soft_round(x + shift), y = x + shift, m = floor(y) + 1/2, never from x + shift itself, which rounds
# where it crosses a power of two and, beyond 2^22 in float32, to even, picking the neighbouring cell
# (see cpu_elementwise.c): floor(y) = k + j from k = floor(x), f = x - k, j = [f >= 1 - shift] -
# [f < -shift], and y - m = x - (k + c) = f - c with c = j + 1/2 - shift, taken as f - c wherever f
# is exact (all but x in (-1/2, 0)).


def _round_cell(x: torch.Tensor, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(floor(x + shift), x + shift - m), exactly."""
    k = torch.floor(x)
    f = x - k
    j = (f >= 1.0 - shift).to(x.dtype) - (f < -shift).to(x.dtype)
    c = j + (0.5 - shift)
    return k + j, torch.where((x > -0.5) & (x < 0.0), x - (k + c), f - c)


def _round_value(x: torch.Tensor, alpha: float, shift: float = 0.0) -> torch.Tensor:
    floor, residual = _round_cell(x, shift)
    return (floor + 0.5) + torch.tanh(alpha * residual) * _spec.round_scale(alpha)


def _round_derivative(x: torch.Tensor, alpha: float, shift: float = 0.0) -> torch.Tensor:
    return _sech2(alpha * _round_cell(x, shift)[1]) * (alpha * _spec.round_scale(alpha))


def _floor_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return _round_derivative(x, alpha, -0.5)


def _ceil_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return _round_derivative(x, alpha, 0.5)


def _step_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    z = alpha * x
    return alpha * torch.sigmoid(z) * torch.sigmoid(-z)


def _sign_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return 2.0 * _step_derivative(x, alpha)


def _hard_sign(x: torch.Tensor) -> torch.Tensor:
    # torch.sign(nan) is 0: a NaN that comes in must come out.
    return torch.where(torch.isnan(x), x, torch.sign(x))


def _hard_step(x: torch.Tensor) -> torch.Tensor:
    # (sign + 1) / 2 is exact: 0, 1/2 or 1, with step(0) = 1/2 like the surrogate at 0.
    return (_hard_sign(x) + 1.0) * 0.5


class _WithDerivative(torch.autograd.Function):
    """Forward ``function(x, alpha)`` (the surrogate, or a straight-through form's hard value),
    backward ``derivative(x, alpha)`` times the incoming gradient.

    The derivative is the closed form (e.g. ``alpha·σ(z)·σ(−z)``), not autograd through the value,
    which takes ``s·(1 − s)`` from ``s`` rounded next to 1: in float32 that loses the tails (0 where
    the derivative is 2e-5, at ``alpha·x = 20``) that the C and Triton kernels keep. It is made of
    PyTorch ops, so that a second derivative and the ``torch.func`` transforms still work."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        function: Callable[[torch.Tensor, float], torch.Tensor],
        derivative: Callable[[torch.Tensor, float], torch.Tensor],
        alpha: float,
    ) -> torch.Tensor:
        return function(x, alpha)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, _, derivative, alpha = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.derivative = derivative
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x, ctx.alpha), None, None, None


class _WithDerivativeForwardMode(_WithDerivative):
    """With forward-mode AD (``torch.func.jvp``) too, the tangent times the derivative; apart, since
    ``torch.compile`` cannot trace a Function that defines ``jvp``."""

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, *_: Any) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return tangent * ctx.derivative(x, ctx.alpha)


# The five functions: (soft value, hard value, derivative), each of (x, alpha), on the portable path
# (defined once: torch.compile guards on their identity), and on the kernels (function, shift of its
# argument, hard value); the rounding family is soft_round shifted.
_Of = Callable[[torch.Tensor, float], torch.Tensor]
_PORTABLE: dict[str, tuple[_Of, _Of, _Of]] = {
    "soft_round": (lambda x, alpha: _round_value(x, alpha), lambda x, _: torch.round(x), _round_derivative),
    "soft_floor": (lambda x, alpha: _round_value(x, alpha, -0.5), lambda x, _: torch.floor(x), _floor_derivative),
    "soft_ceil": (lambda x, alpha: _round_value(x, alpha, 0.5), lambda x, _: torch.ceil(x), _ceil_derivative),
    "soft_step": (lambda x, alpha: torch.sigmoid(alpha * x), lambda x, _: _hard_step(x), _step_derivative),
    # tanh(z / 2) equals 2 * sigmoid(z) - 1 without its cancellation near 0.
    "soft_sign": (lambda x, alpha: torch.tanh(0.5 * alpha * x), lambda x, _: _hard_sign(x), _sign_derivative),
}
_KERNELS = {
    "soft_round": ("soft_round", 0.0, "round"),
    "soft_floor": ("soft_round", -0.5, "floor"),
    "soft_ceil": ("soft_round", 0.5, "ceil"),
    "soft_step": ("soft_step", 0.0, "step"),
    "soft_sign": ("soft_sign", 0.0, "sign"),
}


def _kernel_backend(x: torch.Tensor) -> ModuleType | None:
    """The kernels that take ``x`` (C on the CPU, Triton on CUDA), or None for the portable path."""
    if triton_elementwise.supports(x):
        return triton_elementwise
    return cpu_elementwise if cpu_elementwise.supports(x) else None


class _Fused(torch.autograd.Function):
    """Forward: the value (or hard value) in one kernel pass; backward: the derivative times the
    upstream gradient. The C library recomputes the derivative from the saved input in the backward
    (no input-sized buffer is kept between the passes); Triton writes it beside the value and the
    backward only scales it, in place (nothing to do when the upstream gradient is 1)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, backend: ModuleType, name: str, alpha: float, straight_through: bool
    ) -> torch.Tensor:
        function, _, hard = _KERNELS[name]
        kernel, parameters = hard if straight_through else function, _parameters(name, alpha)
        if backend.STORES_DERIVATIVE:
            value, ctx.derivative = backend.value_and_derivative(kernel, parameters, x)
        else:
            value, ctx.derivative = backend.value(kernel, parameters, x), None
        ctx.backend, ctx.name, ctx.alpha = backend, name, alpha
        ctx.save_for_backward(x)
        return value

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        # First, while `grad` is referenced only by this frame and the caller (see overwritable).
        overwrite = ctx.backend is cpu_elementwise and cpu_elementwise.overwritable(grad)
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the derivative from differentiable ops
            derivative = _PORTABLE[ctx.name][2]
            computed = x if x.dtype in _KEPT_DTYPES else x.float()
            return (grad * derivative(computed, ctx.alpha)).to(x.dtype), None, None, None, None
        derivative, ctx.derivative = ctx.derivative, None  # handed out as the gradient
        if derivative is not None:
            return ctx.backend.scale_in_place(derivative, grad).to(x.dtype), None, None, None, None
        # Not kept (the C library), or a second backward through the graph (retain_graph=True).
        function, parameters = _KERNELS[ctx.name][0], _parameters(ctx.name, ctx.alpha)
        if overwrite:
            return cpu_elementwise.gradient(function, parameters, x, None, grad, overwrite=True), None, None, None, None
        return ctx.backend.gradient(function, parameters, x, None, grad), None, None, None, None


def _parameters(name: str, alpha: float) -> tuple[float, float, float]:
    function, shift, _ = _KERNELS[name]
    return alpha, _spec.round_scale(alpha) if function == "soft_round" else 0.0, shift


def _surrogate(name: str, x: torch.Tensor, alpha: float, straight_through: bool) -> torch.Tensor:
    alpha, straight_through = _spec.check_options(alpha, straight_through)
    x = _check(x)
    backend = _kernel_backend(x)
    if backend is not None:
        if torch.is_grad_enabled() and x.requires_grad:
            return _Fused.apply(x, backend, name, alpha, straight_through)
        function, _, hard_function = _KERNELS[name]
        return backend.value(hard_function if straight_through else function, _parameters(name, alpha), x)
    value, hard, derivative = _PORTABLE[name]
    x = x if x.dtype in _KEPT_DTYPES else x.float()
    surrogate = _WithDerivative if torch.compiler.is_compiling() else _WithDerivativeForwardMode
    return surrogate.apply(x, hard if straight_through else value, derivative, alpha)


def soft_round(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    """Smooth round: ``soft_round(x, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_round(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative           = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard round at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard round it passes through the midpoint.
    The hard value of ``straight_through=True`` rounds half to even, like ``round`` in NumPy, PyTorch
    and TensorFlow.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard round:
    ``|soft_round(x, alpha) - round(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_round(x, alpha) - x| <= alpha**2 / 48`` (the identity) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (round of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import torch
    >>> from losses.torch import soft_round
    >>> x = torch.tensor([0.2, 0.5, 1.7], requires_grad=True)
    >>> soft_round(x, alpha=10.0)
    tensor([0.0024, 0.5000, 1.9821], grad_fn=<...>)
    >>> y = soft_round(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0., 0., 2.], grad_fn=<...>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.0493, 5.0005, 0.3533])
    """
    return _surrogate("soft_round", x, alpha, straight_through)


def soft_floor(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    """Smooth floor: ``soft_floor(x, alpha) = soft_round(x - 1/2, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x - 1/2``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_floor(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative           = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard floor at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard floor it passes through the midpoint.
    The hard value of ``straight_through=True`` is ``floor``.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard floor:
    ``|soft_floor(x, alpha) - floor(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_floor(x, alpha) - (x - 1/2)| <= alpha**2 / 48`` (the identity, shifted) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (floor of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import torch
    >>> from losses.torch import soft_floor
    >>> x = torch.tensor([0.2, 1.0, 1.7], requires_grad=True)
    >>> soft_floor(x, alpha=10.0)
    tensor([-0.0179,  0.5000,  1.0024], grad_fn=<...>)
    >>> y = soft_floor(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0., 1., 1.], grad_fn=<...>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.3533, 5.0005, 0.0493])
    """
    return _surrogate("soft_floor", x, alpha, straight_through)


def soft_ceil(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    """Smooth ceil: ``soft_ceil(x, alpha) = soft_round(x + 1/2, alpha)`` (Agustsson & Theis, 2020).

    With ``y = x + 1/2``, ``m = floor(y) + 1/2`` and ``r = y - m`` in ``[-1/2, 1/2)``::

        soft_ceil(x, alpha) = m + tanh(alpha * r) / (2 * tanh(alpha / 2))
        derivative          = alpha * (1 - tanh(alpha * r)**2) / (2 * tanh(alpha / 2))

    It is C-infinity and strictly increasing inside each unit interval of ``y`` and meets the
    hard ceil at the ends of that interval, so it is continuous and C1 where ``floor(y)``
    changes branch (the derivative there is ``alpha / sinh(alpha)``, from both sides); the second
    derivative jumps there. At the jumps of the hard ceil it passes through the midpoint.
    The hard value of ``straight_through=True`` is ``ceil``.

    Limits, with ``d`` the distance from ``x`` to the nearest jump of the hard ceil:
    ``|soft_ceil(x, alpha) - ceil(x)| <= exp(-2 * alpha * d)``, and
    ``|soft_ceil(x, alpha) - (x + 1/2)| <= alpha**2 / 48`` (the identity, shifted) for alpha <= 1.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (ceil of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import torch
    >>> from losses.torch import soft_ceil
    >>> x = torch.tensor([0.2, 1.0, 1.7], requires_grad=True)
    >>> soft_ceil(x, alpha=10.0)
    tensor([0.9821, 1.5000, 2.0024], grad_fn=<...>)
    >>> soft_ceil(x, alpha=10.0, straight_through=True)
    tensor([1., 1., 2.], grad_fn=<...>)
    """
    return _surrogate("soft_ceil", x, alpha, straight_through)


def soft_step(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    """Smooth Heaviside step: ``soft_step(x, alpha) = sigmoid(alpha * x)``.

    Derivative ``alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 4`` (at 0).
    The hard value of ``straight_through=True`` is 1 for x > 0, 0 for x < 0 and 1/2 at 0 (the
    value of the surrogate at 0 for every alpha; ``numpy.heaviside(x, 0.5)``).
    To turn ``if a > threshold`` into a weight, use ``soft_step(a - threshold, alpha)``.

    Limits: ``|soft_step(x, alpha) - step(x)| <= exp(-alpha * |x|)``, and
    ``|soft_step(x, alpha) - (1/2 + alpha * x / 4)| <= (alpha * |x|)**3 / 48``.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (step of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import torch
    >>> from losses.torch import soft_step
    >>> x = torch.tensor([-0.5, 0.0, 0.1], requires_grad=True)
    >>> soft_step(x, alpha=10.0)
    tensor([0.0067, 0.5000, 0.7311], grad_fn=<...>)
    >>> y = soft_step(x, alpha=10.0, straight_through=True)
    >>> y
    tensor([0.0000, 0.5000, 1.0000], grad_fn=<...>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([0.0665, 2.5000, 1.9661])
    """
    return _surrogate("soft_step", x, alpha, straight_through)


def soft_sign(x: torch.Tensor, alpha: float = _spec.DEFAULT_ALPHA, straight_through: bool = False) -> torch.Tensor:
    """Smooth sign: ``soft_sign(x, alpha) = 2 * sigmoid(alpha * x) - 1 = tanh(alpha * x / 2)``.

    Derivative ``2 * alpha * sigmoid(alpha * x) * sigmoid(-alpha * x)``, at most ``alpha / 2``
    (at 0). The hard value of ``straight_through=True`` is ``sign(x)`` with ``sign(0) = 0``.
    (Not ``x / (1 + |x|)``, which Keras calls softsign: that one has no sharpness.)

    Limits: ``|soft_sign(x, alpha) - sign(x)| <= 2 * exp(-alpha * |x|)``, and
    ``|soft_sign(x, alpha) - alpha * x / 2| <= (alpha * |x|)**3 / 24``.

    Args:
        x: tensor of any shape with a floating-point dtype. float16, bfloat16 (and other reduced
            precisions) are computed in float32; float32 and float64 are kept.
        alpha: sharpness, a Python float in ``[0.001, 10000]`` (default
            ``10``). Large alpha approaches the hard function, small alpha the smooth
            end (see above). Anything else raises ``TypeError`` (not a real number, a tensor) or
            ``ValueError`` (outside the range, not finite).
        straight_through: if True, the forward pass returns the exact hard value (sign of x,
            exactly, in float64 too) and the backward pass the derivative of the surrogate,
            written by hand (not the ``x + stop_gradient(hard - x)`` trick).

    Returns:
        A tensor of the shape of ``x``, float32 for reduced-precision inputs, else ``x``'s dtype.
        Finite for every finite ``x`` and every alpha in the range, and so is its gradient.

    Raises:
        TypeError: ``x`` is not floating-point (in PyTorch, not a tensor), ``alpha`` is not a real
            number (a tensor, for instance), ``straight_through`` is not a bool, or (Keras)
            ``straight_through=True`` is applied to a symbolic ``keras.Input``.
        ValueError: ``alpha`` is outside ``[0.001, 10000]`` or not finite.

    Example:

    >>> import torch
    >>> from losses.torch import soft_sign
    >>> x = torch.tensor([-0.5, 0.0, 0.1], requires_grad=True)
    >>> soft_sign(x, alpha=10.0)
    tensor([-0.9866,  0.0000,  0.4621], grad_fn=<...>)
    >>> soft_sign(x, alpha=10.0, straight_through=True)
    tensor([-1.,  0.,  1.], grad_fn=<...>)
    """
    return _surrogate("soft_sign", x, alpha, straight_through)
