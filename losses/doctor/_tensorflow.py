"""The doctor for TensorFlow and Keras 3 on the TensorFlow backend: one eager pass under an op
callback that sees every op with its inputs and outputs, hooks on the conversions to host values
(``.numpy()``, ``float()``, ``bool()``, NumPy functions), then one ``GradientTape`` gradient."""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_callbacks, ops

from losses.doctor import _report as R
from losses.doctor._report import Finding, Report

# Ops through which TensorFlow sends no gradient (or a zero one), by the kind of break they are.
_STOP = {"StopGradient": "detach", "PreventGradient": "detach"}
_COMPARE = {"Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr",
            "LogicalNot", "IsNan", "IsFinite", "IsInf", "ApproximateEqual"}
_ARGMAX = {"ArgMax", "ArgMin", "TopKV2", "Unique", "Bucketize", "SearchSorted", "LowerBound", "UpperBound"}
_PIECEWISE = {"Round": "round", "Rint": "round", "Floor": "floor", "Ceil": "floor", "FloorDiv": "floor",
              "FloorMod": "floor", "TruncateDiv": "floor", "Sign": "sign"}
_INTEGER = {"Shape", "ShapeN", "Size", "Rank", "ZerosLike", "OnesLike", "Fill"}  # no value of the input flows on
_HOST_METHODS = ("numpy", "__array__", "__float__", "__int__", "__index__", "__bool__", "__nonzero__")
_SINGULAR = {"Sqrt", "Rsqrt", "Log", "Reciprocal", "Inv", "RealDiv", "Div", "Pow", "Xlogy", "Acos", "Asin",
             "Atanh"}
_ELEMENTWISE_KERAS = {"mean_squared_error", "mean_absolute_error", "binary_crossentropy", "binary_focal_crossentropy",
                      "categorical_crossentropy", "huber", "log_cosh", "kl_divergence", "poisson", "hinge",
                      "squared_hinge", "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
                      "cosine_similarity", "categorical_hinge", "categorical_focal_crossentropy"}


def _float_dtype(t: Any) -> bool:
    return t.dtype.is_floating or t.dtype.is_complex


def _finite(t: Any) -> bool:
    if not _float_dtype(t) or t.shape.num_elements() == 0:
        return True
    return bool(np.all(np.isfinite(t._numpy())))


def _has_zero(t: Any) -> bool:
    return bool(np.any(t._numpy() == 0))


class _Recorder:
    def __init__(self, pred: Any, target: Any) -> None:
        self.keep: list[Any] = [pred, target]
        self.connected = {id(pred)}   # depends on the prediction through differentiable ops
        self.derived = {id(pred)}     # depends on the prediction at all
        self.target_ids = {id(target)}
        self.sites: dict[int, tuple[str | None, int | None]] = {}
        self.breaks: list[tuple[str, str, tuple[str | None, int | None]]] = []
        self.zero_ops: list[tuple[str, str, tuple[str | None, int | None]]] = []
        self.broadcasts: list[tuple[str, tuple, tuple, tuple[str | None, int | None]]] = []
        self.swaps: list[tuple[str, tuple[str | None, int | None]]] = []
        self.non_finite: list[tuple[str, tuple[str | None, int | None]]] = []
        self.singular: list[tuple[str, tuple[str | None, int | None]]] = []
        self.nonfinite_ids = {id(t) for t in (pred, target) if not _finite(t)}
        self._saved: dict[str, Any] = {}
        self._profile = None

    def first_break(self):
        kind, op, site = self.breaks[0]
        for other in self.breaks[1:]:
            if other[0] == "branch" and other[2] == site:
                return other
        return kind, op, site

    # -- op callback -------------------------------------------------------------------------
    def callback(self, op_type, inputs, attrs, outputs, op_name=None, graph=None):
        if graph is not None:
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
        if conn_in:
            kind = self._break_kind(op_type, outputs)
            if kind is None:
                for o in outputs:
                    if _float_dtype(o):
                        self.connected.add(id(o))
                if op_type == "Sign":
                    self.zero_ops.append(("sign", "tf.sign", site))
                if op_type in _SINGULAR:
                    self._check_singular(op_type, inputs, conn_in, site)
            elif kind != "none":
                self.breaks.append((kind, _op_label(op_type), site))
        if derived_in and target_only:
            for p in derived_in:
                for t in target_only:
                    a, b = tuple(p.shape), tuple(t.shape)
                    if a != b and _grows(a, b) and any(tuple(o.shape) == tuple(np.broadcast_shapes(a, b))
                                                       for o in outputs):
                        self.broadcasts.append((_op_label(op_type), a, b, site))
        bad = [o for o in outputs if not _finite(o)]
        if bad:
            # The first op whose output is NaN/Inf while its inputs were finite: where the NaN is born.
            if not self.non_finite and not any(id(t) in self.nonfinite_ids for t in inputs):
                self.non_finite.append((_op_label(op_type), site))
            self.nonfinite_ids.update(id(o) for o in bad)
        return None

    def _break_kind(self, op_type: str, outputs: list) -> str | None:
        if op_type in _STOP:
            return _STOP[op_type]
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
            if id(tensor) in (recorder.derived if branch else recorder.connected):
                kind = "branch" if branch else "host"
                label = {"__array__": "a NumPy function", "numpy": ".numpy()", "__float__": "float()",
                         "__int__": "int()", "__index__": "int()", "__bool__": "bool() / if",
                         "__nonzero__": "bool() / if"}[method_name]
                recorder.breaks.append((kind, label, R.user_site()))
            return original(tensor, *args, **kwargs)

        return wrapper

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

    # -- keras losses called with swapped arguments ----------------------------------------------
    def _profiler(self, frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_name in ("numpy_function", "py_func_common") and R.is_library_file(code.co_filename):
            # The wrapped function sees NumPy arrays; TensorFlow has no gradient for it.
            inp = frame.f_locals.get("inp") or ()
            if any(id(t) in self.connected for t in (inp if isinstance(inp, (list, tuple)) else [inp])):
                self.breaks.append(("host", "tf.numpy_function", R.user_site(frame)))
            return
        if code.co_name in _ELEMENTWISE_KERAS and code.co_varnames[:2] == ("y_true", "y_pred") \
                and R.is_library_file(code.co_filename):
            y_true, y_pred = frame.f_locals.get("y_true"), frame.f_locals.get("y_pred")
            if id(y_true) in self.derived and id(y_pred) not in self.derived:
                self.swaps.append((code.co_name, R.user_site(frame)))

    def __enter__(self):
        for name in _HOST_METHODS:
            if name in vars(ops._EagerTensorBase):
                self._saved[name] = vars(ops._EagerTensorBase)[name]
                setattr(ops._EagerTensorBase, name, self._wrap(name))
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
        for name, method in self._saved.items():
            setattr(ops._EagerTensorBase, name, method)
        for name in ("__array_ufunc__", "__array_function__"):
            if name in vars(ops._EagerTensorBase):
                delattr(ops._EagerTensorBase, name)
        return False


def _op_label(op_type: str) -> str:
    return f"tf op {op_type}"


def _grows(a: tuple, b: tuple) -> bool:
    try:
        shape = np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return math.prod(shape) > max(math.prod(a), math.prod(b)) and math.prod(a) > 1 and math.prod(b) > 1


def _swap_finding(name: str, site) -> Finding:
    return Finding(R.SWAPPED_ARGUMENTS, "error",
                   f"keras.losses.{name} takes (y_true, y_pred), but the prediction was passed as y_true",
                   f"call {name}(y_true, y_pred): Keras losses put the target first", site[0], site[1])


def _order_finding(loss_fn: Callable[..., Any]) -> Finding:
    names = R.parameter_names(loss_fn)[:2]
    return Finding(R.SWAPPED_ARGUMENTS, "error",
                   f"the loss's parameters are ({', '.join(names)}), but Keras calls a loss as loss(y_true, y_pred) "
                   "by position: the prediction would arrive in the target's parameter",
                   "declare the parameters in Keras's order: def loss(y_true, y_pred)", *R.definition_site(loss_fn))


def _exception_finding(error: BaseException, rec: _Recorder, pred_shape, true_shape) -> Finding | None:
    text = str(error)
    site = R.traceback_site(error.__traceback__)
    if rec.swaps:
        return _swap_finding(*rec.swaps[0])
    shape_words = ("Incompatible shapes", "must be broadcastable", "are incompatible", "shapes must be equal",
                   "Dimensions must be equal", "not compatible")
    if any(w in text for w in shape_words):
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        first = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$", "", first)
        return Finding(R.BROADCAST, "error",
                       f"prediction {pred_shape} and target {true_shape} have shapes that cannot be combined: {first}",
                       "give the prediction and the target the same shape (check the model's output layer size "
                       "and the target's layout)", site[0], site[1])
    return None


def _to_tensor(value: Any) -> Any:
    if isinstance(value, tf.Variable):
        value = value.value()
    tensor = tf.convert_to_tensor(value)
    # A fresh tensor object: ids identify the prediction and the target while the pass runs.
    return tf.identity(tensor)


def diagnose_tensorflow(loss_fn: Callable[..., Any], y_true: Any, y_pred: Any, order: str, *,
                        from_names: bool = False, kwargs: dict | None = None) -> Report:
    kwargs = kwargs or {}
    R.refresh_library_roots()
    pred, target = _to_tensor(y_pred), _to_tensor(y_true)
    report = Report("tensorflow", R.callable_name(loss_fn), pred_shape=tuple(pred.shape),
                    true_shape=tuple(target.shape))
    if not _float_dtype(pred):
        report.add(Finding(R.DISCONNECTED, "error", f"the prediction has dtype {pred.dtype.name}: integers carry no gradient",
                           "pass the model's floating-point output (logits or probabilities)"))
        return report
    keras_loss = _is_keras_loss(loss_fn)
    if from_names and order == "y_pred, y_true" and (keras_loss or _is_plain_function(loss_fn)):
        report.add(_order_finding(loss_fn))
    rec = _Recorder(pred, target)
    # keras.losses.Loss.__call__ always takes (y_true, y_pred), whatever call() names its parameters.
    args = (pred, target) if order == "y_pred, y_true" and not keras_loss else (target, pred)
    with tf.GradientTape() as tape:
        tape.watch(pred)
        try:
            with rec:
                loss = loss_fn(*args, **kwargs)
        except Exception as error:
            finding = _exception_finding(error, rec, report.pred_shape, report.true_shape)
            if finding is None:
                raise
            report.add(finding)
            return report
        is_tensor = tf.is_tensor(loss) or hasattr(loss, "dtype")
        if is_tensor:
            loss = tf.convert_to_tensor(loss)
            scalar = tf.reduce_sum(tf.cast(loss, tf.float32)) if loss.shape.rank else tf.cast(loss, tf.float32)
    for swap in rec.swaps:
        report.add(_swap_finding(*swap))
    for name, a, b, site in rec.broadcasts:
        report.add(Finding(R.BROADCAST, "error",
                           f"`{name}` combines a prediction-derived tensor of shape {a} with a target-derived tensor "
                           f"of shape {b}; broadcasting silently compares every element with every other",
                           "make the shapes equal before combining them (tf.reshape(y_true, tf.shape(y_pred)), "
                           "tf.squeeze(y_pred, -1), or fix the model's output size)", site[0], site[1]))
    if not is_tensor:
        if rec.breaks:
            report.add(R.break_finding(*rec.first_break()[:2], "tensorflow", rec.first_break()[2]))
        else:
            report.add(Finding(R.DISCONNECTED, "error",
                               f"the loss returned a {type(loss).__name__}, not a tensor: it has no gradient",
                               "return a tensor computed from y_pred", *R.definition_site(loss_fn)))
        return report
    report.value = float(scalar.numpy())
    if not math.isfinite(report.value):
        op, site = rec.non_finite[0] if rec.non_finite else ("the loss", R.definition_site(loss_fn))
        report.add(Finding(R.NON_FINITE, "error", f"`{op}` produced NaN/Inf in the forward pass (loss = {report.value})",
                           "guard the operation: a zero denominator needs tf.math.divide_no_nan or a clamp "
                           "(x / tf.maximum(y, eps)); log/sqrt need a positive argument", site[0], site[1]))
        return report
    grad = tape.gradient(scalar, pred)
    if grad is None:
        if rec.breaks:
            kind, op, site = rec.first_break()
            report.add(R.break_finding(kind, op, "tensorflow", site))
        else:
            site = rec.sites.get(id(loss), R.definition_site(loss_fn))
            report.add(R.break_finding("unused", "", "tensorflow", site))
        return report
    if isinstance(grad, tf.IndexedSlices):
        grad = tf.convert_to_tensor(grad)
    g = np.asarray(grad.numpy(), dtype=np.float64)
    finite = bool(np.all(np.isfinite(g)))
    report.grad_norm = float(np.linalg.norm(g)) if finite else float("nan")
    report.zero_fraction = float(np.mean(g == 0)) if g.size else 1.0
    R.add_gradient_findings(
        report, rec, "tensorflow", rec.sites.get(id(loss), R.definition_site(loss_fn)), finite,
        lambda: rec.singular[0][1] if rec.singular else R.definition_site(loss_fn))
    return report


def _is_keras_loss(fn: Any) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(fn, keras.losses.Loss)


def _is_plain_function(fn: Any) -> bool:
    # Keras calls plain functions positionally; a keras.losses.Loss subclass has call(y_true, y_pred) by contract.
    import inspect

    return inspect.isfunction(fn) or inspect.ismethod(fn)


def diagnose_model_tensorflow(model: Any, loss_fn: Callable[..., Any], x: Any, y: Any, order: str) -> Report:
    import inspect

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

    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y)
    previous = sys.getprofile()
    with tf.GradientTape(persistent=True) as tape:
        sys.setprofile(profiler)
        try:
            pred = model(x, training=True)
        finally:
            sys.setprofile(previous)
        pred_sum = tf.reduce_sum(pred)
        args = (pred, y) if order == "y_pred, y_true" else (y, pred)
        try:
            loss = loss_fn(*args)
            scalar = tf.reduce_sum(tf.cast(loss, tf.float32)) if tf.is_tensor(loss) else None
            failed = False
        except Exception:  # diagnosed below: the loss's own finding says why, or the error is re-raised
            scalar, failed = None, True
    loss_report = diagnose_tensorflow(loss_fn, y, tf.identity(pred), order)
    report = Report("tensorflow", f"{type(model).__name__} + {R.callable_name(loss_fn)}", list(loss_report.findings),
                    loss_report.value, loss_report.grad_norm, loss_report.zero_fraction,
                    loss_report.pred_shape, loss_report.true_shape)
    if failed:
        return report
    trainable = list(model.trainable_variables)
    to_pred = tape.gradient(pred_sum, trainable) if trainable else []
    to_loss = tape.gradient(scalar, trainable) if trainable and scalar is not None else [None] * len(trainable)
    del tape
    owner = {}
    for layer in layers.values():
        for v in layer.weights:
            owner.setdefault(id(v), layer)
    unused: dict[int, list[str]] = {}
    disconnected = []
    for v, g_pred, g_loss in zip(trainable, to_pred, to_loss):
        if g_loss is not None:
            continue
        name = getattr(v, "path", None) or v.name
        if g_pred is None:
            unused.setdefault(id(owner.get(id(v), model)), []).append(name)
        else:
            disconnected.append(name)
    for layer_id, names in unused.items():
        layer = layers.get(layer_id, model)
        site = call_sites.get(layer_id, R.definition_site(model) if model_file else (None, None))
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "error",
                           f"{', '.join(names)} get no gradient: the prediction does not depend on them "
                           f"(layer `{layer.name}` is not used on the way to the output: an unused branch)",
                           f"use layer `{layer.name}` in the model's call(), or remove it", site[0], site[1]))
    if disconnected:
        first = loss_report.findings[0] if loss_report.findings else None
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "error",
                           f"{len(disconnected)} trainable variables ({', '.join(disconnected[:4])}"
                           f"{', ...' if len(disconnected) > 4 else ''}) get no gradient because the loss is "
                           "disconnected from the prediction (see the loss's finding); the optimizer raises "
                           "'No gradients provided for any variable'",
                           "fix the loss first: it must be computed from y_pred",
                           first.file if first else None, first.line if first else None))
    for layer in layers.values():
        if layer is model or layer.trainable or not layer.weights:
            continue
        if any(not getattr(parent, "trainable", True) for parent in layers.values()
               if parent is not layer and parent is not model and layer in _all_layers(parent)):
            continue  # reported with the frozen parent
        site = call_sites.get(id(layer), (None, None))
        names = [getattr(v, "path", None) or v.name for v in layer.weights]
        report.add(Finding(R.NO_GRADIENT_VARIABLES, "warning",
                           f"{', '.join(names)} get no gradient: layer `{layer.name}` is frozen (trainable=False)",
                           f"if it should learn, set model.get_layer({layer.name!r}).trainable = True and compile again",
                           site[0], site[1]))
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
