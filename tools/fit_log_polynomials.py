"""The coefficients of the two short logarithms of the CPU kernels (losses/torch/_kernels/cpu_overlap.c).

The binary cross-entropy and focal passes need log(1 + u) for u = e^-|x| in [0, 1] and
-log(1 - s) for s = sigmoid(-|x|) in [0, 1/2]. On those fixed ranges a polynomial without the
range reduction of a general logarithm is enough: f(t) = t + t^2 * G(t), with G fitted to
(f(t) - t) / t^2 so that the relative error of f is least (Lawson's iteration towards the minimax
fit), and t itself exact in the first term, so that a tiny t keeps its relative precision.

    python tools/fit_log_polynomials.py

prints both coefficient lists as C literals and the error of the float32 evaluation (Horner, then
one fused multiply-add) against float64 over a dense grid, logarithmic spacing down to 1e-30 and
random points.
"""

from __future__ import annotations

import numpy as np

DEGREE = 7


def _fit(f, low: float, high: float, small) -> np.ndarray:
    t = np.linspace(low, high, 400_001)
    series = small(t)
    tail = np.where(t > 1e-4, (f(t) - t) / np.where(t > 1e-4, t * t, 1.0), series)
    weights = np.ones_like(t)
    for _ in range(80):
        coefficients = np.polynomial.polynomial.polyfit(t, tail, DEGREE, w=np.sqrt(weights))
        error = np.abs(np.polynomial.polynomial.polyval(t, coefficients) - tail) * t * t / np.maximum(f(t), 1e-12)
        weights = weights * (error / error.max() + 1e-3)
        weights /= weights.mean()
    return coefficients.astype(np.float32)


def _ulps(f, coefficients: np.ndarray, high: float) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    t = np.concatenate(
        [np.linspace(0, high, 400_001), np.logspace(-30, np.log10(high), 200_000), high * rng.random(2_000_000)]
    ).astype(np.float32)
    tail = np.float32(coefficients[-1])
    for c in coefficients[-2::-1]:
        tail = (tail * t + np.float32(c)).astype(np.float32)
    square = (t * t).astype(np.float32)
    value = (square.astype(np.float64) * tail + t).astype(np.float32)  # the last step: one fused multiply-add
    exact = f(t.astype(np.float64))
    ulps = np.abs(value - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    return float(ulps.max()), float(ulps.mean())


def main() -> None:
    fits = {
        "log1p_unit: log(1 + u), u in [0, 1]": (
            np.log1p,
            1.0,
            lambda t: -0.5 + t / 3 - t * t / 4 + t**3 / 5,
        ),
        "neg_log1m_half: -log(1 - s), s in [0, 1/2]": (
            lambda t: -np.log1p(-t),
            0.5,
            lambda t: 0.5 + t / 3 + t * t / 4 + t**3 / 5,
        ),
    }
    for name, (f, high, small) in fits.items():
        coefficients = _fit(f, 0.0, high, small)
        worst, mean = _ulps(f, coefficients, high)
        print(f"{name}: at most {worst:.2f} ulp, {mean:.2f} on average")
        print("    " + ", ".join(f"{float(c)!r}f" for c in coefficients))


if __name__ == "__main__":
    main()
