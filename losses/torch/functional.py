"""Functional forms of every PyTorch loss, in the style of ``torch.nn.functional``."""

from __future__ import annotations

# Dice
from losses.torch._dice import dice_loss


# Penalized MAE
from losses.torch._penalized_mae import penalized_mae

# Surrogates
from losses.torch._surrogates import soft_ceil, soft_floor, soft_round, soft_sign, soft_step

__all__ = [
    # Dice
    "dice_loss",
    # Penalized MAE
    "penalized_mae",
    # Surrogates
    "soft_round",
    "soft_floor",
    "soft_ceil",
    "soft_step",
    "soft_sign",
]
