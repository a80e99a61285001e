"""Fused kernels behind the PyTorch frontend, and the choice between them and plain PyTorch.

Triton kernels serve CUDA tensors; a small C library compiled on first use (``_clib.py``) serves
CPU tensors: the Dice loss (``cpu.py``), penalized MAE and the surrogates (``cpu_elementwise.py``). The environment variable ``LOSSES_KERNELS`` picks the path:

- ``auto`` (default): the Triton kernels for CUDA tensors when ``triton`` imports, the C library
  for CPU tensors when it builds, else PyTorch;
- ``triton``: always the kernels; CPU tensors are accepted only under ``TRITON_INTERPRET=1``
  (Triton's interpreter, which is how the kernels are tested without a GPU);
- ``torch``: always the portable PyTorch path (also on the CPU).

Nothing here imports ``triton`` until a kernel is first used, so ``import losses.torch`` stays
free of it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

KERNEL_CHOICES = ("auto", "triton", "torch")

_TRITON_IMPORTS: bool | None = None
_NO_GUARD = contextlib.nullcontext()  # reusable: nullcontext keeps no state


def kernels_choice() -> str:
    """The value of ``LOSSES_KERNELS`` (``auto`` when unset), checked."""
    value = os.environ.get("LOSSES_KERNELS", "auto").strip().lower() or "auto"
    if value not in KERNEL_CHOICES:
        options = ", ".join(repr(c) for c in KERNEL_CHOICES)
        raise ValueError(f"the environment variable LOSSES_KERNELS must be one of {options}; got {value!r}")
    return value


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET`` asks Triton to run kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on", "y")


def triton_available() -> bool:
    """True when ``import triton`` succeeds (checked once)."""
    global _TRITON_IMPORTS
    if _TRITON_IMPORTS is None:
        try:
            import triton  # noqa: F401
        except Exception:  # noqa: BLE001 - a broken install counts as absent
            _TRITON_IMPORTS = False
        else:
            _TRITON_IMPORTS = True
    return _TRITON_IMPORTS


def use_triton(*tensors: torch.Tensor | None, choice: str | None = None) -> bool:
    """Whether the losses run on ``tensors`` (``None`` entries are skipped) take the Triton path.

    ``auto``: True when every tensor is on a CUDA device and Triton imports. ``triton``: True,
    or a ``RuntimeError`` when the kernels cannot run on these tensors. ``torch``: False.
    ``choice``: :func:`kernels_choice`, when the caller has read it already.
    """
    if choice is None:
        choice = kernels_choice()
    if choice == "torch":
        return False
    present = [t for t in tensors if t is not None]
    # len(), not bool(list): torch.compile 2.11 cannot trace bool() of a list.
    on_cuda = len(present) > 0 and all(t.device.type == "cuda" for t in present)
    if choice == "auto":
        return on_cuda and triton_available()
    on_cpu = len(present) > 0 and all(t.device.type == "cpu" for t in present)
    if not triton_available():
        raise RuntimeError("LOSSES_KERNELS=triton, but triton cannot be imported: pip install triton")
    if on_cuda or (on_cpu and interpreting()):
        return True
    devices = sorted({str(t.device) for t in present})
    raise RuntimeError(
        "LOSSES_KERNELS=triton needs all tensors on one CUDA device, or on the CPU with "
        f"TRITON_INTERPRET=1; got tensors on {devices}"
    )


def transforms_active() -> bool:
    """True inside torch.func transforms (grad, vmap, jvp, ...) or forward-mode AD (dual tensors),
    where a kernel that reads raw memory would drop the batching or the tangent: take the portable path."""
    import torch

    return torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0


def device_guard(tensor: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """A context that makes ``tensor``'s CUDA device current: Triton launches on the current one."""
    import torch

    device = tensor.device
    # device_count() is cached; with one GPU every tensor is on the current device, and the
    # current_device() call (a driver query per launch) is host time at training sizes.
    if device.type == "cuda" and torch.cuda.device_count() > 1 and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return _NO_GUARD


def triton_module(name: str) -> ModuleType:
    """The kernel module ``losses.torch._kernels.<name>``, built for the current interpreter setting.

    ``triton.jit`` decides at decoration time whether a kernel is compiled or interpreted, so a
    module imported before ``TRITON_INTERPRET`` changed is loaded again for the new setting.
    """
    interpret = interpreting()
    module = sys.modules.get(f"{__name__}.{name}")
    if module is None:
        module = importlib.import_module(f"{__name__}.{name}")
    if module.INTERPRET != interpret:
        module = importlib.reload(module)
    return module


def broadcast_value(upstream: torch.Tensor) -> bool:
    """Whether ``upstream`` is one value (broadcast): a gradient kernel then reads it once."""
    return upstream.numel() == 1 or upstream.stride() == (0,) * upstream.dim()


def next_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (1 for ``n <= 1``): Triton block sizes are powers of two."""
    return 1 << max(0, (n - 1).bit_length())


__all__ = [
    "KERNEL_CHOICES",
    "broadcast_value",
    "device_guard",
    "interpreting",
    "kernels_choice",
    "next_pow2",
    "transforms_active",
    "triton_available",
    "triton_module",
    "use_triton",
]
