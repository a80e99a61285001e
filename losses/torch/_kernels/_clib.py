"""The C library of the CPU kernels: built from several sources on first use, cached, loaded with ctypes.

Each kernel module owns a C file and says how to compile it with a :class:`Source` (its own
compiler flags and ``-D`` definitions); :func:`_sources` lists them, and :func:`library` compiles
them, with ``cpu_common.c`` (``run_pass``, the threading every kernel shares), into one shared
library. The library is plain C99 with no dependency but libm (and the OpenMP runtime PyTorch
has already loaded), built with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``)
the first time a kernel runs, and loaded with ``ctypes``. Without a compiler, or if the build
fails, :func:`available` is False and the portable PyTorch paths run instead;
``LOSSES_KERNELS=torch`` always takes them.

The cache. The library is code this package compiles and then executes in the user's process, so
the cache (``$LOSSES_CACHE_DIR``, else ``$XDG_CACHE_HOME/losses`` or ``~/.cache/losses``) is
trusted only when the directory, and the cached file, belong to the current user or to root and
nobody else can write them (no group or world write bit). A directory that fails this, or cannot
be created, is not used at all: the library is then built for this process alone in a fresh private
temporary directory (``mkdtemp``: an unpredictable name, mode 0700), with a one-line warning, and
that directory is deleted once the library is loaded. A trusted but read-only directory (a cache
that an administrator prepared for every user of a machine) is read, never written. A build goes
to a temporary name in the cache directory and is renamed into place once complete, so no process
ever sees a partial file; the file carries a SHA-256 of its contents, checked before every load,
so a truncated or corrupted file is rebuilt instead of being mapped (which could kill the process
with SIGBUS). Cached files are mode 0644: readable by the other users of a shared cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Mapping
from typing import cast
from dataclasses import dataclass, field
from pathlib import Path

import torch

from losses.torch._kernels import kernels_choice

HERE = Path(__file__).parent
FORMAT = b"losses-cpu-library-1"  # in the cache key and the trailer: bump when either changes
_TRAILER = len(FORMAT) + 32  # the library, then FORMAT and the SHA-256 of the library
# Below this many elements per thread, one thread does the whole pass.
MIN_ELEMENTS_PER_THREAD = 65536

_COMMON_FLAGS = ("-std=c99", "-fPIC", "-ffp-contract=fast", "-fopenmp-simd", "-fno-trapping-math")


@dataclass(frozen=True)
class Source:
    """One C file of the library (beside this module) and how to compile it.

    ``flags``: compiler flags for this file alone (e.g. ``-ffinite-math-only``, which a kernel that
    must propagate NaN cannot have). ``defines``: ``-DNAME=VALUE`` definitions, e.g. layouts that
    the Python side defines and the C side must agree with.
    """

    file: str
    flags: tuple[str, ...] = ()
    defines: Mapping[str, object] = field(default_factory=dict)

    def compile_flags(self) -> list[str]:
        return [*self.flags, *(f"-D{name}={value}" for name, value in sorted(self.defines.items()))]


def _sources() -> list[Source]:
    """Every file of the library. Imported here, not at the top: those modules import this one."""
    from losses.torch._kernels import cpu, cpu_elementwise

    return [Source("cpu_common.c"), cpu.C_SOURCE, cpu.FORMULA_SOURCE, cpu_elementwise.C_SOURCE]


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_build_error: str | None = None
_forked_child = False
_kernels: dict[str, int] = {}


def _after_fork_in_child() -> None:
    # GNU OpenMP, which the passes share with PyTorch, hangs in a forked child once the parent has
    # used its threads (PyTorch's own parallel ops too): one thread there.
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Build ------------------------------------------------------------------------------------------


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


def _vector_flags() -> list[str]:
    """512-bit vectors on a CPU with AVX-512. GCC's tuning for most such CPUs stays at 256 bits (for
    older ones, whose clock dropped under 512-bit work), but the loops here are bound by the
    arithmetic of their exponentials and logarithms, which the wider vectors halve; PyTorch's own
    CPU kernels use AVX-512 on these CPUs as well."""
    return ["-mprefer-vector-width=512"] if " avx512f" in _cpu_description() else []


def _flag_sets() -> list[list[str]]:
    # -fopenmp only where PyTorch itself runs on libgomp (see run_pass in cpu_common.c); some
    # compilers or CPUs reject -march=native.
    threading_flags = ["-fopenmp"] if _torch_uses_libgomp() else ["-pthread"]
    native = ["-O3", "-march=native", *_vector_flags()]
    return [
        [*native, *threading_flags],
        [*native, "-pthread"],
        ["-O3", "-march=native", "-pthread"],
        ["-O3", "-pthread"],
    ]


def _file_name(compiler: str, flags: list[str], sources: list[Source]) -> str:
    parts = [
        FORMAT,
        compiler.encode(),
        " ".join([*flags, *_COMMON_FLAGS]).encode(),
        platform.machine().encode(),
        _cpu_description().encode(),
    ]
    for source in sources:
        parts += [source.file.encode(), (HERE / source.file).read_bytes(), " ".join(source.compile_flags()).encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:20]
    return f"losses-cpu-{key}.so"


def _compile(compiler: str, flags: list[str], sources: list[Source]) -> bytes:
    """The library's bytes, compiled (one process per source, in parallel) and linked in a private
    temporary directory. Raises RuntimeError with the compiler's messages."""
    with tempfile.TemporaryDirectory(prefix="losses-build-") as work:
        commands = [
            [
                compiler,
                *flags,
                *_COMMON_FLAGS,
                *source.compile_flags(),
                "-c",
                str(HERE / source.file),
                "-o",
                os.path.join(work, f"{index}.o"),
            ]
            for index, source in enumerate(sources)
        ]
        commands.append(
            [
                compiler,
                *flags,
                "-shared",
                "-o",
                os.path.join(work, "library.so"),
                *(command[-1] for command in commands),
                "-lm",
            ]
        )
        running = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for command in commands[:-1]
        ]
        for command, process in [*zip(commands, running), (commands[-1], None)]:
            if process is None:  # the link, once every object is there
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _, errors = process.communicate()
            if process.returncode != 0:
                for other in running:
                    other.wait()
                raise RuntimeError(f"{' '.join(command)}:\n{errors.strip()}")
        data = Path(work, "library.so").read_bytes()
    if len(data) < 64 or data[:4] not in (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"MZ\x90\x00"):
        raise RuntimeError(f"the compiler wrote no shared library ({len(data)} bytes)")
    return data


def _with_trailer(data: bytes) -> bytes:
    # Loaders ignore bytes after the last segment, so the checksum can travel inside the file.
    return data + FORMAT + hashlib.sha256(data).digest()


# Trust and validation ---------------------------------------------------------------------------


def _untrusted(path: Path, info: os.stat_result, kind: str) -> str | None:
    """Why ``path`` must not be trusted (None when it may): owned by another user, or writable by one."""
    owner = info.st_uid
    if owner not in (os.geteuid(), 0):
        return f"{kind} {path} belongs to another user (uid {owner})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{kind} {path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _trusted_directory(directory: Path) -> tuple[bool, str | None]:
    """(usable, why not): creates the cache directory if needed, then checks who may write it."""
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as error:
        return False, f"cannot use the cache directory {directory} ({error.strerror or error})"
    if not stat.S_ISDIR(info.st_mode):
        return False, f"the cache path {directory} is not a directory"
    reason = _untrusted(directory, info, "the cache directory")
    return reason is None, reason


def _valid_library(path: Path) -> bool:
    """Whether ``path`` is a complete library file of a trusted owner: regular, not a link, not
    writable by others, and ending in the checksum of everything before it."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or _untrusted(path, info, "the library") is not None:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) <= _TRAILER or data[-_TRAILER:-32] != FORMAT:
        return False
    return hashlib.sha256(data[:-_TRAILER]).digest() == data[-32:]


def _store(directory: Path, name: str, data: bytes) -> Path:
    """Writes the library under a temporary name in ``directory`` and renames it into place."""
    handle, partial = tempfile.mkstemp(prefix=".partial-", suffix=".so", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(_with_trailer(data))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes it 0600; a shared cache is read by every user
        os.replace(partial, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return directory / name


def _load(path: Path) -> ctypes.CDLL:
    if not _valid_library(path):
        raise RuntimeError(f"the library {path} is incomplete or corrupt")
    library = ctypes.CDLL(str(path))
    library.run_pass.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32]
    library.run_pass.restype = None
    library.overlap_formula.argtypes = [ctypes.c_void_p]
    library.overlap_formula.restype = None
    library.term_rows.argtypes = [ctypes.c_void_p]
    library.term_rows.restype = ctypes.c_int32
    return library


def _load_private(data: bytes, name: str, reason: str | None) -> ctypes.CDLL:
    """Loads the library from a fresh private directory, deleted again once it is mapped."""
    if reason:
        warnings.warn(
            f"losses: {reason}; the CPU kernels are built for this process only", RuntimeWarning, stacklevel=4
        )
    private = Path(tempfile.mkdtemp(prefix="losses-"))
    try:
        return _load(_store(private, name, data))
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _build_and_load(compiler: str) -> ctypes.CDLL:
    directory = _cache_dir()
    trusted, reason = _trusted_directory(directory)
    writable = trusted and os.access(directory, os.W_OK | os.X_OK)
    if trusted and not writable:
        reason = f"the cache directory {directory} is read-only"
    sources = _sources()
    errors = []
    for flags in _flag_sets():
        name = _file_name(compiler, flags, sources)
        cached = directory / name
        if trusted and _valid_library(cached):
            return _load(cached)
        try:
            data = _compile(compiler, flags, sources)
        except RuntimeError as error:
            errors.append(str(error))
            continue
        if not writable:
            return _load_private(data, name, reason)
        try:
            return _load(_store(directory, name, data))
        except OSError as error:  # a full disk, say: this process still gets its kernels
            return _load_private(data, name, f"cannot write to the cache directory {directory} ({error})")
    raise RuntimeError("\n".join(errors))


# Use --------------------------------------------------------------------------------------------


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
                loaded = _build_and_load(compiler)
            except Exception as error:  # noqa: BLE001 - any failure means: use the portable path
                _build_error = f"{type(error).__name__}: {error}"
            else:
                _library = loaded
    return _library


def build_error() -> str | None:
    """Why the library is not available (None when it is, or has not been tried)."""
    return _build_error


def available() -> bool:
    """Whether the C kernels serve CPU tensors (``LOSSES_KERNELS`` allows it and the library built)."""
    return kernels_choice() == "auto" and library() is not None


def threads_for(tasks: int, elements: int) -> int:
    """Threads for a pass: up to ``torch.get_num_threads()``, at least MIN_ELEMENTS_PER_THREAD elements each."""
    if _forked_child:
        return 1
    return max(1, min(torch.get_num_threads(), tasks, elements // MIN_ELEMENTS_PER_THREAD))


def run(kernel: str, args: ctypes.Structure, tasks: int, threads: int) -> None:
    """Runs ``kernel`` (a function of the library taking ``args`` and a range of tasks) over ``tasks`` tasks."""
    lib = library()
    assert lib is not None, "callers run kernels only where library() built them"
    address = _kernels.get(kernel)
    if address is None:
        address = _kernels[kernel] = cast(int, ctypes.cast(getattr(lib, kernel), ctypes.c_void_p).value)
    # ctypes releases the GIL for the call; the C side starts and joins the threads.
    lib.run_pass(address, ctypes.addressof(args), tasks, threads)
