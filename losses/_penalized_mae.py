r"""Penalized mean absolute error: the one definition both frontends implement.

Per element, with the error :math:`e = \hat y - y` (prediction minus target), a threshold
``delta`` :math:`= \delta \ge 0` and a weight ``penalty`` :math:`= p \ge 0`:

.. math::

    \ell(e) = |e| + p \cdot \max(|e| - \delta, 0)^2

It is the absolute error, plus a quadratic penalty on the part of each error that exceeds
``delta``: small errors are treated as by the MAE (robust, constant-magnitude gradient), large ones
are pushed harder, as by the MSE. ``ℓ`` is continuous with a continuous first derivative
everywhere except at ``e = 0``.

Derivative with respect to the prediction (the target gets its negative):

.. math::

    \ell'(e) = \operatorname{sign}(e) \cdot (1 + 2p \cdot \max(|e| - \delta, 0))
             = \operatorname{sign}(e) + 2p \cdot \operatorname{softshrink}_\delta(e)

where :math:`\operatorname{softshrink}_\delta(e) = e - \operatorname{clip}(e, -\delta, \delta)`.

Subgradients at the kinks, as implemented in both frontends:

- ``e = 0``: ``|e|`` has no derivative there; the gradient is ``sign(0) = 0`` (the minimum of the
  loss, so a step of 0 is the natural choice, as in ``torch.abs`` and ``tf.abs``).
- ``|e| = delta`` (with ``delta > 0``): the penalty term ``p·max(|e| - delta, 0)²`` has the
  derivative 0 from both sides, so the gradient is ``sign(e)``: there is no kink there for
  ``delta > 0``, only a jump in the second derivative.

Second derivative (away from ``e = 0``): ``2p`` where ``|e| > delta``, else ``0``.

Reverse Huber ("berHu"): with ``penalty = 1 / (2·delta)`` the loss equals the berHu loss of
Owen (2007, "A robust hybrid of lasso and ridge regression") used for depth estimation by
Laina et al. (2016, "Deeper depth prediction with fully convolutional residual networks"):
``|e|`` for ``|e| <= delta`` and ``(e² + delta²) / (2·delta)`` beyond, since
``|e| + (|e| - delta)² / (2·delta) = (e² + delta²) / (2·delta)``.

>>> berhu_penalty(0.2)
2.5

Reductions. PyTorch: ``"mean"`` (over every element; NaN for an empty input, the mean of nothing
as in ``torch.nn.functional``), ``"sum"`` (0 for an empty input),
``"none"`` (the per-element loss). Keras: the loss function returns the per-sample mean over every
non-batch axis, shape ``(B,)``, and the ``keras.losses.Loss`` class applies ``sample_weight`` and
the Keras reduction to it.
"""

from __future__ import annotations

from typing import Any

from losses._validation import MAXIMUM_OPTION, check_number

DEFAULT_DELTA = 1.0
DEFAULT_PENALTY = 0.5


def check_penalized_mae_options(delta: Any, penalty: Any) -> tuple[float, float]:
    """``delta`` and ``penalty`` as Python floats; both must be in ``[0, 1e38]``.

    >>> check_penalized_mae_options(1, 0.5)
    (1.0, 0.5)
    >>> check_penalized_mae_options(-1.0, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: delta must be >= 0; got -1.0
    >>> check_penalized_mae_options(1.0, 1e39)
    Traceback (most recent call last):
    ...
    ValueError: penalty must be <= 1e+38 (beyond, the float32 computation overflows); got 1e+39
    """
    return (
        check_number("delta", delta, minimum=0.0, maximum=MAXIMUM_OPTION),
        check_number("penalty", penalty, minimum=0.0, maximum=MAXIMUM_OPTION),
    )


def berhu_penalty(delta: float) -> float:
    """The ``penalty`` that turns the penalized MAE with threshold ``delta > 0`` into berHu."""
    delta = check_number("delta", delta, minimum=0.0, strictly_greater=True)
    return 1.0 / (2.0 * delta)
