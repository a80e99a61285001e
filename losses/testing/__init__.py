"""Testing tools that ``losses`` uses on itself, public for users' own test suites.

- :func:`check_gradient`: compares a function's autodiff gradient with central finite
  differences in float64, for PyTorch tensors or any Keras 3 backend.
- :func:`numeric_gradient` and :func:`value_and_grad`: the two halves of that check.
- ``losses.testing.strategies``: hypothesis strategies (imports hypothesis on first use).
- :func:`assert_gradient_flow`: fails when the gradient-flow doctor (``losses.doctor``) finds an
  error in a loss: no gradient, a zero or non-finite one, silent broadcasting, swapped arguments,
  a wrong hand-written backward.

Example (PyTorch):

>>> import numpy as np, torch
>>> check_gradient(lambda x: (x ** 3).sum(), np.array([0.5, -1.0, 2.0]), framework="torch")
>>> def wrong_cube(x):  # a backward that forgets the factor 3
...     class Cube(torch.autograd.Function):
...         @staticmethod
...         def forward(ctx, x):
...             ctx.save_for_backward(x)
...             return x ** 3
...         @staticmethod
...         def backward(ctx, g):
...             (x,) = ctx.saved_tensors
...             return g * x ** 2
...     return Cube.apply(x).sum()
>>> check_gradient(wrong_cube, np.array([0.5, -1.0, 2.0]), framework="torch")
Traceback (most recent call last):
...
losses.testing._gradcheck.GradientMismatch: ...
"""

from typing import Any

from losses.testing._flow import GradientFlowError, assert_gradient_flow
from losses.testing._gradcheck import (
    GradientMismatch,
    check_gradient,
    numeric_gradient,
    value_and_grad,
)

__all__ = [
    "GradientFlowError",
    "assert_gradient_flow",
    "GradientMismatch",
    "check_gradient",
    "numeric_gradient",
    "value_and_grad",
    "strategies",
]


def __getattr__(name: str) -> Any:
    if name == "strategies":
        import importlib

        return importlib.import_module("losses.testing.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
