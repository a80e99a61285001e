"""Triton kernel of the Dice formula on the per-class sums, with its derivative.

Loaded through ``losses.torch._kernels.triton_module`` only; importing it imports ``triton``.

One program walks the ``(S, C, 7)`` stats in tiles of ``(BLOCK_S, C_PAD)`` and writes, for every
row, the loss of ``losses._dice.dice_from_stats`` and the derivative of that loss with respect to
each of the seven sums (``(S, C, 7)``), plus the sum of the row losses times ``red_scale`` (the
"mean"/"sum" reduction). Unselected classes carry a weight of 0.
"""

from __future__ import annotations

from losses.torch._kernels import interpreting
from losses.torch._kernels._triton_base import jit, tl

INTERPRET = interpreting()  # the setting this module was (re)loaded for

# Empty-target policies, as constexpr codes.
SMOOTH, EXCLUDE, PENALIZE = 0, 1, 2


@jit
def finalize_kernel(
    st_ptr, w_ptr, loss_ptr, red_ptr, gs_ptr, S, C, smooth_nr, smooth_dr, red_scale, log_clamp, den_min,
    SQUARED: tl.constexpr, LOG_LOSS: tl.constexpr, SOFT: tl.constexpr, EMPTY: tl.constexpr,
    C_PAD: tl.constexpr, BLOCK_S: tl.constexpr,
):
    cls = tl.arange(0, C_PAD)
    has_cls = cls < C
    w = tl.load(w_ptr + cls, mask=has_cls, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_S], dtype=tl.float32)
    for start in range(0, S, BLOCK_S):
        rows = start + tl.arange(0, BLOCK_S)
        in_rows = rows < S
        m = in_rows[:, None] & has_cls[None, :]
        base = st_ptr + (rows.to(tl.int64)[:, None] * C + cls[None, :]) * 7
        s_i = tl.load(base + 0, mask=m, other=0.0)
        s_p = tl.load(base + 1, mask=m, other=0.0)
        s_g = tl.load(base + 2, mask=m, other=0.0)
        s_p2 = tl.load(base + 3, mask=m, other=0.0)
        s_g2 = tl.load(base + 4, mask=m, other=0.0)
        s_a = tl.load(base + 5, mask=m, other=0.0)
        s_n = tl.load(base + 6, mask=m, other=0.0)
        if SOFT:
            inter = (s_p + s_g - s_a) * 0.5
        else:
            inter = s_i
        if SQUARED:
            den = s_p2 + s_g2
        else:
            den = s_p + s_g
        num = 2.0 * inter + smooth_nr
        den = den + smooth_dr
        # As in losses._dice: comparisons False for NaN and NaN-keeping clamps, so a NaN sum gives
        # a NaN loss.
        zero = den == 0
        low = den < den_min
        safe_den = tl.where(low, den_min, den)
        dice = tl.where(zero, 1.0, num / safe_den)
        if LOG_LOSS:
            below = dice < log_clamp
            per = -tl.log(tl.where(below, log_clamp, dice))
            # clamp_min passes the gradient where dice >= the clamp (PyTorch's convention).
            d_dice = tl.where(below, 0.0, -1.0 / tl.where(below, 1.0, dice))
        else:
            per = 1.0 - dice
            d_dice = tl.full([BLOCK_S, C_PAD], -1.0, tl.float32)
        # d per / d numerator and d per / d denominator (0 where the denominator is 0 or clamped).
        k_num = tl.where(zero, 0.0, d_dice / safe_den)
        k_den = tl.where(zero | low, 0.0, -d_dice * dice / safe_den)
        empty = s_g <= 0
        wt = tl.where(m, w[None, :], 0.0)
        k_fp_p = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        k_fp_n = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        if EMPTY == 1:
            wt = tl.where(empty, 0.0, wt)
        if EMPTY == 2:
            has_valid = s_n > 0
            safe_n = tl.where(has_valid, s_n, 1.0)
            fp = tl.where(has_valid, s_p / safe_n, 0.0)
            per = tl.where(empty, fp, per)
            k_num = tl.where(empty, 0.0, k_num)
            k_den = tl.where(empty, 0.0, k_den)
            k_fp_p = tl.where(empty & has_valid, 1.0 / safe_n, 0.0)
            k_fp_n = tl.where(empty & has_valid, -fp / safe_n, 0.0)
        total = tl.sum(wt, axis=1)
        counted = total > 0
        safe_total = tl.where(counted, total, 1.0)
        loss = tl.where(counted, tl.sum(wt * per, axis=1) / safe_total, 0.0)
        tl.store(loss_ptr + rows, loss, mask=in_rows)
        acc += tl.where(in_rows, loss, 0.0)

        coef = tl.where(counted[:, None], wt / safe_total[:, None], 0.0)  # d loss / d per
        cn = k_num * coef
        cd = k_den * coef
        zero = tl.zeros([BLOCK_S, C_PAD], dtype=tl.float32)
        if SOFT:  # numerator = (P + G - A) + smooth_nr
            g_i = zero
            g_p = cn
            g_g = cn
            g_a = -cn
        else:
            g_i = 2.0 * cn
            g_p = zero
            g_g = zero
            g_a = zero
        if SQUARED:
            g_p2 = cd
            g_g2 = cd
        else:
            g_p2 = zero
            g_g2 = zero
            g_p += cd
            g_g += cd
        g_p += k_fp_p * coef
        g_n = k_fp_n * coef
        # A row whose loss is NaN has no finite derivative.
        nan_row = (loss != loss)[:, None]
        out = gs_ptr + (rows.to(tl.int64)[:, None] * C + cls[None, :]) * 7
        tl.store(out + 0, tl.where(nan_row, float("nan"), g_i), mask=m)
        tl.store(out + 1, tl.where(nan_row, float("nan"), g_p), mask=m)
        tl.store(out + 2, tl.where(nan_row, float("nan"), g_g), mask=m)
        tl.store(out + 3, tl.where(nan_row, float("nan"), g_p2), mask=m)
        tl.store(out + 4, tl.where(nan_row, float("nan"), g_g2), mask=m)
        tl.store(out + 5, tl.where(nan_row, float("nan"), g_a), mask=m)
        tl.store(out + 6, tl.where(nan_row, float("nan"), g_n), mask=m)
    tl.store(red_ptr, tl.sum(acc, axis=0) * red_scale)
