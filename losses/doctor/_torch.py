"""The doctor for PyTorch: one forward pass under a ``TorchFunctionMode`` that sees every torch
call, records where the prediction's gradient is lost and on which user line, then one backward."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from losses.doctor import _report as R
from losses.doctor._report import Finding, Report

_HOST = {"item", "tolist", "numpy", "__float__", "__int__", "__index__", "__complex__", "__array__"}
_DETACH = {"detach", "detach_", "data"}
_REBUILD = {"tensor", "as_tensor", "from_numpy", "asarray"}
_COMPARE = {"eq", "ne", "gt", "lt", "ge", "le", "greater", "less", "greater_equal", "less_equal", "not_equal",
            "__eq__", "__ne__", "__gt__", "__lt__", "__ge__", "__le__", "isclose", "logical_and", "logical_or",
            "logical_not", "logical_xor", "__and__", "__or__", "__invert__", "__xor__", "isin"}
_ARGMAX = {"argmax", "argmin", "argsort", "topk", "max", "min", "sort", "searchsorted", "bucketize", "multinomial"}
_ZERO_DERIV = {"round": "round", "floor": "floor", "ceil": "floor", "trunc": "floor", "fix": "floor",
               "sign": "sign", "sgn": "sign", "heaviside": "sign", "floor_divide": "floor", "__floordiv__": "floor",
               "__rfloordiv__": "floor", "round_": "round", "floor_": "floor", "ceil_": "floor", "sign_": "sign"}
# Element-wise losses of torch.nn.functional whose (input, target) must have one shape.
_ELEMENTWISE_LOSSES = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                       "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss", "soft_margin_loss"}
# Functions of torch.nn.functional called as f(input, target, ...).
_INPUT_TARGET = _ELEMENTWISE_LOSSES | {"cross_entropy", "nll_loss", "gaussian_nll_loss", "multilabel_soft_margin_loss",
                                       "hinge_embedding_loss", "multi_margin_loss", "multilabel_margin_loss"}
# New tensors that take only the shape, dtype and device of their input: no value flows through them.
_FACTORY = {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
            "new_zeros", "new_ones", "new_empty", "new_full", "size", "dim", "numel", "shape", "stride",
            "is_floating_point", "element_size", "get_device"}
_INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__idiv__", "__ipow__", "__setitem__",
                   "__ifloordiv__", "__imod__", "__iand__", "__ior__"}


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


class _Recorder(TorchFunctionMode):
    def __init__(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        super().__init__()
        self.keep: list[Any] = [pred, target]  # keeps ids unique while the pass runs
        self.pred_ids = {id(pred)}
        self.target_ids = {id(target)}
        self.sites: dict[int, tuple[str | None, int | None]] = {}
        self.node_sites: dict[Any, tuple[str | None, int | None]] = {}
        self.breaks: list[tuple[str, str, tuple[str | None, int | None]]] = []
        self.zero_ops: list[tuple[str, str, tuple[str | None, int | None]]] = []
        self.broadcasts: list[tuple[str, tuple, tuple, tuple[str | None, int | None]]] = []
        self.swaps: list[tuple[str, tuple[str | None, int | None]]] = []
        self.inplace: list[tuple[str, tuple[str | None, int | None]]] = []
        self.non_finite: list[tuple[str, tuple[str | None, int | None]]] = []
        self.nonfinite_ids = {id(t) for t in (pred, target) if not _finite(t)}

    def first_break(self) -> tuple[str, str, tuple[str | None, int | None]]:
        kind, op, site = self.breaks[0]
        # `if pred.mean() > 0:` breaks at the comparison; the `if` is what the user has to change.
        for other in self.breaks[1:]:
            if other[0] == "branch" and other[2] == site:
                return other
        return kind, op, site

    def _is_pred(self, t: torch.Tensor) -> bool:
        return id(t) in self.pred_ids

    def _is_target(self, t: torch.Tensor) -> bool:
        return id(t) in self.target_ids

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        inputs = _tensors((args, kwargs))
        pred_in = [t for t in inputs if self._is_pred(t)]
        target_only = [t for t in inputs if self._is_target(t) and not self._is_pred(t)]
        connected_in = [t for t in pred_in if t.requires_grad]
        site = None
        if pred_in:
            site = R.user_site()
            if name in _INPUT_TARGET:
                self._check_swap(name, args, kwargs, site)
            if name in _ELEMENTWISE_LOSSES and len(args) >= 2:
                a, b = args[0], args[1]
                if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
                    self.broadcasts.append((name, tuple(a.shape), tuple(b.shape), site))
            if connected_in and (name in _INPLACE_DUNDER or (name.endswith("_") and not name.startswith("__"))
                                 or "out" in kwargs):
                self.inplace.append((name, site))

        out = func(*args, **kwargs)

        outputs = _tensors(out)
        if (not pred_in and not target_only) or name in _FACTORY:
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
        if connected_in:
            # Metadata (shape, size, dim) is not a value of the prediction: only values break the flow.
            if (outputs or name in _HOST or name == "__bool__") and not any(o.requires_grad for o in outputs):
                self.breaks.append((self._kind(name, outputs), name, site))
            elif name in _ZERO_DERIV:
                self.zero_ops.append((_ZERO_DERIV[name], name, site))
        if pred_in and target_only:
            for p in pred_in:
                for t in target_only:
                    if p.numel() > 1 and t.numel() > 1 and _broadcast_grows(p.shape, t.shape):
                        if any(o.shape == torch.broadcast_shapes(p.shape, t.shape) for o in outputs):
                            self.broadcasts.append((name, tuple(p.shape), tuple(t.shape), site))
        bad = [o for o in outputs if not _finite(o)]
        if bad:
            # The first op whose output is NaN/Inf while its inputs were finite: where the NaN is born.
            if not self.non_finite and not any(id(t) in self.nonfinite_ids for t in inputs):
                self.non_finite.append((name, site))
            self.nonfinite_ids.update(id(o) for o in bad)
        return out

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
        if isinstance(second, torch.Tensor) and self._is_pred(second) and not (
                isinstance(first, torch.Tensor) and self._is_pred(first)):
            self.swaps.append((name, site))


def _swap_finding(name: str, site) -> Finding:
    return Finding(
        R.SWAPPED_ARGUMENTS, "error",
        f"torch.nn.functional.{name} takes (input, target), but the prediction was passed as the target "
        "and a target-derived tensor as the input",
        f"call {name}(prediction, target): PyTorch losses put the prediction first "
        "(Keras losses take (y_true, y_pred))",
        site[0], site[1])


def _broadcast_finding(name: str, a: tuple, b: tuple, site) -> Finding:
    return Finding(
        R.BROADCAST, "error",
        f"`{name}` combines a prediction-derived tensor of shape {a} with a target-derived tensor of shape {b}; "
        "broadcasting silently compares every element with every other",
        "make the shapes equal before combining them (e.g. target.view_as(prediction), prediction.squeeze(-1), "
        "or fix the model's output size)",
        site[0], site[1])


def _exception_finding(error: BaseException, rec: _Recorder, pred_shape, true_shape) -> Finding | None:
    text = str(error)
    site = R.traceback_site(error.__traceback__)
    if rec.swaps:
        return _swap_finding(*rec.swaps[0])
    if "numpy()" in text and "requires grad" in text:
        return R.break_finding("host", ".numpy() / a NumPy function", "torch", site)
    if "modified by an inplace operation" in text:
        op, where = rec.inplace[0] if rec.inplace else ("an in-place operation", site)
        return Finding(R.INPLACE, "error",
                       f"`{op}` changed a tensor in place that autograd had saved for the backward pass",
                       f"use the out-of-place form (e.g. `x = x * 2` instead of `x.mul_(2)` / `x *= 2`), "
                       "or .clone() the tensor before changing it",
                       where[0], where[1])
    if "leaf Variable" in text and "in-place" in text:
        return Finding(R.INPLACE, "error", f"in-place change of the prediction itself: {text.splitlines()[0]}",
                       "use the out-of-place form (x = x * 2) or work on a .clone()", site[0], site[1])
    shape_words = ("must match the size", "size mismatch", "shapes cannot be multiplied", "broadcast",
                   "Expected input batch_size", "same size", "different size")
    if any(w in text for w in shape_words):
        return Finding(R.BROADCAST, "error",
                       f"prediction {pred_shape} and target {true_shape} have shapes that cannot be combined: "
                       f"{text.splitlines()[0]}",
                       "give the prediction and the target the same shape (check the model's output layer "
                       "size and the target's layout)", site[0], site[1])
    return None


def _scalar(loss: torch.Tensor) -> torch.Tensor:
    return loss if loss.numel() == 1 else loss.sum()


def diagnose_torch(loss_fn: Callable[..., Any], y_true: Any, y_pred: Any, order: str, *,
                   kwargs: dict | None = None, name: str | None = None) -> Report:
    kwargs = kwargs or {}
    R.refresh_library_roots()
    y_pred = torch.as_tensor(y_pred)
    y_true = torch.as_tensor(y_true)
    report = Report("torch", name or R.callable_name(loss_fn), pred_shape=tuple(y_pred.shape),
                    true_shape=tuple(y_true.shape))
    if not (y_pred.is_floating_point() or y_pred.is_complex()):
        report.add(Finding(R.DISCONNECTED, "error", f"the prediction has dtype {y_pred.dtype}: integers carry no gradient",
                           "pass the model's floating-point output (logits or probabilities)"))
        return report
    leaf = y_pred.detach().clone().requires_grad_(True)
    # A model output is not a leaf; clone() gives the loss the same kind of tensor.
    pred = leaf.clone()
    target = y_true.detach().clone()
    rec = _Recorder(pred, target)
    args = (pred, target) if order == "y_pred, y_true" else (target, pred)
    try:
        with rec, warnings.catch_warnings():
            # float()/item() on a tensor that requires grad warns: the report says it better.
            warnings.simplefilter("ignore", UserWarning)
            loss = loss_fn(*args, **kwargs)
    except Exception as error:  # the loss itself raised: explain it if it is a gradient-flow error
        finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
        if finding is None:
            raise
        report.add(finding)
        return report
    for swap in rec.swaps:
        report.add(_swap_finding(*swap))
    for name_, a, b, site in rec.broadcasts:
        report.add(_broadcast_finding(name_, a, b, site))

    if not isinstance(loss, torch.Tensor):
        if rec.breaks:
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "torch", site))
        else:
            report.add(Finding(R.DISCONNECTED, "error",
                               f"the loss returned a {type(loss).__name__}, not a tensor: it has no gradient",
                               "return a torch tensor computed from the prediction", *R.definition_site(loss_fn)))
        return report
    report.value = float(_scalar(loss).detach()) if loss.numel() else None
    if report.value is not None and not math.isfinite(report.value):
        op, site = rec.non_finite[0] if rec.non_finite else ("the loss", R.definition_site(loss_fn))
        report.add(Finding(R.NON_FINITE, "error", f"`{op}` produced NaN/Inf in the forward pass (loss = {report.value})",
                           "guard the operation: a zero denominator needs a clamp (x / y.clamp_min(eps)) or "
                           "torch.where(y > 0, x / y.clamp_min(eps), 0); log/sqrt need a positive argument",
                           site[0], site[1]))
        return report

    if not loss.requires_grad:
        if rec.breaks:
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "torch", site))
        else:
            site = rec.sites.get(id(loss), R.definition_site(loss_fn))
            report.add(R.break_finding("unused", "", "torch", site))
        return report

    bad_nodes: list[tuple[str | None, int | None]] = []

    def hook_for(site):
        def hook(grad_inputs, grad_outputs):
            if bad_nodes:
                return
            outs_ok = all(g is None or _finite(g) for g in grad_outputs)
            ins_ok = all(g is None or _finite(g) for g in grad_inputs)
            if outs_ok and not ins_ok:
                bad_nodes.append(site)
        return hook

    def backward(locate_nan: bool):
        handles = []
        if locate_nan:  # second pass, only when the gradient has NaN/Inf: which node made it
            for node, site in rec.node_sites.items():
                try:
                    handles.append(node.register_hook(hook_for(site)))
                except Exception:  # some nodes take no hooks; the NaN is still reported
                    pass
        try:
            return torch.autograd.grad(_scalar(loss), leaf, allow_unused=True, retain_graph=not locate_nan)[0]
        finally:
            for h in handles:
                h.remove()

    try:
        grad = backward(locate_nan=False)
    except RuntimeError as error:
        finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
        if finding is None:
            raise
        report.add(finding)
        return report
    if grad is None:
        if rec.breaks:
            kind, op, site = rec.first_break()
        else:
            kind, op, site = "unused", "", rec.sites.get(id(loss), R.definition_site(loss_fn))
        report.add(R.break_finding(kind, op, "torch", site))
        return report
    grad = grad.detach()
    finite = bool(torch.isfinite(grad).all())
    report.grad_norm = float(torch.linalg.vector_norm(grad.double())) if finite else float("nan")
    report.zero_fraction = float((grad == 0).double().mean()) if grad.numel() else 1.0

    def locate_non_finite() -> tuple[str | None, int | None]:
        backward(locate_nan=True)
        return bad_nodes[0] if bad_nodes else R.definition_site(loss_fn)

    R.add_gradient_findings(report, rec, "torch", rec.sites.get(id(loss), R.definition_site(loss_fn)), finite,
                            locate_non_finite)
    return report


def diagnose_model_torch(model: torch.nn.Module, loss_fn: Callable[..., Any], x: Any, y: Any, order: str) -> Report:
    R.refresh_library_roots()
    call_sites: dict[int, tuple[str | None, int | None]] = {}
    hooks = []
    for module in model.modules():
        def pre_hook(mod, _inputs):
            call_sites.setdefault(id(mod), R.user_site())
        hooks.append(module.register_forward_pre_hook(pre_hook))
    try:
        pred = model(x)
    finally:
        for h in hooks:
            h.remove()
    loss_report = diagnose_torch(loss_fn, y, pred.detach(), order)
    report = Report("torch", f"{type(model).__name__} + {R.callable_name(loss_fn)}", list(loss_report.findings),
                    loss_report.value, loss_report.grad_norm, loss_report.zero_fraction,
                    loss_report.pred_shape, loss_report.true_shape)
    args = (pred, y) if order == "y_pred, y_true" else (y, pred)
    try:
        loss = loss_fn(*args)
    except Exception:  # the loss fails on the model's output: its finding above says why
        return report
    owners = {}
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            owners[id(param)] = (mod_name, module)
    named = list(model.named_parameters())
    trainable = [(n, p) for n, p in named if p.requires_grad]
    frozen = [(n, p) for n, p in named if not p.requires_grad]
    reaches_pred = torch.autograd.grad(pred.sum(), [p for _, p in trainable], allow_unused=True, retain_graph=True) \
        if trainable and pred.requires_grad else [None] * len(trainable)
    if isinstance(loss, torch.Tensor) and loss.requires_grad and trainable:
        try:
            from_loss = torch.autograd.grad(_scalar(loss), [p for _, p in trainable], allow_unused=True)
        except RuntimeError:  # an in-place change broke the backward pass: reported by the loss's finding
            return report
    else:
        from_loss = [None] * len(trainable)
    unused, disconnected = [], []
    for (n, p), g_pred, g_loss in zip(trainable, reaches_pred, from_loss):
        if g_loss is not None:
            continue
        (unused if g_pred is None else disconnected).append(n)
    unused_by_module: dict[int, list[str]] = {}
    for n in unused:
        unused_by_module.setdefault(id(owners.get(id(dict(named)[n]), ("", model))[1]), []).append(n)
    for module_id, names in unused_by_module.items():
        mod_name, module = next((v for v in owners.values() if id(v[1]) == module_id), ("", model))
        # Never called: point at forward(), where the call is missing.
        site = call_sites.get(module_id) if module is not model else None
        site = R.definition_site(model) if site is None or module_id not in call_sites else site
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "error",
                           f"{', '.join(names)} get no gradient: the prediction does not depend on them "
                           f"(`{mod_name or type(module).__name__}` is not used on the way to the output: an "
                           "unused branch)",
                           f"use `{mod_name}` in forward(), or delete it (or freeze it with requires_grad_(False) "
                           "if that is intended)", site[0], site[1]))
    if disconnected:
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "error",
                           f"{len(disconnected)} trainable parameters ({', '.join(disconnected[:4])}"
                           f"{', ...' if len(disconnected) > 4 else ''}) get no gradient because the loss is "
                           "disconnected from the prediction (see the loss's finding)",
                           "fix the loss first: it must be computed from the model's output",
                           *(loss_report.findings[0].file, loss_report.findings[0].line)
                           if loss_report.findings else R.definition_site(loss_fn)))
    by_module: dict[int, list[str]] = {}
    for n, p in frozen:
        by_module.setdefault(id(owners.get(id(p), ("", model))[1]), []).append(n)
    for module_id, names in by_module.items():
        mod_name, module = next(v for v in owners.values() if id(v[1]) == module_id)
        site = call_sites.get(module_id, R.definition_site(model))
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "warning",
                           f"{', '.join(names)} get no gradient: `{mod_name or type(module).__name__}` is frozen "
                           "(requires_grad=False)",
                           f"if it should learn, call model.{mod_name}.requires_grad_(True) (and give its parameters "
                           "to the optimizer)" if mod_name else "call requires_grad_(True) on it if it should learn",
                           site[0], site[1]))
    return report
