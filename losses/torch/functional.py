"""Functional forms of every PyTorch loss, in the style of ``torch.nn.functional``."""

from __future__ import annotations

# Dice


# Penalized MAE

# Surrogates

__all__ = [
    # Dice
    # Penalized MAE
    # Surrogates
]
