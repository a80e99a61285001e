"""Is a hand-written gradient right? Directional central differences in float64, framework-free.

A framework hands over ``value(xs)`` (the function at a list of NumPy arrays, a float) and
``gradient(xs)`` (its hand-written gradient there, one array per input). Along a few random
directions ``v`` at a few points, ``<gradient, v>`` is compared with ``(f(x + h v) - f(x - h v)) / 2h``.
A direction along which the two one-sided differences disagree crosses a kink or a jump and
is not used; a function that is flat along every direction (a straight-through estimator: a
piecewise-constant forward with a surrogate backward) is not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Verdict:
    """``wrong``; the worst relative ``error``, |hand-written - numeric| / |numeric|; ``factor``:
    hand-written / numeric when it is the same along every direction (a constant factor or a flipped
    sign), else ``None``."""

    wrong: bool
    error: float
    factor: float | None


def check_directions(
    value: Callable[[list[np.ndarray]], float],
    gradient: Callable[[list[np.ndarray]], list[np.ndarray]],
    point: Sequence[np.ndarray],
    *,
    points: int = 2,
    directions: int = 2,
    seed: int = 0,
) -> Verdict | None:
    """Compare ``gradient`` with central differences of ``value``; ``None`` when nothing could be compared
    (every direction crossed a kink, the function is flat, or it is not finite).

    The step is 1e-6 (relative) when the function computes in float64. A function that computes in
    a lower precision whatever its inputs (central differences at two steps disagree) is compared
    with a step of 1e-3 and a tolerance of 2e-2, enough to see a wrong factor or sign.
    """
    rng = np.random.default_rng(seed)
    base = [np.asarray(x, dtype=np.float64) for x in point]
    pairs: list[tuple[float, float]] = []
    step, rtol, kink = 1e-6, 1e-3, 1e-3
    probed = False
    for p in range(points):
        # The given point, then random points near it (a relative jitter keeps signs and scales).
        xs = base if p == 0 else [x + 0.05 * (np.abs(x) + 0.1) * rng.uniform(-1, 1, x.shape) for x in base]
        try:
            f0 = value(xs)
            grads = [np.asarray(g, dtype=np.float64) for g in gradient(xs)]
        except Exception:  # the function cannot run at this point: no evidence
            continue
        if not np.isfinite(f0) or not all(np.all(np.isfinite(g)) for g in grads):
            continue
        scale = max(1.0, max((float(np.max(np.abs(x))) for x in xs if x.size), default=1.0))
        for _ in range(directions):
            vs = [rng.standard_normal(x.shape) for x in xs]

            def differences(
                h: float, xs: list[np.ndarray] = xs, vs: list[np.ndarray] = vs, f0: float = f0
            ) -> tuple[float, float, float]:
                plus = value([x + h * v for x, v in zip(xs, vs)])
                minus = value([x - h * v for x, v in zip(xs, vs)])
                return (plus - f0) / h, (f0 - minus) / h, (plus - minus) / (2 * h)

            forward, backward, numeric = differences(step * scale)
            if not probed:
                probed = True
                coarse = differences(10 * step * scale)[2]
                if abs(coarse - numeric) > 1e-4 * max(abs(coarse), abs(numeric)) + 1e-12:
                    step, rtol, kink = 1e-3, 2e-2, 0.25  # low precision: rounding noise at a small step
                    forward, backward, numeric = differences(step * scale)
            if not (np.isfinite(forward) and np.isfinite(backward)):
                continue
            slope = max(abs(forward), abs(backward))
            if abs(forward - backward) > kink * slope + 1e-12:
                continue  # a kink or a jump between x - h v and x + h v
            analytic = float(sum(np.sum(g * v) for g, v in zip(grads, vs)))
            if slope == 0 and analytic != 0:
                continue  # flat here: a piecewise-constant forward (straight-through by design)
            pairs.append((analytic, numeric))
    if not pairs:
        return None
    errors = [abs(a - n) / max(abs(a), abs(n), 1e-12) for a, n in pairs]
    wrong = sum(e > rtol for e in errors) * 2 > len(errors)
    relative = max(abs(a - n) / abs(n) if n else float("inf") for a, n in pairs)
    factor = None
    if wrong:
        ratios = [a / n for a, n in pairs if n != 0]
        if len(ratios) == len(pairs) and max(ratios) - min(ratios) <= 1e-2 * max(abs(r) for r in ratios):
            factor = float(np.mean(ratios))
    return Verdict(wrong, relative, factor)
