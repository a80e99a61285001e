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
========================= ==============================================================

The framework is read from the inputs (``torch.Tensor`` or TensorFlow tensors; NumPy arrays need
``framework=``). Example:

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

from typing import Any, Callable

from losses.doctor._report import CODES, ORDERS, Finding, Report, infer_order

__all__ = ["diagnose", "diagnose_model", "Report", "Finding", "CODES"]

FRAMEWORKS = ("torch", "tensorflow")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _is_tensorflow(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("tensorflow") or module.startswith("keras")


def detect_framework(*values: Any, fn: Callable[..., Any] | None = None) -> str:
    """``"torch"`` or ``"tensorflow"`` from the inputs' types, else from the modules ``fn`` imported."""
    if any(_is_torch(v) for v in values):
        return "torch"
    if any(_is_tensorflow(v) for v in values):
        return "tensorflow"
    modules = set()
    for value in getattr(fn, "__globals__", {}).values():
        name = getattr(value, "__name__", "") if type(value).__name__ == "module" else getattr(value, "__module__", "")
        modules.add(str(name).split(".")[0])
    if "torch" in modules and not modules & {"tensorflow", "keras"}:
        return "torch"
    if modules & {"tensorflow", "keras"} and "torch" not in modules:
        return "tensorflow"
    raise ValueError("framework could not be read from the inputs (NumPy arrays or Python values); "
                     f"pass framework= one of {', '.join(repr(f) for f in FRAMEWORKS)}")


def diagnose(loss_fn: Callable[..., Any], y_true: Any, y_pred: Any, *, framework: str | None = None,
             order: str | None = None, **kwargs: Any) -> Report:
    """Run ``loss_fn`` once, differentiate it with respect to ``y_pred`` and report what blocks the gradient.

    Args:
        loss_fn: the loss: a function, an ``nn.Module`` or a ``keras.losses.Loss``.
        y_true: the target (tensor or array; not differentiated).
        y_pred: the prediction; a copy that requires a gradient is passed to the loss.
        framework: ``"torch"`` or ``"tensorflow"`` (Keras 3 on the TensorFlow backend; ``"keras"`` is
            accepted as another name for it). Default: read
            from the types of ``y_true`` / ``y_pred``.
        order: ``"y_true, y_pred"`` or ``"y_pred, y_true"``: how ``loss_fn`` takes its arguments.
            Default: read from its parameter names (``y_pred``, ``pred``, ``input``, ``logits``,
            ``output`` vs ``y_true``, ``target``, ``label``); without telling names, the framework's
            convention (PyTorch ``(input, target)``, Keras ``(y_true, y_pred)``).
        **kwargs: passed to ``loss_fn``.

    Returns:
        A :class:`Report`: ``findings``, ``value`` (the loss), ``grad_norm`` and ``zero_fraction`` of
        d loss / d y_pred, ``ok``, ``to_text()`` and ``to_json()``. A loss that raises an error
        unrelated to gradient flow re-raises it.
    """
    framework = framework or detect_framework(y_pred, y_true, fn=loss_fn)
    framework = "tensorflow" if framework == "keras" else framework
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(repr(f) for f in FRAMEWORKS)}; got {framework!r}")
    resolved, from_names = infer_order(loss_fn, framework, order)
    if framework == "torch":
        from losses.doctor._torch import diagnose_torch

        return diagnose_torch(loss_fn, y_true, y_pred, resolved, kwargs=kwargs)
    from losses.doctor._tensorflow import diagnose_tensorflow

    return diagnose_tensorflow(loss_fn, y_true, y_pred, resolved, from_names=from_names, kwargs=kwargs)


def diagnose_model(model: Any, loss_fn: Callable[..., Any], x: Any, y: Any, *, framework: str | None = None,
                   order: str | None = None) -> Report:
    """Which trainable variables of ``model`` get no gradient from ``loss_fn(y, model(x))``, and why.

    Each variable without a gradient is explained as *frozen* (``requires_grad=False`` /
    ``trainable=False``: a warning), *unused* (the prediction does not depend on it: an unused
    branch) or *disconnected* (the prediction depends on it but the loss does not depend on the
    prediction; the loss's own finding is reported too). Returns a :class:`Report` whose
    ``NO_GRADIENT_VARIABLES`` findings name the variables.
    """
    if framework is None:
        framework = "torch" if _is_torch(model) or _is_torch(x) else "tensorflow"
    framework = "tensorflow" if framework == "keras" else framework
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(repr(f) for f in FRAMEWORKS)}; got {framework!r}")
    resolved, _ = infer_order(loss_fn, framework, order)
    if framework == "torch":
        from losses.doctor._torch import diagnose_model_torch

        return diagnose_model_torch(model, loss_fn, x, y, resolved)
    from losses.doctor._tensorflow import diagnose_model_tensorflow

    return diagnose_model_tensorflow(model, loss_fn, x, y, resolved)
