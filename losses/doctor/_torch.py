"""The doctor for PyTorch: one forward pass under a ``TorchFunctionMode`` that sees every torch
call, records where the prediction's gradient is lost and on which user line, then one backward.
Hand-written backward passes (``torch.autograd.Function``) met on the way are checked against
finite differences."""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from losses.doctor import _report as R
from losses.doctor._gradcheck import check_directions
from losses.doctor._report import Cause, Finding, HostNumber, Report

_HOST = {"item", "tolist", "numpy", "__float__", "__int__", "__index__", "__complex__", "__array__"}
_DETACH = {"detach", "detach_", "data"}
_REBUILD = {"tensor", "as_tensor", "from_numpy", "asarray"}
_COMPARE = {
    "eq",
    "ne",
    "gt",
    "lt",
    "ge",
    "le",
    "greater",
    "less",
    "greater_equal",
    "less_equal",
    "not_equal",
    "__eq__",
    "__ne__",
    "__gt__",
    "__lt__",
    "__ge__",
    "__le__",
    "isclose",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "__and__",
    "__or__",
    "__invert__",
    "__xor__",
    "isin",
}
_ARGMAX = {"argmax", "argmin", "argsort", "topk", "max", "min", "sort", "searchsorted", "bucketize", "multinomial"}
# Histograms: counts per bin, piecewise constant in the values counted.
_COUNT = {"histc", "histogram", "histogramdd", "bincount"}
_ZERO_DERIV = {
    "round": "round",
    "floor": "floor",
    "ceil": "floor",
    "trunc": "floor",
    "fix": "floor",
    "sign": "sign",
    "sgn": "sign",
    "heaviside": "sign",
    "floor_divide": "floor",
    "__floordiv__": "floor",
    "__rfloordiv__": "floor",
    "round_": "round",
    "floor_": "floor",
    "ceil_": "floor",
    "sign_": "sign",
    # every value replaced by a constant, in place
    "fill_": "overwrite",
    "zero_": "overwrite",
}
# Element-wise losses of torch.nn.functional whose (input, target) must have one shape.
_ELEMENTWISE_LOSSES = {
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "poisson_nll_loss",
    "soft_margin_loss",
}
# Functions of torch.nn.functional called as f(input, target, ...). Exchanging the arguments of a
# symmetric one (mse, l1, smooth_l1, huber) changes nothing, so it is not reported.
_SYMMETRIC_LOSSES = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"}
_INPUT_TARGET = (_ELEMENTWISE_LOSSES - _SYMMETRIC_LOSSES) | {
    "cross_entropy",
    "nll_loss",
    "gaussian_nll_loss",
    "multilabel_soft_margin_loss",
    "hinge_embedding_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
}
# Element-wise operations of two tensors: where a prediction meets a target of another shape.
_ELEMENTWISE_BINARY = {
    "add",
    "sub",
    "subtract",
    "rsub",
    "mul",
    "multiply",
    "div",
    "divide",
    "true_divide",
    "pow",
    "maximum",
    "minimum",
    "fmax",
    "fmin",
    "where",
    "atan2",
    "hypot",
    "xlogy",
    "remainder",
    "fmod",
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__pow__",
    "__rpow__",
    "__mod__",
    "eq",
    "ne",
    "gt",
    "lt",
    "ge",
    "le",
    "__eq__",
    "__ne__",
    "__gt__",
    "__lt__",
    "__ge__",
    "__le__",
} | _ELEMENTWISE_LOSSES
# Operations that give a tensor new axes on purpose (pairwise distances: a[:, None] - b[None]).
_NEW_AXES = {
    "unsqueeze",
    "view",
    "reshape",
    "expand",
    "expand_as",
    "broadcast_to",
    "unflatten",
    "atleast_2d",
    "atleast_3d",
    "__getitem__",
    "repeat",
    "tile",
}
# Operations through which a sum of terms stays a sum of terms (the loss's additive structure).
_SUM = {"add", "sub", "subtract", "__add__", "__radd__", "__sub__", "__rsub__", "__iadd__", "__isub__", "add_", "sub_"}
_SCALE = {
    "mul",
    "multiply",
    "div",
    "divide",
    "true_divide",
    "neg",
    "negative",
    "mean",
    "sum",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__neg__",
    "__imul__",
    "__itruediv__",
    "mul_",
    "div_",
    "squeeze",
    "reshape",
    "view",
    "float",
    "double",
    "to",
    "type_as",
}
# New tensors that take only the shape, dtype and device of their input: no value flows through them.
_FACTORY = {
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "randint_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "size",
    "dim",
    "numel",
    "shape",
    "stride",
    "is_floating_point",
    "element_size",
    "get_device",
}
_INPLACE_DUNDER = {
    "__iadd__",
    "__isub__",
    "__imul__",
    "__itruediv__",
    "__idiv__",
    "__ipow__",
    "__setitem__",
    "__ifloordiv__",
    "__imod__",
    "__iand__",
    "__ior__",
}
_NO_DERIVATIVE = re.compile(r"derivative for '?(?:aten::)?(\w+?)(?:\.\w+)?'? is not implemented")
_VERSION = re.compile(r"\[torch\.\w+ \[([\d, ]*)\]\].*?is at version (\d+); expected version (\d+)", re.S)


def _name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name == "__get__":  # a property such as Tensor.data
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def _tensors(obj: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(obj)
    found = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            found.append(leaf)
        elif isinstance(leaf, (list, tuple)):
            found.extend(_tensors(list(leaf)))
    return found


def _host_numbers(obj: Any) -> list[HostNumber]:
    leaves, _ = tree_flatten(obj)
    found = []
    for leaf in leaves:
        if isinstance(leaf, HostNumber):
            found.append(leaf)
        elif isinstance(leaf, (list, tuple)):
            found.extend(_host_numbers(list(leaf)))
    return found


def _finite(t: torch.Tensor) -> bool:
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return True
    with torch.no_grad():
        # NaN and Inf reach the sum; a non-finite sum may also be an overflow: then look closer.
        if bool(torch.isfinite(t.sum())):
            return True
        return bool(torch.isfinite(t).all())


def _broadcast_grows(a: torch.Size, b: torch.Size) -> bool:
    """True when broadcasting ``a`` with ``b`` gives more elements than either: both were expanded."""
    if a == b:
        return False
    try:
        shape = torch.broadcast_shapes(a, b)
    except RuntimeError:
        return False
    return math.prod(shape) > max(math.prod(a), math.prod(b))


def is_function_class(obj: Any) -> TypeGuard[type[torch.autograd.Function]]:
    return isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


def check_function_class(cls: type[torch.autograd.Function]) -> None:
    """A ``torch.autograd.Function`` subclass given as the loss must be of the static kind."""
    if not isinstance(inspect.getattr_static(cls, "forward", None), staticmethod):
        raise TypeError(
            f"{cls.__qualname__} is a legacy torch.autograd.Function (forward is an instance method), which "
            "PyTorch no longer runs; make forward(ctx, ...) and backward(ctx, ...) @staticmethods and call it "
            f"as {cls.__qualname__}.apply(...)"
        )


class _Recorder(R.BreakLog, TorchFunctionMode):
    def __init__(self, preds: list[torch.Tensor], target: torch.Tensor) -> None:
        super().__init__()
        self.keep: list[Any] = [*preds, target]  # keeps ids unique while the pass runs
        self.pred_ids = {id(p) for p in preds}
        self.target_ids = {id(target)}
        self.sites: dict[int, tuple[str | None, int | None]] = {}
        self.node_sites: dict[Any, tuple[str | None, int | None]] = {}
        self.breaks: list[Cause] = []
        self.zero_ops: list[Cause] = []
        self.broadcasts: list[tuple[str, tuple, tuple, tuple[str | None, int | None]]] = []
        self.swaps: list[tuple[str, tuple[str | None, int | None]]] = []
        self.inplace: list[tuple[str, tuple[str | None, int | None], tuple, int]] = []  # op, site, shape, version
        self.non_finite: list[tuple[str, tuple[str | None, int | None]]] = []
        self.nonfinite_ids = {id(t) for t in (*preds, target) if not _finite(t)}
        self.new_axes: set[int] = set()  # tensors given new axes on purpose, and what is computed from them
        self.terms: dict[int, tuple[str, list]] = {}  # output id -> (op, operands) for sums and scalings
        self.dead: dict[int, Cause] = {}  # prediction-derived tensors without gradient -> why
        self.zero: dict[int, Cause] = {}  # connected tensors computed through a zero-derivative op -> which
        self.functions: list[tuple[type[torch.autograd.Function], tuple, dict, tuple[str | None, int | None]]] = []
        self._inside_function = 0

    def _is_pred(self, t: torch.Tensor) -> bool:
        return id(t) in self.pred_ids

    def _is_target(self, t: torch.Tensor) -> bool:
        return id(t) in self.target_ids

    # -- hand-written backward passes -------------------------------------------------------------
    def __enter__(self):
        self._apply = inspect.getattr_static(torch.autograd.Function, "apply")
        recorder, original = self, self._apply.__func__

        def apply(cls, *args, **kwargs):
            return recorder._function_apply(original, cls, args, kwargs)

        # Patched for the duration of the pass, restored by __exit__.
        torch.autograd.Function.apply = classmethod(apply)  # type: ignore[method-assign, assignment]
        return super().__enter__()

    def __exit__(self, *exc):
        torch.autograd.Function.apply = self._apply  # type: ignore[method-assign]
        return super().__exit__(*exc)

    def _function_apply(self, original, cls, args, kwargs):
        # The forward of an autograd.Function runs without gradient recording by design: its own
        # backward stands for the ops inside, so they are not looked at.
        pred_in = [t for t in _tensors((args, kwargs)) if self._is_pred(t)]
        site = R.user_site() if pred_in else (None, None)
        self._inside_function += 1
        try:
            out = original(cls, *args, **kwargs)
        finally:
            self._inside_function -= 1
        if pred_in:
            for o in _tensors(out):
                self.keep.append(o)
                self.pred_ids.add(id(o))
                self.sites.setdefault(id(o), site)
                if o.grad_fn is not None:
                    self.node_sites.setdefault(o.grad_fn, site)
            code = getattr(cls.backward, "__code__", None)
            user_code = code is not None and not R.is_library_file(code.co_filename)
            calls = sum(f[0] is cls for f in self.functions)
            if user_code and any(t.requires_grad for t in pred_in) and calls < R.CALLS_CHECKED:
                self.functions.append((cls, args, kwargs, site))
        return out

    # -- every torch call ---------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._inside_function:
            return func(*args, **kwargs)
        name = _name(func)
        inputs = _tensors((args, kwargs))
        hosts = _host_numbers((args, kwargs))
        pred_in = [t for t in inputs if self._is_pred(t)]
        target_only = [t for t in inputs if self._is_target(t) and not self._is_pred(t)]
        connected_in = [t for t in pred_in if t.requires_grad]
        inplace = name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__")) or "out" in kwargs
        site = None
        if pred_in:
            site = R.user_site()
            if name in _INPUT_TARGET:
                self._check_swap(name, args, kwargs, site)
            if name in _ELEMENTWISE_LOSSES and len(args) >= 2:
                a, b = args[0], args[1]
                if (
                    isinstance(a, torch.Tensor)
                    and isinstance(b, torch.Tensor)
                    and a.shape != b.shape
                    and not {id(a), id(b)} & self.new_axes
                ):
                    self.broadcasts.append((name, tuple(a.shape), tuple(b.shape), site))

        out = func(*args, **kwargs)

        outputs = _tensors(out)
        if inplace and inputs and (pred_in or target_only):
            changed = args[0] if args and isinstance(args[0], torch.Tensor) else inputs[0]
            self.inplace.append((name, site or R.user_site(), tuple(changed.shape), changed._version))
        if (not pred_in and not target_only and not hosts) or name in _FACTORY:
            return out
        site = site or R.user_site()
        for o in outputs:
            self.keep.append(o)
            self.sites.setdefault(id(o), site)
            if pred_in:
                self.pred_ids.add(id(o))
                if o.grad_fn is not None:
                    self.node_sites.setdefault(o.grad_fn, site)
            if target_only:
                self.target_ids.add(id(o))
        if name in _INPLACE_DUNDER and args and isinstance(args[0], torch.Tensor) and pred_in:
            self.pred_ids.add(id(args[0]))
        if name == "__bool__" and pred_in and not connected_in:
            self.breaks.append(("branch", name, site))
        cause = None
        if connected_in:
            # Metadata (shape, size, dim) is not a value of the prediction: only values break the flow.
            if (outputs or name in _HOST or name == "__bool__") and not any(o.requires_grad for o in outputs):
                cause = (self._kind(name, outputs), name, site)
                self.breaks.append(cause)
            elif name in _ZERO_DERIV:
                self.zero_ops.append((_ZERO_DERIV[name], name, site))
            for o in outputs:  # the indices beside the values of max(dim), topk, sort: a choice of index
                if not o.is_floating_point() and not o.is_complex() and any(v.requires_grad for v in outputs):
                    self.dead[id(o)] = ("argmax", name, site)
        self._follow_terms(name, args, inputs, hosts, outputs, cause, site)
        if pred_in and target_only and name in _ELEMENTWISE_BINARY:
            for p in pred_in:
                for t in target_only:
                    if (
                        p.numel() > 1
                        and t.numel() > 1
                        and _broadcast_grows(p.shape, t.shape)
                        and not {id(p), id(t)} & self.new_axes
                    ):
                        if any(o.shape == torch.broadcast_shapes(p.shape, t.shape) for o in outputs):
                            self.broadcasts.append((name, tuple(p.shape), tuple(t.shape), site))
        self._follow_axes(name, args, inputs, outputs)
        bad = [o for o in outputs if not _finite(o)]
        if bad:
            # The first op whose output is NaN/Inf while its inputs were finite: where the NaN is born.
            if not self.non_finite and not any(id(t) in self.nonfinite_ids for t in inputs):
                self.non_finite.append((name, site))
            self.nonfinite_ids.update(id(o) for o in bad)
        if name == "item" and isinstance(out, float) and (pred_in or hosts):
            # A number read off the prediction: marked, so that a loss term built from it can be named
            # (float(t) cannot be: Python makes its result a plain float).
            number_cause = cause or next((self.dead[id(t)] for t in pred_in if id(t) in self.dead), None)
            if number_cause is not None:
                return HostNumber(out, number_cause)
        return out

    def _follow_terms(self, name, args, inputs, hosts, outputs, cause, site) -> None:
        """Why each prediction-derived tensor has no gradient (or a zero one), and the sums and
        scalings that build the loss out of terms."""
        pred_in = [t for t in inputs if self._is_pred(t)]
        if cause is None and pred_in + hosts:
            cause = next((self.dead[id(t)] for t in pred_in if id(t) in self.dead), None)
            cause = cause or next((h.cause for h in hosts), None)
        zero = (
            (_ZERO_DERIV[name], name, site)
            if name in _ZERO_DERIV
            else next((self.zero[id(t)] for t in pred_in if id(t) in self.zero), None)
        )
        for o in outputs:
            if cause is not None and not o.requires_grad:
                self.dead[id(o)] = cause
                self.pred_ids.add(id(o))
            elif zero is not None and o.requires_grad:
                self.zero[id(o)] = zero
        if (name in _SUM or name in _SCALE) and len(outputs) == 1:
            operands = list(args)
            if name.endswith("_") or name.startswith("__i"):  # in place: the old value is the first operand
                operands[0] = _Previous(self.terms.get(id(outputs[0])), outputs[0])
            self.terms[id(outputs[0])] = (name, operands)

    def _follow_axes(self, name, args, inputs, outputs) -> None:
        if any(id(t) in self.new_axes for t in inputs):
            self.new_axes.update(id(o) for o in outputs)
        elif name in _NEW_AXES and inputs:
            index = args[1] if name == "__getitem__" and len(args) > 1 else None
            new_index_axes = index is None or (isinstance(index, tuple) and any(i is None for i in index))
            if name != "__getitem__" or (index is not None and new_index_axes):
                if any(o.dim() > inputs[0].dim() for o in outputs):
                    self.new_axes.update(id(o) for o in outputs)

    def _kind(self, name: str, outputs: list[torch.Tensor]) -> str:
        if not torch.is_grad_enabled():
            return "no_grad"
        if name in _DETACH:
            return "detach"
        if name == "__bool__":
            return "branch"
        if name in _HOST:
            return "host"
        if name in _REBUILD:
            return "rebuilt"
        if name in _COMPARE:
            return "compare"
        if name in _ARGMAX:
            return "argmax"
        if name in _COUNT:
            return "count"
        if name in _ZERO_DERIV:
            return _ZERO_DERIV[name]
        if outputs and all(o.dtype == torch.bool for o in outputs):
            return "compare"
        if outputs and not any(o.is_floating_point() or o.is_complex() for o in outputs):
            return "cast"
        return "detach"

    def _check_swap(self, name: str, args: tuple, kwargs: dict, site) -> None:
        first = kwargs.get("input", args[0] if len(args) > 0 else None)
        second = kwargs.get("target", args[1] if len(args) > 1 else None)
        if (
            isinstance(second, torch.Tensor)
            and self._is_pred(second)
            and not (isinstance(first, torch.Tensor) and self._is_pred(first))
        ):
            self.swaps.append((name, site))

    # -- the loss as a sum of terms ---------------------------------------------------------------
    def summands(self, obj: Any, size: int, depth: int = 0) -> list[Any]:
        """The terms whose sum (up to constant factors) is ``obj``, as far as the pass saw them built.

        Only sums of at most ``size`` elements (the loss's) count: the terms of a loss, not an
        element-wise ``x + (round(x) - x).detach()`` (a straight-through estimator) or a staircase
        plus a smooth part inside a surrogate.
        """
        if isinstance(obj, _Previous):
            return self._expand(obj.entry, obj.tensor, size, depth) if obj.entry else [obj.tensor]
        return self._expand(self.terms.get(id(obj)), obj, size, depth) if isinstance(obj, torch.Tensor) else [obj]

    def _expand(self, entry, obj, size: int, depth: int) -> list[Any]:
        if entry is None or depth > 50:
            return [obj]
        name, operands = entry
        varying = [
            o
            for o in operands
            if isinstance(o, (HostNumber, _Previous))
            or (isinstance(o, torch.Tensor) and (self._is_pred(o) or o.requires_grad))
        ]
        if name in _SUM and obj.numel() <= size:
            constants = [
                R.Constant(float(o))
                for o in operands
                if isinstance(o, (int, float)) and not isinstance(o, (bool, HostNumber))
            ]
            return [s for o in varying for s in self.summands(o, size, depth + 1)] + constants
        if name in _SCALE and len(varying) == 1:  # a constant factor, a mean, a sum over elements, a cast
            return self.summands(varying[0], size, depth + 1)
        return [obj]


class _Previous:
    """The value a tensor had before an in-place change (``loss += term``)."""

    def __init__(self, entry, tensor) -> None:
        self.entry, self.tensor = entry, tensor


def _swap_finding(name: str, site) -> Finding:
    return Finding(
        R.SWAPPED_ARGUMENTS,
        "error",
        f"torch.nn.functional.{name} takes (input, target), but the prediction was passed as the target "
        "and a target-derived tensor as the input",
        f"call {name}(prediction, target): PyTorch losses put the prediction first "
        "(Keras losses take (y_true, y_pred))",
        site[0],
        site[1],
    )


def _inplace_site(text: str, rec: _Recorder, fallback):
    """The in-place operation that changed what autograd saved: the one that moved the tensor of the
    error's shape from the version autograd expected to the next."""
    match = _VERSION.search(text)
    if match:
        shape = tuple(int(d) for d in match.group(1).replace(" ", "").split(",") if d)
        expected = int(match.group(3))
        for op, site, op_shape, version in rec.inplace:
            if op_shape == shape and version == expected + 1:
                return op, site
    return rec.inplace[0][:2] if rec.inplace else ("an in-place operation", fallback)


def _exception_finding(error: BaseException, rec: _Recorder, pred_shape, true_shape) -> Finding | None:
    text = str(error)
    site = R.traceback_site(error.__traceback__)
    if rec.swaps:
        return _swap_finding(*rec.swaps[0])
    missing = _NO_DERIVATIVE.search(text)
    if missing:
        # PyTorch has no backward for a piecewise-constant op (heaviside): the op, not a crash.
        for kind, op, where in rec.zero_ops:
            if op.rstrip("_") == missing.group(1):
                return R.break_finding(kind, op, "torch", where)
    if "numpy()" in text and "requires grad" in text:
        return R.break_finding("host", ".numpy() / a NumPy function", "torch", site)
    if "modified by an inplace operation" in text:
        op, where = _inplace_site(text, rec, site)
        return Finding(
            R.INPLACE,
            "error",
            f"`{op}` changed a tensor in place that autograd had saved for the backward pass",
            "use the out-of-place form (e.g. `x = x * 2` instead of `x.mul_(2)` / `x *= 2`, "
            "`torch.where(mask, value, x)` instead of `x[mask] = value`), or .clone() the tensor "
            "before changing it",
            where[0],
            where[1],
        )
    if "leaf Variable" in text and "in-place" in text:
        return Finding(
            R.INPLACE,
            "error",
            f"in-place change of the prediction itself: {text.splitlines()[0]}",
            "use the out-of-place form (x = x * 2) or work on a .clone()",
            site[0],
            site[1],
        )
    shape_words = (
        "must match the size",
        "size mismatch",
        "shapes cannot be multiplied",
        "broadcast",
        "Expected input batch_size",
        "same size",
        "different size",
    )
    if pred_shape != true_shape and any(w in text for w in shape_words):
        return Finding(
            R.BROADCAST,
            "error",
            f"prediction {pred_shape} and target {true_shape} have shapes that cannot be combined: "
            f"{text.splitlines()[0]}",
            "give the prediction and the target the same shape (check the model's output layer "
            "size and the target's layout)",
            site[0],
            site[1],
        )
    return None


def _scalar(loss: torch.Tensor) -> torch.Tensor:
    return loss if loss.numel() == 1 else loss.sum()


def check_function(cls: type[torch.autograd.Function], args: tuple, kwargs: dict):
    """Compare the backward of ``cls`` with central differences of its forward, at its inputs from the
    pass (float64 when the forward runs in it); a :class:`~losses.doctor._gradcheck.Verdict` or ``None``."""
    wrt = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad and a.is_floating_point()]
    weights: dict[int, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(0)

    def call(xs, dtype, grad):
        new = [a.detach().to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        leaves = [torch.from_numpy(np.array(x)).to(dtype).requires_grad_(grad) for x in xs]
        for i, leaf in zip(wrt, leaves):
            new[i] = leaf
        with torch.set_grad_enabled(grad):
            out = cls.apply(*new, **kwargs)
        total: torch.Tensor | float = 0
        for k, o in enumerate(t for t in _tensors(out) if t.is_floating_point()):
            if k not in weights:  # fixed random weights: a scalar that sees every output element
                weights[k] = torch.rand(o.shape, generator=gen, dtype=torch.float64) + 0.5
            total = total + (weights[k] * o.double()).sum()
        return total, leaves

    point = [args[i].detach().double().numpy() for i in wrt]
    dtype = torch.float64
    try:
        probe, _ = call(point, torch.float64, False)
        if not isinstance(probe, torch.Tensor):
            return None
    except Exception:  # the forward does not run in float64: check in its own precision
        dtype = args[wrt[0]].dtype

    def value(xs):
        with torch.no_grad():
            return float(call(xs, dtype, False)[0])

    def gradient(xs):
        total, leaves = call(xs, dtype, True)
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
        return [np.zeros(x.shape) if g is None else g.double().numpy() for g, x in zip(grads, xs)]

    return check_directions(value, gradient, point)


def _wrong_gradient_findings(rec: _Recorder, report: Report) -> None:
    wrong: list[type] = []
    for cls, args, kwargs, _site in rec.functions:
        if cls in wrong:
            continue
        try:
            verdict = check_function(cls, args, kwargs)
        except Exception:  # the check could not run the function again: no evidence either way
            continue
        if verdict is not None and verdict.wrong:
            wrong.append(cls)
            report.add(R.wrong_gradient_finding(cls.__qualname__, R.function_site(cls.backward), verdict))


def _dead_causes(
    rec: _Recorder,
    loss: torch.Tensor,
    leaves: list[torch.Tensor],
    terms_elsewhere: Callable[[], list | None] | None = None,
) -> list[Cause]:
    """The causes of the loss's terms that send no gradient to the prediction, when another term does."""
    terms = rec.summands(loss, loss.numel())
    if len(terms) < 2:
        return []
    dead, carried = [], False
    for term in terms:
        if isinstance(term, _Previous):
            term = term.tensor
        if isinstance(term, HostNumber):
            dead.append(term.cause)
        elif isinstance(term, torch.Tensor) and term.requires_grad:
            grads = torch.autograd.grad(_scalar(term), leaves, retain_graph=True, allow_unused=True)
            if any(g is not None and bool((g != 0).any()) for g in grads):
                carried = True
            elif id(term) in rec.zero:
                dead.append(rec.zero[id(term)])
        elif isinstance(term, torch.Tensor) and id(term) in rec.dead:
            dead.append(rec.dead[id(term)])
    causes = [cause for cause in dead if cause is not None]
    return (
        R.unique_causes([*causes, R.host_number_cause(terms, rec.breaks, causes, terms_elsewhere)]) if carried else []
    )


def diagnose_torch(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    order: str,
    *,
    kwargs: dict | None = None,
    name: str | None = None,
) -> Report:
    return run_loss(loss_fn, y_true, y_pred, order, kwargs=kwargs, name=name)[0]


def run_loss(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    order: str,
    *,
    kwargs: dict | None = None,
    name: str | None = None,
) -> tuple[Report, list[torch.Tensor | None]]:
    """Diagnose ``loss_fn`` at ``y_pred``: a tensor, or a tuple / list / dict of tensors (a model's
    outputs, of which the loss may use a part). Returns the report and the gradient of each output
    tensor in ``tree_flatten`` order (``None`` where the loss does not reach it)."""
    kwargs = kwargs or {}
    R.refresh_library_roots()
    if is_function_class(loss_fn):
        check_function_class(loss_fn)
        function_class: type[torch.autograd.Function] = loss_fn

        def loss_fn(*args, **kw):  # looked up at call time: the pass watches Function.apply
            return function_class.apply(*args, **kw)

        name = name or function_class.__qualname__
    elif isinstance(loss_fn, torch.autograd.Function):
        check_function_class(type(loss_fn))
    outputs, spec = tree_flatten(y_pred)
    outputs = [torch.as_tensor(o) if isinstance(o, np.ndarray) else o for o in outputs]
    y_true = torch.as_tensor(y_true)
    single = isinstance(y_pred, (torch.Tensor, np.ndarray))
    report = Report(
        "torch",
        name or R.callable_name(loss_fn),
        pred_shape=tuple(outputs[0].shape) if single else None,
        true_shape=tuple(y_true.shape),
    )
    floating = [isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex()) for o in outputs]
    if not any(floating):
        dtype = outputs[0].dtype if outputs and isinstance(outputs[0], torch.Tensor) else type(y_pred).__name__
        report.add(
            Finding(
                R.DISCONNECTED,
                "error",
                f"the prediction has dtype {dtype}: integers carry no gradient",
                "pass the model's floating-point output (logits or probabilities)",
            )
        )
        return report, [None] * len(outputs)
    target = y_true.detach().clone()

    def recorded_pass(values: list) -> tuple[_Recorder, Any, list, Exception | None]:
        # A model output is not a leaf; clone() gives the loss the same kind of tensor.
        leaves = [v.detach().clone().requires_grad_(True) if f else v for v, f in zip(values, floating)]
        preds = [leaf.clone() if f else leaf for leaf, f in zip(leaves, floating)]
        rec = _Recorder([p for p in preds if isinstance(p, torch.Tensor)], target)
        pred = tree_unflatten(preds, spec)
        args = (pred, target) if order == "y_pred, y_true" else (target, pred)
        try:
            with rec, warnings.catch_warnings():
                # float()/item() on a tensor that requires grad warns: the report says it better.
                warnings.simplefilter("ignore", UserWarning)
                return rec, loss_fn(*args, **kwargs), leaves, None
        except Exception as error:  # the loss itself raised: explained below if it is about gradients
            return rec, None, leaves, error

    rec, loss, leaves, error = recorded_pass(outputs)
    if error is not None:
        finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
        if finding is None:
            raise error
        report.add(finding)
        return report, [None] * len(outputs)

    def terms_elsewhere() -> list | None:
        moved = [v.detach() * (1 + 1e-3) + 1e-3 if f else v for v, f in zip(outputs, floating)]
        again, value, _, failed = recorded_pass(moved)
        return None if failed or not isinstance(value, torch.Tensor) else again.summands(value, value.numel())

    def zero_elsewhere() -> float | None:
        if not target.is_floating_point():  # labels cannot be moved: probe the prediction instead
            return flat_where_zero()
        moved = target * (1 - 2e-3) + 1e-3  # a 0/1 target stays in [0, 1]
        inputs = [leaf.detach().clone().requires_grad_(True) if f else leaf for leaf, f in zip(leaves, floating)]
        again = tree_unflatten(inputs, spec)
        try:
            value = loss_fn(*((again, moved) if order == "y_pred, y_true" else (moved, again)), **kwargs)
            grads = torch.autograd.grad(_scalar(value), [i for i, f in zip(inputs, floating) if f], allow_unused=True)
        except Exception:  # no second look: keep the finding
            return None
        grad = torch.cat([g.reshape(-1) for g in grads if g is not None])
        return float((grad == 0).double().mean())

    def flat_where_zero() -> float | None:
        if sum(floating) != 1:
            return None
        k = floating.index(True)
        base = outputs[k].detach()

        def loss_at(values: np.ndarray) -> tuple[float, torch.Tensor | None]:
            leaf = torch.as_tensor(values, dtype=base.dtype, device=base.device).requires_grad_(True)
            preds = list(outputs)
            preds[k] = leaf.clone()
            pred = tree_unflatten(preds, spec)
            value = _scalar(loss_fn(*((pred, target) if order == "y_pred, y_true" else (target, pred)), **kwargs))
            (grad,) = torch.autograd.grad(value, leaf, allow_unused=True)
            return float(value.detach()), grad

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                start = base.cpu().double().numpy()
                value, grad = loss_at(start)
                if grad is None:
                    return None
                return R.moving_fraction(
                    grad.detach().cpu().double().numpy(), start, value, lambda moved: loss_at(moved)[0]
                )
        except Exception:  # no second look: keep the finding
            return None

    grads = iter(
        analyse_loss(
            report,
            rec,
            loss,
            [leaf for leaf, f in zip(leaves, floating) if f],
            loss_fn,
            zero_elsewhere,
            terms_elsewhere,
        )
    )
    return report, [next(grads) if f else None for f in floating]


def analyse_loss(
    report: Report,
    rec: _Recorder,
    loss: Any,
    leaves: list[torch.Tensor],
    loss_fn: Callable[..., Any],
    zero_elsewhere: Callable[[], float | None] | None = None,
    terms_elsewhere: Callable[[], list | None] | None = None,
) -> list[torch.Tensor | None]:
    """The findings of one pass: what the recorder saw and what the backward gives. Returns the
    gradient of each of ``leaves`` (``None`` for a leaf the loss does not reach)."""
    for swap in rec.swaps:
        report.add(_swap_finding(*swap))
    for name_, a, b, site in rec.broadcasts:
        report.add(R.broadcast_finding(name_, a, b, "torch", site))
    none: list[torch.Tensor | None] = [None] * len(leaves)

    if isinstance(loss, HostNumber) or not isinstance(loss, torch.Tensor):
        # A container (the loss beside logged values): the return itself is the problem, whatever
        # the logged values went through.
        if rec.breaks and not isinstance(loss, (tuple, list, dict)):
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "torch", site))
        else:
            report.add(
                Finding(
                    R.DISCONNECTED,
                    "error",
                    f"the loss returned a {type(loss).__name__}, not a tensor: it has no gradient",
                    "return a torch tensor computed from the prediction (log other values outside the loss)",
                    *R.definition_site(loss_fn),
                )
            )
        return none
    report.value = float(_scalar(loss).detach()) if loss.numel() else None
    if report.value is not None and not math.isfinite(report.value):
        if not rec.swaps:  # NaN from a log of the target: a consequence of the swap, reported already
            op, site = rec.non_finite[0] if rec.non_finite else ("the loss", R.definition_site(loss_fn))
            report.add(
                Finding(
                    R.NON_FINITE,
                    "error",
                    f"`{op}` produced NaN/Inf in the forward pass (loss = {report.value})",
                    "guard the operation: a zero denominator needs a clamp (x / y.clamp_min(eps)) or "
                    "torch.where(y > 0, x / y.clamp_min(eps), 0); log/sqrt need a positive argument",
                    site[0],
                    site[1],
                )
            )
        return none

    if not loss.requires_grad:
        if rec.breaks:
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "torch", site))
        elif id(loss) in rec.dead:  # e.g. built from the indices of max(dim) / topk / sort
            kind, op, site = rec.dead[id(loss)]
            report.add(R.break_finding(kind, op, "torch", site))
        else:
            site = rec.sites.get(id(loss), R.definition_site(loss_fn))
            report.add(R.break_finding("unused", "", "torch", site))
        return none

    bad_nodes: list[tuple[str | None, int | None]] = []
    zeroing_nodes: list[tuple[str | None, int | None]] = []

    def nan_hook(site):
        def hook(grad_inputs, grad_outputs):
            if bad_nodes:
                return
            outs_ok = all(g is None or _finite(g) for g in grad_outputs)
            ins_ok = all(g is None or _finite(g) for g in grad_inputs)
            if outs_ok and not ins_ok:
                bad_nodes.append(site)

        return hook

    def zero_hook(site):
        # The first node (from the loss backwards) that gets a gradient and sends none on: a clamp,
        # ReLU or where that is saturated for every element.
        def hook(grad_inputs, grad_outputs):
            if zeroing_nodes:
                return
            gets = any(g is not None and bool((g != 0).any()) for g in grad_outputs)
            sends = any(g is not None and bool((g != 0).any()) for g in grad_inputs)
            if gets and not sends:
                zeroing_nodes.append(site)

        return hook

    def backward(hook_for=None):
        handles = []
        if hook_for is not None:  # a second pass, to find which node made the gradient NaN or zero
            for node, site in rec.node_sites.items():
                try:
                    handles.append(node.register_hook(hook_for(site)))
                except Exception:  # some nodes take no hooks; the finding is still reported
                    pass
        try:
            return torch.autograd.grad(_scalar(loss), leaves, allow_unused=True, retain_graph=True)
        finally:
            for h in handles:
                h.remove()

    try:
        grads = backward()
    except RuntimeError as error:
        finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
        if finding is None:
            raise
        report.add(finding)
        return none
    _wrong_gradient_findings(rec, report)
    reached = [g.detach() for g in grads if g is not None]
    if not reached:
        if R.WRONG_GRADIENT in report.codes:  # a hand-written backward that returns None: reported
            return none
        if rec.breaks:
            kind, op, site = rec.first_break()
        else:
            kind, op, site = "unused", "", rec.sites.get(id(loss), R.definition_site(loss_fn))
        report.add(R.break_finding(kind, op, "torch", site))
        return none
    grad = torch.cat([g.reshape(-1) for g in reached])
    finite = bool(torch.isfinite(grad).all())
    report.grad_norm = float(torch.linalg.vector_norm(grad.double())) if finite else float("nan")
    report.zero_fraction = float((grad == 0).double().mean()) if grad.numel() else 1.0
    dead = _dead_causes(rec, loss, leaves, terms_elsewhere) if finite and report.zero_fraction < 1 else []

    def locate_non_finite() -> tuple[str | None, int | None]:
        backward(nan_hook)
        return bad_nodes[0] if bad_nodes else R.definition_site(loss_fn)

    def locate_zero() -> tuple[str | None, int | None] | None:
        backward(zero_hook)
        return zeroing_nodes[0] if zeroing_nodes else None

    R.add_gradient_findings(
        report,
        rec,
        "torch",
        rec.sites.get(id(loss), R.definition_site(loss_fn)),
        finite,
        locate_non_finite,
        dead,
        zero_elsewhere,
        locate_zero,
    )
    return [None if g is None else g.detach() for g in grads]


# ---------------------------------------------------------------------------------------------
# diagnose_model: which parameters get no gradient, grouped by module, and why.


def _groups(names: list[str], all_names: list[str]) -> dict[str, list[str]]:
    """``names`` grouped under the outermost module all of whose parameters are in ``names``."""
    chosen = set(names)
    groups: dict[str, list[str]] = {}
    for n in names:
        parts = n.split(".")[:-1]
        owner = ".".join(parts)
        for depth in range(len(parts) + 1):  # from the model itself down to the parameter's owner
            prefix = ".".join(parts[:depth])
            inside = [m for m in all_names if not prefix or m.startswith(prefix + ".")]
            if inside and all(m in chosen for m in inside):
                owner = prefix
                break
        groups.setdefault(owner, []).append(n)
    return groups


def diagnose_model_torch(model: torch.nn.Module, loss_fn: Callable[..., Any], x: Any, y: Any, order: str) -> Report:
    R.refresh_library_roots()
    call_sites: dict[str, tuple[str | None, int | None]] = {}
    module_names = {id(m): n for n, m in model.named_modules()}
    hooks = []
    for module in model.modules():

        def pre_hook(mod, _inputs):
            call_sites.setdefault(module_names[id(mod)], R.user_site())

        hooks.append(module.register_forward_pre_hook(pre_hook))
    try:
        pred = model(x)
    finally:
        for h in hooks:
            h.remove()
    outputs, spec = tree_flatten(pred)
    loss_report, output_grads = run_loss(
        loss_fn, y, tree_unflatten([o.detach() if isinstance(o, torch.Tensor) else o for o in outputs], spec), order
    )
    report = Report(
        "torch",
        f"{type(model).__name__} + {R.callable_name(loss_fn)}",
        list(loss_report.findings),
        loss_report.value,
        loss_report.grad_norm,
        loss_report.zero_fraction,
        loss_report.pred_shape,
        loss_report.true_shape,
    )
    named = list(model.named_parameters())
    all_names = [n for n, _ in named]
    trainable = [(n, p) for n, p in named if p.requires_grad]
    frozen = [n for n, p in named if not p.requires_grad]
    model_site = R.function_site(type(model).forward)

    # Which parameters each output depends on, and which the loss reaches.
    float_outputs = [(i, o) for i, o in enumerate(outputs) if isinstance(o, torch.Tensor) and o.requires_grad]
    reaches: dict[str, set[int]] = {n: set() for n, _ in trainable}
    for i, o in float_outputs:
        grads = (
            torch.autograd.grad(o.sum(), [p for _, p in trainable], allow_unused=True, retain_graph=True)
            if trainable
            else []
        )
        for (n, _), g in zip(trainable, grads):
            if g is not None:
                reaches[n].add(i)
    args = (pred, y) if order == "y_pred, y_true" else (y, pred)
    try:
        loss = loss_fn(*args)
        from_loss: Sequence[torch.Tensor | None] = (
            torch.autograd.grad(_scalar(loss), [p for _, p in trainable], allow_unused=True)
            if trainable and isinstance(loss, torch.Tensor) and loss.requires_grad
            else [None] * len(trainable)
        )
    except Exception:  # the loss fails on the model's output, or its backward does: its finding says why
        if not loss_report.findings:
            raise
        return report
    used_outputs = {i for i, g in enumerate(output_grads) if g is not None}
    labels = tree_flatten(R.output_labels(pred))[0]
    unused: list[str] = []
    ignored: list[str] = []
    disconnected: list[str] = []
    for (n, _), gradient in zip(trainable, from_loss):
        if gradient is not None:
            continue
        if not reaches[n]:
            unused.append(n)
        elif not reaches[n] & used_outputs and len(outputs) > 1 and used_outputs:
            ignored.append(n)
        else:
            disconnected.append(n)

    for owner, names in _groups(unused, all_names).items():
        module = model.get_submodule(owner) if owner else model
        inside = [n for n in all_names if (not owner or n.startswith(owner + ".")) and n not in names]
        if owner in call_sites and any(reaches.get(n) for n in inside):
            # The layer runs and its other weights reach the output: this one it never uses.
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"`{owner or type(model).__name__}` is used, but its forward() never uses these weights",
                    f"use them in {type(module).__name__}.forward(), or delete them",
                    R.function_site(type(module).forward),
                ),
                merge=False,
            )
        elif owner in call_sites:
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"`{owner}` is called, but its output does not reach the prediction (an unused branch)",
                    f"use the output of `{owner}` on the way to the prediction, or delete the call",
                    call_sites[owner],
                ),
                merge=False,
            )
        else:
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"`{owner or type(model).__name__}` is never called on the way to the output (an unused branch)",
                    f"use `{owner}` in forward(), or delete it (or freeze it with "
                    "requires_grad_(False) if that is intended)",
                    model_site,
                ),
                merge=False,
            )
    if ignored:
        unused_outputs = ", ".join(label for i, label in enumerate(labels) if i not in used_outputs)
        report.add(
            R.variables_finding(
                "warning",
                ignored,
                f"they only feed outputs of the model that the loss does not use ({unused_outputs})",
                "include those outputs in the loss, or freeze the parameters that compute only them",
                R.definition_site(loss_fn),
            ),
            merge=False,
        )
    if disconnected:
        first = loss_report.findings[0] if loss_report.findings else None
        report.add(
            R.variables_finding(
                "error",
                disconnected,
                "the loss is disconnected from the prediction (see the loss's finding)",
                "fix the loss first: it must be computed from the model's output",
                (first.file, first.line) if first else R.definition_site(loss_fn),
            ),
            merge=False,
        )
    for owner, names in _groups(frozen, all_names).items():
        site = call_sites.get(owner) or model_site
        report.add(
            R.variables_finding(
                "warning",
                names,
                f"`{owner or type(model).__name__}` is frozen (requires_grad=False)",
                f"if it should learn, call model.{owner}.requires_grad_(True) (and give its parameters to the optimizer)"
                if owner
                else "call requires_grad_(True) on it if it should learn",
                site,
            ),
            merge=False,
        )
    return report
