"""Parity of FocalLoss, DiceCELoss and DiceFocalLoss with torchvision, MONAI,
segmentation-models-pytorch and nnU-Net where options align, values and gradients.

The peers' results on fixed inputs are recorded in tests/peers/cross_entropy.npz by
tests/peers/generate_cross_entropy.py (run where the peers are installed), with how each relates
to this package's loss (``peer = scale · ours + offset``: MONAI's softmax focal loss averages over
the classes too, nnU-Net adds −Dice rather than 1 − Dice, ...). Here this package's loss must give
the same loss and gradient in float64 on the portable path and in float32 on the fused CPU path.
Keras' own focal losses are compared live in tests/test_keras_cross_entropy.py.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from losses.torch import functional as F

DATA = np.load(pathlib.Path(__file__).with_name("peers") / "cross_entropy.npz")
CASES = json.loads(str(DATA["cases"]))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["peer"] for c in CASES])
@pytest.mark.parametrize("kernels", ["torch", "auto"])
def test_matches_the_peer(index, kernels, monkeypatch):
    case = CASES[index]
    monkeypatch.setenv("LOSSES_KERNELS", kernels)
    dtype = torch.float64 if kernels == "torch" else torch.float32
    x = torch.tensor(DATA[f"logits_{index}"], dtype=dtype, requires_grad=True)
    target = DATA[f"target_{index}"]
    target = torch.as_tensor(target, dtype=dtype) if target.dtype.kind == "f" else torch.as_tensor(target)
    value = getattr(F, case["function"])(x, target, **case["options"])
    (grad,) = torch.autograd.grad(value, x)
    # float64 on both sides, but MONAI and nnU-Net compute some of their sums in float32.
    tolerance = 1e-7 if dtype == torch.float64 else 2e-5
    expected = float(DATA[f"value_{index}"])
    assert case["scale"] * value.item() + case["offset"] == pytest.approx(expected, rel=tolerance, abs=tolerance)
    peer_grad = DATA[f"grad_{index}"]
    np.testing.assert_allclose(
        case["scale"] * grad.double().numpy(),
        peer_grad,
        rtol=10 * tolerance,
        atol=tolerance * float(np.abs(peer_grad).max()),
    )


def test_the_records_cover_every_peer_and_loss():
    peers = {case["peer"].split()[0] for case in CASES}
    functions = {case["function"] for case in CASES}
    assert peers == {"torchvision", "MONAI", "segmentation-models-pytorch", "nnU-Net"}
    assert functions == {"focal_loss", "dice_ce_loss", "dice_focal_loss"}
