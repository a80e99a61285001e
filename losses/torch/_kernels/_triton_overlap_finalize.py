"""Triton kernel of the general form of the overlap losses on the per-class sums, with its derivative.

Loaded through ``losses.torch._kernels.triton_module`` only; importing it imports ``triton``.

One program walks the ``(S, C, NUM_STATS)`` stats in tiles of ``(BLOCK_S, C_PAD)`` and writes, for
every row, the loss of :func:`losses._overlap.overlap_loss` (every member and option: the ratio
``(k·TP + s_nr) / (k·TP + α·FP + β·FN + s_dr)``, squared and soft-label sums, the transforms, the
empty-target policies, class weights, micro and generalized pooling), the derivative of that loss
with respect to each sum (``(S, C, NUM_STATS)``), plus the sum of the row losses times ``red_scale``
(the "mean"/"sum" reduction). Unselected classes carry a weight of 0. Tested against
``overlap_loss`` over every member and option (tests/test_torch_kernels.py).
"""

from __future__ import annotations

from losses.torch._kernels import interpreting
from losses.torch._kernels._triton_base import jit, tl
from losses.torch._kernels._triton_overlap import N_STATS, S_A, S_G, S_G2, S_I, S_N, S_P, S_P2

INTERPRET = interpreting()  # the setting this module was (re)loaded for

# Codes of the constexpr options (the names of losses._overlap, in order).
TRANSFORM_CODES = ("linear", "log", "power")
POOLING_CODES = ("none", "sum", "generalized")
EMPTY_CODES = ("smooth", "exclude", "penalize")


@jit
def _pow(x, exponent):
    # x > 0 here: exp(e·log x), which is what pow computes.
    return tl.exp(exponent * tl.log(x))


@jit
def finalize_kernel(
    st_ptr,
    w_ptr,
    loss_ptr,
    red_ptr,
    gs_ptr,
    S,
    C,
    k,
    alpha,
    beta,
    gamma,
    weight_power,
    smooth_nr,
    smooth_dr,
    red_scale,
    log_clamp,
    den_min,
    SQUARED: tl.constexpr,
    SOFT: tl.constexpr,
    TRANSFORM: tl.constexpr,
    POOLING: tl.constexpr,
    EMPTY: tl.constexpr,
    C_PAD: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    cls = tl.arange(0, C_PAD)
    has_cls = cls < C
    first = cls == 0
    w = tl.load(w_ptr + cls, mask=has_cls, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_S], dtype=tl.float32)
    for start in range(0, S, BLOCK_S):
        rows = start + tl.arange(0, BLOCK_S)
        in_rows = rows < S
        m = in_rows[:, None] & has_cls[None, :]
        base = st_ptr + (rows.to(tl.int64)[:, None] * C + cls[None, :]) * N_STATS
        s_i = tl.load(base + S_I, mask=m, other=0.0)
        s_p = tl.load(base + S_P, mask=m, other=0.0)
        s_g = tl.load(base + S_G, mask=m, other=0.0)
        s_p2 = tl.load(base + S_P2, mask=m, other=0.0)
        s_g2 = tl.load(base + S_G2, mask=m, other=0.0)
        s_a = tl.load(base + S_A, mask=m, other=0.0)
        s_n = tl.load(base + S_N, mask=m, other=0.0)
        # TP, FP, FN, and the numerator and denominator, per class: linear in the sums.
        if SOFT:
            tp = (s_p + s_g - s_a) * 0.5
        else:
            tp = s_i
        if SQUARED:
            pq = s_p2
            gq = s_g2
        else:
            pq = s_p
            gq = s_g
        num = k * tp
        den = k * tp + alpha * (pq - tp) + beta * (gq - tp)
        wt = tl.where(m, w[None, :], 0.0)
        scale = tl.full([BLOCK_S, C_PAD], 1.0, tl.float32)
        if POOLING == 0:
            t_sum = s_g
            p_sum = s_p
            n_sum = s_n
        else:
            pool = wt
            if POOLING == 2:  # generalized: w_c·(G_min/G_c)^q, absent classes the largest ratio
                present = (s_g > 0) & (wt > 0)
                smallest = tl.min(tl.where(present, s_g, float("inf")), axis=1)
                any_present = smallest < float("inf")
                smallest = tl.where(any_present, smallest, 1.0)
                ratio = _pow(smallest[:, None] / tl.where(present, s_g, 1.0), weight_power)
                # A class absent from the target: the largest ratio, 1 (0 when no class is present,
                # except with uniform weights, q = 0, which do not depend on the target).
                absent = tl.where(any_present[:, None] | (weight_power == 0), 1.0, 0.0)
                ratio = tl.where(present, ratio, absent)
                # Divided by max(G_min^q, 1), as losses._overlap._generalized_weights: a smoothing
                # scale of at most 1, so that scale·smooth_dr cannot overflow.
                scaled = _pow(smallest, weight_power)
                divisor = tl.where(scaled > 1.0, scaled, 1.0)
                pool = tl.where(wt > 0, ratio * wt, 0.0) / divisor[:, None]
                scale = (scaled / divisor)[:, None] + tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
            # One pooled class, in column 0.
            num = tl.where(first[None, :], tl.sum(pool * num, axis=1)[:, None], 0.0)
            den = tl.where(first[None, :], tl.sum(pool * den, axis=1)[:, None], 0.0)
            t_sum = tl.where(first[None, :], tl.sum(pool * s_g, axis=1)[:, None], 0.0)
            p_sum = tl.where(first[None, :], tl.sum(pool * s_p, axis=1)[:, None], 0.0)
            n_sum = tl.where(first[None, :], tl.sum(pool * s_n, axis=1)[:, None], 0.0)
            wt = tl.where(first[None, :] & in_rows[:, None], 1.0, 0.0)
        n_ = num + scale * smooth_nr
        d_ = den + scale * smooth_dr
        # As in losses._overlap: comparisons False for NaN and NaN-keeping clamps, so a NaN sum
        # gives a NaN loss.
        zero = d_ == 0
        low = d_ < den_min
        safe_den = tl.where(low, den_min, d_)
        score = tl.where(zero, 1.0, n_ / safe_den)
        if TRANSFORM == 1:
            below = score < log_clamp
            per = -tl.log(tl.where(below, log_clamp, score))
            d_score = tl.where(below, 0.0, -1.0 / tl.where(below, 1.0, score))
        elif TRANSFORM == 2:
            miss = 1.0 - score
            miss = tl.where(miss < 0.0, 0.0, miss)
            none_missed = miss <= 0.0
            safe_miss = tl.where(none_missed, 1.0, miss)
            per = tl.where(none_missed, 0.0, _pow(safe_miss, gamma))
            d_score = tl.where(none_missed, 0.0, -gamma * _pow(safe_miss, gamma - 1.0))
        else:
            per = 1.0 - score
            d_score = tl.full([BLOCK_S, C_PAD], -1.0, tl.float32)
        empty = t_sum <= 0
        k_p = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        k_n = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        if EMPTY == 1:
            wt = tl.where(empty, 0.0, wt)
        if EMPTY == 2:
            has_valid = n_sum > 0
            safe_n = tl.where(has_valid, n_sum, 1.0)
            fp = tl.where(has_valid, p_sum / safe_n, 0.0)
            per = tl.where(empty, fp, per)
            d_score = tl.where(empty, 0.0, d_score)
            k_p = tl.where(empty & has_valid, 1.0 / safe_n, 0.0)
            k_n = tl.where(empty & has_valid, -fp / safe_n, 0.0)
        total = tl.sum(wt, axis=1)
        counted = total > 0
        safe_total = tl.where(counted, total, 1.0)
        loss = tl.where(counted, tl.sum(wt * per, axis=1) / safe_total, 0.0)
        # A row with a NaN sum in any class, also one left out (weight 0), has a NaN loss.
        nan_sums = tl.sum(tl.where(m & (s_n != s_n), 1.0, 0.0), axis=1) > 0
        loss = tl.where(nan_sums, float("nan"), loss)
        tl.store(loss_ptr + rows, loss, mask=in_rows)
        acc += tl.where(in_rows, loss, 0.0)

        # The derivative, stage by stage backwards (as overlap_loss's with_grad).
        coef = tl.where(counted[:, None], wt / safe_total[:, None], 0.0)  # d loss / d per
        c_num = coef * d_score * tl.where(zero, 0.0, 1.0 / safe_den)
        c_den = coef * d_score * tl.where(zero | low, 0.0, -score / safe_den)
        c_p = coef * k_p
        c_n = coef * k_n
        if POOLING != 0:  # the pooled row's coefficients, spread to every class with its pool weight
            c_num = tl.sum(tl.where(first[None, :], c_num, 0.0), axis=1)[:, None] * pool
            c_den = tl.sum(tl.where(first[None, :], c_den, 0.0), axis=1)[:, None] * pool
            c_p = tl.sum(tl.where(first[None, :], c_p, 0.0), axis=1)[:, None] * pool
            c_n = tl.sum(tl.where(first[None, :], c_n, 0.0), axis=1)[:, None] * pool
        c_tp = k * c_num + (k - alpha - beta) * c_den  # d loss / d TP
        zeros = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        if SOFT:  # TP = (P + G − A) / 2
            g_i = zeros
            g_p = 0.5 * c_tp
            g_g = 0.5 * c_tp
            g_a = -0.5 * c_tp
        else:
            g_i = c_tp
            g_p = zeros
            g_g = zeros
            g_a = zeros
        if SQUARED:
            g_p2 = alpha * c_den
            g_g2 = beta * c_den
        else:
            g_p2 = zeros
            g_g2 = zeros
            g_p += alpha * c_den
            g_g += beta * c_den
        g_p += c_p
        # A row whose loss is NaN has no finite derivative.
        nan_row = (loss != loss)[:, None]
        out = gs_ptr + (rows.to(tl.int64)[:, None] * C + cls[None, :]) * N_STATS
        tl.store(out + S_I, tl.where(nan_row, float("nan"), g_i), mask=m)
        tl.store(out + S_P, tl.where(nan_row, float("nan"), g_p), mask=m)
        tl.store(out + S_G, tl.where(nan_row, float("nan"), g_g), mask=m)
        tl.store(out + S_P2, tl.where(nan_row, float("nan"), g_p2), mask=m)
        tl.store(out + S_G2, tl.where(nan_row, float("nan"), g_g2), mask=m)
        tl.store(out + S_A, tl.where(nan_row, float("nan"), g_a), mask=m)
        tl.store(out + S_N, tl.where(nan_row, float("nan"), c_n), mask=m)
    tl.store(red_ptr, tl.sum(acc, axis=0) * red_scale)
