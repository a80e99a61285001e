"""``jit`` and ``tl`` for every kernel module.

``pytest --doctest-modules`` imports every module, also where Triton is not installed; the kernels
are never run then, so ``jit`` falls back to the undecorated function.
"""

from __future__ import annotations

__all__ = ["jit", "tl"]

try:
    import triton
    import triton.language as tl

    jit = triton.jit
except ImportError:
    tl = None

    def jit(fn):
        return fn
