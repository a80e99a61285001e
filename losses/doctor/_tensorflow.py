"""The doctor for TensorFlow and Keras 3 on the TensorFlow backend: one eager pass under an op
callback that sees every op with its inputs and outputs, hooks on the conversions to host values
(``.numpy()``, ``float()``, ``bool()``, NumPy functions), then one ``GradientTape`` gradient.
Hand-written gradients (``tf.custom_gradient``, ``keras.ops.custom_gradient``) met on the way are
checked against finite differences."""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.function.capture import capture_container
from tensorflow.python.framework import op_callbacks, ops
from tensorflow.python.ops import custom_gradient as tf_custom_gradient
from tensorflow.python.ops import script_ops

from losses.doctor import _report as R
from losses.doctor._gradcheck import check_directions
from losses.doctor._report import Cause, Finding, Report

# Ops through which TensorFlow sends no gradient (or a zero one), by the kind of break they are.
_STOP = {"StopGradient": "detach", "PreventGradient": "detach"}
_COMPARE = {
    "Greater",
    "GreaterEqual",
    "Less",
    "LessEqual",
    "Equal",
    "NotEqual",
    "LogicalAnd",
    "LogicalOr",
    "LogicalNot",
    "IsNan",
    "IsFinite",
    "IsInf",
    "ApproximateEqual",
}
_NAN_CHECKS = {"IsNan", "IsFinite", "IsInf"}  # what nan_to_num and where(is_nan(x), 0, x) are made of
_ARGMAX = {"ArgMax", "ArgMin", "TopKV2", "Unique", "Bucketize", "SearchSorted", "LowerBound", "UpperBound"}
_PIECEWISE = {
    "Round": "round",
    "Rint": "round",
    "Floor": "floor",
    "Ceil": "floor",
    "FloorDiv": "floor",
    "FloorMod": "floor",
    "TruncateDiv": "floor",
    "Sign": "sign",
}
# Writes of a value into a tf.Variable: what is read back is the variable's state, with no history.
_VARIABLE_WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
_INTEGER = {"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike", "Fill"}  # no value of the input flows on
_HOST_METHODS = ("numpy", "__array__", "__float__", "__int__", "__index__", "__bool__", "__nonzero__")
_NUMPY_CONVERSIONS = ("asarray", "array", "asanyarray")
_SINGULAR = {"Sqrt", "Rsqrt", "Log", "Reciprocal", "Inv", "RealDiv", "Div", "Pow", "Xlogy", "Acos", "Asin", "Atanh"}
# Element-wise ops of two tensors: where a prediction meets a target of another shape.
_ELEMENTWISE_BINARY = {
    "AddV2",
    "Add",
    "Sub",
    "Mul",
    "RealDiv",
    "Div",
    "DivNoNan",
    "MulNoNan",
    "Maximum",
    "Minimum",
    "SquaredDifference",
    "Pow",
    "Greater",
    "GreaterEqual",
    "Less",
    "LessEqual",
    "Equal",
    "NotEqual",
    "SelectV2",
    "Select",
    "FloorDiv",
    "FloorMod",
    "Xlogy",
    "Xdivy",
    "Atan2",
    "SigmoidCrossEntropyWithLogits",
}
# Ops through which a sum of terms stays a sum of terms (the loss's additive structure).
_SUM = {"AddV2", "Add", "Sub", "AddN"}
_SCALE = {"Mul", "RealDiv", "Div", "DivNoNan", "Neg", "Mean", "Sum", "Identity", "Cast", "Reshape", "Squeeze"}


def _float_dtype(t: Any) -> bool:
    return t.dtype.is_floating or t.dtype.is_complex


def _finite(t: Any) -> bool:
    if not _float_dtype(t) or t.shape.num_elements() == 0:
        return True
    return bool(np.all(np.isfinite(t._numpy())))


def _has_zero(t: Any) -> bool:
    return bool(np.any(t._numpy() == 0))


def _attr(attrs: Any, name: str) -> Any:
    attrs = tuple(attrs or ())
    for key, value in zip(attrs[::2], attrs[1::2]):
        if key == name:
            return value
    return None


class _Recorder(R.BreakLog):
    def __init__(self, preds: list[Any], target: Any) -> None:
        self.keep: list[Any] = [*preds, target]
        self.connected = {id(p) for p in preds}  # depends on the prediction through differentiable ops
        self.derived = {id(p) for p in preds}  # depends on the prediction at all
        self.target_ids = {id(target)}
        self.sites: dict[int, tuple[str | None, int | None]] = {}
        self.breaks: list[Cause] = []
        self.zero_ops: list[Cause] = []
        self.broadcasts: list[tuple[str, tuple, tuple, tuple[str | None, int | None]]] = []
        self.swaps: list[tuple[str, tuple[str | None, int | None]]] = []
        self.non_finite: list[tuple[str, tuple[str | None, int | None]]] = []
        self.singular: list[tuple[str, tuple[str | None, int | None]]] = []
        self.nonfinite_ids = {id(t) for t in (*preds, target) if not _finite(t)}
        self.nan_checks: list[tuple[str, tuple[str | None, int | None]]] = []  # is_nan of a NaN from the prediction
        self.new_axes: set[int] = set()  # tensors given new axes on purpose, and what is computed from them
        self.terms: dict[int, tuple[str, list]] = {}  # output id -> (op, inputs) for sums and scalings
        self.dead: dict[int, Cause] = {}  # prediction-derived tensors without gradient -> why
        # the ops the gradient passes, in order: (float outputs, connected inputs, where)
        self.links: list[tuple[list[Any], list[Any], tuple[str | None, int | None]]] = []
        self.functions: list[tuple[Callable, tuple, dict, list[int]]] = []  # custom gradients met
        self._inside_custom = 0
        # tf.numpy_function calls met, by frame: the break each one is, until it returns
        self._numpy_functions: dict[Any, Cause] = {}
        # tf.py_function calls under way (innermost last): whether their inputs are connected,
        # the number of breaks before their Python function ran, and what cut it off if anything
        self._py_functions: list[dict[str, Any]] = []
        self.cut_py_functions: list[Cause] = []  # why a tf.py_function's result has no gradient
        self._saved: dict[str, Any] = {}
        self._profile: Callable[..., object] | None = None

    # -- op callback -------------------------------------------------------------------------
    def callback(self, op_type, inputs, attrs, outputs, op_name=None, graph=None):
        if self._inside_custom:
            return None
        if isinstance(op_type, bytes):  # some ops (ArgMax through keras.ops) report their type as bytes
            op_type = op_type.decode()
        if graph is not None:
            self._graph_op(op_type, inputs, outputs)
            return None
        inputs = [t for t in (inputs or ()) if hasattr(t, "dtype")]
        outputs = [t for t in (outputs or ()) if hasattr(t, "dtype")]
        conn_in = [t for t in inputs if id(t) in self.connected]
        derived_in = [t for t in inputs if id(t) in self.derived]
        target_only = [t for t in inputs if id(t) in self.target_ids and id(t) not in self.derived]
        if not derived_in and not target_only:
            return None
        site = R.user_site()
        for o in outputs:
            self.keep.append(o)
            self.sites.setdefault(id(o), site)
            if derived_in and op_type not in _INTEGER:
                self.derived.add(id(o))
            if target_only:
                self.target_ids.add(id(o))
        cause = None
        if conn_in:
            kind = self._break_kind(op_type, outputs)
            if kind is None:
                for o in outputs:
                    if _float_dtype(o):
                        self.connected.add(id(o))
                self.links.append(([o for o in outputs if _float_dtype(o)], conn_in, site))
                if op_type == "Sign":
                    self.zero_ops.append(("sign", "tf.sign", site))
                if op_type in _SINGULAR:
                    self._check_singular(op_type, inputs, conn_in, site)
            elif kind != "none":
                cause = (kind, _op_label(op_type), site)
                self.breaks.append(cause)
        if derived_in and op_type not in _INTEGER:
            cause = cause or next((self.dead[id(t)] for t in derived_in if id(t) in self.dead), None)
            for o in outputs:
                if cause is not None and id(o) not in self.connected:
                    self.dead[id(o)] = cause
            if (op_type in _SUM or op_type in _SCALE) and len(outputs) == 1:
                self.terms[id(outputs[0])] = (op_type, inputs)
        if derived_in and target_only and op_type in _ELEMENTWISE_BINARY:
            for p in derived_in:
                for t in target_only:
                    a, b = tuple(p.shape), tuple(t.shape)
                    if (
                        a != b
                        and _grows(a, b)
                        and not {id(p), id(t)} & self.new_axes
                        and any(tuple(o.shape) == tuple(np.broadcast_shapes(a, b)) for o in outputs)
                    ):
                        self.broadcasts.append((_op_label(op_type), a, b, site))
        self._follow_axes(op_type, attrs, inputs, outputs)
        if op_type in _NAN_CHECKS and any(id(t) in self.nonfinite_ids for t in derived_in):
            self.nan_checks.append((_op_label(op_type), site))
        bad = [o for o in outputs if not _finite(o)]
        if bad:
            # The first op whose output is NaN/Inf while its inputs were finite: where the NaN is born.
            if not self.non_finite and not any(id(t) in self.nonfinite_ids for t in inputs):
                self.non_finite.append((_op_label(op_type), site))
            self.nonfinite_ids.update(id(o) for o in bad)
        return None

    def _graph_op(self, op_type: str, inputs, outputs) -> None:
        """An op of a function graph that TensorFlow traces while the loss runs (tf.vectorized_map
        always traces its function): only its breaks are followed, from the prediction captured
        into the graph; the graph has no values to check."""
        conn_in = [t for t in (inputs or ()) if id(t) in self.connected]
        if not conn_in:
            return
        outputs = [t for t in (outputs or ()) if hasattr(t, "dtype")]
        kind = self._break_kind(op_type, outputs)
        if kind is None:
            self.keep.extend(outputs)
            self.connected.update(id(o) for o in outputs if _float_dtype(o))
            self.derived.update(id(o) for o in outputs)
        elif kind != "none":
            self.breaks.append((kind, _op_label(op_type), R.user_site()))

    def _capture(self, original):
        recorder = self

        def capture_by_value(captures, graph, tensor, name=None):
            # The prediction captured into a function graph: the graph's copy follows it.
            inner = original(captures, graph, tensor, name)
            if id(tensor) in recorder.connected:
                recorder.keep.append(inner)
                recorder.connected.add(id(inner))
                recorder.derived.add(id(inner))
            return inner

        return capture_by_value

    def _follow_axes(self, op_type, attrs, inputs, outputs) -> None:
        if any(id(t) in self.new_axes for t in inputs):
            self.new_axes.update(id(o) for o in outputs)
        elif (
            op_type == "ExpandDims"
            or (op_type == "StridedSlice" and _attr(attrs, "new_axis_mask"))
            or (
                op_type in ("Reshape", "BroadcastTo", "Tile")
                and inputs
                and outputs
                and outputs[0].shape.rank is not None
                and inputs[0].shape.rank is not None
                and outputs[0].shape.rank > inputs[0].shape.rank
            )
        ):
            self.new_axes.update(id(o) for o in outputs)

    def _break_kind(self, op_type: str, outputs: list) -> str | None:
        if op_type in _STOP:
            return _STOP[op_type]
        if op_type in _VARIABLE_WRITES:
            return "variable"
        if op_type in _COMPARE:
            return "compare"
        if op_type in _ARGMAX:
            return "argmax"
        if op_type in _PIECEWISE and op_type != "Sign":
            return _PIECEWISE[op_type]
        if op_type in _INTEGER:
            return "none"
        if outputs and not any(_float_dtype(o) for o in outputs):
            return "cast"
        return None

    def _check_singular(self, op_type: str, inputs: list, conn_in: list, site) -> None:
        # An infinite derivative at the point: sqrt/log/reciprocal at 0, a zero denominator.
        try:
            if op_type in ("Sqrt", "Rsqrt", "Log", "Reciprocal", "Inv") and _has_zero(inputs[0]):
                self.singular.append((_op_label(op_type), site))
            elif op_type in ("RealDiv", "Div") and id(inputs[1]) in self.connected and _has_zero(inputs[1]):
                self.singular.append((_op_label(op_type), site))
            elif op_type == "Pow" and _has_zero(inputs[0]) and bool(np.any(inputs[1]._numpy() < 1)):
                self.singular.append((_op_label(op_type), site))
        except Exception:  # a dtype NumPy cannot compare: no evidence either way
            pass

    # -- conversions to host values --------------------------------------------------------------
    def _wrap(self, method_name: str):
        original = self._saved[method_name]
        recorder = self

        def wrapper(tensor, *args, **kwargs):
            branch = method_name in ("__bool__", "__nonzero__")
            if _captured_as_constant(sys._getframe(1)):
                # TensorFlow reads a small tensor that a function graph captures; the gradient still
                # flows through the function's captured input: not a break.
                return original(tensor, *args, **kwargs)
            if id(tensor) in (recorder.derived if branch else recorder.connected):
                kind = "branch" if branch else "host"
                label = {
                    "__array__": "a NumPy function",
                    "numpy": ".numpy()",
                    "__float__": "float()",
                    "__int__": "int()",
                    "__index__": "int()",
                    "__bool__": "bool() / if",
                    "__nonzero__": "bool() / if",
                }[method_name]
                recorder.breaks.append((kind, label, R.user_site()))
            return original(tensor, *args, **kwargs)

        return wrapper

    def _numpy_conversion(self, name: str):
        original = self._saved["np." + name]
        recorder = self

        def conversion(value, *args, **kwargs):
            # NumPy reads an eager tensor through the buffer protocol, past __array__: seen here.
            caller = sys._getframe(1).f_code.co_filename
            if id(value) in recorder.connected and not R.is_library_file(caller):
                recorder.breaks.append(("host", f"np.{name}", R.user_site()))
            return original(value, *args, **kwargs)

        return conversion

    def _array_ufunc(self, tensor, ufunc, method, *inputs, **kwargs):
        # NumPy hands a ufunc on an eager tensor to this hook: the result is a host array.
        if any(id(x) in self.connected for x in inputs):
            self.breaks.append(("host", f"np.{ufunc.__name__}", R.user_site()))
        inputs = tuple(x._numpy() if isinstance(x, ops._EagerTensorBase) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def _array_function(self, tensor, func, types, args, kwargs):
        flat = list(args) + list(kwargs.values())
        if any(id(x) in self.connected for x in flat):
            self.breaks.append(("host", f"np.{func.__name__}", R.user_site()))
        convert = lambda x: x._numpy() if isinstance(x, ops._EagerTensorBase) else x  # noqa: E731
        return func(*[convert(a) for a in args], **{k: convert(v) for k, v in kwargs.items()})

    # -- Python calls: swapped Keras arguments, numpy_function, numbers back into tensors ---------
    def _profiler(self, frame, event, arg):
        code = frame.f_code
        if code.co_filename == script_ops.__file__:
            self._script_op(frame, event, arg)
            return
        if event != "call":
            return
        api = R.keras_target_first(code)
        if api is not None:
            first, second = (frame.f_locals.get(n) for n in code.co_varnames[:2])
            if id(first) in self.derived and id(second) not in self.derived:
                self.swaps.append((api, R.user_site(frame)))

    def _script_op(self, frame, event, arg) -> None:
        """tf.numpy_function and tf.py_function: Python functions run on the prediction's values."""
        name = frame.f_code.co_name
        if name == "py_func_common":  # tf.numpy_function, tf.compat.v1.py_func
            # The wrapped function sees NumPy arrays; TensorFlow has no gradient for it.
            if event == "call" and self._any_connected(frame.f_locals.get("inp")):
                cause = ("host", "tf.numpy_function", R.user_site(frame))
                self.breaks.append(cause)
                self._numpy_functions[frame] = cause
            elif event == "return" and frame in self._numpy_functions:
                self._cut_off(arg, self._numpy_functions.pop(frame))
        elif name == "eager_py_func":  # tf.py_function
            if event == "call":
                inp = frame.f_locals.get("inp")
                self._py_functions.append({"connected": self._any_connected(inp), "site": R.user_site(frame)})
            elif event == "return" and self._py_functions:
                call = self._py_functions.pop()
                if call.get("cause") is not None:
                    self._cut_off(arg, call["cause"])
        elif name == "_call" and self._py_functions and self._py_functions[-1]["connected"]:
            # TensorFlow differentiates the function by a tape around it: it is followed as the
            # loss is, from its inputs (copies of the prediction) to what it returns.
            call = self._py_functions[-1]
            if event == "call":
                args = tf.nest.flatten(frame.f_locals.get("args"))
                self.keep.extend(args)
                self.connected.update(id(t) for t in args)
                self.derived.update(id(t) for t in args)
                call["breaks_before"] = len(self.breaks)
            elif event == "return" and not self._any_connected(arg):
                inside = self.breaks[call.get("breaks_before", len(self.breaks)) :]
                if not inside:
                    inside = [("host", "tf.py_function", call["site"])]
                    self.breaks.extend(inside)
                call["cause"] = inside[0]
                self.cut_py_functions.append(inside[0])

    def _any_connected(self, values: Any) -> bool:
        return any(id(t) in self.connected for t in tf.nest.flatten(values))

    def _cut_off(self, result: Any, cause: Cause) -> None:
        """The result of a Python function run on the prediction: computed from it, without a gradient."""
        for t in tf.nest.flatten(result):
            if hasattr(t, "dtype"):
                self.keep.append(t)
                self.derived.add(id(t))
                self.connected.discard(id(t))
                self.dead[id(t)] = cause
                self.sites.setdefault(id(t), cause[2])

    # -- hand-written gradients ------------------------------------------------------------------
    def _custom_gradient(self, original):
        recorder = self

        def eager_mode_decorator(f, args, kwargs):
            flat = tf.nest.flatten((args, kwargs))
            connected = [i for i, a in enumerate(args) if id(a) in recorder.connected]
            recorder._inside_custom += 1
            try:
                result = original(f, args, kwargs)
            finally:
                recorder._inside_custom -= 1
            if any(id(a) in recorder.derived for a in flat):
                site = R.user_site()
                for o in tf.nest.flatten(result):
                    recorder.keep.append(o)
                    recorder.derived.add(id(o))
                    recorder.sites.setdefault(id(o), site)
                    if connected:
                        recorder.connected.add(id(o))
                code = getattr(f, "__code__", None)
                if (
                    connected
                    and code is not None
                    and not R.is_library_file(code.co_filename)
                    and sum(fn[0] is f for fn in recorder.functions) < R.CALLS_CHECKED
                ):
                    recorder.functions.append((f, args, kwargs, connected))
            return result

        return eager_mode_decorator

    def __enter__(self):
        for name in _HOST_METHODS:
            if name in vars(ops._EagerTensorBase):
                self._saved[name] = vars(ops._EagerTensorBase)[name]
                setattr(ops._EagerTensorBase, name, self._wrap(name))
        for name in _NUMPY_CONVERSIONS:
            self._saved["np." + name] = getattr(np, name)
            setattr(np, name, self._numpy_conversion(name))
        self._saved["custom_gradient"] = tf_custom_gradient._eager_mode_decorator
        tf_custom_gradient._eager_mode_decorator = self._custom_gradient(self._saved["custom_gradient"])
        self._saved["capture"] = capture_container.FunctionCaptures.capture_by_value
        capture_container.FunctionCaptures.capture_by_value = self._capture(self._saved["capture"])
        recorder = self
        ops._EagerTensorBase.__array_ufunc__ = lambda t, *a, **k: recorder._array_ufunc(t, *a, **k)
        ops._EagerTensorBase.__array_function__ = lambda t, *a: recorder._array_function(t, *a)
        op_callbacks.add_op_callback(self.callback)
        self._eager = tf.config.functions_run_eagerly()
        tf.config.run_functions_eagerly(True)
        self._profile = sys.getprofile()
        sys.setprofile(self._profiler)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self._profile)
        tf.config.run_functions_eagerly(self._eager)
        op_callbacks.remove_op_callback(self.callback)
        tf_custom_gradient._eager_mode_decorator = self._saved.pop("custom_gradient")
        capture_container.FunctionCaptures.capture_by_value = self._saved.pop("capture")
        for name in _NUMPY_CONVERSIONS:
            setattr(np, name, self._saved.pop("np." + name))
        for name, method in self._saved.items():
            setattr(ops._EagerTensorBase, name, method)
        for name in ("__array_ufunc__", "__array_function__"):
            if name in vars(ops._EagerTensorBase):
                delattr(ops._EagerTensorBase, name)
        return False

    # -- the loss as a sum of terms ---------------------------------------------------------------
    def summands(self, t: Any, size: int, depth: int = 0) -> list[Any]:
        """The terms whose sum (up to constant factors) is ``t``; only sums of at most ``size``
        elements (the loss's) count, not element-wise ones inside a formula."""
        entry = self.terms.get(id(t))
        if entry is None or depth > 50:
            return [t]
        op_type, inputs = entry
        varying = [i for i in inputs if id(i) in self.derived]
        if op_type in _SUM and t.shape.num_elements() is not None and t.shape.num_elements() <= size:
            constants = [
                R.Constant(float(i.numpy()) if i.shape.num_elements() == 1 and _float_dtype(i) else None)
                for i in inputs
                if id(i) not in self.derived and id(i) not in self.target_ids
            ]
            return [s for i in varying for s in self.summands(i, size, depth + 1)] + constants
        if op_type in _SCALE and len(varying) == 1:
            return self.summands(varying[0], size, depth + 1)
        return [t]


def _captured_as_constant(frame: Any) -> bool:
    """Whether ``frame`` reads a tensor's value for TensorFlow's capture of it into a function graph."""
    caller = frame.f_back
    return (
        frame.f_code.co_name == "constant_value" and caller is not None and caller.f_code.co_name == "_capture_as_const"
    )


def _op_label(op_type: str) -> str:
    return f"tf op {op_type}"


def _grows(a: tuple, b: tuple) -> bool:
    try:
        shape = np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return math.prod(shape) > max(math.prod(a), math.prod(b)) and math.prod(a) > 1 and math.prod(b) > 1


def _exception_finding(error: BaseException, rec: _Recorder, pred_shape, true_shape) -> Finding | None:
    text = str(error)
    site = R.traceback_site(error.__traceback__)
    if rec.swaps:
        return R.keras_swap_finding(*rec.swaps[0])
    shape_words = (
        "Incompatible shapes",
        "must be broadcastable",
        "are incompatible",
        "shapes must be equal",
        "Dimensions must be equal",
        "not compatible",
        "must have the same rank",  # Keras's crossentropies
        "must have the same shape",
    )
    if pred_shape != true_shape and any(w in text for w in shape_words):
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        first = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$", "", first)
        return Finding(
            R.BROADCAST,
            "error",
            f"prediction {pred_shape} and target {true_shape} have shapes that cannot be combined: {first}",
            "give the prediction and the target the same shape (check the model's output layer size "
            "and the target's layout)",
            site[0],
            site[1],
        )
    return None


def _to_tensor(value: Any) -> Any:
    if isinstance(value, tf.Variable):
        value = value.value()
    tensor = tf.convert_to_tensor(value)
    # A fresh tensor object: ids identify the prediction and the target while the pass runs.
    return tf.identity(tensor)


def check_custom_gradient(f: Callable, args: tuple, kwargs: dict, wrt: list[int]):
    """Compare the gradient function that ``f`` returns with central differences of its value, at its
    inputs from the pass; ``(verdict, gradient function)`` or ``None``."""
    weights: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(0)

    def call(xs, dtype):
        new = [tf.cast(a, dtype) if tf.is_tensor(a) and _float_dtype(a) else a for a in args]
        for i, x in zip(wrt, xs):
            new[i] = tf.constant(x, dtype)
        result, grad_fn = f(*new, **kwargs)
        flat = [r for r in tf.nest.flatten(result) if tf.is_tensor(r) and _float_dtype(r)]
        for k, r in enumerate(flat):
            if k not in weights:  # fixed random weights: a scalar that sees every output element
                weights[k] = rng.uniform(0.5, 1.5, size=tuple(r.shape))
        return result, grad_fn, flat

    point = [np.asarray(args[i], dtype=np.float64) for i in wrt]
    dtype = tf.float64
    try:
        _, grad_fn, flat = call(point, tf.float64)
        grad_fn(*[tf.constant(weights[k], r.dtype) for k, r in enumerate(flat)])
    except Exception:  # the function or its gradient does not run in float64 (a float32 constant in
        # the gradient function): check in its own precision
        dtype = args[wrt[0]].dtype
        _, grad_fn, flat = call(point, dtype)
    if "variables" in inspect.signature(grad_fn).parameters:
        return None  # a gradient for variables too: not checked

    def value(xs):
        _, _, flat = call(xs, dtype)
        return float(sum(np.sum(weights[k] * r.numpy().astype(np.float64)) for k, r in enumerate(flat)))

    def gradient(xs):
        result, grad_fn, flat = call(xs, dtype)
        upstream = [tf.constant(weights[k], r.dtype) for k, r in enumerate(flat)]
        grads = grad_fn(*upstream)
        grads = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        return [
            np.zeros(np.shape(xs[j])) if grads[i] is None else np.asarray(grads[i], dtype=np.float64)
            for j, i in enumerate(wrt)
        ]

    return check_directions(value, gradient, point), grad_fn


def _wrong_gradient_findings(rec: _Recorder, report: Report) -> None:
    wrong: list[Callable] = []
    for f, args, kwargs, wrt in rec.functions:
        if f in wrong:
            continue
        try:
            checked = check_custom_gradient(f, args, kwargs, wrt)
        except Exception:  # the check could not run the function again: no evidence either way
            continue
        if checked is not None and checked[0] is not None and checked[0].wrong:
            wrong.append(f)
            report.add(R.wrong_gradient_finding(f.__qualname__, R.function_site(checked[1]), checked[0]))


def _dead_causes(
    rec: _Recorder, tape: Any, loss: Any, sources: list[Any], terms_elsewhere: Callable[[], list | None]
) -> list[Cause]:
    """The causes of the loss's terms that send no gradient to the prediction, when another term does."""
    terms = rec.summands(loss, max(loss.shape.num_elements() or 1, 1))
    if len(terms) < 2:
        return []
    dead: list[Cause] = []
    carried = False
    for term in terms:
        if isinstance(term, R.Constant):
            continue
        if id(term) in rec.connected:
            grads = tape.gradient(term, sources)
            if any(g is not None and bool(np.any(tf.convert_to_tensor(g).numpy() != 0)) for g in grads):
                carried = True
        elif id(term) in rec.dead:
            dead.append(rec.dead[id(term)])
    return R.unique_causes([*dead, R.host_number_cause(terms, rec.breaks, dead, terms_elsewhere)]) if carried else []


def diagnose_tensorflow(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    order: str,
    *,
    from_names: bool = False,
    kwargs: dict | None = None,
) -> Report:
    return run_loss(loss_fn, y_true, y_pred, order, from_names=from_names, kwargs=kwargs)[0]


def run_loss(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    order: str,
    *,
    from_names: bool = False,
    kwargs: dict | None = None,
) -> tuple[Report, list[Any]]:
    """Diagnose ``loss_fn`` at ``y_pred``: a tensor, or a nest (tuple, list, dict) of tensors (a
    model's outputs, of which the loss may use a part). Returns the report and the gradient of each
    output in ``tf.nest.flatten`` order (``None`` where the loss does not reach it)."""
    kwargs = kwargs or {}
    R.refresh_library_roots()
    single = tf.is_tensor(y_pred) or isinstance(y_pred, (np.ndarray, tf.Variable))
    outputs = [_to_tensor(o) for o in tf.nest.flatten(y_pred)]
    target = _to_tensor(y_true)
    report = Report(
        "tensorflow",
        R.callable_name(loss_fn),
        pred_shape=tuple(outputs[0].shape) if single else None,
        true_shape=tuple(target.shape),
    )
    none = [None] * len(outputs)
    floating = [_float_dtype(o) for o in outputs]
    if not any(floating):
        report.add(
            Finding(
                R.DISCONNECTED,
                "error",
                f"the prediction has dtype {outputs[0].dtype.name}: integers carry no gradient",
                "pass the model's floating-point output (logits or probabilities)",
            )
        )
        return report, none
    keras_loss = _is_keras_loss(loss_fn)
    if from_names and order == "y_pred, y_true" and (keras_loss or _is_plain_function(loss_fn)):
        report.add(R.keras_order_finding(loss_fn))
    sources = [o for o, f in zip(outputs, floating) if f]
    rec = _Recorder(sources, target)
    pred = tf.nest.pack_sequence_as(y_pred, outputs) if not single else outputs[0]
    # keras.losses.Loss.__call__ always takes (y_true, y_pred), whatever call() names its parameters.
    args = (pred, target) if order == "y_pred, y_true" and not keras_loss else (target, pred)
    with tf.GradientTape(persistent=True) as tape:
        for s in sources:
            tape.watch(s)
        try:
            with rec:
                loss = loss_fn(*args, **kwargs)
        except Exception as error:
            finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
            if finding is None:
                raise
            report.add(finding)
            return report, none
        is_tensor = tf.is_tensor(loss) or hasattr(loss, "dtype")
        if is_tensor:
            loss = tf.convert_to_tensor(loss)
            scalar = tf.reduce_sum(tf.cast(loss, tf.float32)) if loss.shape.rank else tf.cast(loss, tf.float32)
    for swap in rec.swaps:
        report.add(R.keras_swap_finding(*swap))
    for name, a, b, site in rec.broadcasts:
        report.add(R.broadcast_finding(name, a, b, "tensorflow", site))
    if not is_tensor:
        if rec.breaks:
            report.add(R.break_finding(*rec.first_break()[:2], "tensorflow", rec.first_break()[2]))
        else:
            report.add(
                Finding(
                    R.DISCONNECTED,
                    "error",
                    f"the loss returned a {type(loss).__name__}, not a tensor: it has no gradient",
                    "return a tensor computed from y_pred",
                    *R.definition_site(loss_fn),
                )
            )
        return report, none
    report.value = float(scalar.numpy())
    if not math.isfinite(report.value):
        if not rec.swaps:  # NaN from a log of the target: a consequence of the swap, reported already
            op, site = rec.non_finite[0] if rec.non_finite else ("the loss", R.definition_site(loss_fn))
            report.add(
                Finding(
                    R.NON_FINITE,
                    "error",
                    f"`{op}` produced NaN/Inf in the forward pass (loss = {report.value})",
                    "guard the operation: a zero denominator needs tf.math.divide_no_nan or a clamp "
                    "(x / tf.maximum(y, eps)); log/sqrt need a positive argument",
                    site[0],
                    site[1],
                )
            )
        return report, none
    try:
        grads = tape.gradient(scalar, sources)
    except tf.errors.InvalidArgumentError:
        if not rec.cut_py_functions:
            raise
        # TensorFlow's gradient of a tf.py_function cut off from its input is a scalar 0, which does
        # not add up with the gradient of another term ("Inputs to operation AddN ... must have the
        # same size and shape"): the user's training fails the same way.
        kind, op, site = rec.cut_py_functions[0]
        report.add(R.break_finding(kind, op, "tensorflow", site))
        return report, none
    _wrong_gradient_findings(rec, report)
    reached = [
        np.asarray(tf.convert_to_tensor(g).numpy(), dtype=np.float64).reshape(-1) for g in grads if g is not None
    ]
    if not reached:
        if R.WRONG_GRADIENT in report.codes:  # a hand-written gradient that returns None: reported
            return report, none
        if rec.breaks:
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "tensorflow", site))
        else:
            site = rec.sites.get(id(loss), R.definition_site(loss_fn))
            report.add(R.break_finding("unused", "", "tensorflow", site))
        return report, none
    g = np.concatenate(reached)
    finite = bool(np.all(np.isfinite(g)))
    report.grad_norm = float(np.linalg.norm(g)) if finite else float("nan")
    report.zero_fraction = float(np.mean(g == 0)) if g.size else 1.0

    def terms_elsewhere() -> list | None:
        moved = [tf.identity(o * (1 + 1e-3) + 1e-3) if f else o for o, f in zip(outputs, floating)]
        again = _Recorder([o for o, f in zip(moved, floating) if f], target)
        structure = tf.nest.pack_sequence_as(y_pred, moved) if not single else moved[0]
        try:
            with again:
                value = loss_fn(*((structure, target) if args[0] is pred else (target, structure)), **kwargs)
        except Exception:  # no second look: no finding from it
            return None
        if not tf.is_tensor(value):
            return None
        return again.summands(value, max(value.shape.num_elements() or 1, 1))

    dead = _dead_causes(rec, tape, loss, sources, terms_elsewhere) if finite and report.zero_fraction < 1 else []

    def flat_where_zero() -> float | None:
        if sum(floating) != 1:
            return None
        k = floating.index(True)
        start = np.asarray(tf.convert_to_tensor(outputs[k]).numpy(), dtype=np.float64)
        dtype = tf.convert_to_tensor(outputs[k]).dtype

        def loss_at(values: np.ndarray) -> tuple[float, Any]:
            moved = tf.constant(values, dtype=dtype)
            structure = list(outputs)
            structure[k] = moved
            pred_again = tf.nest.pack_sequence_as(y_pred, structure) if not single else moved
            with tf.GradientTape() as probe:
                probe.watch(moved)
                value = loss_fn(*((pred_again, target) if args[0] is pred else (target, pred_again)), **kwargs)
                value = tf.reduce_sum(value)
            return float(value.numpy()), probe.gradient(value, moved)

        try:
            value, grad = loss_at(start)
            if grad is None:
                return None
            return R.moving_fraction(
                np.asarray(tf.convert_to_tensor(grad).numpy(), np.float64),
                start,
                value,
                lambda moved: loss_at(moved)[0],
            )
        except Exception:  # no second look: keep the finding
            return None

    def zero_elsewhere() -> float | None:
        if not _float_dtype(target):  # labels cannot be moved: probe the prediction instead
            return flat_where_zero()
        moved = target * (1 - 2e-3) + 1e-3  # a 0/1 target stays in [0, 1]
        again = [tf.identity(s) for s in sources]
        inputs = iter(again)
        structure = [next(inputs) if f else o for o, f in zip(outputs, floating)]
        pred_again = tf.nest.pack_sequence_as(y_pred, structure) if not single else structure[0]
        try:
            with tf.GradientTape() as second:
                for s in again:
                    second.watch(s)
                value = loss_fn(*((pred_again, moved) if args[0] is pred else (moved, pred_again)), **kwargs)
            found = [g for g in second.gradient(value, again) if g is not None]
        except Exception:  # no second look: keep the finding
            return None
        return float(np.mean(np.concatenate([np.ravel(tf.convert_to_tensor(g).numpy()) for g in found]) == 0))

    gradient_of = tape.gradient  # the tape is deleted below; the search runs before

    def locate_zero() -> tuple[str | None, int | None] | None:
        # The last op (the nearest the loss) whose output gets a nonzero gradient and whose inputs
        # get none: a clip, ReLU or where that is saturated for every element.
        tensors = list({id(t): t for outs, ins, _ in rec.links for t in (*outs, *ins)}.values())
        try:
            grads = gradient_of(scalar, tensors)
        except Exception:  # no second look: the loss's line
            return None
        nonzero = {
            id(t): g is not None and bool(np.any(tf.convert_to_tensor(g).numpy() != 0)) for t, g in zip(tensors, grads)
        }
        for outs, ins, site in reversed(rec.links):
            if any(nonzero[id(o)] for o in outs) and not any(nonzero[id(i)] for i in ins):
                return site
        return None

    R.add_gradient_findings(
        report,
        rec,
        "tensorflow",
        rec.sites.get(id(loss), R.definition_site(loss_fn)),
        finite,
        lambda: rec.singular[0][1] if rec.singular else R.definition_site(loss_fn),
        dead,
        zero_elsewhere,
        locate_zero,
    )
    if finite and rec.non_finite and rec.nan_checks and report.zero_fraction > 0 and not report.findings:
        report.add(R.hidden_non_finite_finding(*rec.non_finite[0], *rec.nan_checks[0], report.zero_fraction))
    del tape
    grads = iter(grads)
    return report, [next(grads) if f else None for f in floating]


def _is_keras_loss(fn: Any) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(fn, keras.losses.Loss)


def _is_plain_function(fn: Any) -> bool:
    # Keras calls plain functions positionally; a keras.losses.Loss subclass has call(y_true, y_pred) by contract.
    return inspect.isfunction(fn) or inspect.ismethod(fn)


# ---------------------------------------------------------------------------------------------
# diagnose_model: which variables get no gradient, grouped by layer, and why.


def _variable_name(v: Any) -> str:
    return getattr(v, "path", None) or v.name


def diagnose_model_tensorflow(model: Any, loss_fn: Callable[..., Any], x: Any, y: Any, order: str) -> Report:
    R.refresh_library_roots()
    layers = {id(layer): layer for layer in _all_layers(model)}
    call_sites: dict[int, tuple[str | None, int | None]] = {}
    try:
        model_file = inspect.getsourcefile(type(model).call)
    except (TypeError, OSError, AttributeError):
        model_file = None

    def profiler(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "__call__":
            layer = frame.f_locals.get("self")
            if id(layer) in layers and id(layer) not in call_sites:
                site = R.user_site(frame)
                # Only a line inside the model's own call() says where the layer is used.
                if site[0] is not None and site[0] == model_file:
                    call_sites[id(layer)] = site

    x = tf.nest.map_structure(tf.convert_to_tensor, x)
    y = tf.convert_to_tensor(y)
    previous = sys.getprofile()
    with tf.GradientTape(persistent=True) as tape:
        sys.setprofile(profiler)
        try:
            pred = model(x, training=True)
        finally:
            sys.setprofile(previous)
        outputs = tf.nest.flatten(pred)
        output_sums = [tf.reduce_sum(o) if _float_dtype(o) else None for o in outputs]
        args = (pred, y) if order == "y_pred, y_true" else (y, pred)
        try:
            loss = loss_fn(*args)
            scalar = tf.reduce_sum(tf.cast(loss, tf.float32)) if tf.is_tensor(loss) else None
            failed = False
        except Exception:  # diagnosed below: the loss's own finding says why, or the error is re-raised
            scalar, failed = None, True
    loss_report, output_grads = run_loss(loss_fn, y, tf.nest.map_structure(tf.identity, pred), order)
    report = Report(
        "tensorflow",
        f"{type(model).__name__} + {R.callable_name(loss_fn)}",
        list(loss_report.findings),
        loss_report.value,
        loss_report.grad_norm,
        loss_report.zero_fraction,
        loss_report.pred_shape,
        loss_report.true_shape,
    )
    if failed:
        return report
    trainable = list(model.trainable_variables)  # after the call: a subclassed model builds in its first call
    reaches: dict[int, set[int]] = {id(v): set() for v in trainable}
    for i, total in enumerate(output_sums):
        if total is None or not trainable:
            continue
        for v, g in zip(trainable, tape.gradient(total, trainable)):
            if g is not None:
                reaches[id(v)].add(i)
    to_loss = tape.gradient(scalar, trainable) if trainable and scalar is not None else [None] * len(trainable)
    del tape
    owner: dict[int, Any] = {}  # variable id -> the Keras layer that holds it
    for layer in sorted(layers.values(), key=lambda layer: len(layer.weights)):  # the innermost layer owns
        for v in layer.weights:
            owner.setdefault(id(v), layer)
    used_outputs = {i for i, g in enumerate(output_grads) if g is not None}
    labels = tf.nest.flatten(R.output_labels(pred))
    unused: dict[int, list[Any]] = {}
    ignored, disconnected = [], []
    for v, g_loss in zip(trainable, to_loss):
        if g_loss is not None:
            continue
        if not reaches[id(v)]:
            unused.setdefault(id(owner.get(id(v), model)), []).append(v)
        elif len(outputs) > 1 and used_outputs and not reaches[id(v)] & used_outputs:
            ignored.append(_variable_name(v))
        else:
            disconnected.append(_variable_name(v))
    model_site = R.function_site(type(model).call) if model_file else (None, None)
    for layer_id, variables in unused.items():
        layer = layers.get(layer_id, model)
        names = [_variable_name(v) for v in variables]
        others = [w for w in layer.trainable_weights if all(w is not v for v in variables)]
        if layer_id in call_sites and any(reaches.get(id(w)) for w in others):
            # The layer runs and its other weights reach the output: these it never uses.
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"layer `{layer.name}` is used, but its call() never uses these weights",
                    f"use them in {type(layer).__name__}.call(), or do not create them",
                    R.function_site(type(layer).call),
                ),
                merge=False,
            )
        elif layer_id in call_sites:
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"layer `{layer.name}` is called, but its output does not reach the prediction (an unused branch)",
                    f"use the output of layer `{layer.name}` on the way to the prediction, or delete the call",
                    call_sites[layer_id],
                ),
                merge=False,
            )
        else:
            report.add(
                R.variables_finding(
                    "error",
                    names,
                    f"layer `{layer.name}` is never called on the way to the output (an unused branch)",
                    f"use layer `{layer.name}` in the model's call(), or remove it",
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
                "include those outputs in the loss, or freeze the layers that compute only them",
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
                "the loss is disconnected from the prediction (see the loss's finding); the "
                "optimizer raises 'No gradients provided for any variable'",
                "fix the loss first: it must be computed from y_pred",
                (first.file, first.line) if first else R.definition_site(loss_fn),
            ),
            merge=False,
        )
    for layer in layers.values():
        if layer is model or layer.trainable or not layer.weights:
            continue
        if any(
            not getattr(parent, "trainable", True)
            for parent in layers.values()
            if parent is not layer and parent is not model and layer in _all_layers(parent)
        ):
            continue  # reported with the frozen parent
        site = call_sites.get(id(layer), model_site)
        names = [_variable_name(v) for v in layer.weights]
        report.add(
            R.variables_finding(
                "warning",
                names,
                f"layer `{layer.name}` is frozen (trainable=False)",
                f"if it should learn, set model.get_layer({layer.name!r}).trainable = True and compile again",
                site,
            ),
            merge=False,
        )
    return report


def _all_layers(model: Any) -> list[Any]:
    found = []
    stack = list(getattr(model, "layers", []) or [])
    if hasattr(model, "_flatten_layers"):
        stack = list(model._flatten_layers(include_self=False, recursive=True))
    for layer in stack:
        if layer not in found:
            found.append(layer)
    return found
