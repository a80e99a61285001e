"""Framework-free option checks and error texts shared by every frontend.

Every error names the argument, what was expected and what came, so that a user reading the
message alone knows what to change.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

TORCH_REDUCTIONS = ("mean", "sum", "none")

# The largest value of a float option that scales or offsets the loss's computation (smoothing,
# alpha and beta, gamma, the lambdas of a pair, penalized MAE's delta and penalty). The computation
# runs in float32 (the dtype of float16 to float32 inputs), where a larger value rounds to inf and
# meets a 0 or another inf (inf · 0, inf − inf, inf / inf) on the most ordinary input: a NaN
# gradient for finite input (gamma=1e39: γ·(1 − p)^(γ−1) is inf · 0). 1e38 leaves float32's
# 3.4e38 room for the sums it is added to.
MAXIMUM_OPTION = 1e38


class SupportsToList(Protocol):
    """An array or a tensor on the host: ``tolist()`` gives its numbers."""

    def tolist(self) -> Any: ...


# What the losses accept as class indices (any iterable of integers: a list, a range, an integer
# array) and as per-class weights (a sequence of numbers, or an array or host tensor of them).
ClassIndices = Iterable[int]
ClassWeights = Sequence[float] | SupportsToList


class InputOptions(Protocol):
    """What the input checks of both frontends read from a loss's options (overlap, focal, Lovász)."""

    @property
    def mode(self) -> str: ...

    @property
    def from_logits(self) -> bool: ...

    @property
    def ignore_index(self) -> int | None: ...

    def check_num_classes(self, num_classes: int) -> None: ...


def describe(value: Any) -> str:
    """A short description of ``value`` for an error message."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (of type {type(value).__name__})"


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {describe(value)}")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {describe(value)}")
    return value


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strictly_greater: bool = False,
    maximum: float | None = None,
) -> float:
    """A finite real number, optionally bounded below and above (``maximum``: beyond it the float32
    computation overflows); returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {describe(value)}")
    number = float(value)
    # A comparison, not math.isfinite: under torch.compile a float option that changes between
    # calls becomes a symbolic float, which Dynamo can compare but cannot pass to math.isfinite.
    if not -math.inf < number < math.inf:
        raise ValueError(f"{name} must be finite; got {number!r}")
    if minimum is not None:
        if strictly_greater and not number > minimum:
            raise ValueError(f"{name} must be > {minimum:g}; got {number!r}")
        if not strictly_greater and not number >= minimum:
            raise ValueError(f"{name} must be >= {minimum:g}; got {number!r}")
    if maximum is not None and not number <= maximum:
        raise ValueError(f"{name} must be <= {maximum:g} (beyond, the float32 computation overflows); got {number!r}")
    return number


def check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {describe(value)}")
    return int(value)


def check_int_sequence(name: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        try:
            value = list(value)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of integers or None; got {describe(value)}") from None
    items = tuple(check_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if not items:
        raise ValueError(f"{name} must name at least one class; got an empty sequence")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} must not repeat a class; got {list(items)}")
    return items


def check_weight_sequence(name: str, value: Any, maximum: float | None = None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if hasattr(value, "tolist"):  # a NumPy array or a framework tensor on the host
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of non-negative numbers or None; got {describe(value)}")
    weights = tuple(check_number(f"{name}[{i}]", v, minimum=0.0, maximum=maximum) for i, v in enumerate(value))
    if not weights:
        raise ValueError(f"{name} must not be empty")
    if not sum(weights) > 0:
        raise ValueError(f"{name} must have at least one positive weight; got {list(weights)}")
    return weights


def shape_text(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def check_same_shape(pred_name: str, pred_shape: Sequence[Any], target_name: str, target_shape: Sequence[Any]) -> None:
    if tuple(pred_shape) != tuple(target_shape):
        raise ValueError(
            f"{target_name} has shape {shape_text(target_shape)} but {pred_name} has shape "
            f"{shape_text(pred_shape)}; they must be equal. Shapes are never broadcast: "
            "reshape the tensors so they match (a (N,) target against an (N, 1) prediction is a common cause)."
        )


def floating_dtype_error(name: str, dtype: Any) -> TypeError:
    return TypeError(f"{name} must have a floating-point dtype (float16, bfloat16, float32 or float64); got {dtype}")
