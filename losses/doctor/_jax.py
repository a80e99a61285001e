"""The doctor for Keras 3 on the JAX backend (and plain JAX losses): the loss is traced once with
``jax.make_jaxpr``; every equation of the program carries the user's source line, so the doctor
follows the prediction through it, then takes one ``jax.grad``. Python ``if``/``float()``/NumPy
on the prediction fail under the trace: their error's line is the finding's. Hand-written
gradients (``keras.ops.custom_gradient``, ``jax.custom_gradient``, ``jax.custom_vjp``) met on the
way are checked against finite differences in float64."""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import custom_derivatives
from jax._src.core import ShapedArray
from jax.extend.core import Literal, Var

from losses.doctor import _report as R
from losses.doctor._gradcheck import check_directions
from losses.doctor._report import Cause, Finding, Report

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "xor", "is_finite"}
_ARGMAX = {"argmax", "argmin"}
_PIECEWISE = {"round": "round", "floor": "floor", "ceil": "floor", "sign": "sign"}
_CALLS = {"pjit", "jit", "closed_call", "core_call", "remat", "remat2", "checkpoint"}  # followed inside
_CONTROL_FLOW = {"scan", "while", "cond"}  # looked into for breaks (see _control_flow)
_CALLBACKS = {"pure_callback", "io_callback"}  # Python on the host: no derivative (jax.grad raises)
_ELEMENTWISE_BINARY = {
    "add",
    "sub",
    "mul",
    "div",
    "max",
    "min",
    "pow",
    "atan2",
    "rem",
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "select_n",
    "nextafter",
}
_SUM = {"add", "sub", "add_any"}
_SCALE = {"mul", "div", "neg", "reduce_sum", "convert_element_type", "reshape", "squeeze", "copy", "copy_p", "alias"}
_SINGULAR = {"sqrt", "rsqrt", "log", "div", "pow", "acos", "asin", "atanh"}


def _shape(value: Var | Literal) -> tuple[int, ...]:
    # Every value of a traced array program has a ShapedArray as its abstract value.
    return tuple(cast(ShapedArray, value.aval).shape)


def _floating(aval: Any) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _site(eqn: Any) -> tuple[str | None, int | None]:
    """The user's line of an equation: the innermost frame of its trace outside the frameworks."""
    for frame in eqn.source_info.traceback.frames:
        if not R.is_library_file(frame.file_name):
            return frame.file_name, frame.line_num
    return None, None


def _explicit_axes(eqn: Any) -> bool:
    """A reshape that adds axes, or an expand_dims / ``x[:, None]`` (not a rank promotion of jnp)."""
    if eqn.primitive.name == "reshape":
        return len(eqn.outvars[0].aval.shape) > len(eqn.invars[0].aval.shape)
    if eqn.primitive.name != "broadcast_in_dim" or math.prod(eqn.outvars[0].aval.shape) != math.prod(
        eqn.invars[0].aval.shape
    ):
        return False
    return any(
        f.function_name == "expand_dims" or f.file_name.endswith("indexing.py")
        for f in eqn.source_info.traceback.frames
    )


def _sub_jaxpr(eqn: Any) -> tuple[Any, list] | None:
    if eqn.primitive.name not in _CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr"):
        sub = eqn.params.get(key)
        if sub is not None:
            return (sub.jaxpr, list(sub.consts)) if hasattr(sub, "jaxpr") else (sub, [])
    return None


def _break_kind(name: str, outs: list) -> str | None:
    """The kind of gradient break an equation is (None: the gradient passes)."""
    if name == "stop_gradient":
        return "detach"
    if name in _CALLBACKS:
        return "callback"
    if name in _COMPARE:
        return "compare"
    if name in _ARGMAX:
        return "argmax"
    if name in _PIECEWISE:
        return _PIECEWISE[name]
    if outs and not any(_floating(o.aval) for o in outs):
        return "cast"
    return None


def _inner(
    jaxpr: Any, derived: list[bool], connected: list[bool], site: tuple[str | None, int | None]
) -> tuple[list[Cause], list[bool], list[bool]]:
    """The breaks on the prediction's paths through a loop body or branch (its inputs flagged
    ``derived`` from the prediction and ``connected`` to it by gradient), and which outputs are;
    ``site``: the line of the loop or branch, for an equation whose trace shows none of the user's."""
    d = {v for v, flag in zip(jaxpr.invars, derived) if flag}
    c = {v for v, flag in zip(jaxpr.invars, connected) if flag}
    causes: list[Cause] = []
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if isinstance(v, Var)]
        if not any(v in d for v in ins):
            continue
        outs = [v for v in eqn.outvars if isinstance(v, Var)]
        d.update(outs)
        if not any(v in c for v in ins):
            continue
        if eqn.primitive.name in _CONTROL_FLOW or _sub_jaxpr(eqn) is not None:
            flags = (
                [isinstance(v, Var) and v in d for v in eqn.invars],
                [isinstance(v, Var) and v in c for v in eqn.invars],
            )
            inner_causes, connected_out = _control_flow(eqn, *flags, site)
            causes.extend(inner_causes)
            c.update(o for o, flag in zip(eqn.outvars, connected_out) if flag and isinstance(o, Var))
            continue
        kind = _break_kind(eqn.primitive.name, outs)
        if kind is None:
            c.update(o for o in outs if _floating(o.aval))
        else:
            own = _site(eqn)
            causes.append((kind, eqn.primitive.name, own if own[0] is not None else site))
    return (
        causes,
        [isinstance(v, Var) and v in d for v in jaxpr.outvars],
        [isinstance(v, Var) and v in c for v in jaxpr.outvars],
    )


def _control_flow(
    eqn: Any, derived: list[bool], connected: list[bool], site: tuple[str | None, int | None]
) -> tuple[list[Cause], list[bool]]:
    """(the breaks on the prediction's paths inside a scan, while loop, cond or call, which of its
    outputs stay connected to the prediction). A loop's carry is followed to a fixed point; a while
    loop's condition (loop control) is not a path of the gradient."""
    name, params = eqn.primitive.name, eqn.params
    if name == "cond":
        causes: list[Cause] = []
        out = [False] * len(eqn.outvars)
        for branch in params["branches"]:
            found, _, conn = _inner(branch.jaxpr, derived[1:], connected[1:], site)
            causes.extend(found)
            out = [a or b for a, b in zip(out, conn)]
        return causes, out
    if name in ("scan", "while"):
        if name == "scan":
            body, skip, carries = params["jaxpr"].jaxpr, 0, params["num_carry"]
            first = params["num_consts"]
        else:
            body, skip, carries = params["body_jaxpr"].jaxpr, params["cond_nconsts"], len(eqn.outvars)
            first = params["body_nconsts"]
        d, c = list(derived[skip:]), list(connected[skip:])
        for _ in range(len(body.invars) + 1):  # until the carries' flags stop changing
            causes, d_out, c_out = _inner(body, d, c, site)
            new_d = (
                d[:first] + [a or b for a, b in zip(d[first : first + carries], d_out[:carries])] + d[first + carries :]
            )
            new_c = (
                c[:first] + [a or b for a, b in zip(c[first : first + carries], c_out[:carries])] + c[first + carries :]
            )
            if (new_d, new_c) == (d, c):
                break
            d, c = new_d, new_c
        return causes, c_out
    sub = _sub_jaxpr(eqn)
    if sub is not None:
        causes, _, conn = _inner(sub[0], derived, connected, site)
        return causes, conn
    # another primitive with a body (a custom derivative, ...): its own rule decides the gradient
    return [], [any(connected) and _floating(o.aval) for o in eqn.outvars]


class _Pass(R.BreakLog):
    """Runs a traced loss equation by equation (concrete values, or tracers under ``jax.grad``) and,
    on the first run, follows the prediction: what depends on it, through which breaks, where."""

    def __init__(self, pred_var: Var, target_var: Var) -> None:
        self.call_site: tuple[str | None, int | None] | None = None  # the user's line of an inlined call
        self.derived = {pred_var}
        self.connected = {pred_var}
        self.target = {target_var}
        self.sites: dict[Var, tuple[str | None, int | None]] = {}
        self.breaks: list[Cause] = []
        self.zero_ops: list[Cause] = []
        self.swaps: list[tuple[str, tuple[str | None, int | None]]] = []
        self.broadcasts: list[tuple[str, tuple, tuple, tuple[str | None, int | None]]] = []
        self.non_finite: list[tuple[str, tuple[str | None, int | None]]] = []
        self.singular: list[tuple[str, tuple[str | None, int | None]]] = []
        self.dead: dict[Var, Cause] = {}
        self.new_axes: set[Var] = set()
        self.shape_before: dict[Var, tuple] = {}  # the shape before jnp's rank promotion
        self.terms: dict[Var, tuple[str, list]] = {}
        self.values: dict[Var, Any] = {}
        self.nonfinite: set[Var] = set()
        self.order: list[Var] = []  # every variable, in the order the program computes them
        self.eqns: list[tuple[Any, tuple[str | None, int | None]]] = []  # equations on the prediction or target
        # the equations the gradient passes, in order: (float outputs, connected inputs, where)
        self.links: list[tuple[list[Var], list[Var], tuple[str | None, int | None]]] = []

    def follow(self, jaxpr: Any) -> None:
        """Walk the program once: what depends on the prediction, through which breaks, on which line."""
        self.order.extend(v for v in [*jaxpr.constvars, *jaxpr.invars] if isinstance(v, Var))
        for eqn in jaxpr.eqns:
            sub = _sub_jaxpr(eqn)
            if sub is not None:
                inner = sub[0]
                outer = self.call_site
                self._alias(inner.invars, eqn.invars)
                # A jitted function is traced once and cached: its equations' own traces may show
                # the first caller; the line of this call is the user's. A loss that is jitted
                # itself is called by the doctor, no line of the user's: its equations keep theirs.
                own = _site(eqn)
                self.call_site = outer or (own if own[0] is not None else None)
                self.follow(inner)
                self.call_site = outer
                self._alias(eqn.outvars, inner.outvars)
            else:
                self._follow(eqn)
            self.order.extend(v for v in eqn.outvars if isinstance(v, Var))

    def program(self, closed: Any, out: Any, terms: list[Var]) -> Callable:
        """``(p, t) -> (every value, d loss / d p, d term / d p for each of terms)``: the diagnosis's
        numbers in one compiled program."""
        order = list(self.order)
        # A host callback anywhere, also inside a loop body or a branch (which run as the user's
        # primitives, not equation by equation), makes jax.grad raise: no gradient to take, and the
        # report names the callback.
        callback = _calls_back(closed.jaxpr)
        differentiable = isinstance(out, Var) and _floating(out.aval) and not callback
        terms = [] if callback else terms

        def values(p, t):
            env: dict[Var, Any] = {}
            _evaluate(closed.jaxpr, list(closed.consts), [p, t], env)
            return env

        def loss(p, t):
            return jnp.sum(jnp.asarray(values(p, t)[out], jnp.float32))

        def term_sums(p, t):
            env = values(p, t)
            return jnp.stack([jnp.sum(jnp.asarray(env[v], jnp.float32)) for v in terms])

        def run(p, t):
            env = values(p, t)
            grad = jax.grad(loss)(p, t) if differentiable else jnp.zeros_like(p)
            jacobian = jax.jacrev(term_sums)(p, t) if terms else jnp.zeros((0,))
            return [env[v] for v in order], grad, jacobian

        return run

    def check_values(self, values: list) -> None:
        """The checks that need the values: where NaN/Inf is born, singular points."""
        self.values = dict(zip(self.order, values))
        for eqn, site in self.eqns:
            ins = [v for v in eqn.invars if isinstance(v, Var)]
            outs = [v for v in eqn.outvars if isinstance(v, Var)]
            bad = [o for o in outs if _floating(o.aval) and not np.all(np.isfinite(np.asarray(self.values[o])))]
            if bad:
                # The first equation whose output is NaN/Inf while its inputs were finite: where the NaN is born.
                if not self.non_finite and not any(v in self.nonfinite for v in ins):
                    self.non_finite.append((eqn.primitive.name, site))
                self.nonfinite.update(bad)
            if eqn.primitive.name in _SINGULAR and any(v in self.connected for v in ins):
                self._check_singular(eqn.primitive.name, eqn, site)

    def _alias(self, targets: list, sources: list) -> None:
        for dst, src in zip(targets, sources):
            if not isinstance(dst, Var) or not isinstance(src, Var):
                continue
            for group in (self.derived, self.connected, self.target, self.new_axes):
                if src in group:
                    group.add(dst)
            for table in (self.dead, self.sites, self.shape_before):
                if src in table:
                    table[dst] = table[src]
            self.terms[dst] = ("alias", [src])

    def _follow(self, eqn: Any) -> None:
        name = eqn.primitive.name
        ins = [v for v in eqn.invars if isinstance(v, Var)]
        outs = [v for v in eqn.outvars if isinstance(v, Var)]
        derived_in = [v for v in ins if v in self.derived]
        conn_in = [v for v in ins if v in self.connected]
        target_only = [v for v in ins if v in self.target and v not in self.derived]
        if not derived_in and not target_only:
            return
        site = self.call_site or _site(eqn)
        self.eqns.append((eqn, site))
        for o in outs:
            self.sites.setdefault(o, site)
            if derived_in:
                self.derived.add(o)
            if target_only:
                self.target.add(o)
        cause = None
        if conn_in and name in _CONTROL_FLOW:
            flags = [isinstance(v, Var) and v in self.connected for v in eqn.invars]
            causes, connected_out = _control_flow(
                eqn, [isinstance(v, Var) and v in self.derived for v in eqn.invars], flags, site
            )
            self.connected.update(o for o, flag in zip(eqn.outvars, connected_out) if flag and isinstance(o, Var))
            if causes:
                cause = causes[0]
                self.breaks.extend(causes)
        elif conn_in:
            kind = _break_kind(name, outs)
            if kind is None:
                self.connected.update(o for o in outs if _floating(o.aval))
                self.links.append(([o for o in outs if _floating(o.aval)], conn_in, site))
                for o in outs:  # the indices beside the values of sort (argsort) and top_k: a choice of index
                    if not _floating(o.aval):
                        self.dead[o] = ("argmax", name, site)
            else:
                cause = (kind, name, site)
                self.breaks.append(cause)
        if derived_in:
            cause = cause or next((self.dead[v] for v in derived_in if v in self.dead), None)
            for o in outs:
                if cause is not None and o not in self.connected:
                    self.dead[o] = cause
            if (name in _SUM or name in _SCALE) and len(outs) == 1:
                self.terms[outs[0]] = (name, list(eqn.invars))
        if any(v in self.new_axes for v in ins) or _explicit_axes(eqn):
            self.new_axes.update(outs)
        elif name == "broadcast_in_dim" and ins:
            self.shape_before[outs[0]] = self.shape_before.get(ins[0], _shape(ins[0]))
        if derived_in and target_only and name in _ELEMENTWISE_BINARY:
            for p in derived_in:
                for t in target_only:
                    a = self.shape_before.get(p, _shape(p))
                    b = self.shape_before.get(t, _shape(t))
                    out = math.prod(_shape(outs[0]))
                    if (
                        a != b
                        and out > max(math.prod(a), math.prod(b))
                        and min(math.prod(a), math.prod(b)) > 1
                        and not {p, t} & self.new_axes
                    ):
                        self.broadcasts.append((name, a, b, site))

    def _check_singular(self, name: str, eqn: Any, site) -> None:
        # An infinite derivative at the point: sqrt/log at 0, a zero denominator, pow(0, p < 1).
        invals = [np.asarray(v.val if isinstance(v, Literal) else self.values[v]) for v in eqn.invars]
        try:
            if name in ("sqrt", "rsqrt", "log") and bool(np.any(invals[0] == 0)):
                self.singular.append((name, site))
            elif (
                name == "div"
                and isinstance(eqn.invars[1], Var)
                and eqn.invars[1] in self.connected
                and bool(np.any(invals[1] == 0))
            ):
                self.singular.append((name, site))
            elif name == "pow" and bool(np.any(invals[0] == 0)) and bool(np.any(invals[1] < 1)):
                self.singular.append((name, site))
        except Exception:  # a dtype without comparison: no evidence either way
            pass

    def summands(self, v: Any, size: int, depth: int = 0) -> list[Any]:
        """The terms whose sum (up to constant factors) is ``v``; only sums of at most ``size``
        elements (the loss's) count, not element-wise ones inside a formula."""
        entry = self.terms.get(v) if isinstance(v, Var) else None
        if entry is None or depth > 200:
            return [v]
        name, operands = entry
        varying = [o for o in operands if isinstance(o, Var) and o in self.derived]
        if name in _SUM and math.prod(v.aval.shape) <= size:
            constants = [
                R.Constant(None)
                for o in operands
                if isinstance(o, Literal) or (isinstance(o, Var) and o not in self.derived and o not in self.target)
            ]
            return [s for o in varying for s in self.summands(o, size, depth + 1)] + constants
        if (name in _SCALE or name == "alias") and len(varying) == 1:
            return self.summands(varying[0], size, depth + 1)
        return [v]


def _calls_back(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` or a jaxpr inside one of its equations (a call, a loop body, a branch)
    calls a host callback."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _CALLBACKS:
            return True
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns") and _calls_back(inner):
                    return True
    return False


def _evaluate(jaxpr: Any, consts: list, args: list, env_all: dict, nudges: dict | None = None) -> list:
    """Run ``jaxpr`` equation by equation (inside ``jax.jit``), keeping every value in ``env_all``.
    ``nudges``: zeros added to some variables, whose gradient is then the cotangent of each."""
    env: dict[Var, Any] = {}
    nudges = nudges or {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for v in jaxpr.invars:
        if v in nudges:
            env[v] = env[v] + nudges[v]
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        sub = _sub_jaxpr(eqn)
        if sub is not None:
            outvals = _evaluate(sub[0], sub[1], invals, env_all, nudges)
        else:
            if eqn.primitive.name in _CALLBACKS:
                # jax.grad raises on a host callback: the doctor's own gradient takes it as a
                # constant, so that the report can name it.
                invals = [jax.lax.stop_gradient(v) for v in invals]
            with eqn.ctx.manager:
                outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outvals = list(outvals) if eqn.primitive.multiple_results else [outvals]
        for v, value in zip(eqn.outvars, outvals):
            if isinstance(v, Var):
                env[v] = value + nudges[v] if v in nudges else value
    env_all.update(env)
    return [read(v) for v in jaxpr.outvars]


class _Watch:
    """While the loss is traced: Keras functions called with the target in the prediction's place,
    and the custom-gradient functions the loss calls."""

    def __init__(self) -> None:
        self.keras_calls: list[tuple[str, tuple[str | None, int | None], Any, Any]] = []
        self.custom_calls: list[tuple[Any, tuple, dict]] = []

    def _profiler(self, frame, event, arg):
        if event != "call":
            return
        api = R.keras_target_first(frame.f_code)
        if api is not None:
            first, second = (frame.f_locals.get(n) for n in frame.f_code.co_varnames[:2])
            self.keras_calls.append((api, R.user_site(frame), first, second))

    def __enter__(self):
        watch = self
        # custom_vjp and custom_jvp: a hand-written backward, or a forward-mode rule that jax.grad
        # transposes; both patched for the duration of the pass, restored by __exit__.
        self._calls = {kind: kind.__call__ for kind in (custom_derivatives.custom_vjp, custom_derivatives.custom_jvp)}

        def patched(original: Callable) -> Callable:
            def call(obj, *args, **kwargs):
                watch.custom_calls.append((obj, args, kwargs))
                return original(obj, *args, **kwargs)

            return call

        for kind, original in self._calls.items():
            kind.__call__ = patched(original)  # type: ignore[method-assign]
        self._profile = sys.getprofile()
        sys.setprofile(self._profiler)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._profile)
        for kind, original in self._calls.items():
            kind.__call__ = original  # type: ignore[method-assign]
        return False


def _var(value: Any) -> Var | None:
    var = getattr(value, "val", None)  # a tracer of make_jaxpr knows its variable
    return var if isinstance(var, Var) else None


def _user_rule(obj: Any, args: tuple, kwargs: dict) -> Callable | None:
    """The user's hand-written gradient of a custom_vjp: its bwd, or for jax.custom_gradient (and
    keras.ops.custom_gradient) the rule the user's function returns; of a custom_jvp: its jvp."""
    if isinstance(obj, custom_derivatives.custom_jvp):
        rule = getattr(obj, "jvp", None)
        code = getattr(rule, "__code__", None)
        return None if code is None or R.is_library_file(code.co_filename) else rule
    fun = obj.fun
    if R.is_library_file(fun.__code__.co_filename):
        user_fun = inspect.getclosurevars(fun).nonlocals.get("fun")
        if user_fun is None or R.is_library_file(getattr(user_fun, "__code__", fun.__code__).co_filename):
            return None
        return user_fun(*args, **kwargs)[1]
    return None if R.is_library_file(obj.bwd.__code__.co_filename) else obj.bwd


def check_custom_vjp(obj: Any, leaves: list, treedef: Any, wrt: list[int]):
    """Compare the custom gradient of ``obj`` with central differences of its value at ``leaves``
    (concrete), in float64; ``(verdict, rule)`` or ``None`` when the rule is not the user's."""
    weights: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(0)

    def call(xs):
        new = [
            jnp.asarray(leaf, jnp.float64)
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
            else leaf
            for leaf in leaves
        ]
        for i, x in zip(wrt, xs):
            new[i] = x
        args, kwargs = jax.tree_util.tree_unflatten(treedef, new)
        out = obj(*args, **kwargs)
        total: jax.Array | float = 0.0
        for k, o in enumerate(o for o in jax.tree_util.tree_leaves(out) if jnp.issubdtype(o.dtype, jnp.floating)):
            if k not in weights:  # fixed random weights: a scalar that sees every output element
                weights[k] = rng.uniform(0.5, 1.5, size=o.shape)
            total = total + jnp.sum(weights[k] * o)
        return total

    with jax.enable_x64(True):
        point = [np.asarray(leaves[i], dtype=np.float64) for i in wrt]
        args, kwargs = jax.tree_util.tree_unflatten(
            treedef,
            [
                jnp.asarray(leaf, jnp.float64)
                if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)
                else leaf
                for leaf in leaves
            ],
        )
        rule = _user_rule(obj, args, kwargs)
        if rule is None:
            return None

        def value(xs):
            return float(call([jnp.asarray(x) for x in xs]))

        def gradient(xs):
            grads = jax.grad(lambda ds: call(ds))([jnp.asarray(x) for x in xs])
            return [np.asarray(g, dtype=np.float64) for g in grads]

        return check_directions(value, gradient, point), rule


def _tracer_error_finding(error: BaseException) -> Finding | None:
    """Python control flow and host conversions fail under tracing: the line of the error says where."""
    site = R.traceback_site(error.__traceback__)
    kinds = {
        "TracerBoolConversionError": ("branch", "bool() / if"),
        "TracerArrayConversionError": ("host", "a NumPy function (np.asarray)"),
        "TracerIntegerConversionError": ("host", "int() / an index"),
        "ConcretizationTypeError": ("host", "float() / int() / .item()"),
    }
    for cls in type(error).__mro__:
        if cls.__name__ in kinds:
            kind, op = kinds[cls.__name__]
            return R.break_finding(kind, op, "jax", site)
    return None


def diagnose_jax(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    order: str,
    *,
    from_names: bool = False,
    kwargs: dict | None = None,
) -> Report:
    kwargs = kwargs or {}
    R.refresh_library_roots()
    pred, target = jnp.asarray(y_pred), jnp.asarray(y_true)
    report = Report("jax", R.callable_name(loss_fn), pred_shape=tuple(pred.shape), true_shape=tuple(target.shape))
    if not jnp.issubdtype(pred.dtype, jnp.inexact):
        report.add(
            Finding(
                R.DISCONNECTED,
                "error",
                f"the prediction has dtype {pred.dtype}: integers carry no gradient",
                "pass the model's floating-point output (logits or probabilities)",
            )
        )
        return report
    keras_loss = _is_keras_loss(loss_fn)
    if (
        from_names
        and order == "y_pred, y_true"
        and (keras_loss or inspect.isfunction(loss_fn) or inspect.ismethod(loss_fn))
    ):
        report.add(R.keras_order_finding(loss_fn))
    pred_first = order == "y_pred, y_true" and not keras_loss

    def call(p, t):
        return loss_fn(*((p, t) if pred_first else (t, p)), **kwargs)

    watch = _Watch()
    try:
        with watch:
            closed = jax.make_jaxpr(call)(pred, target)
    except Exception as error:
        swaps = [(api, site) for api, site, first, second in watch.keras_calls]
        finding = _tracer_error_finding(error)
        # A shape error first: a Keras loss that raises on the shapes was entered, not given swapped arguments.
        shape_error = any(w in str(error).lower() for w in ("shapes", "same rank", "same shape"))
        if finding is None and swaps and not (pred.shape != target.shape and shape_error):
            finding = R.keras_swap_finding(*swaps[0])
        if finding is None and pred.shape != target.shape and shape_error:
            site = R.traceback_site(error.__traceback__)
            finding = Finding(
                R.BROADCAST,
                "error",
                f"prediction {report.pred_shape} and target {report.true_shape} "
                f"have shapes that cannot be combined: {str(error).splitlines()[0]}",
                "give the prediction and the target the same shape",
                site[0],
                site[1],
            )
        if finding is None:
            raise
        report.add(finding)
        return report
    jaxpr = closed.jaxpr
    run = _Pass(jaxpr.invars[0], jaxpr.invars[1])
    run.follow(jaxpr)
    out = jaxpr.outvars[0] if jaxpr.outvars else None
    terms = run.summands(out, max(math.prod(_shape(out)), 1)) if isinstance(out, Var) else []
    connected_terms = [t for t in terms if isinstance(t, Var) and t in run.connected] if len(terms) > 1 else []
    # One program, compiled without XLA's backend optimizations: it runs twice at most. XLA takes the
    # level as an int, which jax's annotation of compiler_options (str or bool) leaves out.
    compiled = (
        jax.jit(run.program(closed, out, connected_terms))
        .lower(pred, target)
        .compile(compiler_options={"xla_backend_optimization_level": 0})  # type: ignore[dict-item]
    )
    values, grad, jacobian = compiled(pred, target)
    run.check_values(values)
    outvals = [v.val if isinstance(v, Literal) else run.values[v] for v in jaxpr.outvars]
    for api, site, first, second in watch.keras_calls:
        if _var(first) in run.derived and _var(second) not in run.derived:
            run.swaps.append((api, site))
    for swap in run.swaps:
        report.add(R.keras_swap_finding(*swap))
    for name, a, b, site in run.broadcasts:
        report.add(R.broadcast_finding(name, a, b, "jax", site))
    loss_site = run.sites.get(out, R.definition_site(loss_fn)) if isinstance(out, Var) else R.definition_site(loss_fn)
    value = np.asarray(outvals[0], dtype=np.float64) if outvals else None
    report.value = float(np.sum(value)) if value is not None else None
    if report.value is not None and not math.isfinite(report.value):
        if not run.swaps:
            op, site = run.non_finite[0] if run.non_finite else ("the loss", R.definition_site(loss_fn))
            report.add(
                Finding(
                    R.NON_FINITE,
                    "error",
                    f"`{op}` produced NaN/Inf in the forward pass (loss = {report.value})",
                    "guard the operation: a zero denominator needs a clamp (x / keras.ops.maximum(y, eps)) "
                    "or keras.ops.where(y > 0, x / keras.ops.maximum(y, eps), 0); log/sqrt need a positive "
                    "argument",
                    site[0],
                    site[1],
                )
            )
        return report
    callback = next((cause for cause in run.breaks if cause[0] == "callback"), None)
    if callback is not None:
        # The user's jax.grad raises on it, whatever the other terms carry: an error, not a dead term.
        report.add(R.break_finding(*callback[:2], "jax", callback[2]))
        return report
    if not isinstance(out, Var) or out not in run.connected:
        if run.breaks:
            kind, op, site = run.first_break()
        elif isinstance(out, Var) and out in run.dead:  # built from the indices of sort / top_k
            kind, op, site = run.dead[out]
        else:
            kind, op, site = "unused", "", loss_site
        report.add(R.break_finding(kind, op, "jax", site))
        return report

    grad = np.asarray(grad, dtype=np.float64)
    _wrong_gradient_findings(watch, run, report)
    finite = bool(np.all(np.isfinite(grad)))
    report.grad_norm = float(np.linalg.norm(grad)) if finite else float("nan")
    report.zero_fraction = float(np.mean(grad == 0)) if grad.size else 1.0
    dead = (
        _dead_causes(run, terms, connected_terms, np.asarray(jacobian)) if finite and report.zero_fraction < 1 else []
    )

    def zero_elsewhere() -> float | None:
        if not jnp.issubdtype(target.dtype, jnp.inexact):
            return None
        moved = target * (1 - 2e-3) + 1e-3  # a 0/1 target stays in [0, 1]
        return float(np.mean(np.asarray(compiled(pred, moved)[1]) == 0))

    def locate_zero() -> tuple[str | None, int | None] | None:
        # The last equation (the nearest the loss) whose output gets a nonzero cotangent and whose
        # inputs get none: a clip, ReLU or where that is saturated for every element.
        nudged = list(dict.fromkeys(v for outs, ins, _ in run.links for v in (*outs, *ins)))

        def loss_at(zeros: list) -> Any:
            env: dict[Var, Any] = {}
            _evaluate(closed.jaxpr, list(closed.consts), [pred, target], env, dict(zip(nudged, zeros)))
            return jnp.sum(jnp.asarray(env[out], jnp.float32))

        try:
            cotangents = jax.grad(loss_at)([jnp.zeros(_shape(v), cast(ShapedArray, v.aval).dtype) for v in nudged])
        except Exception:  # no second look: the loss's line
            return None
        nonzero = {v: bool(np.any(np.asarray(c) != 0)) for v, c in zip(nudged, cotangents)}
        for outs, ins, site in reversed(run.links):
            if any(nonzero[o] for o in outs) and not any(nonzero[i] for i in ins):
                return site
        return None

    R.add_gradient_findings(
        report,
        run,
        "jax",
        loss_site,
        finite,
        lambda: run.singular[0][1] if run.singular else R.definition_site(loss_fn),
        dead,
        zero_elsewhere,
        locate_zero,
    )
    return report


def _wrong_gradient_findings(watch: _Watch, run: _Pass, report: Report) -> None:
    checked_calls: list = []  # one entry per call checked; a rule found wrong is not checked again
    wrong: list = []
    for obj, args, kwargs in watch.custom_calls:
        if obj in wrong or sum(o is obj for o in checked_calls) >= R.CALLS_CHECKED:
            continue
        checked_calls.append(obj)
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        variables = [_var(leaf) for leaf in leaves]
        wrt = [i for i, v in enumerate(variables) if v is not None and v in run.connected]
        if not wrt or any(v is not None and v not in run.values for v in variables):
            continue
        concrete = [run.values[v] if v is not None else leaf for leaf, v in zip(leaves, variables)]
        try:
            checked = check_custom_vjp(obj, concrete, treedef, wrt)
        except Exception:  # the check could not run the function again: no evidence either way
            continue
        if checked is not None and checked[0] is not None and checked[0].wrong:
            wrong.append(obj)
            name = getattr(checked[1], "__qualname__", "custom gradient")
            report.add(R.wrong_gradient_finding(name, R.function_site(checked[1]), checked[0]))


def _dead_causes(run: _Pass, terms: list, connected: list[Var], jacobian: np.ndarray) -> list[Cause]:
    """The causes of the loss's terms that send no gradient to the prediction, when another term does
    (``jacobian``: the gradient of each of the ``connected`` terms)."""
    dead = [run.dead[t] for t in terms if isinstance(t, Var) and t not in run.connected and t in run.dead]
    if not connected or not np.any(jacobian != 0):
        return []
    return R.unique_causes(dead)


def _is_keras_loss(fn: Any) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(fn, keras.losses.Loss)
