"""Writes tests/peers/lovasz.npz: the losses and gradients that segmentation-models-pytorch
(``LovaszLoss``) and kornia (``lovasz_softmax_loss``, ``lovasz_hinge_loss``) compute on fixed random
inputs, for tests/test_lovasz_peers.py.

The peers are not dependencies of the package or of its test suite; this script runs where they are
installed (``pip install kornia && pip install --no-deps segmentation-models-pytorch``, as for
``python -m benchmarks``):

    python tests/peers/generate_lovasz.py

Each case records the peer, its version, the inputs (float32 logits, as smp's Lovász loss computes
its weights in float32 and takes no float64 input; int64 labels), the options of this package's loss
that align with the peer's, and the peer's loss and gradient. No errors tie (random logits), so the
gradient does not depend on how each sorts.
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

OUT = pathlib.Path(__file__).with_name("lovasz.npz")
IGNORE = 255


def inputs(seed, classes=4, batch=3, shape=(7, 9), ignore=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(batch, classes, *shape)).astype(np.float32)
    labels = rng.integers(0, 2 if classes == 1 else classes, (batch, *shape))
    if classes > 1:
        labels[0][labels[0] == classes - 1] = 0  # a class absent from the first image
    if ignore:
        labels[rng.uniform(size=labels.shape) < 0.2] = IGNORE
    return logits, labels


def run(loss_fn, logits, labels):
    x = torch.tensor(logits, requires_grad=True)
    value = loss_fn(x, torch.as_tensor(labels))
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad.numpy()


def cases():
    import kornia

    from importlib.metadata import version

    smp = _smp_losses()
    smp_v, kornia_v = version("segmentation-models-pytorch"), kornia.__version__
    seed = 0
    for per_image in (False, True):
        for ignore in (False, True):
            ignore_index = IGNORE if ignore else None
            seed += 1
            yield (
                f"segmentation-models-pytorch {smp_v} LovaszLoss(multiclass, per_image={per_image}, "
                f"ignore_index={ignore_index})",
                smp.LovaszLoss(mode="multiclass", per_image=per_image, ignore_index=ignore_index),
                inputs(seed, ignore=ignore),
                ("lovasz_softmax", dict(classes="present", per_image=per_image, ignore_index=ignore_index)),
            )
            yield (
                f"segmentation-models-pytorch {smp_v} LovaszLoss(binary, per_image={per_image}, "
                f"ignore_index={ignore_index})",
                smp.LovaszLoss(mode="binary", per_image=per_image, ignore_index=ignore_index),
                inputs(10 + seed, classes=1, ignore=ignore),
                ("lovasz_hinge", dict(per_image=per_image, ignore_index=ignore_index)),
            )
    for seed, classes in enumerate((2, 4)):
        yield (
            f"kornia {kornia_v} lovasz_softmax_loss (C={classes})",
            kornia.losses.lovasz_softmax_loss,
            inputs(20 + seed, classes=classes),
            ("lovasz_softmax", dict(classes="all", per_image=True)),
        )
    yield (
        f"kornia {kornia_v} lovasz_hinge_loss",
        kornia.losses.lovasz_hinge_loss,
        inputs(30, classes=1),
        ("lovasz_hinge", dict(per_image=True)),
    )


def main() -> int:
    records, arrays = [], {}
    for index, (peer, loss_fn, (logits, labels), (loss, options)) in enumerate(cases()):
        value, grad = run(loss_fn, logits, labels)
        records.append(dict(peer=peer, loss=loss, options=options))
        arrays[f"logits_{index}"], arrays[f"labels_{index}"] = logits, labels
        arrays[f"value_{index}"], arrays[f"grad_{index}"] = np.float64(value), grad
        print(f"{peer}: {value:.6f}")
    np.savez_compressed(OUT, cases=json.dumps(records), **arrays)
    print(f"wrote {len(records)} cases to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
