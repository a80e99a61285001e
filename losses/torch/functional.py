"""Functional forms of every PyTorch loss, in the style of ``torch.nn.functional``."""

from __future__ import annotations

# Dice


# Penalized MAE
from losses.torch._penalized_mae import penalized_mae

# Surrogates

__all__ = [
    # Dice
    # Penalized MAE
    "penalized_mae",
    # Surrogates
]
