"""Gradient-flow doctor: why a loss gives no gradient, and on which line of your code.

:func:`diagnose` runs a loss once on a prediction that requires a gradient, differentiates it and
returns a :class:`Report` of :class:`Finding` objects, each with a stable ``code``:

========================= ==============================================================
``DISCONNECTED``          the loss does not depend on the prediction (detach, stop_gradient,
                          NumPy or Python round trip, ``.item()``, rebuilt tensors)
``ZERO_GRADIENT``         connected, but zero almost everywhere (floor, round, sign, argmax,
                          comparisons, integer casts, a Python ``if`` on a value)
``NON_FINITE``            NaN or Inf in the loss or in its gradient
``BROADCAST``             prediction and target shapes differ and were broadcast
``SWAPPED_ARGUMENTS``     the prediction sits in the target's place
``INPLACE``               an in-place change to a tensor autograd needs (PyTorch)
``NO_GRADIENT_VARIABLES`` (:func:`diagnose_model`) trainable variables without a gradient
``WRONG_GRADIENT``        a hand-written backward (``torch.autograd.Function``,
                          ``tf.custom_gradient``, ``keras.ops.custom_gradient``) disagrees with
                          central finite differences in float64
``DEAD_TERM``             a term of the loss sends no gradient while another term does (a
                          warning: the loss trains, the term does nothing)
========================= ==============================================================

The framework is read from the inputs (``torch.Tensor``, TensorFlow tensors, JAX arrays), else
from the modules the loss's file imports. Example:

>>> import torch
>>> from losses.doctor import diagnose
>>> def my_loss(y_pred, y_true):
...     hard = torch.round(y_pred)          # piecewise constant
...     return ((hard - y_true) ** 2).mean()
>>> report = diagnose(my_loss, torch.rand(4, 3), torch.rand(4, 3))
>>> report.codes
['ZERO_GRADIENT']
>>> "soft_round" in report.findings[0].fix
True
>>> diagnose(lambda y_pred, y_true: ((y_pred - y_true) ** 2).mean(), torch.rand(4, 3), torch.rand(4, 3)).ok
True
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable
from typing import Any

from losses.doctor._report import CODES, Finding, Report, infer_order

__all__ = ["diagnose", "diagnose_model", "Report", "Finding", "CODES"]

FRAMEWORKS = ("torch", "tensorflow", "jax")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _is_tensorflow(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("tensorflow") or module.startswith("keras")


def _is_jax(x: Any) -> bool:
    return type(x).__module__.startswith(("jax", "jaxlib"))


def keras_backend() -> str:
    """The framework that runs Keras 3 here: its configured backend."""
    import keras

    return keras.backend.backend()


def resolve_framework(framework: str) -> str:
    """``"keras"`` names Keras 3 on its configured backend; the others name themselves."""
    if framework == "keras":
        framework = keras_backend()
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"framework must be one of {', '.join(repr(f) for f in FRAMEWORKS)} or 'keras'; got {framework!r}"
        )
    return framework


def _imported_modules(fn: Any) -> set[str]:
    """The top-level modules that the module defining ``fn`` (a function, class or instance) imported."""
    while isinstance(fn, functools.partial):  # the function it binds arguments of is the user's
        fn = fn.func
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        owner = fn if isinstance(fn, type) else type(fn)
        module = sys.modules.get(getattr(owner, "__module__", ""), None)
        namespace = vars(module) if module is not None else {}
    modules = set()
    for value in namespace.values():
        is_module = isinstance(value, types.ModuleType)
        name = getattr(value, "__name__", "") if is_module else getattr(value, "__module__", "")
        modules.add(str(name).split(".")[0])
    return modules


def detect_framework(*values: Any, fn: Callable[..., Any] | None = None) -> str:
    """``"torch"``, ``"tensorflow"`` or ``"jax"`` from the inputs' types, else from the modules the file
    of ``fn`` imported (a file that imports only Keras: Keras's backend)."""
    if any(_is_torch(v) for v in values):
        return "torch"
    if any(_is_tensorflow(v) for v in values):
        return "tensorflow"
    if any(_is_jax(v) for v in values):
        return "jax"
    modules = _imported_modules(fn) if fn is not None else set()
    found = [f for f in ("torch", "tensorflow", "jax") if f in modules]
    if len(found) == 1:
        return found[0]
    if not found and "keras" in modules:
        return resolve_framework("keras")
    raise ValueError(
        "the framework could not be read from the inputs (NumPy arrays or Python values) nor from "
        f"the modules the loss's file imports; pass framework= one of "
        f"{', '.join(repr(f) for f in FRAMEWORKS)} or 'keras'"
    )


def diagnose(
    loss_fn: Callable[..., Any],
    y_true: Any,
    y_pred: Any,
    *,
    framework: str | None = None,
    order: str | None = None,
    **kwargs: Any,
) -> Report:
    """Run ``loss_fn`` once, differentiate it with respect to ``y_pred`` and report what blocks the gradient.

    Args:
        loss_fn: the loss: a function, an ``nn.Module``, a ``keras.losses.Loss``, or a
            ``torch.autograd.Function`` subclass (called through ``.apply``).
        y_true: the target (tensor or array; not differentiated).
        y_pred: the prediction; a copy that requires a gradient is passed to the loss.
        framework: ``"torch"``, ``"tensorflow"`` (TensorFlow, and Keras 3 on it) or ``"jax"`` (JAX, and
            Keras 3 on it); ``"keras"`` means Keras 3 on its configured backend. Default: read from
            the types of ``y_true`` / ``y_pred``, else from the modules the loss's file imports.
        order: ``"y_true, y_pred"`` or ``"y_pred, y_true"``: how ``loss_fn`` takes its arguments.
            Default: read from its parameter names (``y_pred``, ``pred``, ``input``, ``logits``,
            ``output`` vs ``y_true``, ``target``, ``label``); without telling names, the framework's
            convention (PyTorch ``(input, target)``, Keras ``(y_true, y_pred)``).
        **kwargs: passed to ``loss_fn``.

    Returns:
        A :class:`Report`: ``findings``, ``value`` (the loss), ``grad_norm`` and ``zero_fraction`` of
        d loss / d y_pred, ``ok``, ``to_text()`` and ``to_json()``. A loss that raises an error
        unrelated to gradient flow re-raises it.

    Raises:
        ValueError: ``framework`` is not one of ``"torch"``, ``"tensorflow"``, ``"jax"``,
            ``"keras"``, or none was given and it cannot be read from the inputs nor from the
            loss's file.
        Exception: an error of ``loss_fn`` unrelated to gradient flow, unchanged.

    Example:

    >>> import torch
    >>> from losses.doctor import diagnose
    >>> report = diagnose(lambda y_pred, y_true: (y_pred.detach() - y_true).abs().mean(),
    ...                   torch.rand(4, 3), torch.rand(4, 3))
    >>> report.codes, report.ok, report.grad_norm
    (['DISCONNECTED'], False, None)
    """
    framework = resolve_framework(framework or detect_framework(y_pred, y_true, fn=loss_fn))
    resolved, from_names = infer_order(loss_fn, framework, order)
    if framework == "torch":
        from losses.doctor._torch import diagnose_torch

        return diagnose_torch(loss_fn, y_true, y_pred, resolved, kwargs=kwargs)
    if framework == "jax":
        from losses.doctor._jax import diagnose_jax

        return diagnose_jax(loss_fn, y_true, y_pred, resolved, from_names=from_names, kwargs=kwargs)
    from losses.doctor._tensorflow import diagnose_tensorflow

    return diagnose_tensorflow(loss_fn, y_true, y_pred, resolved, from_names=from_names, kwargs=kwargs)


def diagnose_model(
    model: Any, loss_fn: Callable[..., Any], x: Any, y: Any, *, framework: str | None = None, order: str | None = None
) -> Report:
    """Which trainable variables of ``model`` get no gradient from ``loss_fn(y, model(x))``, and why.

    Variables without a gradient are grouped by module (layer) and explained as *frozen*
    (``requires_grad=False`` / ``trainable=False``: a warning), in an *unused branch* (a module
    that is never called, or whose output does not reach the prediction), *never used by their
    layer* (a layer that runs but does not use this weight), feeding only *outputs the loss does
    not use* (a model that returns a tuple or a dict: a warning), or *disconnected* (the loss does
    not depend on the prediction; the loss's own finding is reported too). PyTorch and TensorFlow
    (Keras on TensorFlow).

    Args:
        model: a ``torch.nn.Module`` or a Keras model (TensorFlow backend).
        loss_fn: the loss, called on the target ``y`` and the model's output, in the order
            ``order`` says.
        x: the model's input.
        y: the target.
        framework: ``"torch"``, ``"tensorflow"`` or ``"keras"`` (on TensorFlow). Default:
            ``"torch"`` when ``model`` or ``x`` is a PyTorch object, else ``"tensorflow"``.
        order: ``"y_true, y_pred"`` or ``"y_pred, y_true"``, as for :func:`diagnose`.

    Returns:
        A :class:`Report` whose ``NO_GRADIENT_VARIABLES`` findings name the variables, grouped by
        module, with the reason and a fix.

    Raises:
        ValueError: ``framework`` is not one the doctor knows, or is JAX (diagnose the loss with
            :func:`diagnose` on the model's output instead).

    Example:

    >>> import torch
    >>> from torch import nn
    >>> from losses.doctor import diagnose_model
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         return self.used(x)
    >>> _ = torch.manual_seed(0)
    >>> report = diagnose_model(Net(), nn.functional.mse_loss, torch.rand(4, 3), torch.rand(4, 2))
    >>> report.codes
    ['NO_GRADIENT_VARIABLES']
    >>> report.findings[0].message.split(" get ")[0]
    'unused.weight, unused.bias'
    """
    if framework is None:
        framework = "torch" if _is_torch(model) or _is_torch(x) else "tensorflow"
    framework = resolve_framework(framework)
    resolved, _ = infer_order(loss_fn, framework, order)
    if framework == "torch":
        from losses.doctor._torch import diagnose_model_torch

        return diagnose_model_torch(model, loss_fn, x, y, resolved)
    if framework == "jax":
        raise ValueError(
            "diagnose_model runs on PyTorch and TensorFlow models; for Keras on JAX, diagnose the "
            "loss with diagnose() on the model's output"
        )
    from losses.doctor._tensorflow import diagnose_model_tensorflow

    return diagnose_model_tensorflow(model, loss_fn, x, y, resolved)
