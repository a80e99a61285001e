"""Parity of the Lovász losses with segmentation-models-pytorch (``LovaszLoss``) and kornia
(``lovasz_softmax_loss``, ``lovasz_hinge_loss``), values and gradients.

The peers' results on fixed inputs are recorded in tests/peers/lovasz.npz by
tests/peers/generate_lovasz.py (run where the peers are installed); here this package's loss, with
the options that align with the peer's, must give the same loss and gradient: in float64 on the same
(float32) logits, and in float32 on both sort paths. The peers compute their weights in float32 as
differences of consecutive Jaccard losses, which bounds the agreement.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from losses.torch import functional as F

DATA = np.load(pathlib.Path(__file__).with_name("peers") / "lovasz.npz")
CASES = json.loads(str(DATA["cases"]))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["peer"] for c in CASES])
@pytest.mark.parametrize("dtype, kernels", [(torch.float64, "auto"), (torch.float32, "auto"), (torch.float32, "torch")])
def test_matches_the_peer(index, dtype, kernels, monkeypatch):
    case = CASES[index]
    monkeypatch.setenv("LOSSES_KERNELS", kernels)
    x = torch.tensor(DATA[f"logits_{index}"], dtype=dtype, requires_grad=True)
    value = getattr(F, f"{case['loss']}_loss")(x, torch.as_tensor(DATA[f"labels_{index}"]), **case["options"])
    (grad,) = torch.autograd.grad(value, x)
    expected_grad = DATA[f"grad_{index}"]
    assert value.item() == pytest.approx(float(DATA[f"value_{index}"]), rel=2e-6, abs=1e-6)
    np.testing.assert_allclose(
        grad.double().numpy(), expected_grad, rtol=1e-4, atol=1e-5 * float(np.abs(expected_grad).max())
    )


def test_the_records_cover_both_peers_both_losses_and_every_option():
    assert {case["peer"].split()[0] for case in CASES} == {"segmentation-models-pytorch", "kornia"}
    assert {case["loss"] for case in CASES} == {"lovasz_softmax", "lovasz_hinge"}
    assert {case["options"].get("classes") for case in CASES} == {"present", "all", None}
    assert {case["options"]["per_image"] for case in CASES} == {True, False}
    assert {case["options"].get("ignore_index") for case in CASES} == {None, 255}
