"""Triton kernels of the elementwise functions: penalized MAE and the smooth surrogates.

Each function is one ``@jit`` definition returning its value and its derivative together, the
same formulas as ``cpu_elementwise.c`` (one ``exp`` per element; tanh near 0 from an odd
polynomial, 1 - tanh² and sigmoid·sigmoid' from the same ``exp`` without cancellation). The
kernels apply the function chosen by the ``FUNCTION`` constant: :func:`value_kernel` (the value,
or a straight-through surrogate's hard value, and the derivative in the same pass),
:func:`gradient_kernel` (upstream · derivative) and :func:`loss_kernel` (a loss and its
derivative in one pass, per element or as partial sums).
A NaN or an infinity that comes in comes out: no select below turns one into a number.

Loaded through ``losses.torch._kernels.triton_module`` only; importing it imports ``triton``.
"""

from __future__ import annotations

from losses.torch._kernels import interpreting
from losses.torch._kernels._triton_base import jit, tl

INTERPRET = interpreting()  # the setting this module was (re)loaded for

REDUCE_BLOCK = 4096

# FUNCTION, the function (value and derivative), and HARD, the hard value of a straight-through
# form, are these numbers (the kernels compare with literals: a kernel reads no Python global).
FUNCTIONS = {"soft_round": 0, "soft_step": 1, "soft_sign": 2, "penalized_mae": 3}
HARD = {None: 0, "round": 1, "floor": 2, "ceil": 3, "step": 4, "sign": 5}


@jit
def _sign(x):
    # sign(±0) = +0, and a NaN stays NaN (every comparison with it is false)
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, tl.where(x == 0, 0.0, x)))


@jit
def _tanh_sech2(z):
    # tanh(z) and 1 - tanh(z)^2 = 4e / (1 + e)^2 with e = exp(-2|z|); near 0, tanh from Cephes'
    # odd polynomial, as the quotient (1 - e) / (1 + e) loses its relative precision there.
    e = tl.exp(-2.0 * tl.abs(z))
    inv = 1.0 / (1.0 + e)
    zz = z * z
    small = -5.70498872745e-3 * zz + 2.06390887954e-2
    small = small * zz - 5.37397155531e-2
    small = small * zz + 1.33314422036e-1
    small = small * zz - 3.33332819422e-1
    small = small * zz * z + z
    large = (1.0 - e) * inv
    t = tl.where(tl.abs(z) < 0.625, small, tl.where(z < 0, -large, large))
    return t, 4.0 * e * inv * inv


@jit
def _function(FUNCTION: tl.constexpr, x, p0, p1, p2):
    """(value, derivative) at x. Parameters: the soft rounding family (alpha, 1 / (2 tanh(alpha / 2)),
    shift); soft_step and soft_sign (alpha); penalized MAE of x = prediction - target (delta, penalty)."""
    if FUNCTION == 0:  # soft_round family: m + p1·tanh(alpha·(y - m)), y = x + shift, m = floor(y) + 1/2
        # floor(y) = k + j and y - m, exactly, never from x + shift (see cpu_elementwise.c)
        k = tl.floor(x)
        f = x - k
        j = tl.where(f >= 1.0 - p2, 1.0, 0.0) - tl.where(f < -p2, 1.0, 0.0)
        c = j + (0.5 - p2)
        r = tl.where((x > -0.5) & (x < 0.0), x - (k + c), f - c)
        t, sech2 = _tanh_sech2(p0 * r)
        return ((k + j) + 0.5) + t * p1, (p0 * p1) * sech2
    elif FUNCTION == 1:  # soft_step: sigmoid(alpha·x)
        z = p0 * x
        e = tl.exp(-tl.abs(z))
        inv = 1.0 / (1.0 + e)
        return tl.where(z >= 0, inv, e * inv), p0 * e * inv * inv
    elif FUNCTION == 2:  # soft_sign: tanh(alpha·x / 2)
        t, sech2 = _tanh_sech2((0.5 * p0) * x)
        return t, (0.5 * p0) * sech2
    else:  # penalized_mae: |x| + penalty·max(|x| - delta, 0)^2
        # The value in float64 (as cpu_elementwise.c): a term beyond float32's range is inf only
        # where it is stored as one; a sum of such terms may have a mean in range. With penalty 0
        # the penalty terms are 0, not 0·inf = NaN where x overflowed.
        magnitude = tl.abs(x)
        excess = tl.maximum(magnitude - p0, 0.0)
        penalized = p1 > 0
        excess64 = excess.to(tl.float64)
        value = magnitude.to(tl.float64) + tl.where(penalized, excess64 * p1 * excess64, 0.0)
        return value, _sign(x) * (1.0 + tl.where(penalized, 2.0 * p1 * excess, 0.0))


@jit
def _hard(HARD: tl.constexpr, x):
    if HARD == 1:  # round, half to even: adding and removing 2^23 rounds a float32 as the hardware does
        big = tl.where(x < 0, -8388608.0, 8388608.0)
        r = tl.where(tl.abs(x) < 8388608.0, (x + big) - big, x)
        return tl.where(r == 0, x * 0.0, r)  # round(-0.3) = -0
    elif HARD == 2:  # floor
        return tl.floor(x)
    elif HARD == 3:  # ceil
        return tl.ceil(x)
    elif HARD == 4:  # step
        return (_sign(x) + 1.0) * 0.5
    else:  # sign
        return _sign(x)


@jit
def value_kernel(
    x_ptr,
    out_ptr,
    derivative_ptr,
    n,
    p0,
    p1,
    p2,
    FUNCTION: tl.constexpr,
    HARD: tl.constexpr,
    WRITE_DERIVATIVE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # The value (HARD: a straight-through form's hard value) and, in the same pass, the derivative.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    value, derivative = _function(FUNCTION, x, p0, p1, p2)
    if HARD != 0:
        value = _hard(HARD, x)
    tl.store(out_ptr + offs, value, mask=inside)
    if WRITE_DERIVATIVE:
        tl.store(derivative_ptr + offs, derivative, mask=inside)


@jit
def gradient_kernel(
    x_ptr,
    t_ptr,
    upstream_ptr,
    grad_ptr,
    n,
    p0,
    p1,
    p2,
    FUNCTION: tl.constexpr,
    HAS_TARGET: tl.constexpr,
    UPSTREAM_SCALAR: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # upstream · derivative; an upstream that is one value broadcast (a sum's or mean's gradient)
    # is read once per program, from the device: no host sync.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    if HAS_TARGET:
        x = x - tl.load(t_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    _, derivative = _function(FUNCTION, x, p0, p1, p2)
    if UPSTREAM_SCALAR:
        upstream = tl.load(upstream_ptr).to(tl.float32)
    else:
        upstream = tl.load(upstream_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    tl.store(grad_ptr + offs, (upstream * derivative).to(grad_ptr.dtype.element_ty), mask=inside)


@jit
def loss_kernel(
    x_ptr,
    t_ptr,
    loss_ptr,
    grad_ptr,
    partial_ptr,
    n,
    p0,
    p1,
    p2,
    grad_scale,
    FUNCTION: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
    ELEMENTWISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # The loss of x - t and its derivative in one pass. Each program handles BLOCK elements and
    # writes either their losses (ELEMENTWISE) or one partial sum, in float64 (as the C kernel
    # sums): a mean of finite float32 terms is finite even where their float32 sum would overflow.
    # The partial sums are added in a fixed order by sum_kernel (no float atomics).
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < n
    x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    t = tl.load(t_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    loss, derivative = _function(FUNCTION, x - t, p0, p1, p2)
    loss = tl.where(inside, loss, 0.0)
    if ELEMENTWISE:
        tl.store(loss_ptr + offs, loss, mask=inside)
    else:
        tl.store(partial_ptr + pid, tl.sum(loss, axis=0))
    if WRITE_GRAD:
        tl.store(grad_ptr + offs, (derivative * grad_scale).to(grad_ptr.dtype.element_ty), mask=inside)


@jit
def sum_kernel(partial_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
    # One program: a fixed summation order, hence the same result on every run. The float64
    # partial sums are scaled before the result is rounded to the float32 loss.
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(partial_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, (tl.sum(acc, axis=0) * scale).to(tl.float32))


@jit
def scale_unless_one_kernel(grad_ptr, factor_ptr, n, BLOCK: tl.constexpr):
    # In place grad *= factor, decided on the device: when the factor is 1 (the usual
    # loss.backward()) the programs return at once and no element is read or written.
    factor = tl.load(factor_ptr).to(tl.float32)
    if factor != 1.0:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        g = tl.load(grad_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        tl.store(grad_ptr + offs, (g * factor).to(grad_ptr.dtype.element_ty), mask=inside)
