"""Diagnostics for the last gaps of the GPU kernels (issue 7): ``python -m benchmarks.gpu_gaps [--src DIR]``.

On a CUDA device, in one run:

1. ``--asserts``: the label-range device assert of the Dice stats kernels, each case in its own
   subprocess (a device assert leaves the CUDA context unusable): out-of-range labels must fail
   with a device-side assert, in-range ones (with ignore_index) must not;
2. times, forward + backward: ``DiceLoss`` multiclass 16x4x1024x1024 int64 labels; the penalized
   MAE on 2^26 elements (do_bench median, wall clock, device time, and the host cost of the same
   calls at a size where the host is the limit); ``DiceLoss`` multiclass 8x4x256x256 (host
   breakdown by piece, cProfile, and the whole step captured in a CUDA graph and replayed).

``--src`` picks the checkout whose ``losses`` is imported (to compare two versions in one run).
Prints a summary and writes ``gaps_<label>.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ASSERT_CASES = [
    # (name, code building x, labels and the criterion; whether it must fail)
    (
        "multiclass int64 label 4 of C=4",
        "x = torch.randn(2, 4, 300, 301, device='cuda'); "
        "t = torch.randint(0, 4, (2, 300, 301), device='cuda'); t[1, 299, 300] = 4; f = DiceLoss()",
        True,
    ),
    (
        "multiclass int64 label -1, ignore 255",
        "x = torch.randn(2, 4, 64, 64, device='cuda'); "
        "t = torch.randint(0, 4, (2, 64, 64), device='cuda'); t[0, 5, 5] = 255; t[1, 7, 9] = -1; "
        "f = DiceLoss(ignore_index=255)",
        True,
    ),
    (
        "multiclass uint8 all valid, ignore 255",
        "x = torch.randn(3, 4, 129, 257, device='cuda'); "
        "t = torch.randint(0, 4, (3, 129, 257), device='cuda'); t[t == 2] = 255; t = t.to(torch.uint8); "
        "f = DiceLoss(ignore_index=255)",
        False,
    ),
    (
        "multiclass int64 ignore 3 inside [0, 7)",
        "x = torch.randn(2, 7, 97, 101, device='cuda'); "
        "t = torch.randint(0, 7, (2, 97, 101), device='cuda'); f = DiceLoss(ignore_index=3, per_image=False)",
        False,
    ),
    (
        "multiclass uint8 label 19 of C=19",
        "x = torch.randn(2, 19, 61, 67, device='cuda'); "
        "t = torch.randint(0, 19, (2, 61, 67), device='cuda'); t[0, 60, 66] = 19; t = t.to(torch.uint8); "
        "f = DiceLoss()",
        True,
    ),
    (
        "binary int64 label 2",
        "x = torch.randn(4, 1, 333, 517, device='cuda'); "
        "t = torch.randint(0, 2, (4, 333, 517), device='cuda'); t[3, 0, 0] = 2; f = DiceLoss(mode='binary')",
        True,
    ),
    (
        "binary uint8 all valid, ignore 255",
        "x = torch.randn(4, 1, 333, 517, device='cuda'); "
        "t = torch.randint(0, 2, (4, 333, 517), device='cuda'); t[:, 5] = 255; t = t.to(torch.uint8); "
        "f = DiceLoss(mode='binary', ignore_index=255)",
        False,
    ),
    (
        "torch.compile multiclass int64 label 9",
        "x = torch.randn(2, 4, 64, 64, device='cuda'); "
        "t = torch.randint(0, 4, (2, 64, 64), device='cuda'); t[0, 1, 2] = 9; "
        "f = torch.compile(DiceLoss(), fullgraph=True)",
        True,
    ),
]


def run_assert_case(src: str, code: str) -> dict:
    program = (
        f"import sys; sys.path.insert(0, {src!r}); import torch; from losses.torch import DiceLoss; {code}; "
        "x.requires_grad_(); loss = f(x, t); loss.backward(); torch.cuda.synchronize(); "
        "print('finished', float(loss))"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    text = result.stdout + result.stderr
    return dict(
        rc=result.returncode,
        finished="finished" in result.stdout,
        device_assert="device-side assert" in text or "device assert" in text.lower(),
        message="target labels out of range" in text,
        tail=text[-600:],
    )


def check_asserts(src: str, log) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(ASSERT_CASES)) as pool:
        results = list(pool.map(lambda case: run_assert_case(src, case[1]), ASSERT_CASES))
    rows = []
    for (name, _, must_fail), r in zip(ASSERT_CASES, results):
        ok = (
            (not r["finished"] and r["rc"] != 0 and r["device_assert"])
            if must_fail
            else (r["finished"] and r["rc"] == 0)
        )
        rows.append(dict(case=name, must_fail=must_fail, ok=ok, **r))
        log(
            f"assert {name:45s} must_fail={must_fail!s:5} rc={r['rc']} device_assert={r['device_assert']} "
            f"message={r['message']} {'ok' if ok else 'FAIL'}"
        )
        if not ok:
            log("   " + r["tail"].replace("\n", "\n   "))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=os.getcwd())
    parser.add_argument("--label", default="new")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--asserts", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.src))
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # for benchmarks.*
    import torch
    import triton
    from triton.testing import do_bench

    import losses
    from losses.torch import DiceLoss
    from losses.torch.functional import penalized_mae

    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    log(
        f"[{args.label}] losses from {losses.__file__}; {torch.cuda.get_device_name()}; torch {torch.__version__}; "
        f"triton {triton.__version__}"
    )
    out = dict(
        label=args.label, device=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__
    )
    if args.asserts:
        out["asserts"] = check_asserts(os.path.abspath(args.src), log)

    def bench(fn):
        return do_bench(fn, warmup=50, rep=400, return_mode="median")

    # The timers of the full benchmark; imported after --src is on the path, like losses.
    from benchmarks.gpu_kernels import device_ms as device
    from benchmarks.gpu_kernels import wall_ms as wall

    def no_flush(fn, iters=200):
        # Events around back-to-back calls, no L2 flush between them: the device-bound time when
        # the host keeps ahead.
        for _ in range(10):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters

    def grad_step(loss_fn, x, *rest):
        def step():
            return torch.autograd.grad(loss_fn(x, *rest), x)[0]

        return step

    def figures(name, step, iters):
        row = dict(
            do_bench_ms=bench(step),
            wall_ms=wall(step, iters),
            device_ms=device(step),
            events_no_flush_ms=no_flush(step, iters),
        )
        out[name] = row
        log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
        return row

    torch.manual_seed(0)
    dev = "cuda"
    criterion = DiceLoss(mode="multiclass")

    # 1. multiclass Dice, large
    xm = torch.randn(16, 4, 1024, 1024, device=dev, requires_grad=True)
    lm = torch.randint(0, 4, (16, 1024, 1024), device=dev)
    figures("dice_mc_16x4x1024", grad_step(criterion, xm, lm), 200)
    del xm, lm

    # 2. penalized MAE: the large case, then the same calls where the host is the limit
    xp = torch.randn(2**26, device=dev, requires_grad=True)
    tp = torch.randn(2**26, device=dev)
    figures("pmae_2^26", grad_step(penalized_mae, xp, tp), 200)
    out["pmae_2^26"]["fwd_only_do_bench_ms"] = bench(lambda: penalized_mae(xp, tp))

    def backward_step():
        xp.grad = None
        penalized_mae(xp, tp).backward()

    out["pmae_2^26"]["loss_backward_do_bench_ms"] = bench(backward_step)
    log(
        f"pmae_2^26 forward only do_bench {out['pmae_2^26']['fwd_only_do_bench_ms']:.4f}; "
        f"loss.backward() step do_bench {out['pmae_2^26']['loss_backward_do_bench_ms']:.4f}"
    )
    del xp, tp
    xq = torch.randn(4096, device=dev, requires_grad=True)
    tq = torch.randn(4096, device=dev)
    host = dict(
        step_wall_ms=wall(grad_step(penalized_mae, xq, tq), 2000), fwd_wall_ms=wall(lambda: penalized_mae(xq, tq), 2000)
    )
    loss_q = penalized_mae(xq, tq)
    host["grad_only_wall_ms"] = wall(lambda: torch.autograd.grad(loss_q, xq, retain_graph=True), 2000)
    xg = torch.randn(64, device=dev, requires_grad=True)
    host["autograd_floor_wall_ms"] = wall(lambda: torch.autograd.grad((xg * 2).sum(), xg), 2000)
    out["pmae_host_4096"] = host
    log("pmae host-bound (4096 elements): " + ", ".join(f"{k} {v:.4f}" for k, v in host.items()))

    # 3. multiclass Dice, small: host breakdown, then CUDA graphs
    xs = torch.randn(8, 4, 256, 256, device=dev, requires_grad=True)
    ls = torch.randint(0, 4, (8, 256, 256), device=dev)
    figures("dice_mc_8x4x256", grad_step(criterion, xs, ls), 1000)
    loss_s = criterion(xs, ls)
    pieces = dict(
        forward_wall_ms=wall(lambda: criterion(xs, ls), 2000),
        grad_only_wall_ms=wall(lambda: torch.autograd.grad(loss_s, xs, retain_graph=True), 2000),
    )
    from losses.torch._kernels import overlap_stats as dice_kernels
    from losses.torch._kernels import triton_module

    kernels = triton_module("_triton_overlap")
    part = torch.zeros(8, 4, 128, kernels.PARTIALS, device=dev)
    outs = torch.empty(8, 4, kernels.PARTIALS - 1, device=dev)

    def reduce_launch():
        kernels.reduce_kernel[(32,)](part, outs, 4, 128, 1, BLOCK=kernels.REDUCE_BLOCK, num_warps=2)

    pieces["one_reduce_launch_ms"] = wall(reduce_launch, 2000)
    pieces["torch_empty_ms"] = wall(lambda: torch.empty(8, 4, 7, device=dev), 2000)
    pieces["current_device_ms"] = wall(torch.cuda.current_device, 2000)
    options = dice_kernels.StatsOptions("multiclass", True, None, True)
    pieces["stats_fwd_ms"] = wall(lambda: dice_kernels.stats(xs, ls, None, options), 2000)
    out["dice_mc_8x4x256_pieces"] = pieces
    log("dice 8x4x256 host pieces: " + ", ".join(f"{k} {v:.4f}" for k, v in pieces.items()))

    import cProfile
    import io
    import pstats

    step = grad_step(criterion, xs, ls)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(300):
        step()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(22)
    out["dice_mc_8x4x256_cprofile"] = text.getvalue()
    log(text.getvalue()[-5000:])

    # CUDA graph of the whole step (forward + autograd.grad), warmed up on a side stream.
    graph_row = {}
    try:
        static_x = torch.randn(8, 4, 256, 256, device=dev, requires_grad=True)
        static_l = torch.randint(0, 4, (8, 256, 256), device=dev)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                torch.autograd.grad(criterion(static_x, static_l), static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = criterion(static_x, static_l)
            (static_grad,) = torch.autograd.grad(static_loss, static_x)
        # Fresh data copied into the captured buffers: the replay must match eager on it.
        errors = []
        for _ in range(3):
            with torch.no_grad():
                static_x.copy_(torch.randn_like(static_x))
            static_l.copy_(torch.randint(0, 4, static_l.shape, device=dev))
            graph.replay()
            ref_loss = criterion(static_x, static_l)
            (ref_grad,) = torch.autograd.grad(ref_loss, static_x)
            errors.append((float((static_loss - ref_loss).abs()), float((static_grad - ref_grad).abs().max())))
        graph_row["replay_vs_eager_max_abs_err"] = max(max(e) for e in errors)
        graph_row["replay_do_bench_ms"] = bench(graph.replay)
        graph_row["replay_wall_ms"] = wall(graph.replay, 2000)
        graph_row["replay_events_no_flush_ms"] = no_flush(graph.replay, 2000)
        graph_row["captured"] = True
    except Exception as error:  # noqa: BLE001 - the reason is the finding
        import traceback

        graph_row["captured"] = False
        graph_row["error"] = traceback.format_exc()[-3000:]
    out["dice_mc_8x4x256_cuda_graph"] = graph_row
    log("dice 8x4x256 CUDA graph: " + json.dumps(graph_row))

    path = os.path.join(args.out, f"gaps_{args.label}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    return 0 if all(r["ok"] for r in out.get("asserts", [])) else 1


if __name__ == "__main__":
    raise SystemExit(main())
