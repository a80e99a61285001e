"""Framework-free pieces of the doctor: finding codes, the report and its renderings, the
argument order of a loss, and the attribution of an operation to the user's source line."""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np

# Where a finding points: (file, line), either unknown.
Site = tuple[str | None, int | None]
# What cut the gradient: (kind of break, the operation, where), as the framework recorders note it.
Cause = tuple[str, str, Site]

# The public contract: these codes never change meaning.
DISCONNECTED = "DISCONNECTED"
ZERO_GRADIENT = "ZERO_GRADIENT"
NON_FINITE = "NON_FINITE"
BROADCAST = "BROADCAST"
SWAPPED_ARGUMENTS = "SWAPPED_ARGUMENTS"
INPLACE = "INPLACE"
NO_GRADIENT_VARIABLES = "NO_GRADIENT_VARIABLES"
WRONG_GRADIENT = "WRONG_GRADIENT"
DEAD_TERM = "DEAD_TERM"

CODES = {
    DISCONNECTED: "the loss does not depend on the prediction at all",
    ZERO_GRADIENT: "connected, but the gradient is zero almost everywhere",
    NON_FINITE: "NaN or Inf in the loss or its gradient",
    BROADCAST: "prediction and target shapes differ and were broadcast",
    SWAPPED_ARGUMENTS: "the tensor that needs a gradient sits in the target's place",
    INPLACE: "an in-place change to a tensor autograd needs",
    NO_GRADIENT_VARIABLES: "trainable variables that receive no gradient",
    WRONG_GRADIENT: "a hand-written backward disagrees with finite differences",
    DEAD_TERM: "a term of the loss contributes no gradient while another term does",
}
"""Every finding code with a one-line description: the stable contract of ``Finding.code``.

Read-only by convention; ``CODES["ZERO_GRADIENT"]`` is ``"connected, but the gradient is zero
almost everywhere"``.
"""

SEVERITIES = ("error", "warning", "info")

ORDERS = ("y_true, y_pred", "y_pred, y_true")

# Parameter names that say which argument is which (checked in this order).
PRED_NAMES = (
    "y_pred",
    "pred",
    "preds",
    "prediction",
    "predictions",
    "input",
    "inputs",
    "logits",
    "output",
    "outputs",
    "y_hat",
    "yhat",
    "probs",
    "scores",
)
TRUE_NAMES = ("y_true", "true", "target", "targets", "label", "labels", "y", "gt", "ground_truth", "mask")


@dataclass(frozen=True)
class Finding:
    """One diagnosis: a stable ``code``, its ``severity``, what happened, where, and how to fix it.

    ``file`` and ``line`` point at the user's source line that caused it (``None`` when no line
    of the user's code is involved, for example a loss that never looks at the prediction).
    ``location`` is ``"file:line"`` (or ``None``) and ``to_dict()`` the finding as a dict, with it.

    Args:
        code: one of the keys of :data:`CODES`; never changes meaning.
        severity: ``"error"`` (the loss does not train as written), ``"warning"`` or ``"info"``.
        message: what happened, naming the operation or the variables.
        fix: how to fix it.
        file: the user's source file that caused it, or None.
        line: the line in ``file``, or None.

    Example:

    >>> import torch
    >>> from losses.doctor import diagnose
    >>> finding = diagnose(lambda y_pred, y_true: ((torch.sign(y_pred) - y_true) ** 2).mean(),
    ...                    torch.rand(4, 3), torch.rand(4, 3)).findings[0]
    >>> finding.code, finding.severity, finding.line is not None
    ('ZERO_GRADIENT', 'error', True)
    """

    code: str
    severity: str
    message: str
    fix: str
    file: str | None = None
    line: int | None = None

    @property
    def location(self) -> str | None:
        if self.file is None:
            return None
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["location"] = self.location
        return data


@dataclass
class Report:
    """What :func:`losses.doctor.diagnose` found.

    ``grad_norm`` is the L2 norm of d loss / d prediction and ``zero_fraction`` the fraction of its
    elements that are exactly zero (both ``None`` when no gradient reached the prediction).
    ``ok`` is True when no finding has severity ``"error"``; ``codes`` lists the findings' codes.
    ``to_text()`` renders the report for a terminal, ``to_dict()`` and ``to_json()`` (strict JSON:
    a non-finite number becomes the string ``"nan"``, ``"inf"`` or ``"-inf"``) for tools.

    Args:
        framework: ``"torch"``, ``"tensorflow"`` or ``"jax"``.
        loss: the name of the loss diagnosed.
        findings: the :class:`Finding` objects, in the order found.
        value: the loss's value, or None.
        grad_norm: the L2 norm of d loss / d prediction, or None.
        zero_fraction: the fraction of the gradient's elements that are exactly zero, or None.
        pred_shape: the prediction's shape.
        true_shape: the target's shape.

    Example:

    >>> import json, torch
    >>> from losses.doctor import diagnose
    >>> report = diagnose(lambda y_pred, y_true: ((y_pred - y_true) ** 2).mean(),
    ...                   torch.zeros(2, 3), torch.ones(2, 3))
    >>> report.ok, report.codes, round(report.grad_norm, 4), report.zero_fraction
    (True, [], 0.8165, 0.0)
    >>> json.loads(report.to_json())["value"]
    1.0
    """

    framework: str
    loss: str
    findings: list[Finding] = field(default_factory=list)
    value: float | None = None
    grad_norm: float | None = None
    zero_fraction: float | None = None
    pred_shape: tuple[int, ...] | None = None
    true_shape: tuple[int, ...] | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def add(self, finding: Finding, merge: bool = True) -> None:
        """Add ``finding`` unless (with ``merge``) one with its code and line is there; a line inside a
        framework or this package is not the user's, and is dropped."""
        if finding.file is not None and is_library_file(finding.file):
            finding = replace(finding, file=None, line=None)
        key = (finding.code, finding.file, finding.line)
        if not merge or all((f.code, f.file, f.line) != key for f in self.findings):
            self.findings.append(finding)

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "loss": self.loss,
            "ok": self.ok,
            "value": self.value,
            "grad_norm": self.grad_norm,
            "zero_fraction": self.zero_fraction,
            "pred_shape": list(self.pred_shape) if self.pred_shape is not None else None,
            "true_shape": list(self.true_shape) if self.true_shape is not None else None,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON: a NaN or infinite number is written as the string "nan", "inf" or "-inf"."""
        data = self.to_dict()
        for key in ("value", "grad_norm", "zero_fraction"):
            if isinstance(data[key], float) and not math.isfinite(data[key]):
                data[key] = str(data[key])
        return json.dumps(data, indent=indent, allow_nan=False)

    def to_text(self) -> str:
        shapes = f"y_pred {self.pred_shape}, y_true {self.true_shape}"
        lines = [f"losses doctor: {self.loss} ({self.framework}; {shapes})"]
        value = "n/a" if self.value is None else f"{self.value:.6g}"
        norm = "no gradient" if self.grad_norm is None else f"{self.grad_norm:.6g}"
        zeros = "n/a" if self.zero_fraction is None else f"{100 * self.zero_fraction:.1f}%"
        lines.append(f"  loss {value}; |d loss / d y_pred| {norm}; zeros in the gradient {zeros}")
        if not self.findings:
            lines.append("  OK: the gradient reaches the prediction, is finite and not zero.")
        for f in self.findings:
            where = f.location or "(no line of your code)"
            lines.append(f"  {f.severity.upper()} {f.code} at {where}")
            lines.append(f"    {f.message}")
            lines.append(f"    fix: {f.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", None) or repr(fn)
    return str(name)


def parameter_names(fn: Callable[..., Any]) -> list[str]:
    target = fn
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        # nn.Module: forward; keras Loss: call; any other callable: __call__.
        for attr in ("forward", "call"):
            if callable(getattr(fn, attr, None)):
                target = getattr(fn, attr)
                break
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    # ctx: the first parameter of a torch.autograd.Function's forward.
    return [p.name for p in params if p.kind in kinds and p.name not in ("self", "cls", "ctx")]


def _role(name: str) -> str | None:
    low = name.lower()
    if low in PRED_NAMES or "pred" in low or "logit" in low:
        return "pred"
    if low in TRUE_NAMES or "true" in low or "target" in low or "label" in low:
        return "true"
    return None


def infer_order(fn: Callable[..., Any], framework: str, order: str | None = None) -> tuple[str, bool]:
    """The argument order of ``fn`` and whether it was read from its parameter names.

    ``order`` overrides the inference. Without telling names, Keras/TensorFlow losses are taken
    as ``(y_true, y_pred)`` and PyTorch losses as ``(input, target)``, each ecosystem's convention.
    """
    if order is not None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(repr(o) for o in ORDERS)}; got {order!r}")
        return order, False
    roles = [_role(n) for n in parameter_names(fn)[:2]]
    if len(roles) == 2 and roles[0] != roles[1]:
        if roles[0] == "pred" or roles[1] == "true":
            return "y_pred, y_true", True
        if roles[0] == "true" or roles[1] == "pred":
            return "y_true, y_pred", True
    return ("y_pred, y_true" if framework == "torch" else "y_true, y_pred"), False


# ---------------------------------------------------------------------------------------------
# Attribution: the first stack frame that belongs to the user, not to a framework or this package.

_LIBRARY_ROOTS: list[str] = []
_STDLIB = os.path.dirname(os.path.abspath(os.__file__))
_DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_demo.py")


def _library_roots() -> list[str]:
    roots = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # the losses package
    for name in (
        "torch",
        "tensorflow",
        "keras",
        "numpy",
        "jax",
        "jaxlib",
        "tf_keras",
        "absl",
        "typing_extensions",
        "optree",
        "ml_dtypes",
    ):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            roots.add(os.path.dirname(os.path.abspath(path)))
    roots.add(_STDLIB)
    return sorted(roots)


def is_library_file(filename: str) -> bool:
    if filename.startswith("<"):
        # Import machinery and generated code; "<stdin>", "<string>", notebook cells are the user's.
        return filename.startswith("<frozen") or "eval_with_key" in filename
    if os.path.basename(filename).startswith("__autograph_generated_file"):
        return True  # TensorFlow's rewrite of a function in a temporary file: its source is the user's elsewhere
    path = os.path.abspath(filename)
    if path == _DEMO:
        return False  # the demo's losses stand for a user's
    roots = _LIBRARY_ROOTS or _library_roots()
    if not _LIBRARY_ROOTS:
        _LIBRARY_ROOTS.extend(roots)
    for root in roots:
        if path == root or path.startswith(root + os.sep):
            # A system Python keeps site-packages inside the standard library's folder.
            if root == _STDLIB and ("site-packages" in path or "dist-packages" in path):
                continue
            return True
    return False


def refresh_library_roots() -> None:
    """Recompute the library roots (after a framework was imported)."""
    _LIBRARY_ROOTS.clear()
    _LIBRARY_ROOTS.extend(_library_roots())


def user_site(frame: Any = None) -> Site:
    """``(file, line)`` of the innermost frame outside the frameworks and this package."""
    frame = frame if frame is not None else sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_library_file(filename):
            return filename, frame.f_lineno
        frame = frame.f_back
    return None, None


def traceback_site(tb: Any) -> Site:
    """``(file, line)`` of the innermost user frame of a traceback."""
    site: Site = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not is_library_file(filename):
            site = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return site


def definition_site(fn: Callable[..., Any]) -> Site:
    target = fn
    for attr in ("forward", "call"):
        if not inspect.isfunction(fn) and callable(getattr(fn, attr, None)):
            target = getattr(fn, attr)
            break
    try:
        target = inspect.unwrap(target)
        return inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
    except (TypeError, OSError):
        return None, None


# ---------------------------------------------------------------------------------------------
# What each kind of break means and how to fix it. ``{ns}`` is ``losses.torch`` or ``losses.keras``.

_BREAKS = {
    "detach": (
        DISCONNECTED,
        "`{op}` cuts the prediction out of the graph: nothing after it sends a gradient back",
        "remove `{op}`; if you need a constant copy for a weight, keep a second, connected use of the prediction",
    ),
    "host": (
        DISCONNECTED,
        "`{op}` turns the prediction into a host value (Python number / NumPy array); "
        "what is computed from it is a constant to autodiff",
        "stay in framework ops ({fw} functions instead of NumPy / Python math); for floor/round use "
        "{ns}.soft_floor / {ns}.soft_round",
    ),
    "rebuilt": (
        DISCONNECTED,
        "`{op}` builds a new tensor from values of the prediction; the new tensor has no history",
        "use {stack} on the tensors instead of building a new one from a list",
    ),
    "variable": (
        DISCONNECTED,
        "`{op}` writes values of the prediction into a tf.Variable: what is read back from the variable "
        "is its state, with no gradient to the prediction",
        "compute the loss from the tensor itself; a tf.Variable holds state (weights, counters), not "
        "intermediate values to differentiate through",
    ),
    "callback": (
        DISCONNECTED,
        "`{op}` runs Python on the host values of the prediction: it has no derivative, and "
        "jax.grad raises 'Pure callbacks do not support JVP'",
        "compute it with jnp / keras.ops functions, or give the function a jax.custom_jvp rule",
    ),
    "no_grad": (
        DISCONNECTED,
        "`{op}` runs with gradient recording switched off (inside torch.no_grad() or inference_mode())",
        "compute the loss outside `torch.no_grad()`",
    ),
    "unused": (
        DISCONNECTED,
        "the loss never uses the prediction: its value is built from other tensors only",
        "compute the loss from the prediction argument (check the argument order and which tensor you return)",
    ),
    "branch": (
        ZERO_GRADIENT,
        "a Python `if` on a value computed from the prediction picks a branch; "
        "the choice has no gradient, so the loss is piecewise constant",
        "replace the `if` with a weighted blend: {ns}.soft_step(value - threshold, alpha) * a + (1 - ...) * b, "
        "or {where} when both branches use the prediction",
    ),
    "compare": (
        ZERO_GRADIENT,
        "the comparison `{op}` gives a boolean: its derivative is zero everywhere "
        "(a cast of the result to float does not bring it back)",
        "use a smooth step: {ns}.soft_step(a - b, alpha) instead of (a > b).float()",
    ),
    "argmax": (
        ZERO_GRADIENT,
        "`{op}` returns integer indices: the gradient cannot flow through a choice of index",
        "use the probabilities themselves (softmax, cross-entropy) instead of the arg-max index",
    ),
    "round": (
        ZERO_GRADIENT,
        "`{op}` is piecewise constant: its derivative is zero almost everywhere",
        "use {ns}.soft_round(x, alpha) (or straight_through=True to keep the hard forward value)",
    ),
    "floor": (
        ZERO_GRADIENT,
        "`{op}` is piecewise constant: its derivative is zero almost everywhere",
        "use {ns}.soft_floor(x, alpha) / {ns}.soft_ceil(x, alpha) (or straight_through=True)",
    ),
    "sign": (
        ZERO_GRADIENT,
        "`{op}` is piecewise constant: its derivative is zero almost everywhere",
        "use {ns}.soft_sign(x, alpha) (or straight_through=True to keep the hard forward value)",
    ),
    "cast": (
        ZERO_GRADIENT,
        "`{op}` casts to an integer or boolean type: the gradient stops there",
        "keep the value in floating point; to round, use {ns}.soft_round(x, alpha)",
    ),
    "count": (
        ZERO_GRADIENT,
        "`{op}` counts the elements that fall in each bin: the counts are piecewise constant in the "
        "prediction, their derivative is zero almost everywhere",
        "build a soft histogram: per bin, a sum of smooth weights of the elements "
        "({ns}.soft_step(x - lower_edge, alpha) - {ns}.soft_step(x - upper_edge, alpha), or a Gaussian kernel)",
    ),
    "overwrite": (
        DISCONNECTED,
        "`{op}` overwrites the values computed from the prediction with constants: nothing before it gets a gradient",
        "compute a new tensor instead of overwriting this one ({where} to replace some values)",
    ),
}

_FRAMEWORK_WORDS = {
    "torch": {
        "ns": "losses.torch",
        "fw": "torch",
        "stack": "torch.stack / torch.cat",
        "where": "torch.where",
        "clamp": "x.clamp_min(eps)",
        "clip": "clamp",
    },
    "tensorflow": {
        "ns": "losses.keras",
        "fw": "tf / keras.ops",
        "stack": "tf.stack / tf.concat",
        "where": "tf.where",
        "clamp": "tf.maximum(x, eps)",
        "clip": "clip",
    },
    "jax": {
        "ns": "losses.keras",
        "fw": "keras.ops / jax.numpy",
        "stack": "keras.ops.stack / jnp.stack",
        "where": "keras.ops.where",
        "clamp": "keras.ops.maximum(x, eps)",
        "clip": "clip",
    },
}

_PARTIAL_BREAKS = ("detach", "host", "rebuilt", "no_grad")


def moving_fraction(
    gradient: np.ndarray, prediction: np.ndarray, value: float, loss_at: Callable[[np.ndarray], float], probes: int = 16
) -> float:
    """Of up to ``probes`` elements whose gradient is 0, the fraction whose move changes the loss on
    both sides: 0 when the zeros are where the loss is flat (a hinge's margin met, an ignored
    position, a clipped probability), more when a cut path hides a dependence the loss has.

    ``loss_at(prediction)`` evaluates the loss at a moved prediction (same shape). A change on one
    side only is a kink within reach of the move, not a dependence.
    """
    zeros = np.flatnonzero(np.ravel(gradient) == 0)
    if zeros.size == 0:
        return 0.0
    picked = np.random.default_rng(0).choice(zeros, size=min(probes, zeros.size), replace=False)
    flat = np.ravel(prediction)
    tolerance = 1e-6 * max(1.0, abs(value))
    moved = 0
    for index in picked:
        step = 1e-2 * max(1.0, abs(float(flat[index])))
        changes = []
        for delta in (step, -step):
            shifted = flat.copy()
            shifted[index] += delta
            changes.append(abs(loss_at(shifted.reshape(np.shape(prediction))) - value) > tolerance)
        moved += all(changes)
    return moved / len(picked)


def add_gradient_findings(
    report: Report,
    rec: Any,
    framework: str,
    loss_site: Site,
    finite: bool,
    locate_non_finite: Callable[[], Site],
    dead_causes: Sequence[Cause] = (),
    zero_elsewhere: Callable[[], float | None] | None = None,
    locate_zero: Callable[[], Site | None] | None = None,
) -> None:
    """The findings read off a gradient that exists: non-finite, partly or wholly zero, dead terms.

    ``report.zero_fraction`` is set; ``rec`` is the framework's recorder (``breaks``, ``zero_ops``,
    ``swaps``, ``first_break()``); ``locate_non_finite()`` returns where a NaN/Inf gradient starts;
    ``dead_causes``: the breaks that cut summands of the loss off while another summand carries
    the gradient (each reported as ``DEAD_TERM``, in place of a partial ``DISCONNECTED``);
    ``zero_elsewhere()``: the zero fraction of the gradient at a slightly moved target (``None`` if
    it cannot be had): a partial break is reported only if zeros remain there, not when they come
    from terms that happen to vanish at this target (an element already at its minimum);
    ``locate_zero()``: where a gradient that is zero everywhere dies (a saturated clamp), or ``None``.
    """
    words = _FRAMEWORK_WORDS[framework]
    if finite:
        for cause in dead_causes:
            report.add(dead_term_finding(cause, framework))
    dead_sites = {cause[2] for cause in dead_causes}
    partial = [b for b in rec.breaks if b[0] in _PARTIAL_BREAKS and b[2] not in dead_sites]
    if not finite and rec.swaps:
        return  # NaN from a log of the target: a consequence of the swap, reported already
    zero_fraction = cast(float, report.zero_fraction)  # set by the caller, as said above
    if not finite:
        site = locate_non_finite()
        report.add(
            Finding(
                NON_FINITE,
                "error",
                "the loss is finite but its gradient has NaN/Inf: an operation has an infinite derivative "
                "here (sqrt or pow at 0, log at 0, division by 0 inside a masked branch)",
                f"keep the argument away from the singular point ({words['clamp']}), and mask the input "
                "of the operation, not only its output (the 'double where' pattern)",
                site[0],
                site[1],
            )
        )
    elif 0 < zero_fraction < 1 and partial and (zero_elsewhere is None or zero_elsewhere() != 0):
        # (a break on one path that leaves no gradient at all, e.g. the branch a cond takes, is the
        # error below)
        kind, op, site = partial[0]
        base = break_finding(kind, op, framework, site)
        report.add(
            Finding(
                base.code,
                "warning",
                f"{100 * zero_fraction:.0f}% of the prediction's elements get no gradient; "
                + base.message
                + " on one of the paths",
                base.fix,
                base.file,
                base.line,
            )
        )
    elif report.zero_fraction == 1.0:
        if rec.zero_ops:
            kind, op, site = rec.zero_ops[0]
            report.add(break_finding(kind, op, framework, site))
        elif rec.breaks:
            kind, op, site = rec.first_break()
            report.add(break_finding(kind, op, framework, site))
        elif WRONG_GRADIENT not in report.codes:  # else a hand-written backward that returns zeros, reported
            site = (locate_zero() if locate_zero is not None else None) or loss_site
            report.add(
                Finding(
                    ZERO_GRADIENT,
                    "warning",
                    f"the gradient is exactly zero at these inputs (a saturated {words['clip']} or ReLU, "
                    "a margin already met, or the loss at its minimum)",
                    f"check with other inputs; if it stays zero, look for {words['clip']}/relu/max that "
                    "cut the prediction off",
                    site[0],
                    site[1],
                )
            )


# The calls of one hand-written gradient that are checked: a rule can be right for the inputs of its
# first call and wrong for those of a later one (another sign, another branch).
CALLS_CHECKED = 4


class BreakLog:
    """What a framework's recorder shares: the breaks it saw, in order."""

    breaks: list[Cause]

    def first_break(self) -> Cause:
        kind, op, site = self.breaks[0]
        # `if pred.mean() > 0:` breaks at the comparison; the `if` is what the user has to change.
        for other in self.breaks[1:]:
            if other[0] == "branch" and other[2] == site:
                return other
        # keras.ops.argmax on TensorFlow compares its input with 0 before tf.argmax (its -0.0
        # workaround): on the same line, the argmax is what the user called.
        if kind == "compare":
            for other in self.breaks[1:]:
                if other[0] == "argmax" and other[2] == site:
                    return other
        return kind, op, site


_RESHAPE = {
    "torch": "target.view_as(prediction), prediction.squeeze(-1)",
    "tensorflow": "tf.reshape(y_true, tf.shape(y_pred)), tf.squeeze(y_pred, -1)",
    "jax": "keras.ops.reshape(y_true, y_pred.shape), keras.ops.squeeze(y_pred, -1)",
}


def broadcast_finding(op: str, a: tuple[int, ...], b: tuple[int, ...], framework: str, site: Site) -> Finding:
    return Finding(
        BROADCAST,
        "error",
        f"`{op}` combines a prediction-derived tensor of shape {a} with a target-derived tensor of shape "
        f"{b}; broadcasting silently compares every element with every other",
        f"make the shapes equal before combining them (e.g. {_RESHAPE[framework]}, or fix the model's "
        "output size); for pairwise terms on purpose, give the axes explicitly (a[:, None] - b[None])",
        site[0],
        site[1],
    )


def unique_causes(causes: Sequence[Cause | None]) -> list[Cause]:
    """One cause per line, in order."""
    unique: list[Cause] = []
    for cause in causes:
        if cause is not None and all(cause[2] != u[2] for u in unique):
            unique.append(cause)
    return unique


def variables_finding(severity: str, names: list[str], message: str, fix: str, site: Site) -> Finding:
    """``NO_GRADIENT_VARIABLES`` for a group of variables of a model."""
    listed = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
    return Finding(NO_GRADIENT_VARIABLES, severity, f"{listed} get no gradient: {message}", fix, site[0], site[1])


def break_finding(kind: str, op: str, framework: str, site: Site) -> Finding:
    code, message, fix = _BREAKS[kind]
    words = dict(_FRAMEWORK_WORDS[framework], op=op)
    return Finding(code, "error", message.format(**words), fix.format(**words), site[0], site[1])


# ---------------------------------------------------------------------------------------------
# Hand-written gradients and dead terms.


def function_site(fn: Any) -> Site:
    """``(file, line)`` of the ``def`` of a Python function (past its decorators), else ``(None, None)``."""
    code = getattr(inspect.unwrap(fn) if callable(fn) else fn, "__code__", None)
    if code is None:
        return None, None
    import linecache

    line = code.co_firstlineno
    if code.co_name == "<lambda>":
        return code.co_filename, line
    for offset in range(20):  # decorators come first; the def follows within a few lines
        if linecache.getline(code.co_filename, line + offset).lstrip().startswith(("def ", "async def ")):
            return code.co_filename, line + offset
    return code.co_filename, line


class HostNumber(float):
    """A Python number read off the prediction (``.item()``, ``float()``): a constant to autodiff.

    It behaves as the float it is; arithmetic on it keeps the mark, so that a term of the loss
    built from it can be named with the line where it left the graph.
    """

    cause: Cause | None = None
    # Keras reads `getattr(x, "dtype", type(x))`: the class float makes it a weakly typed Python float.
    dtype = float

    def __new__(cls, value: float, cause: Any) -> HostNumber:
        number = super().__new__(cls, value)
        number.cause = cause
        return number

    def _keep(self, result: Any) -> Any:
        return HostNumber(result, self.cause) if isinstance(result, float) else result

    def __add__(self, other: float) -> float:
        return self._keep(float.__add__(self, other))  # noqa: E704

    def __radd__(self, other: float) -> float:
        return self._keep(float.__radd__(self, other))  # noqa: E704

    def __sub__(self, other: float) -> float:
        return self._keep(float.__sub__(self, other))  # noqa: E704

    def __rsub__(self, other: float) -> float:
        return self._keep(float.__rsub__(self, other))  # noqa: E704

    def __mul__(self, other: float) -> float:
        return self._keep(float.__mul__(self, other))  # noqa: E704

    def __rmul__(self, other: float) -> float:
        return self._keep(float.__rmul__(self, other))  # noqa: E704

    def __truediv__(self, other: float) -> float:
        return self._keep(float.__truediv__(self, other))  # noqa: E704

    def __rtruediv__(self, other: float) -> float:
        return self._keep(float.__rtruediv__(self, other))  # noqa: E704

    def __pow__(self, other: float, modulo: None = None, /) -> Any:
        return self._keep(float.__pow__(self, other))  # noqa: E704

    def __rpow__(self, other: float, modulo: None = None, /) -> Any:
        return self._keep(float.__rpow__(self, other))  # noqa: E704

    def __neg__(self) -> float:
        return self._keep(float.__neg__(self))  # noqa: E704

    def __abs__(self) -> float:
        return self._keep(float.__abs__(self))  # noqa: E704


@dataclass(frozen=True)
class Constant:
    """A summand of the loss that is a number, not computed from a tensor the pass followed."""

    value: float | None


def host_number_cause(
    terms: Sequence[Any],
    breaks: Sequence[Cause],
    dead: Sequence[Cause],
    terms_elsewhere: Callable[[], Sequence[Any] | None] | None,
) -> Cause | None:
    """The cause of a constant summand computed from the prediction. Python's float() returns a plain
    float, so a number read off the prediction with float(t) loses its mark on the way; a constant
    summand whose value moves with the prediction (``terms_elsewhere()``: the summands at a moved
    prediction), next to such a read, is taken to be it (not the 1 of ``1 - dice``)."""
    read = next(
        (b for b in breaks if b[0] == "host" and b[1] in ("__float__", "float()") and all(b[2] != d[2] for d in dead)),
        None,
    )
    if read is None or terms_elsewhere is None or not any(isinstance(t, Constant) for t in terms):
        return None
    moved = terms_elsewhere()
    if moved is None or len(moved) != len(terms):
        return None
    changed = any(
        isinstance(t, Constant) and isinstance(m, Constant) and t.value != m.value for t, m in zip(terms, moved)
    )
    return read if changed else None


def hidden_non_finite_finding(op: str, site: Site, check: str, check_site: Site, zero_fraction: float) -> Finding:
    """The finding for a NaN/Inf of the forward pass that the loss replaces (nan_to_num, where(is_nan))
    where the gradient through the replaced elements is zero: they never move back."""
    return Finding(
        NON_FINITE,
        "error" if zero_fraction == 1 else "warning",
        f"`{op}` produces NaN/Inf in the forward pass, which the loss replaces after `{check}` (line "
        f"{check_site[1]}) finds it (nan_to_num, where(is_nan(x), 0, x)); the loss is finite, but the replaced "
        f"elements send no gradient back: {100 * zero_fraction:.0f}% of the prediction's elements get none "
        "and never move back to where the operation is defined",
        "keep the argument inside the operation's domain before it (a clamp, divide_no_nan) instead of "
        "replacing the NaN after it",
        site[0],
        site[1],
    )


def dead_term_finding(cause: Cause, framework: str) -> Finding:
    """The finding for a summand of the loss that contributes no gradient while another one does."""
    kind, op, site = cause
    base = break_finding(kind, op, framework, site)
    return Finding(
        DEAD_TERM,
        "warning",
        "this term of the loss contributes no gradient (another term carries it, so training runs "
        "and the term silently does nothing): " + base.message,
        base.fix,
        site[0],
        site[1],
    )


def wrong_gradient_finding(name: str, site: Site, verdict: Any) -> Finding:
    """The finding for a hand-written backward that disagrees with finite differences."""
    if verdict.factor == 0:
        what = "it returns a zero gradient"
        why = "the backward returns zeros or None for the prediction instead of its derivative"
    elif verdict.factor is not None and abs(verdict.factor + 1) < 1e-2:
        what = "sign flipped"
        why = "the backward returns the negative of the gradient (e.g. y_true - y_pred for y_pred - y_true)"
    elif verdict.factor is not None:
        size = abs(verdict.factor)
        times = f"{size:.0f}" if abs(size - round(size)) < 1e-2 * size else f"{size:.3g}"
        if size < 1:
            inverse = 1 / size
            times = f"{inverse:.0f}" if abs(inverse - round(inverse)) < 1e-2 * inverse else f"{inverse:.3g}"
        what = f"{times}× too {'large' if size > 1 else 'small'}" + (", sign flipped" if verdict.factor < 0 else "")
        why = (
            "a constant factor: a missing or extra 1/N of a mean (the number of elements), a scale or a "
            "factor 2 of a square"
        )
    else:
        what, why = (
            "not a constant factor",
            (
                "a wrong formula: a missing chain-rule factor (the derivative of an "
                "inner function), a wrong branch, or a gradient for the wrong input"
            ),
        )
    return Finding(
        WRONG_GRADIENT,
        "error",
        f"the hand-written backward of `{name}` disagrees with central finite differences in float64: "
        f"{what} (relative error {verdict.error:.3g} along a random direction)",
        f"check the backward against the forward: {why}; losses.testing.check_gradient compares them "
        "element by element",
        site[0],
        site[1],
    )


# Keras functions that take the target first, by the names of their first two parameters.
KERAS_LOSSES = {
    "mean_squared_error",
    "mean_absolute_error",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "huber",
    "log_cosh",
    "kl_divergence",
    "poisson",
    "hinge",
    "squared_hinge",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "cosine_similarity",
    "categorical_hinge",
    "categorical_focal_crossentropy",
}
KERAS_OPS = {"binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"}


def keras_target_first(code: Any) -> str | None:
    """``"keras.losses.NAME"`` / ``"keras.ops.NAME"`` when ``code`` is such a Keras function (target first)."""
    if code.co_name in KERAS_LOSSES and code.co_varnames[:2] == ("y_true", "y_pred"):
        api = "keras.losses"
    elif code.co_name in KERAS_OPS and code.co_varnames[:2] == ("target", "output"):
        api = "keras.ops"
    else:
        return None
    return f"{api}.{code.co_name}" if is_library_file(code.co_filename) else None


def keras_swap_finding(api_name: str, site: Site) -> Finding:
    first, second = ("y_true", "y_pred") if api_name.startswith("keras.losses") else ("target", "output")
    return Finding(
        SWAPPED_ARGUMENTS,
        "error",
        f"{api_name} takes ({first}, {second}), but the prediction was passed as {first}",
        f"call {api_name.rpartition('.')[2]}({first}, {second}) with the target first: Keras puts the "
        "target first (PyTorch losses take (input, target))",
        site[0],
        site[1],
    )


def keras_order_finding(loss_fn: Callable[..., Any]) -> Finding:
    """A Keras loss whose parameters say (prediction, target): Keras passes (y_true, y_pred) by position."""
    names = parameter_names(loss_fn)[:2]
    return Finding(
        SWAPPED_ARGUMENTS,
        "error",
        f"the loss's parameters are ({', '.join(names)}), but Keras calls a loss as loss(y_true, y_pred) "
        "by position: the prediction would arrive in the target's parameter",
        "declare the parameters in Keras's order: def loss(y_true, y_pred)",
        *definition_site(loss_fn),
    )


def output_labels(structure: Any, prefix: str = "outputs") -> Any:
    """``structure`` (a model's outputs) with each tensor replaced by the expression that reaches it,
    such as ``outputs['logits']`` or ``outputs[1]``; flattened like the outputs, it names them."""
    if isinstance(structure, dict):
        return type(structure)((k, output_labels(v, f"{prefix}[{k!r}]")) for k, v in structure.items())
    if isinstance(structure, (list, tuple)) and not hasattr(structure, "_fields"):
        return type(structure)(output_labels(v, f"{prefix}[{i}]") for i, v in enumerate(structure))
    return prefix
