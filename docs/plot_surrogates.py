"""Draw docs/img/surrogates.png: each surrogate and its derivative at several alphas, the hard function beside.

Values come from ``losses.torch`` and derivatives from autograd through it, so the picture shows
what the package computes. Run from the repository root::

    python docs/plot_surrogates.py
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import losses.torch as lt  # noqa: E402

ALPHAS = (2.0, 5.0, 20.0)
HARD = {
    "soft_round": np.round,
    "soft_floor": np.floor,
    "soft_ceil": np.ceil,
    "soft_step": lambda x: np.heaviside(x, 0.5),
    "soft_sign": np.sign,
}
OUT = pathlib.Path(__file__).resolve().parent / "img" / "surrogates.png"


def value_and_derivative(name, x, alpha):
    t = torch.from_numpy(x).requires_grad_(True)
    y = getattr(lt, name)(t, alpha)
    (g,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), g.numpy()


def main() -> None:
    x = np.linspace(-2.0, 2.0, 2001)
    fig, axes = plt.subplots(len(HARD), 2, figsize=(10, 14), constrained_layout=True)
    for row, name in enumerate(HARD):
        left, right = axes[row]
        hard = HARD[name](x).astype(float)
        jumps = np.flatnonzero(np.diff(hard)) + 1
        left.plot(
            np.insert(x, jumps, np.nan),
            np.insert(hard, jumps, np.nan),
            color="black",
            linestyle="--",
            linewidth=1.2,
            label="hard",
        )
        right.axhline(0.0, color="black", linestyle="--", linewidth=1.2, label="hard (0 a.e.)")
        for alpha in ALPHAS:
            value, derivative = value_and_derivative(name, x, alpha)
            left.plot(x, value, label=f"alpha = {alpha:g}")
            right.plot(x, derivative, label=f"alpha = {alpha:g}")
        left.set_title(f"{name}(x, alpha)")
        right.set_title(f"d/dx {name}(x, alpha)")
        for ax in (left, right):
            ax.grid(alpha=0.3)
            ax.set_xlabel("x")
        left.legend(loc="upper left", fontsize=8)
        right.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        "Smooth surrogates (solid) and the hard functions (dashed)\n"
        "straight_through=True: the dashed value forward, the solid derivative backward"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # No Software entry (the matplotlib version): the bytes depend on the drawing only.
    fig.savefig(OUT, dpi=90, metadata={"Software": None})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
