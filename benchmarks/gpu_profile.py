"""Where the time of the Triton path goes: host profile and per-kernel device times (diagnostic)."""

import cProfile, pstats, io, time, os
import torch
import triton, triton.language as tl
from benchmarks.gpu_kernels import kernel_dice, kernel_pmae, fwd_bwd, wall_ms


@triton.jit
def _noop(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


x = torch.randn(1024, device="cuda")
for _ in range(10):
    _noop[(1,)](x, 1024, BLOCK=1024)
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(1000):
    _noop[(1,)](x, 1024, BLOCK=1024)
torch.cuda.synchronize()
print("bare triton launch us", (time.perf_counter() - t0) * 1e3)
t0 = time.perf_counter()
for _ in range(1000):
    x.add_(1)
torch.cuda.synchronize()
print("torch add_ us", (time.perf_counter() - t0) * 1e3)

xs = torch.randn(8, 4, 256, 256, device="cuda", requires_grad=True)
ls = torch.randint(0, 4, (8, 256, 256), device="cuda")
step = fwd_bwd(lambda x, t: kernel_dice(x, t, "multiclass"), xs, ls)
print("small wall ms", wall_ms(step))
pr = cProfile.Profile()
pr.enable()
for _ in range(200):
    step()
torch.cuda.synchronize()
pr.disable()
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
print(s.getvalue()[:6000])
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(30)
print(s.getvalue()[:6000])

from torch.profiler import profile, ProfilerActivity

xb = torch.randn(16, 1, 2048, 2048, device="cuda", requires_grad=True)
tb = (torch.rand(16, 1, 2048, 2048, device="cuda") > 0.5).float()
xm = torch.randn(16, 4, 1024, 1024, device="cuda", requires_grad=True)
lm = torch.randint(0, 4, (16, 1024, 1024), device="cuda")
xp = torch.randn(2**26, device="cuda", requires_grad=True)
tp = torch.randn(2**26, device="cuda")
for name, st in [
    ("binary", fwd_bwd(lambda x, t: kernel_dice(x, t, "binary"), xb, tb)),
    ("multiclass", fwd_bwd(lambda x, t: kernel_dice(x, t, "multiclass"), xm, lm)),
    ("pmae", fwd_bwd(kernel_pmae, xp, tp)),
]:
    for _ in range(5):
        st()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            st()
        torch.cuda.synchronize()
    print(name)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12))
