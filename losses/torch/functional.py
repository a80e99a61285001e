"""Functional forms of every PyTorch loss, in the style of ``torch.nn.functional``."""

from __future__ import annotations

# The overlap family
from losses.torch._overlap import dice_loss, focal_tversky_loss, generalized_dice_loss, jaccard_loss, tversky_loss

# The Lovász losses
from losses.torch._lovasz import lovasz_hinge_loss, lovasz_softmax_loss


# Cross-entropy and focal terms, and their pairs with an overlap loss
from losses.torch._cross_entropy import focal_loss
from losses.torch._pairs import dice_ce_loss, dice_focal_loss

# Penalized MAE
from losses.torch._penalized_mae import penalized_mae

# Surrogates
from losses.torch._surrogates import soft_ceil, soft_floor, soft_round, soft_sign, soft_step

__all__ = [
    # The overlap family
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    # Cross-entropy and focal
    "focal_loss",
    "dice_ce_loss",
    "dice_focal_loss",
    # The Lovász losses
    "lovasz_softmax_loss",
    "lovasz_hinge_loss",
    # Penalized MAE
    "penalized_mae",
    # Surrogates
    "soft_round",
    "soft_floor",
    "soft_ceil",
    "soft_step",
    "soft_sign",
]
