"""Functional forms of every PyTorch loss, in the style of ``torch.nn.functional``."""

from __future__ import annotations

# Dice
from losses.torch._dice import dice_loss


# Penalized MAE

# Surrogates

__all__ = [
    # Dice
    "dice_loss",
    # Penalized MAE
    # Surrogates
]
