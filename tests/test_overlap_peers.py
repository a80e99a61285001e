"""Parity with MONAI, segmentation-models-pytorch and kornia where options align, values and gradients.

The peers' results on fixed inputs are recorded in tests/peers/overlap.npz by
tests/peers/generate_overlap.py (run where the peers are installed); here this package's loss, with
the options that align with the peer's, must give the same loss and gradient in float64, on the
portable path and (float32) on the fused CPU path. Keras' own Tversky is compared live in
tests/test_keras_overlap.py.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from losses.torch import functional as F

DATA = np.load(pathlib.Path(__file__).with_name("peers") / "overlap.npz")
CASES = json.loads(str(DATA["cases"]))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["peer"] for c in CASES])
@pytest.mark.parametrize("kernels", ["torch", "auto"])
def test_matches_the_peer(index, kernels, monkeypatch):
    case = CASES[index]
    monkeypatch.setenv("LOSSES_KERNELS", kernels)
    dtype = torch.float64 if kernels == "torch" else torch.float32
    x = torch.tensor(DATA[f"logits_{index}"], dtype=dtype, requires_grad=True)
    labels = torch.as_tensor(DATA[f"labels_{index}"])
    value = getattr(F, f"{case['member']}_loss")(x, labels, **case["options"])
    (grad,) = torch.autograd.grad(value, x)
    # float64 on both sides, but not the same operations: MONAI computes the generalized weights
    # in float32 and Σp² as the square of a norm.
    tolerance = 1e-7 if dtype == torch.float64 else 2e-5
    assert value.item() == pytest.approx(float(DATA[f"value_{index}"]), rel=tolerance, abs=tolerance)
    np.testing.assert_allclose(
        grad.double().numpy(),
        DATA[f"grad_{index}"],
        rtol=10 * tolerance,
        atol=tolerance * float(np.abs(DATA[f"grad_{index}"]).max()),
    )


def test_the_records_cover_every_peer_and_member():
    peers = {case["peer"].split()[0] for case in CASES}
    members = {case["member"] for case in CASES}
    assert peers == {"MONAI", "segmentation-models-pytorch", "kornia"}
    assert members == {"dice", "jaccard", "tversky", "generalized_dice"}
