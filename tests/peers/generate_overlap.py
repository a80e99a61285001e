"""Writes tests/peers/overlap.npz: the losses and gradients that MONAI, segmentation-models-pytorch and
kornia compute for overlap losses, on fixed random inputs, for tests/test_overlap_peers.py.

The peers are not dependencies of the package or of its test suite; this script runs where they are
installed (``pip install monai kornia && pip install --no-deps segmentation-models-pytorch``, as for
``python -m benchmarks``):

    python tests/peers/generate_overlap.py

Each case records the peer, its version, the inputs (float64 logits, int64 labels), the options of
this package's loss that align with the peer's, and the peer's loss and gradient (float64).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers import _smp_losses  # noqa: E402  (smp's losses without its model zoo)

OUT = pathlib.Path(__file__).with_name("overlap.npz")


def inputs(seed, batch=2, classes=3, shape=(7, 9), every_class=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(batch, classes, *shape))
    labels = rng.integers(0, classes, (batch, *shape))
    if every_class:  # every class present in every image (smp counts an absent class as loss 0)
        for b in range(batch):
            labels[b, 0, :classes] = np.arange(classes)
    else:
        labels[0][labels[0] == classes - 1] = 0  # a class absent from the first image
    return logits, labels


def run(loss_fn, logits, labels):
    x = torch.tensor(logits, requires_grad=True)
    value = loss_fn(x, torch.as_tensor(labels))
    (grad,) = torch.autograd.grad(value, x)
    return float(value), grad.numpy()


def cases():
    import kornia
    import monai
    from monai.losses import DiceLoss, GeneralizedDiceLoss, TverskyLoss

    from importlib.metadata import version

    smp = _smp_losses()
    monai_v, smp_v, kornia_v = monai.__version__, version("segmentation-models-pytorch"), kornia.__version__

    def monai_multiclass(loss):
        return lambda x, y: loss(x, y.unsqueeze(1))

    for seed, (alpha, beta) in enumerate([(0.5, 0.5), (0.3, 0.7), (0.8, 0.1)]):
        for batch in (False, True):
            yield (
                f"MONAI {monai_v} TverskyLoss(softmax, alpha={alpha}, beta={beta}, batch={batch})",
                monai_multiclass(TverskyLoss(softmax=True, to_onehot_y=True, alpha=alpha, beta=beta, batch=batch)),
                inputs(seed),
                ("tversky", dict(alpha=alpha, beta=beta, per_image=not batch)),
            )
    for seed, w_type in enumerate(["square", "simple", "uniform"]):
        for batch in (False, True):
            yield (
                f"MONAI {monai_v} GeneralizedDiceLoss(softmax, w_type={w_type}, batch={batch})",
                monai_multiclass(GeneralizedDiceLoss(softmax=True, to_onehot_y=True, w_type=w_type, batch=batch)),
                inputs(10 + seed),
                ("generalized_dice", dict(weight_type=w_type, per_image=not batch)),
            )
    for seed, squared in enumerate([False, True]):
        yield (
            f"MONAI {monai_v} DiceLoss(softmax, jaccard=True, squared_pred={squared}, smooth 1e-4)",
            monai_multiclass(
                DiceLoss(
                    softmax=True, to_onehot_y=True, jaccard=True, squared_pred=squared, smooth_nr=1e-4, smooth_dr=1e-4
                )
            ),
            inputs(20 + seed),
            ("jaccard", dict(squared=squared, smooth_nr=5e-5, smooth_dr=5e-5)),
        )
    yield (
        f"MONAI {monai_v} TverskyLoss(sigmoid, alpha=0.4, beta=0.6), binary",
        lambda x, y: TverskyLoss(sigmoid=True, alpha=0.4, beta=0.6)(x, y.unsqueeze(1).double()),
        tuple(a[:, :1] if i == 0 else (a > 0).astype(np.int64) for i, a in enumerate(inputs(30))),
        ("tversky", dict(mode="binary", alpha=0.4, beta=0.6)),
    )
    for seed, smooth in enumerate([0.0, 1.0]):
        yield (
            f"segmentation-models-pytorch {smp_v} JaccardLoss(multiclass, smooth={smooth})",
            smp.JaccardLoss(mode="multiclass", from_logits=True, smooth=smooth, eps=1e-7),
            inputs(40 + seed, every_class=True),
            ("jaccard", dict(per_image=False, smooth_nr=smooth, smooth_dr=smooth)),
        )
        yield (
            f"segmentation-models-pytorch {smp_v} TverskyLoss(multiclass, alpha=0.3, beta=0.7, smooth={smooth})",
            smp.TverskyLoss(mode="multiclass", from_logits=True, smooth=smooth, eps=1e-7, alpha=0.3, beta=0.7),
            inputs(50 + seed, every_class=True),
            ("tversky", dict(per_image=False, alpha=0.3, beta=0.7, smooth_nr=smooth, smooth_dr=smooth)),
        )
    for seed, (alpha, beta) in enumerate([(0.5, 0.5), (0.2, 0.8)]):
        yield (
            f"kornia {kornia_v} tversky_loss(alpha={alpha}, beta={beta}, eps=1e-8)",
            lambda x, y, a=alpha, b=beta: kornia.losses.tversky_loss(x, y, alpha=a, beta=b, eps=1e-8),
            inputs(60 + seed),
            ("tversky", dict(alpha=alpha, beta=beta, smooth_nr=0.0, smooth_dr=1e-8, empty_target="exclude")),
        )
    yield (
        f"kornia {kornia_v} dice_loss(average='micro', eps=1e-8)",
        lambda x, y: kornia.losses.dice_loss(x, y, average="micro", eps=1e-8),
        inputs(70),
        ("dice", dict(average="micro", smooth_nr=0.0, smooth_dr=1e-8)),
    )


def main() -> int:
    records, arrays = [], {}
    for index, (peer, loss_fn, (logits, labels), (member, options)) in enumerate(cases()):
        value, grad = run(loss_fn, logits, labels)
        records.append(dict(peer=peer, member=member, options=options))
        arrays[f"logits_{index}"], arrays[f"labels_{index}"] = logits, labels
        arrays[f"value_{index}"], arrays[f"grad_{index}"] = np.float64(value), grad
        print(f"{peer}: {value:.6f}")
    np.savez_compressed(OUT, cases=json.dumps(records), **arrays)
    print(f"wrote {len(records)} cases to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
