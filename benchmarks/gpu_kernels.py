"""GPU check and timing of the Triton kernels: ``python -m benchmarks.gpu_kernels [--out DIR]``.

On a CUDA device, in one run:

1. measures the copy bandwidth (a large device-to-device copy, bytes read plus written), which
   turns the fewest bytes each case must move into its roofline time;
2. checks the kernels against float64 references on fresh random inputs (values and gradients,
   every Dice mode, float32 and bfloat16) and that two runs give bitwise-equal results;
3. times forward+backward (``triton.testing.do_bench``, median) of the kernels, of a naive eager
   PyTorch version and of that version under ``torch.compile``, and the peak memory beyond the
   inputs and the returned gradient; the small multiclass case, whose cost is on the host, is also
   timed by the wall clock over back-to-back iterations;
4. writes ``gpu_kernels.json`` and ``gpu_kernels.md`` (device name, command, table) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import torch

from losses._overlap import OverlapOptions
from losses.torch._kernels.overlap_finalize import overlap_loss_triton
from losses.torch._kernels.overlap_stats import overlap_stats_triton
from losses.torch._kernels.penalized_mae import penalized_mae_triton

DELTA, PENALTY = 1.0, 0.5
SMOOTH = 1e-5


# ------------------------------------------------------------------------------------------------
# The losses timed: the kernels plus a Dice formula on the (S, C, 7) stats, and naive versions
# ------------------------------------------------------------------------------------------------


def dice_from_stats(stats):
    # A lean Dice formula on the (S, C, 7) stats: on a host where each launch costs tens of
    # microseconds, the number of small PyTorch ops here shows in the small-size timings.
    return 1 - ((2 * stats[..., 0] + SMOOTH) / (stats[..., 1:3].sum(-1) + SMOOTH)).mean()


def dice_stats_triton(x, target, **options):
    return overlap_stats_triton(x, target, None, **options)


def kernel_dice(x, target, mode, per_image=True):
    return dice_from_stats(
        dice_stats_triton(x, target, mode=mode, from_logits=True, ignore_index=None, per_image=per_image)
    )


_FUSED = {}


def fused_dice(x, target, mode):
    # The kernels with the Dice formula and the reduction fused (what DiceLoss runs on CUDA, less
    # its argument and label-range checks): stats kernel, finalize kernel, gradient pass. Options
    # and weights are made once, as DiceLoss does in its constructor.
    key = (mode, x.shape[1], x.device)
    if key not in _FUSED:
        options = OverlapOptions.create(mode=mode)
        _FUSED[key] = options, torch.tensor(options.full_weights(x.shape[1]), device=x.device)
    options, weights = _FUSED[key]
    return overlap_loss_triton(x, target, None, weights, options, "mean")


_MODULES = {}


def dice_criterion(x, target, mode):
    # losses.torch.DiceLoss as a user calls it (checks included; int labels get an asynchronous
    # range check, which reads the labels once more).
    from losses.torch import DiceLoss

    if mode not in _MODULES:
        _MODULES[mode] = DiceLoss(mode=mode)
    return _MODULES[mode](x, target)


def naive_dice_binary(x, target):
    p = torch.sigmoid(x.float())
    dims = tuple(range(2, x.dim()))
    i, ps, gs = (p * target).sum(dims), p.sum(dims), target.sum(dims)
    return (1 - (2 * i + SMOOTH) / (ps + gs + SMOOTH)).mean()


def naive_dice_multiclass(x, labels):
    p = torch.softmax(x.float(), dim=1)
    g = torch.nn.functional.one_hot(labels, x.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = tuple(range(2, x.dim()))
    i, ps, gs = (p * g).sum(dims), p.sum(dims), g.sum(dims)
    return (1 - (2 * i + SMOOTH) / (ps + gs + SMOOTH)).mean()


def naive_pmae(x, t):
    a = (x.float() - t.float()).abs()
    return (a + PENALTY * (a - DELTA).clamp_min(0) ** 2).mean()


def kernel_pmae(x, t):
    return penalized_mae_triton(x, t, DELTA, PENALTY, "mean")


# ------------------------------------------------------------------------------------------------


def copy_bandwidth(do_bench) -> float:
    src = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    del src, dst
    return 2 * 4 * 2**28 / (ms * 1e-3)  # bytes read + written per second


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_correctness(log) -> list[dict]:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from tests.test_torch_kernels import dice_stats_reference, pmae_reference

    rows = []
    gen = torch.Generator(device="cuda").manual_seed(int(time.time()))

    def record(name, value_err, grad_err, tol_v, tol_g, deterministic):
        ok = value_err < tol_v and grad_err < tol_g and deterministic
        rows.append(dict(case=name, value_rel_err=value_err, grad_rel_err=grad_err, deterministic=deterministic, ok=ok))
        log(
            f"check {name:58s} value {value_err:.1e} grad {grad_err:.1e} deterministic {deterministic} "
            f"{'ok' if ok else 'FAIL'}"
        )

    cases = [
        ("binary", (4, 1, 333, 517), "dense", None),
        ("binary", (4, 1, 333, 517), torch.uint8, 255),
        ("multilabel", (3, 5, 129, 257), "dense", -1),
        ("multiclass", (3, 4, 257, 259), torch.int64, None),
        ("multiclass", (2, 7, 97, 101), torch.int64, 3),
        ("multiclass", (2, 19, 61, 67), torch.uint8, 255),
    ]
    for dtype in (torch.float32, torch.bfloat16):
        for mode, shape, tkind, ignore in cases:
            for per_image in (True, False):
                x = (torch.randn(shape, device="cuda", generator=gen) * 3).to(dtype).requires_grad_()
                if tkind == "dense":
                    target = torch.rand(shape, device="cuda", generator=gen)
                    if ignore is not None:
                        target[torch.rand(shape, device="cuda", generator=gen) < 0.1] = ignore
                else:
                    high = 2 if mode == "binary" else shape[1]
                    target = torch.randint(0, high, (shape[0], *shape[2:]), device="cuda", generator=gen)
                    if ignore is not None:
                        target[torch.rand(target.shape, device="cuda", generator=gen) < 0.1] = ignore
                    target = target.to(tkind)
                opts = dict(mode=mode, from_logits=True, ignore_index=ignore, per_image=per_image)
                stats = dice_stats_triton(x, target, **opts)
                again = dice_stats_triton(x, target, **opts)
                gs = torch.randn(stats.shape, device="cuda", generator=gen)
                (g,) = torch.autograd.grad(stats, x, gs)
                (g2,) = torch.autograd.grad(again, x, gs)
                xr = x.detach().double().requires_grad_()
                ref = dice_stats_reference(xr, target, **opts)
                (gr,) = torch.autograd.grad(ref, xr, gs.double())
                low = dtype != torch.float32
                record(
                    f"dice {mode} {tuple(shape)} {str(dtype)[6:]} target={str(tkind).replace('torch.', '')} "
                    f"ignore={ignore} per_image={per_image}",
                    rel_err(stats, ref),
                    rel_err(g, gr),
                    1e-5,
                    1e-2 if low else 1e-5,
                    torch.equal(stats, again) and torch.equal(g, g2),
                )
        for reduction in ("mean", "sum", "none"):
            n = 2**22 + 12345
            x = (torch.randn(n, device="cuda", generator=gen) * 2).to(dtype).requires_grad_()
            t = (torch.randn(n, device="cuda", generator=gen) * 2).to(dtype)
            loss = penalized_mae_triton(x, t, DELTA, PENALTY, reduction)
            again = penalized_mae_triton(x, t, DELTA, PENALTY, reduction)
            go = torch.rand(loss.shape, device="cuda", generator=gen) + 0.5
            (g,) = torch.autograd.grad(loss, x, go)
            xr = x.detach().double().requires_grad_()
            ref = pmae_reference(xr, t, DELTA, PENALTY, reduction)
            (gr,) = torch.autograd.grad(ref, xr, go.double())
            record(
                f"penalized_mae n={n} {str(dtype)[6:]} {reduction}",
                rel_err(loss, ref),
                rel_err(g, gr),
                1e-5,
                1e-2 if dtype != torch.float32 else 1e-5,
                torch.equal(loss, again),
            )
    # The fused Dice (DiceLoss on CUDA) against the portable DiceLoss in float64 on the CPU.
    from losses.torch import DiceLoss

    fused_cases = [
        ("binary", (4, 1, 333, 517), "dense", dict()),
        ("binary", (4, 1, 333, 517), torch.uint8, dict(ignore_index=255, log_loss=True, smooth_nr=0.0)),
        ("multilabel", (3, 5, 129, 257), "dense", dict(soft_labels=True, class_weights=[1, 2, 0, 1, 3])),
        ("multiclass", (3, 4, 257, 259), torch.int64, dict(empty_target="penalize", classes=[3, 0, 1])),
        ("multiclass", (2, 7, 97, 101), torch.int64, dict(ignore_index=3, squared=True, empty_target="exclude")),
        ("multiclass", (2, 19, 61, 67), torch.uint8, dict(ignore_index=255, per_image=False)),
    ]
    for mode, shape, tkind, options in fused_cases:
        for reduction in ("mean", "none"):
            x = (torch.randn(shape, device="cuda", generator=gen) * 3).requires_grad_()
            if tkind == "dense":
                target = (torch.rand(shape, device="cuda", generator=gen) > 0.5).float()
            else:
                high = 2 if mode == "binary" else shape[1]
                target = torch.randint(0, high, (shape[0], *shape[2:]), device="cuda", generator=gen)
                target[0][target[0] == 1] = 0  # an empty class in image 0
                if "ignore_index" in options:
                    target[torch.rand(target.shape, device="cuda", generator=gen) < 0.1] = options["ignore_index"]
                target = target.to(tkind)
            criterion = DiceLoss(mode=mode, reduction=reduction, **options)
            loss = criterion(x, target)
            again = criterion(x, target)
            fused = type(loss.grad_fn).__name__ == "_DiceLossBackward"
            go = torch.rand(loss.shape, device="cuda", generator=gen) + 0.5
            (g,) = torch.autograd.grad(loss, x, go)
            xr = x.detach().double().cpu().requires_grad_()
            ref = criterion(xr, target.cpu())
            (gr,) = torch.autograd.grad(ref, xr, go.double().cpu())
            record(
                f"DiceLoss fused {mode} {tuple(shape)} {options} {reduction}",
                rel_err(loss.cpu(), ref),
                rel_err(g.cpu(), gr),
                1e-5,
                1e-4,
                fused and torch.equal(loss, again),
            )
    torch._dynamo.reset()
    xc = torch.randn(2, 4, 64, 64, device="cuda", requires_grad=True)
    labc = torch.randint(0, 4, (2, 64, 64), device="cuda")
    criterion = DiceLoss(mode="multiclass", class_weights=[1, 2, 3, 0], empty_target="penalize")
    try:
        out_c = torch.compile(criterion, fullgraph=True)(xc, labc)
        (gc,) = torch.autograd.grad(out_c, xc)
        out_e = criterion(xc, labc)
        (ge,) = torch.autograd.grad(out_e, xc)
        errors = rel_err(out_c, out_e), rel_err(gc, ge)
    except Exception as error:  # noqa: BLE001 - recorded as a failed check, the timings still run
        log(f"torch.compile DiceLoss failed: {repr(error)[:400]}")
        errors = float("inf"), float("inf")
    record("torch.compile(fullgraph=True) DiceLoss (stats + finalize ops) vs eager", *errors, 1e-6, 1e-6, True)
    # torch.compile(fullgraph=True) with inductor over the custom ops
    torch._dynamo.reset()
    x = torch.randn(2, 4, 64, 64, device="cuda", requires_grad=True)
    lab = torch.randint(0, 4, (2, 64, 64), device="cuda")
    fn = lambda x, lab: kernel_dice(x, lab, "multiclass") + kernel_pmae(x, x.detach() * 0.5)  # noqa: E731
    out_c = torch.compile(fn, fullgraph=True)(x, lab)
    (gc,) = torch.autograd.grad(out_c, x)
    out_e = fn(x, lab)
    (ge,) = torch.autograd.grad(out_e, x)
    record(
        "torch.compile(fullgraph=True) dice+penalized_mae vs eager",
        rel_err(out_c, out_e),
        rel_err(gc, ge),
        1e-6,
        1e-6,
        True,
    )
    return rows


def fwd_bwd(loss_fn, x, *rest):
    def step():
        loss = loss_fn(x, *rest)
        (g,) = torch.autograd.grad(loss, x)
        return g

    return step


def peak_extra(step, grad_bytes) -> float:
    """Peak memory of one forward+backward beyond what was allocated before, less the gradient."""
    torch.cuda.synchronize()
    step()  # the caching allocator keeps its blocks, but max_memory_allocated counts live tensors
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    g = step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del g
    return (peak - grad_bytes) / grad_bytes


def device_ms(step, reps=10) -> float:
    """Sum of the device time of every kernel of one step (torch.profiler), host gaps excluded."""
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            step()
        torch.cuda.synchronize()
    total_us = 0.0
    for event in prof.key_averages():
        total_us += getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
    return total_us / reps / 1e3


def wall_ms(step, iters=300) -> float:
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time")
        return 1
    import triton
    from triton.testing import do_bench

    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    from losses.torch._kernels import overlap_stats as dice_module
    from losses.torch._kernels import penalized_mae as pmae_module

    config = {
        k: getattr(dice_module, k)
        for k in ("ROWS_BLOCK", "ROWS_WARPS", "ROWS_PROGRAMS", "MULTICLASS_WARPS", "MULTICLASS_PROGRAMS")
    }
    config.update({f"PMAE_{k}": getattr(pmae_module, k) for k in ("BLOCK", "WARPS", "SCALE_BLOCK")})
    name = torch.cuda.get_device_name()
    log(f"device {name}; torch {torch.__version__}; triton {triton.__version__}; launch shapes {config}")
    bw = copy_bandwidth(do_bench)
    log(f"copy bandwidth {bw / 1e12:.2f} TB/s (read + write)")
    checks = check_correctness(log)

    def bench(step):
        return do_bench(step, warmup=50, rep=400, return_mode="median")

    results = []
    dev = "cuda"
    torch.manual_seed(0)
    cases = []
    # binary Dice, float target: forward reads x, t; backward reads x, t, writes grad: 20 B/element
    xb = torch.randn(16, 1, 2048, 2048, device=dev, requires_grad=True)
    tb = (torch.rand(16, 1, 2048, 2048, device=dev) > 0.5).float()
    cases.append(
        (
            "binary Dice 16x1x2048x2048 fp32, per image",
            xb,
            (tb,),
            20 * xb.numel(),
            lambda x, t: kernel_dice(x, t, "binary"),
            naive_dice_binary,
            "binary",
        )
    )
    # multiclass Dice, int64 labels: 24 B/pixel forward (4 logits + label), 40 B backward
    xm = torch.randn(16, 4, 1024, 1024, device=dev, requires_grad=True)
    lm = torch.randint(0, 4, (16, 1024, 1024), device=dev)
    cases.append(
        (
            "multiclass Dice 16x4x1024x1024 fp32, int64 labels",
            xm,
            (lm,),
            64 * lm.numel(),
            lambda x, t: kernel_dice(x, t, "multiclass"),
            naive_dice_multiclass,
            "multiclass",
        )
    )
    # penalized MAE: 12 B/element in one pass
    xp = torch.randn(2**26, device=dev, requires_grad=True)
    tp = torch.randn(2**26, device=dev)
    cases.append(("penalized MAE 2^26 fp32, mean", xp, (tp,), 12 * xp.numel(), kernel_pmae, naive_pmae, None))
    xs = torch.randn(8, 4, 256, 256, device=dev, requires_grad=True)
    ls = torch.randint(0, 4, (8, 256, 256), device=dev)
    cases.append(
        (
            "multiclass Dice 8x4x256x256 fp32, int64 labels",
            xs,
            (ls,),
            64 * ls.numel(),
            lambda x, t: kernel_dice(x, t, "multiclass"),
            naive_dice_multiclass,
            "multiclass",
        )
    )

    # The small case without any loss formula: the kernels' own host and device cost.
    gs_small = torch.randn(8, 4, 7, device=dev)

    def stats_only():
        stats = dice_stats_triton(xs, ls, mode="multiclass", from_logits=True, ignore_index=None, per_image=True)
        return torch.autograd.grad(stats, xs, gs_small)[0]

    small_stats = dict(
        case="multiclass Dice 8x4x256x256: dice_stats_triton fwd + autograd.grad(stats, x, grad_stats)",
        triton_ms=bench(stats_only),
        triton_wall_ms=wall_ms(stats_only, iters=1000),
        triton_device_ms=device_ms(stats_only),
    )
    log(
        f"{small_stats['case']}: triton {small_stats['triton_ms']:.3f} ms (wall {small_stats['triton_wall_ms']:.3f}, "
        f"device {small_stats['triton_device_ms']:.3f})"
    )
    xg = torch.randn(64, device=dev, requires_grad=True)
    trivial = fwd_bwd(lambda x: (x * 2).sum(), xg)
    host_floor = dict(
        case="host floor: torch.autograd.grad of (x * 2).sum(), 64 elements",
        eager_ms=bench(trivial),
        eager_wall_ms=wall_ms(trivial, iters=1000),
    )
    log(f"{host_floor['case']}: {host_floor['eager_ms']:.3f} ms (wall {host_floor['eager_wall_ms']:.3f})")

    for label, x, rest, nbytes, kernel_fn, naive_fn, dice_mode in cases:
        roof = nbytes / bw * 1e3
        row = dict(case=label, bytes=nbytes, roofline_ms=roof)
        grad_bytes = x.numel() * x.element_size()
        variants = [("triton", kernel_fn), ("eager", naive_fn)]
        if not args.no_compile:
            torch._dynamo.reset()
            variants.append(("compiled", torch.compile(naive_fn)))
        if dice_mode is not None:
            variants.append(("fused", lambda x, t, m=dice_mode: fused_dice(x, t, m)))
            variants.append(("module", lambda x, t, m=dice_mode: dice_criterion(x, t, m)))
            variants.append(("stats", dice_mode))
        for vname, fn in variants:
            if vname == "stats":
                # The kernels alone: dice_stats_triton forward, autograd.grad with a given grad_stats.
                grad_stats = torch.randn(x.shape[0], x.shape[1], 7, device=dev)

                def step(x=x, t=rest[0], mode=fn, grad_stats=grad_stats):
                    stats = dice_stats_triton(x, t, mode=mode, from_logits=True, ignore_index=None, per_image=True)
                    return torch.autograd.grad(stats, x, grad_stats)[0]
            else:
                step = fwd_bwd(fn, x, *rest)
            try:
                ms = bench(step)
                row[f"{vname}_ms"] = ms
                row[f"{vname}_wall_ms"] = wall_ms(step, iters=200 if x.numel() > 2**22 else 1000)
                row[f"{vname}_extra_mem_grads"] = peak_extra(step, grad_bytes)
                row[f"{vname}_device_ms"] = device_ms(step)
            except Exception as error:  # noqa: BLE001 - a peer failing must not lose the other rows
                row[f"{vname}_error"] = repr(error)[:300]
        row["triton_over_roofline"] = row.get("triton_ms", float("nan")) / roof
        results.append(row)
        log(
            f"{label}: roofline {roof:.3f} ms | "
            + " | ".join(
                f"{v} {row.get(f'{v}_ms', float('nan')):.3f} ms (wall {row.get(f'{v}_wall_ms', float('nan')):.3f}, "
                f"device {row.get(f'{v}_device_ms', float('nan')):.3f}, "
                f"extra mem {row.get(f'{v}_extra_mem_grads', float('nan')):.2f} grads)"
                for v, _ in variants
            )
        )
        del x

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.gpu_kernels" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    payload = dict(
        device=name,
        torch=torch.__version__,
        triton=triton.__version__,
        python=platform.python_version(),
        command=command,
        copy_bandwidth_TBps=bw / 1e12,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        checks=checks,
        timings=results,
        small_stats_only=small_stats,
        host_floor=host_floor,
        config=config,
    )
    (out / "gpu_kernels.json").write_text(json.dumps(payload, indent=2))
    md = [
        f"# Triton kernels on {name}",
        "",
        f"`{command}` — torch {torch.__version__}, triton {triton.__version__}, {payload['date']}.",
        "",
        f"Copy bandwidth (read + write): {bw / 1e12:.2f} TB/s. Roofline = fewest bytes / copy bandwidth.",
        "Times: forward + backward (`torch.autograd.grad`), float32, `triton.testing.do_bench` median;",
        "'wall' is the host clock over back-to-back iterations (what a training loop sees when the",
        "host is the limit). Extra memory: peak beyond the inputs and the returned gradient, in",
        "gradient-sized buffers.",
        "",
        "'triton' is the kernels with a lean Dice formula in PyTorch on the (S, C, 7) stats; 'fused' is",
        "the kernels with the Dice formula and the mean in the finalize kernel (`dice_loss_triton`: stats",
        "kernel, finalize kernel, one gradient pass); 'module' is `losses.torch.DiceLoss` as called (the",
        "fused path plus argument checks and, for label maps, the asynchronous label-range check); 'stats'",
        "is the kernels alone (`dice_stats_triton` then `autograd.grad(stats, x, grad_stats)`); 'device' is",
        "the sum of the kernel times of one step (torch.profiler), which the host cannot hide.",
        "",
        "| case | roofline ms | triton ms | × roofline | triton device ms | fused ms | fused wall ms | fused device ms | module ms | module wall ms | stats ms | triton wall ms | eager ms | compiled ms | triton extra mem |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in results:
        md.append(
            f"| {r['case']} | {r['roofline_ms']:.3f} | {r.get('triton_ms', nan):.3f} | "
            f"{r['triton_over_roofline']:.2f} | {r.get('triton_device_ms', nan):.3f} | "
            f"{r.get('fused_ms', nan):.3f} | {r.get('fused_wall_ms', nan):.3f} | {r.get('fused_device_ms', nan):.3f} | "
            f"{r.get('module_ms', nan):.3f} | {r.get('module_wall_ms', nan):.3f} | "
            f"{r.get('stats_ms', nan):.3f} | {r.get('triton_wall_ms', nan):.3f} | "
            f"{r.get('eager_ms', nan):.3f} | {r.get('compiled_ms', nan):.3f} | "
            f"{r.get('triton_extra_mem_grads', nan):.2f} |"
        )
    md += [
        "",
        "Small-size host cost (the step is limited by the host, not the device):",
        "",
        "| case | do_bench ms | wall ms | device ms |",
        "|---|---|---|---|",
        f"| {small_stats['case']} | {small_stats['triton_ms']:.3f} | {small_stats['triton_wall_ms']:.3f} | "
        f"{small_stats['triton_device_ms']:.3f} |",
        f"| {host_floor['case']} | {host_floor['eager_ms']:.3f} | {host_floor['eager_wall_ms']:.3f} | |",
    ]
    md += [
        "",
        "Device ms (sum of kernel times per step, torch.profiler): "
        + "; ".join(
            f"{r['case']}: triton {r.get('triton_device_ms', float('nan')):.3f}, eager {r.get('eager_device_ms', float('nan')):.3f}, "
            f"compiled {r.get('compiled_device_ms', float('nan')):.3f}"
            for r in results
        ),
    ]
    failed = [c for c in checks if not c["ok"]]
    md += [
        "",
        f"Correctness on this device: {len(checks) - len(failed)}/{len(checks)} checks passed "
        "(float64 references, values and gradients, bitwise-equal reruns).",
        "",
    ]
    md += ["```", *lines, "```", ""]
    (out / "gpu_kernels.md").write_text("\n".join(md))
    print("\n".join(md[-len(lines) - 3 :]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
