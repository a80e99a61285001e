"""Hypothesis strategies for loss inputs, as used by the ``losses`` test suite."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def finite_floats(low: float = -10.0, high: float = 10.0) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


def float_arrays(
    shape: int | tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    low: float = -10.0,
    high: float = 10.0,
    dtype: type[np.floating[Any]] | np.dtype[Any] = np.float64,
) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` (a tuple or a strategy of tuples) with finite values in ``[low, high]``."""
    return hnp.arrays(dtype, shape, elements=finite_floats(low, high))


def away_from(values: np.ndarray, kinks: Iterable[float], margin: float) -> bool:
    """True when every element of ``values`` lies at least ``margin`` from every kink."""
    values = np.asarray(values, dtype=np.float64)
    return all(bool(np.all(np.abs(values - k) >= margin)) for k in kinks)


def segmentation_shapes(
    max_batch: int = 3, max_classes: int = 4, max_side: int = 5, spatial_dims: tuple[int, ...] = (1, 2, 3)
) -> st.SearchStrategy[tuple[int, ...]]:
    """Channels-first shapes ``(B, C, *spatial)`` with 1 to 3 spatial dimensions."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, ...]:
        dims = draw(st.sampled_from(spatial_dims))
        batch = draw(st.integers(1, max_batch))
        classes = draw(st.integers(1, max_classes))
        spatial = tuple(draw(st.integers(1, max_side)) for _ in range(dims))
        return (batch, classes, *spatial)

    return build()
