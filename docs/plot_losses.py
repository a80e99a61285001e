"""Draw the figures of the loss-family pages under docs/img: the value of each loss and its gradient
along a sweep of the prediction, and Dice's behaviour on an empty target.

Values come from ``losses.torch`` and gradients from autograd through it, so the pictures show what
the package computes. Each sweep is one batch (one image per point, ``reduction="none"``), so the
script takes a few seconds. Run from the repository root::

    python docs/plot_losses.py
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import losses.torch as lt  # noqa: E402

IMG = pathlib.Path(__file__).resolve().parent / "img"
PIXELS = 16  # per image; the first half is foreground in the target


def per_image(fn, prediction: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The loss of each image and the gradient with respect to ``prediction``, per image and pixel."""
    prediction = prediction.detach().requires_grad_(True)
    loss = fn(prediction)
    (grad,) = torch.autograd.grad(loss.sum(), prediction)
    return loss.detach().numpy(), grad.reshape(len(loss), -1).numpy()


def half_foreground(points: int) -> torch.Tensor:
    target = torch.zeros(points, 1, PIXELS, dtype=torch.float64)
    target[..., : PIXELS // 2] = 1.0
    return target


def save(fig, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    # No Software entry (the matplotlib version): the bytes depend on the drawing only.
    fig.savefig(IMG / name, dpi=90, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote docs/img/{name}")


def two_panels(title: str, xlabel: str, left: str, right: str):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, label in ((a, left), (b, right)):
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig, a, b


def overlap() -> None:
    """Binary, probabilities as input: p on the foreground pixels, 1 − p on the background ones."""
    p = np.linspace(0.01, 0.99, 197)
    target = half_foreground(len(p))
    prediction = torch.from_numpy(np.repeat(p[:, None], PIXELS, 1)).reshape(len(p), 1, PIXELS)
    prediction[..., PIXELS // 2 :] = 1.0 - prediction[..., PIXELS // 2 :]
    common = dict(mode="binary", from_logits=False, reduction="none")
    members = {
        "DiceLoss": lambda x: lt.functional.dice_loss(x, target, **common),
        "JaccardLoss": lambda x: lt.functional.jaccard_loss(x, target, **common),
        "TverskyLoss(alpha=0.3, beta=0.7)": lambda x: lt.functional.tversky_loss(
            x, target, alpha=0.3, beta=0.7, **common
        ),
        "FocalTverskyLoss(gamma=0.75)": lambda x: lt.functional.focal_tversky_loss(x, target, **common),
        "DiceLoss(log_loss=True)": lambda x: lt.functional.dice_loss(x, target, log_loss=True, **common),
    }
    fig, a, b = two_panels(
        f"Overlap losses, binary, {PIXELS} pixels, half foreground: p on the foreground, 1 − p on the background",
        "p",
        "loss",
        "d loss / d p at a foreground pixel",
    )
    for name, fn in members.items():
        value, grad = per_image(fn, prediction)
        a.plot(p, value, label=name)
        b.plot(p, grad[:, 0], label=name)
    a.legend(fontsize=8)
    b.set_yscale("symlog", linthresh=0.01)
    save(fig, "overlap.png")


def empty_target() -> None:
    """Dice on an empty target: every pixel predicted p, for each ``empty_target`` policy."""
    p = np.linspace(0.0, 1.0, 201)
    target = torch.zeros(len(p), 1, PIXELS, dtype=torch.float64)
    prediction = torch.from_numpy(np.repeat(p[:, None], PIXELS, 1)).reshape(len(p), 1, PIXELS)
    fig, a, b = two_panels(
        f"DiceLoss on an empty target ({PIXELS} pixels, all predicted p, smooth = 1e-5)",
        "p",
        "loss",
        "d loss / d p per pixel",
    )
    for policy in ("smooth", "exclude", "penalize"):
        value, grad = per_image(
            lambda x, policy=policy: lt.functional.dice_loss(
                x, target, mode="binary", from_logits=False, empty_target=policy, reduction="none"
            ),
            prediction,
        )
        a.plot(p, value, label=f'empty_target="{policy}"')
        b.plot(p, grad[:, 0], label=f'empty_target="{policy}"')
    a.legend(fontsize=8)
    b.set_yscale("symlog", linthresh=1e-3)
    save(fig, "dice-empty-target.png")


def cross_entropy() -> None:
    """Binary focal loss of one element against the target 1, along its logit."""
    z = np.linspace(-6.0, 6.0, 241)
    target = torch.ones(len(z), 1, 1, dtype=torch.float64)
    logits = torch.from_numpy(z).reshape(len(z), 1, 1)
    fig, a, b = two_panels(
        "FocalLoss, binary, one element with target 1 (gamma = 0 is the cross-entropy)",
        "logit z",
        "loss",
        "d loss / d z",
    )
    for gamma in (0.0, 1.0, 2.0, 5.0):
        value, grad = per_image(
            lambda x, gamma=gamma: lt.functional.focal_loss(
                x, target, mode="binary", gamma=gamma, reduction="none"
            ).reshape(len(z)),
            logits,
        )
        a.plot(z, value, label=f"gamma = {gamma:g}")
        b.plot(z, grad[:, 0], label=f"gamma = {gamma:g}")
    a.legend(fontsize=8)
    save(fig, "cross-entropy.png")


def lovasz() -> None:
    """Lovász hinge: logit z on the foreground pixels, −z on the background ones."""
    z = np.linspace(-2.0, 2.0, 201)
    target = half_foreground(len(z)).long()
    logits = torch.from_numpy(np.repeat(z[:, None], PIXELS, 1)).reshape(len(z), 1, PIXELS)
    logits[..., PIXELS // 2 :] *= -1.0
    fig, a, b = two_panels(
        f"LovaszHingeLoss, {PIXELS} pixels, half foreground: logit z on the foreground, −z on the background",
        "z",
        "loss",
        "d loss / d z at a foreground pixel",
    )
    value, grad = per_image(lambda x: lt.functional.lovasz_hinge_loss(x, target, reduction="none"), logits)
    a.plot(z, value, label="LovaszHingeLoss")
    b.plot(z, grad[:, 0], label="LovaszHingeLoss")
    a.legend(fontsize=8)
    save(fig, "lovasz.png")


def penalized_mae() -> None:
    """Penalized MAE of one element along the error e = prediction − target."""
    e = np.linspace(-3.0, 3.0, 241)
    target = torch.zeros(len(e), 1, dtype=torch.float64)
    prediction = torch.from_numpy(e).reshape(len(e), 1)
    fig, a, b = two_panels(
        "Penalized MAE of one element, delta = 1", "e = prediction − target", "loss", "d loss / d prediction"
    )
    for penalty in (0.0, 0.25, 0.5, 1.0):
        value, grad = per_image(
            lambda x, penalty=penalty: lt.functional.penalized_mae(
                x, target, delta=1.0, penalty=penalty, reduction="none"
            ).reshape(len(e)),
            prediction,
        )
        a.plot(e, value, label=f"penalty = {penalty:g}")
        b.plot(e, grad[:, 0], label=f"penalty = {penalty:g}")
    a.legend(fontsize=8)
    save(fig, "penalized-mae.png")


def main() -> None:
    overlap()
    empty_target()
    cross_entropy()
    lovasz()
    penalized_mae()


if __name__ == "__main__":
    main()
