"""``assert_gradient_flow``: the gradient-flow doctor as an assertion for users' test suites."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


class GradientFlowError(AssertionError):
    """The doctor found an error in a loss's gradient flow; the message is its report.

    Raised by :func:`assert_gradient_flow`; an ``AssertionError``. The doctor's
    :class:`~losses.doctor.Report` is its ``report`` attribute.

    Args:
        report: the doctor's report, whose text becomes the message.

    Example:

    >>> from losses.testing import GradientFlowError, assert_gradient_flow
    >>> try:
    ...     assert_gradient_flow(lambda input, target: (input.round() - target).abs().mean(), framework="torch")
    ... except GradientFlowError as error:
    ...     print(error.report.ok)
    False
    """

    def __init__(self, report: Any) -> None:
        super().__init__("\n" + report.to_text())
        self.report = report


def assert_gradient_flow(
    loss_fn: Callable[..., Any],
    y_true: Any = None,
    y_pred: Any = None,
    *,
    framework: str | None = None,
    order: str | None = None,
    shape: tuple[int, ...] = (8, 4),
    allow: Iterable[str] = (),
    strict: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> Any:
    """Raise :class:`GradientFlowError` unless the gradient of ``loss_fn`` reaches the prediction,
    is finite and not zero, with no silent broadcasting, swapped arguments or in-place damage.

    Args:
        loss_fn: the loss (function, ``nn.Module`` or ``keras.losses.Loss``).
        y_true: the target (a tensor or NumPy array). Default: a random 0/1 array of ``shape``.
        y_pred: the prediction (a tensor or NumPy array). Default: a random array of ``shape`` in
            (0.05, 0.95).
        framework: ``"torch"``, ``"tensorflow"``, ``"jax"`` or ``"keras"`` (Keras on its backend);
            needed when the inputs are NumPy arrays and ``loss_fn``'s module does not show which
            framework it uses.
        order: ``"y_true, y_pred"`` or ``"y_pred, y_true"`` (default: from the parameter names).
        shape: shape of the random inputs.
        allow: finding codes to tolerate (e.g. ``{"ZERO_GRADIENT"}`` for a loss meant to be flat).
        strict: also fail on warnings.
        seed: seed of the random inputs.
        **kwargs: passed to ``loss_fn``.

    Returns:
        The doctor's :class:`~losses.doctor.Report`, for further assertions.

    Raises:
        GradientFlowError: the report has an error (with ``strict``, a warning) whose code is not
            in ``allow``.
        ValueError: ``framework`` is not one the doctor knows, or it cannot be told from the
            inputs.

    Example:

    >>> import torch
    >>> from losses.testing import assert_gradient_flow
    >>> report = assert_gradient_flow(lambda input, target: ((input - target) ** 2).mean(), framework="torch")
    >>> report.grad_norm > 0
    True
    >>> assert_gradient_flow(lambda input, target: ((input.round() - target) ** 2).mean(), framework="torch")
    Traceback (most recent call last):
    ...
    losses.testing._flow.GradientFlowError: ...
    """
    from losses.doctor import detect_framework, diagnose, resolve_framework
    from losses.doctor._cli import random_inputs, to_framework

    if y_true is None or y_pred is None:
        rand_true, rand_pred = random_inputs(tuple(shape), tuple(shape), seed)
        y_true = rand_true if y_true is None else y_true
        y_pred = rand_pred if y_pred is None else y_pred
    framework = resolve_framework(framework or detect_framework(y_pred, y_true, fn=loss_fn))
    y_true, y_pred = (
        to_framework(v, framework) if isinstance(v, (np.ndarray, np.generic, list, tuple, float, int)) else v
        for v in (y_true, y_pred)
    )
    report = diagnose(loss_fn, y_true, y_pred, framework=framework, order=order, **kwargs)
    allowed = set(allow)
    severities = ("error", "warning") if strict else ("error",)
    if any(f.severity in severities and f.code not in allowed for f in report.findings):
        raise GradientFlowError(report)
    return report
