"""Fused Dice passes for CPU tensors: a small C library compiled on first use.

PyTorch's CPU ops make every elementwise step of a Dice loss a pass over memory with an
input-sized result (sigmoid, products, sums, and as many again backwards). ``cpu_dice.c`` does the
forward in one pass (probabilities and every per-class sum) and the backward in one pass (the
gradient written over the stored probabilities), each split into fixed tasks that up to
``torch.get_num_threads()`` threads share (started and joined in C, without the GIL).

The library is plain C99 with no dependency but libm, built with the system C compiler (``$CC``,
else ``cc``, ``gcc`` or ``clang``) into a cache directory (``$LOSSES_CACHE_DIR``, else
``$XDG_CACHE_HOME/losses`` or ``~/.cache/losses``) the first time a Dice loss runs on the CPU,
and loaded with ``ctypes``. Without a compiler, or if the build fails, :func:`available` is False
and the portable PyTorch path runs instead; ``LOSSES_KERNELS=torch`` always takes that path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from losses.torch._kernels import kernels_choice

SOURCE = Path(__file__).with_name("cpu_dice.c")
MAX_CLASSES = 64  # classes per image held in one tile (MAX_CLASSES in cpu_dice.c)
# The seven sums of losses._dice, then the counts of values out of range and of non-finite values.
NUM_PARTIALS = 9
OUT_OF_RANGE = 7
NON_FINITE = 8
# Positions per task. Fixed, so the order of every sum is the same whatever the thread count.
ROW_CHUNK = 16384
IMAGE_CHUNK = 4096
# Below this many elements per thread, one thread does the whole pass.
MIN_ELEMENTS_PER_THREAD = 65536

_SUFFIX = {torch.float32: "f32", torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8"}
_LABEL_DTYPES = (torch.int64, torch.int32, torch.uint8)

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_build_error: str | None = None
_forked_child = False


def _after_fork_in_child() -> None:
    # GNU OpenMP, which the passes share with PyTorch, hangs in a forked child once the parent has
    # used its threads (PyTorch's own parallel ops too): one thread there.
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _cache_dir() -> Path:
    configured = os.environ.get("LOSSES_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "losses"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_description() -> str:
    """What -march=native depends on: a library built on one machine must not load on another."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            lines = [line for line in info if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _torch_uses_libgomp() -> bool:
    """Whether this process has GNU OpenMP loaded (as PyTorch's Linux builds do)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def _build(compiler: str, directory: Path) -> Path:
    source = SOURCE.read_bytes()
    # -fopenmp only where PyTorch itself runs on libgomp (see run_pass in cpu_dice.c); some
    # compilers or CPUs reject -march=native.
    threading_flags = ["-fopenmp"] if _torch_uses_libgomp() else ["-pthread"]
    flag_sets = (["-O3", "-march=native", *threading_flags], ["-O3", "-march=native", "-pthread"], ["-O3", "-pthread"])
    common = ["-std=c99", "-ffp-contract=fast", "-fopenmp-simd", "-ffinite-math-only", "-fno-signed-zeros",
              "-fno-trapping-math", "-fPIC", "-shared"]
    errors = []
    for flags in flag_sets:
        key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags + common).encode(),
                                         platform.machine().encode(), _cpu_description().encode()]))
        target = directory / f"cpu_dice-{key.hexdigest()[:16]}.so"
        if target.exists():
            return target
        directory.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed: processes that start together (one per rank)
        # never load a half-written file.
        handle, partial = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(handle)
        command = [compiler, *flags, *common, "-o", partial, str(SOURCE), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            os.replace(partial, target)
            return target
        os.unlink(partial)
        errors.append(f"{' '.join(command)}:\n{result.stderr.strip()}")
    raise RuntimeError("\n".join(errors))


class _Pass(ctypes.Structure):
    """``struct Pass`` of cpu_dice.c."""

    _fields_ = [
        ("x", ctypes.c_void_p), ("target", ctypes.c_void_p), ("probs", ctypes.c_void_p), ("out", ctypes.c_void_p),
        ("coef", ctypes.c_void_p), ("classes", ctypes.c_int64), ("n", ctypes.c_int64), ("chunk", ctypes.c_int64),
        ("activation", ctypes.c_int32), ("has_ignore", ctypes.c_int32), ("ignore", ctypes.c_double),
        ("ignore_int", ctypes.c_int64),
    ]


def _declare(library: ctypes.CDLL) -> None:
    library.run_pass.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Pass), ctypes.c_int64, ctypes.c_int32]
    library.run_pass.restype = None


def library() -> ctypes.CDLL | None:
    """The compiled library, built on first call; None when it cannot be built (see build_error)."""
    global _library, _build_error
    if _library is not None or _build_error is not None:
        return _library
    with _lock:
        if _library is None and _build_error is None:
            compiler = _compiler()
            if compiler is None:
                _build_error = "no C compiler found (set CC, or install cc, gcc or clang)"
                return None
            try:
                directory = _cache_dir()
                try:
                    path = _build(compiler, directory)
                except OSError:  # an unwritable cache directory
                    path = _build(compiler, Path(tempfile.gettempdir()) / f"losses-{os.getuid()}")
                loaded = ctypes.CDLL(str(path))
                _declare(loaded)
            except Exception as error:  # noqa: BLE001 - any failure means: use the portable path
                _build_error = f"{type(error).__name__}: {error}"
            else:
                _library = loaded
    return _library


def build_error() -> str | None:
    """Why the library is not available (None when it is, or has not been tried)."""
    return _build_error


def available() -> bool:
    return kernels_choice() == "auto" and library() is not None


def supports(input: torch.Tensor, target: torch.Tensor, mode: str, label_map: bool) -> bool:
    """Whether the fused passes take this prediction and target (else the portable path runs)."""
    if input.device.type != "cpu" or target.device.type != "cpu" or input.numel() == 0:
        return False
    if input.dtype == torch.float64 or not input.is_floating_point():
        return False  # float64 keeps its precision on the portable path
    if label_map:
        return target.dtype in _LABEL_DTYPES and (mode == "binary" or input.shape[1] <= MAX_CLASSES)
    if mode == "multiclass" and input.shape[1] > MAX_CLASSES:
        return False
    return target.is_floating_point() or target.dtype == torch.bool or target.dtype in _LABEL_DTYPES


def _run(name: str, pass_: _Pass, tasks: int, elements: int) -> None:
    """Runs the kernel ``name`` over ``tasks`` tasks, on up to ``torch.get_num_threads()`` threads."""
    threads = 1 if _forked_child else max(1, min(torch.get_num_threads(), tasks, elements // MIN_ELEMENTS_PER_THREAD))
    lib = library()
    # ctypes releases the GIL for the call; the C side starts and joins the threads.
    lib.run_pass(ctypes.cast(getattr(lib, name), ctypes.c_void_p), ctypes.byref(pass_), tasks, threads)


class Prepared:
    """The prediction (B, C, N) as contiguous float32 and the target in a dtype the library reads.

    :meth:`stats` keeps the probabilities (one buffer of the prediction's size) and
    :meth:`gradient` turns that buffer into the gradient, once.
    """

    __slots__ = ("activation", "batch", "classes", "has_ignore", "ignore", "ignore_int", "kind", "positions", "probs",
                 "target", "x")

    def __init__(self, input: torch.Tensor, target: torch.Tensor, mode: str, from_logits: bool,
                 ignore_index: int | None, label_map: bool) -> None:
        self.batch, self.classes = input.shape[0], input.shape[1]
        self.positions = input.numel() // (self.batch * self.classes)
        self.x = input.reshape(self.batch, self.classes, self.positions).to(torch.float32).contiguous()
        if label_map:
            target = target.reshape(self.batch, self.positions)
        else:
            # Per-class targets are probabilities, whatever their dtype.
            target = target.reshape(self.batch, self.classes, self.positions).to(torch.float32)
        self.target = target.contiguous()
        self.activation = int(from_logits)
        # rows: sigmoid (or probabilities) per channel; images: softmax over the channels
        if mode == "multiclass":
            self.kind = "labels" if label_map else "classes"
        else:
            self.kind = "rows"
        info = None if self.target.is_floating_point() else torch.iinfo(self.target.dtype)
        # An ignore_index the target's dtype cannot hold matches nothing.
        self.has_ignore = int(ignore_index is not None and (info is None or info.min <= ignore_index <= info.max))
        self.ignore = float(ignore_index) if self.has_ignore else 0.0
        self.ignore_int = int(ignore_index) if self.has_ignore and info is not None else 0
        self.probs: torch.Tensor | None = None

    def _tasks(self) -> tuple[int, int, int]:
        """(tasks, positions per task, rows): rows of N positions, or images of C × N."""
        if self.kind == "rows":
            rows, chunk = self.batch * self.classes, ROW_CHUNK
        else:
            rows, chunk = self.batch, IMAGE_CHUNK
        return rows * -(-self.positions // chunk), chunk, rows

    def _pass(self, chunk: int, **pointers: int) -> _Pass:
        return _Pass(x=self.x.data_ptr(), target=self.target.data_ptr(), classes=self.classes, n=self.positions,
                     chunk=chunk, activation=self.activation, has_ignore=self.has_ignore, ignore=self.ignore,
                     ignore_int=self.ignore_int, **pointers)

    def stats(self, basic: bool) -> np.ndarray:
        """The sums (B, C, NUM_PARTIALS) of cpu_dice.c in float64, added in a fixed order.

        ``basic``: only Σp·g, Σp and Σg (and the label check) are needed and nothing is ignored.
        """
        suffix = _SUFFIX[self.target.dtype]
        variant = "basic" if basic and not self.has_ignore else "full"
        if self.kind == "rows":
            name = f"rows_stats_{suffix}_{'sigmoid' if self.activation else 'identity'}_{variant}"
        elif self.kind == "labels":
            name = f"labels_stats_{suffix}_{variant}"
        else:
            name = "classes_stats_f32"
        tasks, chunk, rows = self._tasks()
        per_task = 1 if self.kind == "rows" else self.classes
        out = np.empty((tasks, per_task, NUM_PARTIALS), dtype=np.float32)
        self.probs = torch.empty_like(self.x)
        _run(name, self._pass(chunk, out=out.ctypes.data, probs=self.probs.data_ptr()), tasks, self.x.numel())
        stats = out.reshape(rows, -1, per_task, NUM_PARTIALS).sum(1, dtype=np.float64)
        stats = stats.reshape(self.batch, self.classes, NUM_PARTIALS)
        if variant == "basic":
            stats[..., 6] = self.positions
        return stats

    def gradient(self, coefficients: np.ndarray) -> torch.Tensor:
        """∂loss/∂logits (B, C, N) from (B, C, 4) coefficients: ∂loss/∂ of Σp·g, Σv·p, Σv·p², Σv·|p − g|.

        Written over the probabilities of :meth:`stats`, which are gone afterwards.
        """
        suffix = _SUFFIX[self.target.dtype]
        if self.kind == "rows":
            name = f"rows_grad_{suffix}_{'sigmoid' if self.activation else 'identity'}"
        else:
            name = f"{self.kind}_grad_{suffix}"
        tasks, chunk, _ = self._tasks()
        coefficients = np.ascontiguousarray(coefficients, dtype=np.float32)
        grad, self.probs = self.probs, None
        _run(name, self._pass(chunk, probs=grad.data_ptr(), coef=coefficients.ctypes.data), tasks, self.x.numel())
        return grad
