"""Writes tests/peers/cross_entropy.npz: the losses and gradients that torchvision, MONAI,
segmentation-models-pytorch and nnU-Net compute for focal and Dice + cross-entropy losses, on fixed
random inputs, for tests/test_cross_entropy_peers.py.

The peers are not dependencies of the package or of its test suite; this script runs where they are
installed (``pip install torchvision monai && pip install --no-deps segmentation-models-pytorch
nnunetv2``):

    python tests/peers/generate_cross_entropy.py

Each case records the peer, its version, the peer's inputs, the target this package's loss takes
(a label map, or per-class targets), the function and options of this package that align with the
peer's, and how the two relate: ``peer = scale · ours + offset`` for the value, ``scale · ours``
for the gradient (e.g. MONAI's softmax focal loss averages over the classes too: scale 1/C;
nnU-Net adds −Dice rather than 1 − Dice: offset −1).
"""

from __future__ import annotations

import json
import pathlib
import sys
from importlib.metadata import version

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers import _smp_losses  # noqa: E402  (smp's losses without its model zoo)

OUT = pathlib.Path(__file__).with_name("cross_entropy.npz")
C = 3


def logits_and_labels(seed, batch=2, classes=C, shape=(5, 6)):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=2.0, size=(batch, classes, *shape)), rng.integers(0, classes, (batch, *shape))


def multilabel(seed, soft=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(2, C, 5, 6))
    target = rng.uniform(size=logits.shape) if soft else (rng.uniform(size=logits.shape) < 0.4).astype(np.float64)
    return logits, target


def binary(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=2.0, size=(2, 1, 5, 6)), rng.integers(0, 2, (2, 5, 6))


def one_hot(labels, classes=C):
    return np.moveaxis(np.eye(classes)[labels], -1, 1)


def cases():
    """(peer, its loss on (logits, peer's target), logits, peer's target, our target, our function,
    our options, scale, offset)."""
    from monai.losses import DiceCELoss, DiceFocalLoss, FocalLoss
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from torchvision.ops import sigmoid_focal_loss

    tv, monai, smp_v, nnunet = (version(p) for p in ("torchvision", "monai", "segmentation-models-pytorch", "nnunetv2"))
    smp = _smp_losses()

    # torchvision: the sigmoid focal loss of each element, alpha weighing the positives (-1: none).
    for seed, (alpha, gamma, reduction, soft) in enumerate(
        [(0.25, 2.0, "mean", False), (-1, 0.5, "sum", False), (0.25, 2.0, "mean", True)]
    ):
        logits, target = multilabel(seed, soft)
        yield (
            f"torchvision {tv} sigmoid_focal_loss(alpha={alpha}, gamma={gamma}, reduction={reduction!r}"
            f"{', soft targets' if soft else ''})",
            lambda x, y, a=alpha, g=gamma, r=reduction: sigmoid_focal_loss(x, y, alpha=a, gamma=g, reduction=r),
            logits,
            target,
            target,
            "focal_loss",
            dict(mode="multilabel", alpha=None if alpha < 0 else alpha, gamma=gamma, reduction=reduction),
            1.0,
            0.0,
        )

    # MONAI FocalLoss: sigmoid per element; softmax averages over the classes too (scale 1/C) and
    # its weight is not divided by the largest (scale max(weight)).
    logits, target = multilabel(10)
    yield (
        f"MONAI {monai} FocalLoss(gamma=2, alpha=0.25), sigmoid",
        FocalLoss(gamma=2.0, alpha=0.25),
        logits,
        target,
        target,
        "focal_loss",
        dict(mode="multilabel", alpha=0.25, gamma=2.0),
        1.0,
        0.0,
    )
    logits, labels = logits_and_labels(11)
    yield (
        f"MONAI {monai} FocalLoss(use_softmax, to_onehot_y, gamma=2)",
        lambda x, y: FocalLoss(gamma=2.0, use_softmax=True, to_onehot_y=True)(x, y[:, None]),
        logits,
        labels,
        labels,
        "focal_loss",
        dict(gamma=2.0),
        1 / C,
        0.0,
    )
    weight = [0.5, 2.0, 1.0]
    logits, labels = logits_and_labels(12)
    yield (
        f"MONAI {monai} FocalLoss(use_softmax, to_onehot_y, gamma=1.5, weight={weight})",
        lambda x, y: FocalLoss(gamma=1.5, use_softmax=True, to_onehot_y=True, weight=weight)(x, y[:, None]),
        logits,
        labels,
        labels,
        "focal_loss",
        dict(gamma=1.5, class_weights=weight),
        max(weight) / C,
        0.0,
    )

    # MONAI DiceCELoss and DiceFocalLoss: Dice per image (batch=False) or per batch, plus the term.
    for seed, (batch, lambda_ce, smoothing) in enumerate([(False, 1.0, 0.0), (True, 0.5, 0.1)]):
        logits, labels = logits_and_labels(20 + seed)
        yield (
            f"MONAI {monai} DiceCELoss(softmax, to_onehot_y, batch={batch}, lambda_ce={lambda_ce}, "
            f"label_smoothing={smoothing})",
            lambda x, y, b=batch, lc=lambda_ce, s=smoothing: DiceCELoss(
                softmax=True, to_onehot_y=True, batch=b, lambda_ce=lc, label_smoothing=s
            )(x, y[:, None]),
            logits,
            labels,
            labels,
            "dice_ce_loss",
            dict(per_image=not batch, lambda_ce=lambda_ce, label_smoothing=smoothing),
            1.0,
            0.0,
        )
    # With C > 1 channels MONAI's cross-entropy is the softmax one even with sigmoid=True, and its
    # DiceFocalLoss takes the focal term from sigmoids even with softmax=True: they match ours in
    # binary and sigmoid modes only.
    rng = np.random.default_rng(22)
    logits, target = rng.normal(scale=2.0, size=(2, 1, 5, 6)), (rng.uniform(size=(2, 1, 5, 6)) < 0.4) * 1.0
    yield (
        f"MONAI {monai} DiceCELoss(sigmoid), binary",
        DiceCELoss(sigmoid=True),
        logits,
        target,
        target,
        "dice_ce_loss",
        dict(mode="binary"),
        1.0,
        0.0,
    )
    logits, target = multilabel(24)
    yield (
        f"MONAI {monai} DiceFocalLoss(sigmoid, gamma=2, alpha=0.25), multilabel",
        DiceFocalLoss(sigmoid=True, gamma=2.0, alpha=0.25),
        logits,
        target,
        target,
        "dice_focal_loss",
        dict(mode="multilabel", gamma=2.0, alpha=0.25),
        1.0,
        0.0,
    )

    # segmentation-models-pytorch FocalLoss: binary as the sigmoid focal loss (ignored elements left
    # out of the mean); multiclass as the mean over the classes of one-vs-rest sigmoid focal losses:
    # the multilabel loss of the one-hot target.
    logits, labels = binary(30)
    yield (
        f"segmentation-models-pytorch {smp_v} FocalLoss(binary, alpha=0.25, gamma=2)",
        smp.FocalLoss(mode="binary", alpha=0.25, gamma=2.0),
        logits,
        labels,
        labels,
        "focal_loss",
        dict(mode="binary", alpha=0.25, gamma=2.0),
        1.0,
        0.0,
    )
    logits, labels = binary(31)
    labels[0, :2] = 255
    yield (
        f"segmentation-models-pytorch {smp_v} FocalLoss(binary, gamma=2, ignore_index=255)",
        smp.FocalLoss(mode="binary", gamma=2.0, ignore_index=255),
        logits,
        labels,
        labels,
        "focal_loss",
        dict(mode="binary", gamma=2.0, ignore_index=255),
        1.0,
        0.0,
    )
    logits, labels = logits_and_labels(32)
    yield (
        f"segmentation-models-pytorch {smp_v} FocalLoss(multiclass, gamma=2)",
        smp.FocalLoss(mode="multiclass", gamma=2.0),
        logits,
        labels,
        one_hot(labels),
        "focal_loss",
        dict(mode="multilabel", gamma=2.0),
        1.0,
        0.0,
    )

    # nnU-Net's default Dice + CE (background left out of the Dice, smooth 1e-5): −Dice + CE, so
    # 1 less than ours; with batch Dice, and an ignore label.
    for seed, (batch_dice, ignore) in enumerate([(False, None), (True, C)]):
        logits, labels = logits_and_labels(40 + seed)
        if ignore is not None:
            labels[0, :2] = ignore
        loss = DC_and_CE_loss(
            {"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False},
            {},
            weight_ce=1,
            weight_dice=1,
            ignore_label=ignore,
            dice_class=MemoryEfficientSoftDiceLoss,
        )
        yield (
            f"nnU-Net {nnunet} DC_and_CE_loss(batch_dice={batch_dice}, do_bg=False, ignore_label={ignore})",
            lambda x, y, f=loss: f(x, y[:, None]),
            logits,
            labels,
            labels,
            "dice_ce_loss",
            dict(classes=list(range(1, C)), per_image=not batch_dice, ignore_index=ignore),
            1.0,
            -1.0,
        )


def run(loss_fn, logits, target):
    x = torch.tensor(logits, requires_grad=True)
    value = loss_fn(x, torch.as_tensor(target))
    (grad,) = torch.autograd.grad(value, x)
    return float(value), grad.numpy()


def main() -> int:
    records, arrays = [], {}
    for index, (peer, loss_fn, logits, theirs, ours, function, options, scale, offset) in enumerate(cases()):
        value, grad = run(loss_fn, logits, theirs)
        records.append(dict(peer=peer, function=function, options=options, scale=scale, offset=offset))
        arrays[f"logits_{index}"], arrays[f"target_{index}"] = logits, ours
        arrays[f"value_{index}"], arrays[f"grad_{index}"] = np.float64(value), grad
        print(f"{peer}: {value:.6f}")
    np.savez_compressed(OUT, cases=json.dumps(records), **arrays)
    print(f"wrote {len(records)} cases to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
