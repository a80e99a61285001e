"""PyTorch frontend: ``nn.Module`` losses and ``losses.torch.functional``.

Channels first: predictions are ``(B, C, *spatial)``. Reductions: ``"mean"``, ``"sum"``, ``"none"``.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("losses.torch needs PyTorch: pip install 'losses[torch]'") from error

from losses.torch import functional

# The overlap family
from losses.torch._overlap import DiceLoss, FocalTverskyLoss, GeneralizedDiceLoss, JaccardLoss, TverskyLoss

# The Lovász losses
from losses.torch._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss

# Cross-entropy and focal terms, and their pairs with an overlap loss
from losses.torch._cross_entropy import FocalLoss
from losses.torch._pairs import DiceCELoss, DiceFocalLoss

# Penalized MAE
from losses.torch._penalized_mae import PenalizedMAELoss

# Surrogates
from losses.torch._surrogates import soft_ceil, soft_floor, soft_round, soft_sign, soft_step

__all__ = [
    "functional",
    # The overlap family
    "DiceLoss",
    "JaccardLoss",
    "TverskyLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    # Cross-entropy and focal
    "FocalLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    # The Lovász losses
    "LovaszSoftmaxLoss",
    "LovaszHingeLoss",
    # Penalized MAE
    "PenalizedMAELoss",
    # Surrogates
    "soft_round",
    "soft_floor",
    "soft_ceil",
    "soft_step",
    "soft_sign",
]
