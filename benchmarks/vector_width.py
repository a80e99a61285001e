"""The C kernels built for 512-bit against 256-bit vectors on a CPU with AVX-512:
``python -m benchmarks.vector_width [--threads 1] [--pairs 4] [--out DIR]``.

Each measurement runs in its own process, which builds (or takes from the cache) the library with
one vector width; the two widths alternate, ``--pairs`` times each, so that a machine whose speed
drifts (other work on the cores) drifts under both. Forward + backward of each loss, the fastest
of ``--rounds`` calls per process, then the fastest over the processes. Writes ``cpu.md`` and
``cpu.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

WIDTHS = ("256", "512")

# name: (setup building `loss` (a function of the prediction) and `x`, the shape in words)
CASES = {
    "DiceLoss binary": (
        "x = torch.randn(16, 1, 256, 256); t = (torch.rand(16, 1, 256, 256) > 0.5).float()\n"
        "loss = lambda x: F.dice_loss(x, t, mode='binary', from_logits=True)",
        "16x1x256x256, float 0/1 targets",
    ),
    "DiceCELoss binary": (
        "x = torch.randn(16, 1, 256, 256); t = (torch.rand(16, 1, 256, 256) > 0.5).float()\n"
        "loss = lambda x: F.dice_ce_loss(x, t, mode='binary', from_logits=True)",
        "16x1x256x256, float 0/1 targets",
    ),
    "DiceFocalLoss binary": (
        "x = torch.randn(16, 1, 256, 256); t = (torch.rand(16, 1, 256, 256) > 0.5).float()\n"
        "loss = lambda x: F.dice_focal_loss(x, t, mode='binary', from_logits=True)",
        "16x1x256x256, float 0/1 targets",
    ),
    "DiceLoss multiclass": (
        "x = torch.randn(8, 4, 128, 128); t = torch.randint(0, 4, (8, 128, 128))\n"
        "loss = lambda x: F.dice_loss(x, t, mode='multiclass', from_logits=True)",
        "8x4x128x128, int64 label maps",
    ),
    "DiceCELoss multiclass": (
        "x = torch.randn(8, 4, 128, 128); t = torch.randint(0, 4, (8, 128, 128))\n"
        "loss = lambda x: F.dice_ce_loss(x, t, mode='multiclass', from_logits=True)",
        "8x4x128x128, int64 label maps",
    ),
    "FocalLoss multiclass": (
        "x = torch.randn(8, 4, 128, 128); t = torch.randint(0, 4, (8, 128, 128))\n"
        "loss = lambda x: F.focal_loss(x, t, mode='multiclass')",
        "8x4x128x128, int64 label maps",
    ),
    "penalized_mae": (
        "x = torch.randn(64, 65536) * 3; t = torch.randn(64, 65536)\nloss = lambda x: F.penalized_mae(x, t)",
        "2^22 elements",
    ),
    "soft_round": ("x = torch.randn(64, 65536) * 3\nloss = lambda x: L.soft_round(x).mean()", "2^22 elements"),
    "soft_step": ("x = torch.randn(64, 65536) * 3\nloss = lambda x: L.soft_step(x).mean()", "2^22 elements"),
}

CHILD = """
import json, sys, time, torch
torch.set_num_threads({threads})
torch.manual_seed(0)
from losses.torch._kernels import _clib
_clib._vector_flags = lambda: ['-mprefer-vector-width={width}']
import losses.torch as L
import losses.torch.functional as F
best = {{}}
for name, setup in {setups!r}.items():
    scope = dict(torch=torch, F=F, L=L)
    exec(setup, scope)
    x = scope['x'].requires_grad_()
    loss = scope['loss']
    fastest = float('inf')
    for _ in range({rounds}):
        start = time.perf_counter()
        loss(x).backward()
        fastest = min(fastest, time.perf_counter() - start)
        x.grad = None
    best[name] = fastest * 1e3
print(json.dumps(best))
"""


def measure(width: str, threads: int, rounds: int) -> dict[str, float]:
    code = CHILD.format(
        threads=threads, width=width, rounds=rounds, setups={name: setup for name, (setup, _) in CASES.items()}
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vector_width", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=4, help="processes per width, alternating")
    parser.add_argument("--rounds", type=int, default=30, help="calls per loss in each process")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vector-width")
    )
    args = parser.parse_args(argv)
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        text = info.read()
    if " avx512f" not in text:
        print("this CPU has no AVX-512: the library is built for its widest vectors either way")
        return 0
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    best: dict[str, dict[str, float]] = {width: {} for width in WIDTHS}
    for _ in range(args.pairs):
        for width in WIDTHS:
            for name, ms in measure(width, args.threads, args.rounds).items():
                best[width][name] = min(best[width].get(name, float("inf")), ms)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python -m benchmarks.vector_width --threads {args.threads} --pairs {args.pairs} --rounds {args.rounds}"
    lines = [
        "# C kernels: 512-bit against 256-bit vectors",
        "",
        f"`{command}` on {when}: {model or platform.processor()}, {os.cpu_count()} cores, "
        f"{args.threads} thread(s). Forward + backward, the fastest call over {args.pairs} alternating processes "
        f"per width of {args.rounds} calls each.",
        "",
        "| loss | input | 256-bit ms | 512-bit ms | 256 / 512 |",
        "|---|---|---:|---:|---:|",
    ]
    for name, (_, shape) in CASES.items():
        narrow, wide = best["256"][name], best["512"][name]
        lines.append(f"| {name} | {shape} | {narrow:.3f} | {wide:.3f} | {narrow / wide:.2f} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cpu.md"), "w", encoding="utf-8") as md:
        md.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "cpu.json"), "w", encoding="utf-8") as js:
        json.dump({"command": command, "when": when, "cpu": model, "threads": args.threads, "ms": best}, js, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
