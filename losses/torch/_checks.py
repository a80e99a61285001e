"""Input checks of the PyTorch overlap losses: types, shapes, devices and the range of every value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from losses._validation import InputOptions, floating_dtype_error, shape_text

_Options = TypeVar("_Options")
_PLAIN_TYPES = (type(None), bool, int, float, str)
_MAX_REMEMBERED = 256
_remembered: dict[tuple[Any, ...], Any] = {}


def _plain_key(value: Any) -> tuple[Any, ...] | None:
    """A key for a None, bool, int, float or str, or a tuple or dict of them, with each value's type
    (so ``1`` is not taken for ``True``); None for anything else (a list, a tensor, ...)."""
    if type(value) in _PLAIN_TYPES:
        return (type(value), value)
    if type(value) is dict:
        value = tuple(value.items())
    elif type(value) is not tuple:
        return None
    keys = [_plain_key(item) for item in value]
    return None if any(key is None for key in keys) else tuple(keys)


def checked_options(create: Callable[..., _Options], *args: Any, **kwargs: Any) -> _Options:
    """``create(*args, **kwargs)``, remembered when every argument is a plain value (see
    :func:`_plain_key`): a training loop calls a functional loss with the same options at every step,
    and checking them costs more than a small loss."""
    key = None if torch.compiler.is_compiling() else _plain_key((args, kwargs))
    if key is None:
        return create(*args, **kwargs)
    key = (create, key)
    checked = _remembered.get(key)
    if checked is None:
        checked = create(*args, **kwargs)
        if len(_remembered) >= _MAX_REMEMBERED:
            _remembered.clear()
        _remembered[key] = checked
    return checked


_is_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
_forward_ad = torch.autograd.forward_ad


def transformed(tensor: Tensor) -> bool:
    """Whether ``tensor`` is seen through a torch.func transform (grad, vmap, jvp) or forward-mode AD."""
    return _is_functorch_wrapped(tensor) or _forward_ad._current_level >= 0


def is_label_map(input: Tensor, target: Tensor, mode: str) -> bool:
    """Whether ``target`` holds class indices rather than per-class probabilities."""
    batch, _, *spatial = input.shape
    if tuple(target.shape) == tuple(input.shape):
        return False
    if mode != "multilabel" and tuple(target.shape) in ((batch, *spatial), (batch, 1, *spatial)):
        return True
    if mode == "multilabel":
        expected = f"{shape_text(input.shape)} (the input's shape)"
    else:
        expected = (
            f"{shape_text(input.shape)} (probabilities) or a label map of shape "
            f"{shape_text((batch, *spatial))} or {shape_text((batch, 1, *spatial))}"
        )
    raise ValueError(
        f"target has shape {shape_text(target.shape)} but input has shape {shape_text(input.shape)}; "
        f"expected target of shape {expected}. Shapes are never broadcast."
    )


def check_inputs(input: Tensor, target: Tensor, weight: Tensor | None, options: InputOptions) -> bool:
    """Types, shapes and devices; returns whether ``target`` is a label map."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor; got {type(input).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if not input.is_floating_point():
        raise floating_dtype_error("input", input.dtype)
    if input.dim() < 3:
        raise ValueError(
            f"input must have shape (B, C, *spatial) with at least one spatial dimension; "
            f"got shape {shape_text(input.shape)}"
        )
    if target.is_complex():
        raise TypeError(f"target must be a real tensor; got {target.dtype}")
    if input.device != target.device:
        raise ValueError(
            f"input and target must be on the same device; got input on {input.device} and target on {target.device}"
        )
    if weight is not None:
        _check_weight_map(input, weight)
    options.check_num_classes(input.shape[1])
    return is_label_map(input, target, options.mode)


def _check_weight_map(input: Tensor, weight: Tensor) -> None:
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor (a weight per position) or None; got {type(weight).__name__}")
    if weight.is_complex():
        raise TypeError(f"weight must be a real tensor; got {weight.dtype}")
    batch, _, *spatial = input.shape
    if tuple(weight.shape) not in ((batch, *spatial), (batch, 1, *spatial)):
        raise ValueError(
            f"weight has shape {shape_text(weight.shape)}; expected a weight per position, "
            f"{shape_text((batch, *spatial))} or {shape_text((batch, 1, *spatial))}, for input of shape "
            f"{shape_text(input.shape)}. Shapes are never broadcast."
        )
    if weight.device != input.device:
        raise ValueError(
            f"weight must be on the input's device; got weight on {weight.device} and input on {input.device}"
        )


def matches(x: Tensor, value: int | None) -> Tensor | None:
    """``x == value`` where ``value`` is ignore_index; None when nothing can match."""
    if value is None:
        return None
    if not x.is_floating_point() and x.dtype != torch.bool:
        info = torch.iinfo(x.dtype)
        if not info.min <= value <= info.max:
            return None
    return x == value


def check_values(input: Tensor, target: Tensor, weight: Tensor | None, options: InputOptions, label_map: bool) -> None:
    """Every value in its range, or a clear error. NaN in input or target is no error: it propagates.

    Label maps: integers (also when stored as floats) in [0, C) (binary: {0, 1}) or ignore_index.
    Per-class targets: in [0, 1] or ignore_index (so a 0/255 mask is caught in every shape).
    Probabilities (``from_logits=False``): in [0, 1]. Weight maps: finite and >= 0. Checked
    eagerly on the CPU (a ``ValueError`` naming the values found), as an asynchronous device
    assert on CUDA (no host synchronisation), and not under ``torch.compile`` nor ``torch.func``
    transforms (no data-dependent branch there).
    """
    if torch.compiler.is_compiling() or transformed(input) or _is_functorch_wrapped(target):
        return
    num_classes = input.shape[1]
    if label_map:
        upper = 2 if options.mode == "binary" else num_classes
        allowed = "0 or 1" if options.mode == "binary" else f"in [0, {num_classes})"
        if target.is_floating_point():
            allowed = "whole numbers " + allowed
        _check_range("target labels", target, 0, upper - 1, allowed, options.ignore_index, integral=True)
    elif target.dtype != torch.bool:
        _check_range("target", target, 0, 1, "in [0, 1] (per-class probabilities or one-hot)", options.ignore_index)
    if not options.from_logits:
        _check_range(
            "input",
            input,
            0,
            1,
            "probabilities in [0, 1] with from_logits=False (pass logits with from_logits=True)",
            None,
        )
    if weight is not None:
        check_weight_values(weight)


def check_weight_values(weight: Tensor) -> None:
    """A weight map's values: finite and >= 0 (see :func:`check_values` for where this is checked).

    The fused kernels count the other values in their own passes; a weight map, optional, is
    checked here in one pass of its own.
    """
    if torch.compiler.is_compiling() or _is_functorch_wrapped(weight):
        return
    _check_range("weight", weight, 0, float("inf"), "finite and >= 0", None, finite=True)


def _distinct(values: Tensor) -> list[float]:
    """The distinct values, NaN once (torch.unique keeps every NaN)."""
    distinct, nan_seen = [], False
    for value in torch.unique(values).tolist():
        if value != value:
            if nan_seen:
                continue
            nan_seen = True
        distinct.append(value)
    return distinct


def _check_range(
    name: str,
    x: Tensor,
    low: float,
    high: float,
    allowed: str,
    ignore_index: int | None,
    integral: bool = False,
    finite: bool = False,
) -> None:
    if x.numel() == 0 or x.dtype == torch.bool:
        return
    ignored = matches(x, ignore_index)
    checked = x if ignored is None else torch.where(ignored, low, x)
    not_ok = None
    if checked.is_floating_point():
        if integral:
            not_ok = checked != torch.floor(checked)  # True for NaN and ±inf: a label must be a number
        elif finite:
            not_ok = ~torch.isfinite(checked)
        else:  # NaN and ±inf are no range error: they propagate to the loss
            checked = torch.where(torch.isfinite(checked), checked, low)
    if not_ok is not None:
        checked = torch.where(not_ok, low, checked)
    # One pass (aminmax) over the values; the details of a failure only when there is one.
    smallest, largest = torch.aminmax(checked)
    ok = (smallest >= low) & (largest <= high)
    if not_ok is not None:
        ok = ok & ~not_ok.any()
    if x.device.type != "cpu":
        torch._assert_async(ok, f"{name} out of range")
        return
    if bool(ok):
        return
    bad = (checked < low) | (checked > high)
    values = checked[bad] if not_ok is None else torch.cat([checked[bad], x[not_ok]])
    found = _distinct(values)[:8]
    extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    raise ValueError(f"{name} must be {allowed}{extra}; found {found}")
