"""Triton kernels of the overlap statistics and of their gradient.

Loaded through ``losses.torch._kernels.triton_module`` only; importing it imports ``triton``.

Layouts: ``x`` is ``(B, C, HW)`` contiguous; a label map is ``(B, HW)``; a dense target has the
shape of ``x``; a weight map is ``(B, HW)``. Partial sums are ``(B, C, n_chunks, PARTIALS)``,
reduced in a fixed order by ``reduce_kernel`` into ``(S, C, NUM_STATS)`` in the layout of
:mod:`losses._overlap` (its indices are constexprs here). Slot ``OUT_OF_RANGE`` holds the number of
values of the block out of range: valid labels outside ``{0, 1}`` / ``[0, C)`` (multiclass:
N − Σ_c G, derived from sums the block has anyway, since an in-range label matches exactly one
class), valid per-class targets outside [0, 1], and probabilities outside [0, 1]
(``FROM_LOGITS=False``); the reduction asserts on the device that it is 0. A block that reads a
NaN or an infinity (input or float target) stores NaN as its count, and the reduction turns every
sum of that (row, class) into NaN, so that the loss of the row is NaN. With a weight map every
position counts with its weight (``v = valid·w``); without one, ``w = 1``.
"""

from __future__ import annotations

from losses._overlap import (
    ABS_DIFF,
    INTERSECTION,
    NUM_STATS,
    PRED_SQUARES,
    PRED_SUM,
    TARGET_SQUARES,
    TARGET_SUM,
    VALID_COUNT,
)
from losses.torch._kernels import interpreting
from losses.torch._kernels._triton_base import jit, tl

INTERPRET = interpreting()  # the setting this module was (re)loaded for

REDUCE_BLOCK = 64
OUT_OF_RANGE = NUM_STATS  # the slot of the partial sums that counts values out of range
PARTIALS = NUM_STATS + 1

_constexpr = tl.constexpr if tl is not None else (lambda value: value)
S_I = _constexpr(INTERSECTION)
S_P = _constexpr(PRED_SUM)
S_G = _constexpr(TARGET_SUM)
S_P2 = _constexpr(PRED_SQUARES)
S_G2 = _constexpr(TARGET_SQUARES)
S_A = _constexpr(ABS_DIFF)
S_N = _constexpr(VALID_COUNT)
S_BAD = _constexpr(OUT_OF_RANGE)
N_STATS = _constexpr(NUM_STATS)
N_PARTIALS = _constexpr(PARTIALS)


@jit
def _not_finite(x):
    # From the bits (exponent all ones), which no compiler flag can fold away.
    return (x.to(tl.int32, bitcast=True) & 0x7F800000) == 0x7F800000


@jit
def _log_sigmoid(x):
    # log(1 / (1 + e^-x)) from the logit: finite where the probability underflows; log(1 + u) with
    # the rounding of 1 + u corrected, for u = e^-|x| below float32's precision next to 1.
    u = tl.exp(-tl.abs(x))
    w = 1.0 + u
    return -(tl.maximum(-x, 0.0) + tl.log(w) - ((w - 1.0) - u) / w)


@jit
def _saturate_float16(dp):
    # A finite gradient beyond float16's range becomes its largest value; ±inf (from a non-finite
    # input) stays, so that a loss scaler sees it.
    clamped = tl.where(dp > 65504.0, 65504.0, tl.where(dp < -65504.0, -65504.0, dp))
    return tl.where(_not_finite(dp), dp, clamped)


@jit
def _focal_power(m, gamma, TERM: tl.constexpr):
    # (1 − p_t)^γ for m = 1 − p_t in [0, 1]: TERM 1 cross-entropy (1), 2 any γ, 3 γ = 2.
    if TERM == 1:
        return tl.full(m.shape, 1.0, tl.float32)
    elif TERM == 3:
        return m * m
    else:
        return tl.where(m > 0.0, tl.exp(gamma * tl.log(tl.where(m > 0.0, m, 1.0))), 0.0)


@jit
def _binary_term(x, p, t, gamma, a_pos, a_neg, TERM: tl.constexpr):
    # α_t·(1 − p_t)^γ·BCE(x, t) of a sigmoid element, t the smoothed target.
    log_p = _log_sigmoid(x)
    ce = -(t * log_p + (1.0 - t) * (log_p - x))
    miss = p * (1.0 - t) + (1.0 - p) * t
    return (a_pos * t + a_neg * (1.0 - t)) * _focal_power(miss, gamma, TERM) * ce


@jit
def _binary_term_slope(x, p, t, gamma, a_pos, a_neg, TERM: tl.constexpr):
    # ∂/∂x of _binary_term: α_t·((1 − p_t)^γ·(p − t) + γ·(1 − p_t)^(γ−1)·(1 − 2t)·p·(1 − p)·BCE), the
    # second product as (1 − p_t)^γ·ratio with ratio = p·(1 − p) / (1 − p_t) <= 1.
    slope = p - t
    if TERM != 1:
        log_p = _log_sigmoid(x)
        ce = -(t * log_p + (1.0 - t) * (log_p - x))
        miss = p * (1.0 - t) + (1.0 - p) * t
        ratio = tl.where(miss > 0.0, p * (1.0 - p) / tl.where(miss > 0.0, miss, 1.0), 0.0)
        slope = _focal_power(miss, gamma, TERM) * (slope + gamma * ratio * (1.0 - 2.0 * t) * ce)
    return (a_pos * t + a_neg * (1.0 - t)) * slope


@jit
def _softmax_focal_slope(p, log_p, gamma, TERM: tl.constexpr):
    # γ·p·(1 − p)^(γ−1)·log p − (1 − p)^γ, 0 at p = 1 (its limit).
    rest = 1.0 - p
    if TERM == 1:
        return tl.full(p.shape, -1.0, tl.float32)
    elif TERM == 3:
        return 2.0 * p * rest * log_p - rest * rest
    else:
        lower = tl.where(rest > 0.0, tl.exp((gamma - 1.0) * tl.log(tl.where(rest > 0.0, rest, 1.0))), 0.0)
        return gamma * p * lower * log_p - rest * lower


@jit
def _store_partials(base, i_, p_, g_, p2, g2, a_, n_, bad, mask):
    tl.store(base + S_I, i_, mask=mask)
    tl.store(base + S_P, p_, mask=mask)
    tl.store(base + S_G, g_, mask=mask)
    tl.store(base + S_P2, p2, mask=mask)
    tl.store(base + S_G2, g2, mask=mask)
    tl.store(base + S_A, a_, mask=mask)
    tl.store(base + S_N, n_, mask=mask)
    tl.store(base + S_BAD, bad, mask=mask)


@jit
def stats_rows_kernel(
    x_ptr,
    t_ptr,
    w_ptr,
    part_ptr,
    C,
    HW,
    n_chunks,
    iters,
    ignore_value,
    class_offset,
    num_labels,
    term_part_ptr,
    factor_ptr,
    gamma,
    smoothing,
    a_pos,
    a_neg,
    FROM_LOGITS: tl.constexpr,
    LABELS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    TERM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Binary and multilabel: each (image, class) row is independent (sigmoid per element).
    chunk = tl.program_id(0)
    row = tl.program_id(1)
    row64 = row.to(tl.int64)
    b = row // C
    c = row % C
    x_base = x_ptr + row64 * HW
    if LABELS:
        t_base = t_ptr + b.to(tl.int64) * HW
    else:
        t_base = t_ptr + row64 * HW
    w_base = w_ptr + b.to(tl.int64) * HW
    acc_i = tl.zeros([BLOCK], dtype=tl.float32)
    acc_p = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    acc_p2 = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g2 = tl.zeros([BLOCK], dtype=tl.float32)
    acc_a = tl.zeros([BLOCK], dtype=tl.float32)
    acc_n = tl.zeros([BLOCK], dtype=tl.float32)
    acc_bad = tl.zeros([BLOCK], dtype=tl.float32)
    acc_nf = tl.zeros([BLOCK], dtype=tl.float32)
    acc_term = tl.zeros([BLOCK], dtype=tl.float32)
    if TERM > 0:
        factor = tl.load(factor_ptr + c)
    start = chunk.to(tl.int64) * iters * BLOCK
    for it in range(iters):
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        inside = offs < HW
        valid = inside
        x = tl.load(x_base + offs, mask=inside, other=0.0).to(tl.float32)
        if LABELS:
            # int64: labels and ignore_index beyond 32 bits compare exactly.
            label = tl.load(t_base + offs, mask=inside, other=0).to(tl.int64)
            g = (label == c + class_offset).to(tl.float32)
            if HAS_IGNORE:
                valid = valid & (label != ignore_value)
            acc_bad += (valid & ((label < 0) | (label >= num_labels))).to(tl.float32)
        else:
            g = tl.load(t_base + offs, mask=inside, other=0.0).to(tl.float32)
            if HAS_IGNORE:
                valid = valid & (g != ignore_value)
            acc_bad += (valid & ((g < 0.0) | (g > 1.0)) & ~_not_finite(g)).to(tl.float32)
            acc_nf += _not_finite(g).to(tl.float32)
        acc_nf += _not_finite(x).to(tl.float32)
        if FROM_LOGITS:
            p = 1.0 / (1.0 + tl.exp(-x))
        else:
            p = x
            acc_bad += (inside & ((x < 0.0) | (x > 1.0)) & ~_not_finite(x)).to(tl.float32)
        v = valid.to(tl.float32)
        if HAS_WEIGHT:
            v = v * tl.load(w_base + offs, mask=inside, other=0.0).to(tl.float32)
        g = tl.where(valid, g, 0.0)
        acc_i += v * p * g
        acc_p += v * p
        acc_g += v * g
        acc_p2 += v * p * p
        acc_g2 += v * g * g
        acc_a += v * tl.abs(p - g)
        acc_n += v
        if TERM > 0:
            t = g * (1.0 - smoothing) + 0.5 * smoothing
            acc_term += v * factor * _binary_term(x, p, t, gamma, a_pos, a_neg, TERM)
    if TERM > 0:  # the term's sum and weight (the weight with no NaN: see the module docstring)
        term_base = term_part_ptr + (row64 * n_chunks + chunk) * 2
        tl.store(term_base, tl.sum(acc_term, axis=0))
        tl.store(term_base + 1, tl.sum(acc_n, axis=0))
    base = part_ptr + (row64 * n_chunks + chunk) * N_PARTIALS
    n_sum = tl.where(tl.sum(acc_nf, axis=0) > 0, float("nan"), tl.sum(acc_n, axis=0))
    # Counts of at most iters * BLOCK positions: exact in float32.
    _store_partials(
        base,
        tl.sum(acc_i, axis=0),
        tl.sum(acc_p, axis=0),
        tl.sum(acc_g, axis=0),
        tl.sum(acc_p2, axis=0),
        tl.sum(acc_g2, axis=0),
        tl.sum(acc_a, axis=0),
        n_sum,
        tl.sum(acc_bad, axis=0),
        None,
    )


@jit
def stats_multiclass_kernel(
    x_ptr,
    t_ptr,
    w_ptr,
    part_ptr,
    C,
    HW,
    n_chunks,
    iters,
    ignore_value,
    term_part_ptr,
    factor_ptr,
    gamma,
    smoothing,
    FROM_LOGITS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    TERM: tl.constexpr,
    C_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Multiclass from a label map: a (C_PAD, BLOCK) tile of one image holds every class of
    # BLOCK pixels, so the softmax and the one-hot comparison stay in registers.
    chunk = tl.program_id(0)
    b = tl.program_id(1)
    b64 = b.to(tl.int64)
    cls = tl.arange(0, C_PAD)
    has_cls = cls < C
    x_base = x_ptr + b64 * C * HW + cls.to(tl.int64)[:, None] * HW
    t_base = t_ptr + b64 * HW
    w_base = w_ptr + b64 * HW
    acc_i = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    acc_p = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    acc_p2 = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    acc_a = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    acc_n = tl.zeros([BLOCK], dtype=tl.float32)
    acc_count = tl.zeros([BLOCK], dtype=tl.float32)
    acc_bad = tl.zeros([BLOCK], dtype=tl.float32)
    acc_nf = tl.zeros([BLOCK], dtype=tl.float32)
    acc_term = tl.zeros([C_PAD, BLOCK], dtype=tl.float32)
    if TERM > 0:
        factor = tl.load(factor_ptr + cls, mask=has_cls, other=0.0)[:, None]
    start = chunk.to(tl.int64) * iters * BLOCK
    for it in range(iters):
        offs = start + it * BLOCK + tl.arange(0, BLOCK)
        inside = offs < HW
        in_tile = has_cls[:, None] & inside[None, :]
        x = tl.load(x_base + offs[None, :], mask=in_tile, other=0.0).to(tl.float32)
        acc_nf += tl.sum(_not_finite(x).to(tl.float32), axis=0)
        # int64: labels and ignore_index beyond 32 bits compare exactly.
        label = tl.load(t_base + offs, mask=inside, other=0).to(tl.int64)
        valid = inside
        if HAS_IGNORE:
            valid = valid & (label != ignore_value)
        if FROM_LOGITS:
            x = tl.where(has_cls[:, None], x, float("-inf"))
            m = tl.max(x, axis=0)[None, :]
            e = tl.exp(x - m)
            total = tl.sum(e, axis=0)[None, :]
            p = e / total
        else:
            p = x
            acc_bad += tl.sum((in_tile & ((x < 0.0) | (x > 1.0)) & ~_not_finite(x)).to(tl.float32), axis=0)
        v = valid.to(tl.float32)
        if HAS_WEIGHT:
            v = v * tl.load(w_base + offs, mask=inside, other=0.0).to(tl.float32)
        keep = valid[None, :] & has_cls[:, None]
        hit = keep & (label[None, :] == cls[:, None])
        if TERM > 0:  # −Σ_c f_c·q_c·(1 − p_c)^γ·log p_c, q the smoothed label, log p_c = x_c − lse
            log_p = tl.where(has_cls[:, None], x - m - tl.log(total), 0.0)
            q = hit.to(tl.float32) * (1.0 - smoothing) + smoothing / C
            term = -factor * q * _focal_power(1.0 - p, gamma, TERM) * log_p
            acc_term += tl.where(has_cls[:, None], term, 0.0) * v[None, :]
        g = hit.to(tl.float32)
        p = tl.where(keep, p, 0.0)
        pv = p * v[None, :]
        acc_i += pv * g
        acc_p += pv
        acc_g += g * v[None, :]
        acc_p2 += pv * p
        acc_a += v[None, :] * tl.abs(p - g)
        acc_n += v
        acc_count += valid.to(tl.float32)
        acc_bad += valid.to(tl.float32) - tl.sum(hit.to(tl.float32), axis=0)
    g_sum = tl.sum(acc_g, axis=1)
    zeros = tl.zeros([C_PAD], dtype=tl.float32)
    if TERM > 0:  # per class; the weight (with no NaN) in every class
        term_base = term_part_ptr + ((b64 * C + cls) * n_chunks + chunk) * 2
        tl.store(term_base, tl.sum(acc_term, axis=1), mask=has_cls)
        tl.store(term_base + 1, tl.sum(acc_n, axis=0) + zeros, mask=has_cls)
    n_sum = tl.where(tl.sum(acc_nf, axis=0) > 0, float("nan"), tl.sum(acc_n, axis=0)) + zeros
    # g is 0 or 1 here, so Σ v·g² = Σ v·g. A valid in-range label matches exactly one class, any
    # other none: the valid positions less the class hits are the out-of-range labels.
    base = part_ptr + ((b64 * C + cls) * n_chunks + chunk) * N_PARTIALS
    _store_partials(
        base,
        tl.sum(acc_i, axis=1),
        tl.sum(acc_p, axis=1),
        g_sum,
        tl.sum(acc_p2, axis=1),
        g_sum,
        tl.sum(acc_a, axis=1),
        n_sum,
        tl.sum(acc_bad, axis=0) + zeros,
        has_cls,
    )


def _reduce(part_ptr, out_ptr, C, n_chunks, images_per_row, BLOCK: tl.constexpr):
    # out[s, c] = sum of the partials of images s*images_per_row ... (s+1)*images_per_row - 1,
    # always added in the same order: the result does not change from run to run.
    pid = tl.program_id(0)
    s = pid // C
    c = pid % C
    k = tl.arange(0, N_PARTIALS)
    acc = tl.zeros([BLOCK, N_PARTIALS], dtype=tl.float32)
    for j in range(images_per_row):
        b = (s * images_per_row + j).to(tl.int64)
        base = part_ptr + (b * C + c) * n_chunks * N_PARTIALS
        for start in range(0, n_chunks, BLOCK):
            r = start + tl.arange(0, BLOCK)
            mask = (r < n_chunks)[:, None]
            acc += tl.load(base + r[:, None] * N_PARTIALS + k[None, :], mask=mask, other=0.0)
    totals = tl.sum(acc, axis=0)
    # A block that read a non-finite value stored NaN as its count: every sum of the row is NaN.
    count = tl.sum(tl.where(k == S_N, totals, 0.0), axis=0)
    totals = tl.where(count != count, float("nan"), totals)
    tl.store(out_ptr + pid.to(tl.int64) * N_STATS + k, totals, mask=k < N_STATS)
    # Per-block counts are non-negative integers, so their sum is 0 only if each is. The assert
    # stays on the device (no host synchronisation); it is compiled in only with debug=True.
    bad = tl.sum(tl.where(k == S_BAD, totals, 0.0), axis=0)
    tl.device_assert((bad == 0) | (bad != bad), "input or target out of range")


reduce_kernel = jit(debug=True)(_reduce) if not INTERPRET and tl is not None else jit(_reduce)


@jit
def grad_rows_kernel(
    x_ptr,
    t_ptr,
    w_ptr,
    gs_ptr,
    gx_ptr,
    C,
    HW,
    per_image,
    ignore_value,
    class_offset,
    scale_ptr,
    scale_stride,
    scale_mult,
    term_scale_ptr,
    factor_ptr,
    gamma,
    smoothing,
    a_pos,
    a_neg,
    FROM_LOGITS: tl.constexpr,
    LABELS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SCALED: tl.constexpr,
    SATURATE: tl.constexpr,
    TERM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    blk = tl.program_id(0)
    row = tl.program_id(1)
    row64 = row.to(tl.int64)
    b = row // C
    c = row % C
    gs = gs_ptr + (b * per_image * C + c) * N_STATS
    g_i = tl.load(gs + S_I)
    g_p = tl.load(gs + S_P)
    g_p2 = tl.load(gs + S_P2)
    g_a = tl.load(gs + S_A)
    if SCALED:  # the upstream gradient of the loss, folded in here rather than in a separate op
        scale = tl.load(scale_ptr + b * per_image * scale_stride).to(tl.float32) * scale_mult
        g_i = g_i * scale
        g_p = g_p * scale
        g_p2 = g_p2 * scale
        g_a = g_a * scale
    offs = blk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < HW
    valid = inside
    x = tl.load(x_ptr + row64 * HW + offs, mask=inside, other=0.0).to(tl.float32)
    if LABELS:
        label = tl.load(t_ptr + b.to(tl.int64) * HW + offs, mask=inside, other=0).to(tl.int64)
        g = (label == c + class_offset).to(tl.float32)
        if HAS_IGNORE:
            valid = valid & (label != ignore_value)
    else:
        g = tl.load(t_ptr + row64 * HW + offs, mask=inside, other=0.0).to(tl.float32)
        if HAS_IGNORE:
            valid = valid & (g != ignore_value)
    g = tl.where(valid, g, 0.0)
    v = valid.to(tl.float32)
    if HAS_WEIGHT:
        v = v * tl.load(w_ptr + b.to(tl.int64) * HW + offs, mask=inside, other=0.0).to(tl.float32)
    if FROM_LOGITS:
        p = 1.0 / (1.0 + tl.exp(-x))
    else:
        p = x
    d = p - g
    sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    # A product with the weight, not a select: a NaN coefficient (a non-finite input in the image)
    # reaches ignored positions too, as on the other paths.
    dp = v * (g * g_i + g_p + 2.0 * p * g_p2 + sign * g_a)
    if FROM_LOGITS:
        dp = dp * p * (1.0 - p)
    if TERM > 0:  # the term's gradient, by the logit; its scale: λ·upstream / (the term's weight)
        term_k = tl.load(term_scale_ptr + b) * tl.load(factor_ptr + c)
        t = g * (1.0 - smoothing) + 0.5 * smoothing
        dp += term_k * v * _binary_term_slope(x, p, t, gamma, a_pos, a_neg, TERM)
        # NaN where the logit is not finite (the term's slope has a finite limit at ±inf)
        dp = tl.where(_not_finite(x), float("nan"), dp)
    if SATURATE:  # float16 output: the largest finite value rather than inf
        dp = _saturate_float16(dp)
    tl.store(gx_ptr + row64 * HW + offs, dp.to(gx_ptr.dtype.element_ty), mask=inside)


@jit
def grad_multiclass_kernel(
    x_ptr,
    t_ptr,
    w_ptr,
    gs_ptr,
    gx_ptr,
    C,
    HW,
    per_image,
    ignore_value,
    scale_ptr,
    scale_stride,
    scale_mult,
    term_scale_ptr,
    factor_ptr,
    gamma,
    smoothing,
    FROM_LOGITS: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    SCALED: tl.constexpr,
    SATURATE: tl.constexpr,
    TERM: tl.constexpr,
    C_PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    blk = tl.program_id(0)
    b = tl.program_id(1)
    b64 = b.to(tl.int64)
    cls = tl.arange(0, C_PAD)
    has_cls = cls < C
    gs = gs_ptr + (b * per_image * C + cls) * N_STATS
    g_i = tl.load(gs + S_I, mask=has_cls, other=0.0)[:, None]
    g_p = tl.load(gs + S_P, mask=has_cls, other=0.0)[:, None]
    g_p2 = tl.load(gs + S_P2, mask=has_cls, other=0.0)[:, None]
    g_a = tl.load(gs + S_A, mask=has_cls, other=0.0)[:, None]
    if SCALED:
        scale = tl.load(scale_ptr + b * per_image * scale_stride).to(tl.float32) * scale_mult
        g_i = g_i * scale
        g_p = g_p * scale
        g_p2 = g_p2 * scale
        g_a = g_a * scale
    offs = blk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offs < HW
    tile = b64 * C * HW + cls.to(tl.int64)[:, None] * HW + offs[None, :]
    in_tile = has_cls[:, None] & inside[None, :]
    x = tl.load(x_ptr + tile, mask=in_tile, other=0.0).to(tl.float32)
    label = tl.load(t_ptr + b64 * HW + offs, mask=inside, other=0).to(tl.int64)
    valid = inside
    if HAS_IGNORE:
        valid = valid & (label != ignore_value)
    v = valid.to(tl.float32)
    if HAS_WEIGHT:
        v = v * tl.load(w_ptr + b64 * HW + offs, mask=inside, other=0.0).to(tl.float32)
    if FROM_LOGITS:
        x = tl.where(has_cls[:, None], x, float("-inf"))
        m = tl.max(x, axis=0)[None, :]
        e = tl.exp(x - m)
        total = tl.sum(e, axis=0)[None, :]
        p = e / total
    else:
        p = x
    keep = valid[None, :] & has_cls[:, None]
    g = (keep & (label[None, :] == cls[:, None])).to(tl.float32)
    d = p - g
    sign = tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))
    dp = has_cls[:, None].to(tl.float32) * v[None, :] * (g * g_i + g_p + 2.0 * p * g_p2 + sign * g_a)
    if FROM_LOGITS:
        dp = p * (dp - tl.sum(tl.where(has_cls[:, None], p * dp, 0.0), axis=0)[None, :])
    if TERM > 0:  # ∂ℓ/∂x_k = G_k − p_k·Σ_c G_c, G_c = f_c·q_c·(γ·p_c·(1 − p_c)^(γ−1)·log p_c − (1 − p_c)^γ)
        factor = tl.load(factor_ptr + cls, mask=has_cls, other=0.0)[:, None]
        log_p = tl.where(has_cls[:, None], x - m - tl.log(total), 0.0)
        q = g * (1.0 - smoothing) + smoothing / C
        big_g = tl.where(has_cls[:, None], factor * q * _softmax_focal_slope(p, log_p, gamma, TERM), 0.0)
        term_k = tl.load(term_scale_ptr + b) * v
        dp += term_k[None, :] * (big_g - p * tl.sum(big_g, axis=0)[None, :])
        # NaN in every class of a position with a logit that is not finite
        position_nf = tl.sum(tl.where(in_tile & _not_finite(x), 1.0, 0.0), axis=0) > 0
        dp = tl.where(position_nf[None, :], float("nan"), dp)
    if SATURATE:
        dp = _saturate_float16(dp)
    tl.store(gx_ptr + tile, dp.to(gx_ptr.dtype.element_ty), mask=in_tile)
