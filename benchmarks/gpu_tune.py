"""Pick the launch shapes of the Triton kernels on this GPU, then run benchmarks.gpu_kernels with them.

``python -m benchmarks.gpu_tune [--out DIR]``: times the kernels alone (no autograd, no loss formula:
the device is the limit at these sizes) for a few block sizes and warp counts, prints the table,
sets the fastest in ``losses.torch._kernels`` for this process and runs the full benchmark.
"""

from __future__ import annotations

import itertools
import sys

import torch
from triton.testing import do_bench

from losses.torch._kernels import overlap_stats as D
from losses.torch._kernels import penalized_mae as P


def bench(fn):
    return do_bench(fn, warmup=50, rep=300, return_mode="median")


def main(argv=None):
    dev = "cuda"
    torch.manual_seed(0)
    xb = torch.randn(16, 1, 2048, 2048, device=dev)
    tb = (torch.rand(16, 1, 2048, 2048, device=dev) > 0.5).float()
    xm = torch.randn(16, 4, 1024, 1024, device=dev)
    lm = torch.randint(0, 4, (16, 1024, 1024), device=dev)
    xp = torch.randn(2**26, device=dev)
    tp = torch.randn(2**26, device=dev)
    gsb = torch.randn(16, 1, 7, device=dev)
    gsm = torch.randn(16, 4, 7, device=dev)

    best = {}
    print("rows kernels (binary 16x1x2048x2048, dense fp32 target): stats ms, grad ms", flush=True)
    for block, warps, programs in [
        (2048, 8, 4096),
        (4096, 8, 4096),
        (2048, 4, 4096),
        (4096, 16, 4096),
        (2048, 8, 8192),
        (1024, 4, 8192),
        (4096, 8, 2048),
        (8192, 16, 4096),
    ]:
        D.ROWS_BLOCK, D.ROWS_WARPS, D.ROWS_PROGRAMS = block, warps, programs
        st = bench(lambda: D.stats(xb, tb, None, D.StatsOptions("binary", True, None, True)))
        gr = bench(lambda: D.stats_backward(gsb, xb, tb, None, D.StatsOptions("binary", True, None, True)))
        print(f"  block {block:5d} warps {warps:2d} programs {programs:5d}: {st:.3f} {gr:.3f}", flush=True)
        best.setdefault("rows_stats", []).append((st, block, warps, programs))
        best.setdefault("rows_grad", []).append((gr, block, warps, programs))
    print("multiclass kernels (16x4x1024x1024, int64 labels): stats ms, grad ms", flush=True)
    for warps, programs in itertools.product((4, 8), (2048, 4096, 8192)):
        D.MULTICLASS_WARPS, D.MULTICLASS_PROGRAMS = warps, programs
        st = bench(lambda: D.stats(xm, lm, None, D.StatsOptions("multiclass", True, None, True)))
        gr = bench(lambda: D.stats_backward(gsm, xm, lm, None, D.StatsOptions("multiclass", True, None, True)))
        print(f"  warps {warps} programs {programs:5d}: {st:.3f} {gr:.3f}", flush=True)
        best.setdefault("mc", []).append((st + gr, warps, programs))
    print("penalized MAE forward (2^26, mean, with gradient): ms", flush=True)
    for block, warps in [(4096, 8), (8192, 8), (2048, 4), (8192, 16), (4096, 4), (16384, 16)]:
        P.BLOCK, P.WARPS = block, warps
        ms = bench(lambda: P._forward(xp, tp, 1.0, 0.5, "mean", True))
        print(f"  block {block:5d} warps {warps:2d}: {ms:.3f}", flush=True)
        best.setdefault("pmae", []).append((ms, block, warps))

    # Rows: one setting for both passes.
    rows = min(zip(best["rows_stats"], best["rows_grad"]), key=lambda p: p[0][0] + p[1][0])[0]
    mc = min(best["mc"])
    pm = min(best["pmae"])
    D.ROWS_BLOCK, D.ROWS_WARPS, D.ROWS_PROGRAMS = rows[1], rows[2], rows[3]
    D.MULTICLASS_WARPS, D.MULTICLASS_PROGRAMS = mc[1], mc[2]
    P.BLOCK, P.WARPS = pm[1], pm[2]
    print(
        f"chosen: ROWS_BLOCK {rows[1]} ROWS_WARPS {rows[2]} ROWS_PROGRAMS {rows[3]}, "
        f"MULTICLASS_WARPS {mc[1]} MULTICLASS_PROGRAMS {mc[2]}, PMAE BLOCK {pm[1]} WARPS {pm[2]}",
        flush=True,
    )
    del xb, tb, xm, lm, xp, tp
    torch.cuda.empty_cache()
    from benchmarks import gpu_kernels

    return gpu_kernels.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
