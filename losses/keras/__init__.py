"""Keras 3 frontend, written in ``keras.ops``: runs on the TensorFlow, JAX and torch backends.

Channels last by default: predictions are ``(B, *spatial, C)``. Every loss with a class axis takes
``data_format`` as Keras' layers do: ``"channels_first"`` reads ``(B, C, *spatial)`` (with its
targets and weight maps in that layout), and None, the default, is
``keras.config.image_data_format()``, read when a loss object is built (and kept in its config) or
when a loss function is called. Every loss class is a ``keras.losses.Loss`` registered as
serializable under the package name ``losses``, so a saved ``.keras`` model reloads after
``import losses.keras`` without ``custom_objects``.
"""

from __future__ import annotations

try:
    import keras  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("losses.keras needs Keras 3: pip install 'losses[tensorflow]' or 'losses[jax]'") from error

# The overlap family
from losses.keras._overlap import (
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    TverskyLoss,
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    tversky_loss,
)

# The Lovász losses
from losses.keras._lovasz import LovaszHingeLoss, LovaszSoftmaxLoss, lovasz_hinge_loss, lovasz_softmax_loss

# Cross-entropy and focal terms, and their pairs with an overlap loss
from losses.keras._cross_entropy import (
    DiceCELoss,
    DiceFocalLoss,
    FocalLoss,
    dice_ce_loss,
    dice_focal_loss,
    focal_loss,
)

# Penalized MAE
from losses.keras._penalized_mae import PenalizedMAELoss, penalized_mae

# Surrogates
from losses.keras._surrogates import soft_ceil, soft_floor, soft_round, soft_sign, soft_step

__all__ = [
    # The overlap family
    "DiceLoss",
    "dice_loss",
    "JaccardLoss",
    "jaccard_loss",
    "TverskyLoss",
    "tversky_loss",
    "FocalTverskyLoss",
    "focal_tversky_loss",
    "GeneralizedDiceLoss",
    "generalized_dice_loss",
    # The Lovász losses
    "LovaszSoftmaxLoss",
    "lovasz_softmax_loss",
    "LovaszHingeLoss",
    "lovasz_hinge_loss",
    # Cross-entropy and focal
    "FocalLoss",
    "focal_loss",
    "DiceCELoss",
    "dice_ce_loss",
    "DiceFocalLoss",
    "dice_focal_loss",
    # Penalized MAE
    "PenalizedMAELoss",
    "penalized_mae",
    # Surrogates
    "soft_round",
    "soft_floor",
    "soft_ceil",
    "soft_step",
    "soft_sign",
]
