"""Measures every row of every case: value check, forward+backward time, peak extra memory.

Method (also written into the results and the README):

- Inputs are random with a fixed seed. Before anything is timed, each row's loss and gradient are
  compared with a float64 reference (the naive composition evaluated in float64 on the same
  inputs, at the row's own options, times the row's scale where a peer computes a known multiple
  of the loss: MONAI's softmax focal loss is also a mean over the classes, 1/C of ours); a row
  that disagrees (loss to 1e-5 + 1e-4 of its value, gradient to 1e-3 of its largest component
  unless the case's title says otherwise) is reported as ``wrong`` and not timed, and the run
  exits with status 1.
- One step is the forward pass plus the gradient of the loss with respect to the prediction (the
  leaf tensor), through ``torch.autograd.grad`` or ``tf.GradientTape`` inside a ``tf.function``.
- Warm-up steps (which include compilation) are excluded. The rows of a case are then timed in
  interleaved rounds, so that a change of load on the machine hits every row alike; each sample is
  one step on the CPU (steps under 2 ms: the mean of enough to last 2 ms), right after another
  row's, and about 20 ms of back-to-back steps on CUDA; the table shows the median and the minimum.
  ``--sample-ms`` sets the length of a sample: a longer one measures the steady state of a loss
  called again and again, as in a training loop, rather than its first step after another's.
- Peak extra memory on the CPU: the peak resident set size of the process during one step (the
  kernel's high-water mark, reset through ``/proc/self/clear_refs`` before the step, with freed
  heap pages returned by ``malloc_trim`` first) minus the resident size just before it; the
  minimum over three steps, so that unrelated allocations of other threads do not count. On CUDA:
  ``torch.cuda.max_memory_allocated`` minus the allocated memory before the step.
- On CUDA, times come from CUDA events; "bytes/elem" counts the least traffic a step needs (read
  prediction and target, write the gradient) per prediction element, and "% copy" relates it,
  divided by the step time, to the bandwidth of a large device-to-device copy measured in the same
  run.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks import naive, peers
from benchmarks.cases import Case, Row

CROSS_ENTROPY = ("focal", "dice_ce", "dice_focal")  # the cases whose target follows opts["mode"]
LOSS_ATOL = 1e-5  # the losses are O(1); float32 sums over millions of terms agree far better
GRAD_RTOL = 1e-3  # of the largest reference gradient component


@dataclass
class Result:
    row: Row
    status: str = "ok"  # ok | unavailable | wrong | error
    reason: str = ""
    loss: float | None = None
    loss_error: float | None = None
    grad_error: float | None = None
    first_call_ms: float | None = None
    samples_ms: list = field(default_factory=list)
    peak_extra_bytes: int | None = None

    @property
    def median_ms(self):
        return statistics.median(self.samples_ms) if self.samples_ms else None

    def as_dict(self, case: Case, minimal_bytes: int | None, copy_bandwidth: float | None) -> dict:
        out = {
            "name": self.row.name,
            "framework": self.row.framework,
            "group": self.row.group,
            "reference": self.row.reference,
            "options": {**case.opts, **self.row.opts},
            "status": self.status,
            "reason": self.reason,
            "loss": self.loss,
            "loss_abs_error": self.loss_error,
            "grad_rel_error": self.grad_error,
            "first_call_ms": self.first_call_ms,
            "median_ms": self.median_ms,
            "samples": len(self.samples_ms),
            "min_ms": min(self.samples_ms) if self.samples_ms else None,
            "q1_ms": _quantile(self.samples_ms, 0.25),
            "q3_ms": _quantile(self.samples_ms, 0.75),
            "peak_extra_bytes": self.peak_extra_bytes,
        }
        if minimal_bytes is not None and self.median_ms:
            achieved = minimal_bytes / (self.median_ms / 1e3)
            out["achieved_GBps"] = achieved / 1e9
            out["copy_bandwidth_fraction"] = achieved / copy_bandwidth if copy_bandwidth else None
        return out


def _quantile(values, q):
    if not values:
        return None
    return float(np.quantile(np.asarray(values), q))


# Inputs and reference ---------------------------------------------------------------------------


def make_inputs(case: Case, seed: int = 0) -> dict:
    """Float32 prediction and its target, channels first, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    x = (2.0 * rng.standard_normal(case.shape, dtype=np.float32)).astype(np.float32)
    if case.loss == "dice_binary" or (case.loss in CROSS_ENTROPY and case.opts["mode"] != "multiclass"):
        target = (rng.random(case.shape, dtype=np.float32) < 0.3).astype(np.float32)
    elif case.loss in ("dice_multiclass", "overlap", "lovasz") + CROSS_ENTROPY:
        label_shape = (case.shape[0],) + tuple(case.shape[2:])
        target = rng.integers(0, case.shape[1], size=label_shape, dtype=np.int64)
    elif case.loss == "penalized_mae":
        target = rng.standard_normal(case.shape, dtype=np.float32)
    else:
        x = 1.5 * x  # surrogates: spread over several integers
        target = None
    return {"input": x, "target": target}


def reference(case: Case, opts: dict, arrays: dict, device: str):
    """Loss and gradient of the naive composition in float64, the oracle of every row."""
    import torch

    x = torch.tensor(arrays["input"], dtype=torch.float64, device=device, requires_grad=True)
    t = arrays["target"]
    if t is not None:
        t = torch.tensor(t, device=device)
        if t.is_floating_point():
            t = t.double()
    fn = {
        "dice_binary": lambda: naive.dice_torch(x, t, mode="binary", per_image=opts["per_image"]),
        "dice_multiclass": lambda: naive.dice_torch(x, t, mode="multiclass", per_image=opts["per_image"]),
        "penalized_mae": lambda: naive.penalized_mae_torch(x, t, delta=opts["delta"], penalty=opts["penalty"]),
        "overlap": lambda: naive.overlap_torch(x, t, **opts),
        "lovasz": lambda: naive.lovasz_softmax_torch(x, t, **opts),
        "focal": lambda: naive.focal_torch(x, t, **opts),
        "dice_ce": lambda: naive.dice_term_torch(x, t, **opts),
        "dice_focal": lambda: naive.dice_term_torch(x, t, **opts),
    }.get(case.loss, lambda: naive.surrogate_torch(x, name=case.loss, **opts))
    loss = fn()
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach().item(), grad.cpu().numpy()


def _segmentation(case: Case) -> bool:
    return case.loss.startswith("dice") or case.loss in ("overlap", "lovasz", "focal")


def _channels_last(case: Case, array):
    if array is None or not _segmentation(case) or array.dtype == np.int64:
        return array  # label maps have no channel axis
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def _channels_first(case: Case, array):
    if not _segmentation(case):
        return array
    return np.moveaxis(array, -1, 1)


# Steps ------------------------------------------------------------------------------------------


class Step:
    """One forward+backward of a row; ``__call__`` returns (loss, grad) when the work is done."""

    def __init__(self, call, to_numpy):
        self.call = call
        self.to_numpy = to_numpy

    def __call__(self):
        return self.call()


def torch_step(case: Case, row: Row, opts: dict, arrays: dict, device: str) -> Step:
    import torch

    fn = row.build(opts)
    x = torch.tensor(arrays["input"], device=device, requires_grad=True)
    t = None if arrays["target"] is None else torch.tensor(arrays["target"], device=device)

    def call():
        loss = fn(x, t)
        (grad,) = torch.autograd.grad(loss, x)
        return loss, grad

    return Step(call, lambda out: (out[0].detach().item(), out[1].detach().cpu().numpy()))


def keras_step(case: Case, row: Row, opts: dict, arrays: dict, device: str) -> Step:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except Exception as error:
        raise peers.Unavailable(f"TensorFlow/Keras not importable: {error}") from None
    if keras.backend.backend() != "tensorflow":
        raise peers.Unavailable(f"Keras rows run on TensorFlow; KERAS_BACKEND is {keras.backend.backend()}")
    if device == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise peers.Unavailable("TensorFlow sees no GPU (tensorflow-cpu)")
    threads = os.environ.get("BENCHMARK_THREADS")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:  # already initialised by an earlier row: the setting stands
            pass
    tf_device = "/GPU:0" if device == "cuda" else "/CPU:0"
    fn = row.build(opts)
    with tf.device(tf_device):
        x = tf.constant(_channels_last(case, arrays["input"]))
        t = arrays["target"]
        t = tf.zeros(()) if t is None else tf.constant(_channels_last(case, t))

    @tf.function(jit_compile=row.jit)
    def tf_step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            loss = fn(y_true, y_pred)
        return loss, tape.gradient(loss, y_pred)

    def call():
        with tf.device(tf_device):
            loss, grad = tf_step(t, x)
        loss.numpy()  # wait for the step (a scalar: no measurable copy)
        return loss, grad

    return Step(call, lambda out: (float(out[0]), _channels_first(case, out[1].numpy())))


# Measurement ------------------------------------------------------------------------------------


class Clock:
    def __init__(self, device: str):
        self.device = device
        if device == "cuda":
            import torch

            self.torch = torch

    def time_ms(self, step: Step, n: int) -> float:
        """Mean milliseconds of ``n`` back-to-back steps."""
        if self.device == "cuda":
            torch = self.torch
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(n):
                step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / n
        begin = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - begin) * 1e3 / n


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1))


def _cpu_memory_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        _status_kib("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


def peak_extra_bytes(step: Step, device: str, repeats: int = 3) -> int | None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return int(peak)
    if not _cpu_memory_supported():
        return None
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except OSError:
        malloc_trim = None
    values = []
    for _ in range(repeats):
        if malloc_trim is not None:
            malloc_trim(0)  # return freed heap pages, so that reusing them during the step counts
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the high-water mark VmHWM to the current RSS
        base = _status_kib("VmRSS")
        out = step()
        peak = _status_kib("VmHWM")
        del out
        values.append(max(0, peak - base) * 1024)
    return min(values)


def copy_bandwidth(device: str) -> float | None:
    """Bytes per second of a large device-to-device copy (read + write)."""
    if device != "cuda":
        return None
    import torch

    src = torch.empty(2**28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(20):
        dst.copy_(src)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / 20
    return 2 * src.numel() * src.element_size() / seconds


def minimal_bytes(arrays: dict) -> int:
    """Least traffic of one step: read prediction and target, write the gradient."""
    x, t = arrays["input"], arrays["target"]
    return 2 * x.nbytes + (0 if t is None else t.nbytes)


def run_case(
    case: Case, device: str, *, rounds: int, warmup: int, sample_ms: float, compile_rows: bool, progress
) -> list[Result]:
    arrays = make_inputs(case)
    references: dict = {}
    results: list[Result] = []
    steps: dict = {}
    for row in case.rows:
        result = Result(row)
        results.append(result)
        if row.compiled and not compile_rows:
            result.status, result.reason = "unavailable", "compiled rows skipped (--no-compile)"
            continue
        opts = {**case.opts, **row.opts}
        key = json.dumps(opts, sort_keys=True)
        try:
            if key not in references:
                references[key] = reference(case, opts, arrays, device)
            ref_loss, ref_grad = references[key]
            ref_loss, ref_grad = row.scale * ref_loss, row.scale * ref_grad
            make = torch_step if row.framework == "torch" else keras_step
            step = make(case, row, opts, arrays, device)
            begin = time.perf_counter()
            loss, grad = step.to_numpy(step())
            result.first_call_ms = (time.perf_counter() - begin) * 1e3
        except peers.Unavailable as error:
            result.status, result.reason = "unavailable", str(error)
            continue
        except Exception as error:  # a row that crashes must not hide the others
            result.status, result.reason = "error", f"{type(error).__name__}: {error}"[:300]
            continue
        result.loss = loss
        result.loss_error = abs(loss - ref_loss)
        scale = float(np.max(np.abs(ref_grad))) or 1.0
        if grad.shape != ref_grad.shape:
            result.status, result.reason = "wrong", f"gradient shape {grad.shape}, expected {ref_grad.shape}"
            continue
        result.grad_error = float(np.max(np.abs(grad.astype(np.float64) - ref_grad))) / scale
        if not (
            result.loss_error <= LOSS_ATOL + 1e-4 * abs(ref_loss) and result.grad_error <= (case.grad_rtol or GRAD_RTOL)
        ):
            result.status = "wrong"
            result.reason = f"|loss - reference| = {result.loss_error:.3g}, gradient error {result.grad_error:.3g}"
            continue
        steps[row.name] = step
    progress.total = (progress.total or 0) + len(steps) * (rounds + 1)
    progress.refresh()

    clock = Clock(device)
    inner = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        once = clock.time_ms(step, 1)
        inner[name] = max(1, min(1000, int(sample_ms / max(once, 1e-3))))
        progress.update(1)
    by_name = {result.row.name: result for result in results}
    # One framework at a time: the idle worker threads of one (OpenMP, Eigen) spin for a while
    # after each step and would slow the other down on a machine with few cores.
    for framework in ("torch", "keras"):
        names = [name for name in steps if by_name[name].row.framework == framework]
        for index in range(rounds if names else 0):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                by_name[name].samples_ms.append(clock.time_ms(steps[name], inner[name]))
                progress.update(1)
    return results, steps, arrays


# Whole run --------------------------------------------------------------------------------------


def environment(device: str) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            match = re.search(r"model name\s*:\s*(.+)", info.read())
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            name: peers.version_of(name)
            for name in (
                "torch",
                "tensorflow",
                "tensorflow-cpu",
                "keras",
                "monai",
                "segmentation-models-pytorch",
                "torchvision",
                "kornia",
                "numpy",
            )
        },
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def run(
    device: str = "cpu",
    *,
    quick: bool = False,
    only: list[str] | None = None,
    out_dir: str | None = None,
    rounds: int | None = None,
    compile_rows: bool | None = None,
    chart: bool = True,
    threads: int | None = None,
    sample_ms: float | None = None,
    command: str = "python -m benchmarks",
) -> dict:
    """Runs the cases, writes ``<device>.json``, ``.md`` and ``.png`` into ``out_dir``; returns the results."""
    try:  # before TensorFlow: both bundle LLVM, and importing Triton (torch.compile) after it aborts
        import triton  # noqa: F401
    except Exception:
        pass
    import torch
    from tqdm.auto import tqdm

    if threads:
        torch.set_num_threads(threads)
        os.environ["BENCHMARK_THREADS"] = str(threads)  # read when TensorFlow starts

    from benchmarks.cases import cases_for

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device")
    cases = cases_for(device, quick)
    if only:
        cases = [case for case in cases if any(name in case.key or name == case.loss for name in only)]
        if not cases:
            raise SystemExit(
                f"--only {','.join(only)} matches no case; cases: "
                + ", ".join(case.key for case in cases_for(device, quick))
            )
    # CPU: single steps (short samples catch the quiet moments of a shared machine), many rounds;
    # CUDA: samples of ~20 ms of back-to-back steps, so that event overhead does not count.
    if rounds is None:
        rounds = 3 if quick else (60 if device == "cpu" else 25)
    compile_rows = (not quick) if compile_rows is None else compile_rows
    if sample_ms is None:
        sample_ms = 1.0 if quick else (2.0 if device == "cpu" else 20.0)
    elif not sample_ms > 0:
        raise SystemExit(f"--sample-ms must be a positive number of milliseconds; got {sample_ms}")
    bandwidth = copy_bandwidth(device)
    report = {
        "device": device,
        "command": command,
        "quick": quick,
        "sample_ms": sample_ms,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "environment": environment(device),
        "copy_bandwidth_GBps": bandwidth / 1e9 if bandwidth else None,
        "method": (sys.modules[__name__].__doc__ or "")
        .split("Method (also written into the results and the README):")[-1]
        .strip(),
        "cases": [],
    }
    if device == "cpu":
        report["note"] = (
            f"Measured on a machine with {os.cpu_count()} CPU cores, which other work may share "
            "(the load average is given after each case). With several threads per framework a "
            "core taken by other work stalls every parallel step, so the median follows the load "
            "and the min is the steadier comparison; `--threads 1` keeps such a machine comparable."
        )
    progress = tqdm(total=0, desc="benchmarks", unit="step", file=sys.stderr, dynamic_ncols=True)
    try:
        for case in cases:
            progress.set_description(case.key)
            results, steps, arrays = run_case(
                case,
                device,
                rounds=rounds,
                warmup=1 if quick else 3,
                sample_ms=sample_ms,
                compile_rows=compile_rows,
                progress=progress,
            )
            gc.collect()  # once per case: a full collection takes most of a second once TensorFlow is loaded
            for result in results:
                if result.row.name in steps:
                    result.peak_extra_bytes = peak_extra_bytes(steps[result.row.name], device)
            least = minimal_bytes(arrays) if device == "cuda" else None
            report["cases"].append(
                {
                    "key": case.key,
                    "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "title": case.title,
                    "loss": case.loss,
                    "shape": list(case.shape),
                    "numel": case.numel,
                    "options": case.opts,
                    "bytes_per_element": least / case.numel if least else None,
                    "rows": [result.as_dict(case, least, bandwidth) for result in results],
                }
            )
            del steps, results
            gc.collect()
    finally:
        progress.close()
    _add_ratios(report)
    if out_dir is not None:
        write(report, out_dir, chart=chart)
    return report


def _add_ratios(report: dict) -> None:
    """``vs_ours``: each row's median over the median of ours at the same options and framework."""
    for case in report["cases"]:
        ours = [
            row
            for row in case["rows"]
            if row["group"] == "ours" and row["median_ms"] and "torch.compile" not in row["name"]
        ]
        for row in case["rows"]:
            match = [o for o in ours if o["framework"] == row["framework"] and o["options"] == row["options"]] or [
                o for o in ours if o["options"] == row["options"]
            ]
            row["vs_ours"] = row["median_ms"] / match[0]["median_ms"] if match and row["median_ms"] else None
            row["vs_ours_min"] = row["min_ms"] / match[0]["min_ms"] if match and row["min_ms"] else None


def wrong_rows(report: dict) -> list[str]:
    """Rows that fail the run: any row computing another value, and any error of this package's rows
    (a peer that crashes, say after an API change, is reported in the table but is not our failure)."""
    return [
        f"{case['key']}: {row['name']}: {row['reason']}"
        for case in report["cases"]
        for row in case["rows"]
        if row["status"] == "wrong" or (row["status"] == "error" and row["group"] == "ours")
    ]


# Output -----------------------------------------------------------------------------------------


def _mib(value):
    return "" if value is None else f"{value / 2**20:.1f}"


def markdown(report: dict, level: int = 1) -> str:
    """The tables; ``level``: heading level of the title (cases one level below)."""
    cuda = report["device"] == "cuda"
    env = report["environment"]
    lines = [
        f"{'#' * level} Benchmarks on {report['device'].upper()}",
        "",
        f"`{report['command']}` on {report['date']}: {env['cpu']}, {env['cpu_count']} cores "
        f"({env['torch_threads']} thread{'s' if env['torch_threads'] != 1 else ''} per framework)"
        + (f", {env.get('gpu')}" if cuda else "")
        + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "Forward + backward (gradient of the loss with respect to the prediction), median over "
        "interleaved rounds after warm-up, and the fastest round (*min*), which is the steadier figure "
        "when other work shares the cores. *× ours*: time over the time of this package's row "
        "(same framework and options); above 1 means ours is faster. Every row was checked to "
        "compute the same loss and gradient as a float64 reference (*|Δloss|*).",
    ]
    if report.get("note"):
        lines += ["", report["note"]]
    if cuda and report.get("copy_bandwidth_GBps"):
        lines += ["", f"Measured device copy bandwidth: {report['copy_bandwidth_GBps']:.0f} GB/s."]
    for case in report["cases"]:
        lines += ["", f"{'#' * (level + 1)} {case['title']}", ""]
        header = "| implementation | median ms | min ms | × ours (median, min) | peak extra MiB | \\|Δloss\\| |"
        rule = "|---|---:|---:|---:|---:|---:|"
        if cuda:
            header += " GB/s (min. traffic) | % of copy |"
            rule += "---:|---:|"
        lines += [header, rule]
        missing = []
        for row in case["rows"]:
            if row["status"] == "unavailable":
                missing.append(f"{row['name']}: {row['reason']}")
                continue
            if row["status"] != "ok":
                lines.append(
                    f"| {row['name']} | **{row['status']}**: {row['reason']} | | | | |" + (" | |" if cuda else "")
                )
                continue
            ratio = f"{row['vs_ours']:.2f}, {row['vs_ours_min']:.2f}" if row.get("vs_ours") else ""
            name = f"**{row['name']}**" if row["group"] == "ours" else row["name"]
            cells = [
                name,
                f"{row['median_ms']:.3f}",
                f"{row['min_ms']:.3f}",
                ratio,
                _mib(row["peak_extra_bytes"]),
                f"{row['loss_abs_error']:.1e}",
            ]
            if cuda:
                cells += [
                    f"{row.get('achieved_GBps', 0):.0f}",
                    f"{100 * row['copy_bandwidth_fraction']:.0f}%" if row.get("copy_bandwidth_fraction") else "",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        if case.get("load_average_1min") is not None and not cuda:
            lines += [
                "",
                f"Load average (1 min) after this case: {case['load_average_1min']:.1f} on {env['cpu_count']} cores.",
            ]
        if cuda and case.get("bytes_per_element"):
            lines += ["", f"Least traffic: {case['bytes_per_element']:.2f} bytes per prediction element."]
        if missing:
            lines += ["", "Not measured: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    try:
        import matplotlib
    except ImportError:  # the chart is optional: pip install 'losses[bench]'
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [case for case in report["cases"] if any(row["median_ms"] for row in case["rows"])]
    if not cases:
        return
    columns = 2 if len(cases) > 1 else 1
    rows_of_plots = math.ceil(len(cases) / columns)
    figure, axes = plt.subplots(rows_of_plots, columns, figsize=(7 * columns, 2.6 * rows_of_plots), squeeze=False)
    colors = {"ours": "#1b9e77", "peer": "#7570b3", "naive": "#d95f02"}
    for axis, case in zip(axes.flat, cases):
        timed = [row for row in case["rows"] if row["median_ms"]]
        timed.sort(key=lambda row: row["median_ms"], reverse=True)
        axis.barh(
            [row["name"] for row in timed],
            [row["median_ms"] for row in timed],
            color=[colors[row["group"]] for row in timed],
        )
        for y, row in enumerate(timed):
            axis.text(row["median_ms"], y, f" {row['median_ms']:.2f}", va="center", fontsize=7)
        axis.set_title(case["title"], fontsize=9)
        axis.set_xlabel("forward+backward, median ms (shorter is better)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.set_xlim(0, max(row["median_ms"] for row in timed) * 1.25)
    for axis in list(axes.flat)[len(cases) :]:
        axis.axis("off")
    from matplotlib.patches import Patch

    figure.legend(
        handles=[
            Patch(color=color, label=label)
            for label, color in (
                ("this package", colors["ours"]),
                ("peers", colors["peer"]),
                ("naive / compiled", colors["naive"]),
            )
        ],
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(
        f"{report['command']}  ({report['environment']['cpu_count']} CPU cores"
        + (f", {report['environment'].get('gpu')}" if report["device"] == "cuda" else "")
        + ")",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    # No Software entry (the matplotlib version): the bytes depend on the drawing only.
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def write(report: dict, out_dir: str, chart: bool = True) -> None:
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, report["device"] + ("-quick" if report["quick"] else ""))
    with open(stem + ".json", "w") as file:
        json.dump(report, file, indent=1)
    with open(stem + ".md", "w") as file:
        file.write(markdown(report))
    if chart:
        plot(report, stem + ".png")


README_BEGIN = "<!-- benchmarks:{device} -->"
README_END = "<!-- /benchmarks:{device} -->"


def _fastest(rows: list[dict]) -> dict | None:
    timed = [row for row in rows if row["status"] == "ok" and row.get("min_ms")]
    return min(timed, key=lambda row: row["min_ms"]) if timed else None


def headline(report: dict) -> str:
    """One line per case: this package's fastest row beside the fastest other row, per framework
    (fastest rounds, the steadier figure on a shared machine); the full tables are in the .md file."""
    lines = [
        f"`{report['command']}`, {report['date'][:10]}, {report['environment']['cpu']}: forward + backward, "
        "fastest round in ms of the fastest row of each side.",
        "",
        "| case | PyTorch: ours | PyTorch: other | Keras (TensorFlow): ours | Keras: other |",
        "|---|---:|---|---:|---|",
    ]
    for case in report["cases"]:
        cells = [case["title"]]
        for framework in ("torch", "keras"):
            rows = [row for row in case["rows"] if row["framework"] == framework and not row.get("reference")]
            for row in (
                _fastest([row for row in rows if row["group"] == "ours"]),
                _fastest([row for row in rows if row["group"] != "ours"]),
            ):
                cells.append(f"{row['min_ms']:.2f} ({row['name']})" if row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_readme(report: dict, readme: str) -> None:
    """Replaces the README's block between the ``benchmarks:<device>`` markers with the headline table."""
    begin, end = (marker.format(device=report["device"]) for marker in (README_BEGIN, README_END))
    with open(readme) as file:
        text = file.read()
    if begin not in text:
        raise SystemExit(f"{readme} has no {begin} marker")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1] if end in rest else ""
    with open(readme, "w") as file:
        file.write(f"{head}{begin}\n{headline(report)}{end}{tail}")
