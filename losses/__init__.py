"""Loss functions for PyTorch and Keras 3 whose every gradient is proven against finite differences.

``import losses`` imports no deep-learning framework. The frontends load on first use:

- ``losses.torch``: PyTorch (``nn.Module`` classes and ``losses.torch.functional``).
- ``losses.keras``: Keras 3 (``keras.losses.Loss`` subclasses on TensorFlow, JAX or torch).
- ``losses.doctor``: diagnosis of losses that give no gradient.
- ``losses.testing``: the finite-difference gradient checker this package tests itself with.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "torch", "keras", "doctor", "testing"]

_SUBMODULES = ("torch", "keras", "doctor", "testing")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
