"""PyTorch frontend: ``nn.Module`` losses and ``losses.torch.functional``.

Channels first: predictions are ``(B, C, *spatial)``. Reductions: ``"mean"``, ``"sum"``, ``"none"``.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("losses.torch needs PyTorch: pip install 'losses[torch]'") from error

from losses.torch import functional

# Dice


# Penalized MAE
from losses.torch._penalized_mae import PenalizedMAELoss

# Surrogates

__all__ = [
    "functional",
    # Dice
    # Penalized MAE
    "PenalizedMAELoss",
    # Surrogates
]
