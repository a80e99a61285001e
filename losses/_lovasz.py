r"""The Lovász losses (Berman, Triki & Blaschko, 2018): the framework-free half.

**The Lovász extension of the Jaccard loss.** For one class, let ``m_i >= 0`` be the error of
position ``i`` and ``g_i ∈ {0, 1}`` whether it belongs to the class (the foreground). The Jaccard
loss of a set ``M`` of mispredicted positions is ``Δ(M) = |M| / |F ∪ M|``, ``F`` the foreground.
Sorted by decreasing error, ``m_π(1) >= m_π(2) >= ...``, with ``M_i`` the first ``i`` positions,
the Lovász extension of ``Δ`` at ``m`` is

    loss(m) = Σ_i m_π(i) · (Δ(M_i) − Δ(M_{i−1}))

a piecewise linear, convex function of ``m`` (``Δ`` is submodular) that equals ``Δ(M)`` at the
indicator vector of ``M``. Its gradient with respect to ``m_π(i)`` is the weight
``w_i = Δ(M_i) − Δ(M_{i−1})``. With ``G = |F|``, ``F_i`` the foreground and ``B_i`` the background
positions among the first ``i``, ``Δ(M_i) = (F_i + B_i) / (G + B_i)``, so that

    w_i = 1 / (G + B_i)                           at a foreground position,
    w_i = (G − F_i) / ((G + B_i)(G + B_i − 1))    at a background position (1 when G + B_i − 1 = 0),

every ``w_i >= 0`` and ``Σ w_i = 1`` over a row with a position. :func:`extension_weights` computes
them in this closed form, from integer counts, rather than as the difference of consecutive ``Δ``
(as the reference implementation, segmentation-models-pytorch and kornia do), which loses the
digits of ``w`` to cancellation in float32 once a row holds thousands of positions. The weights depend only on the
labels and the order: they are constants for the gradient, which is ``w`` put back in place.

**The two losses.** ``LovaszSoftmaxLoss``: per class ``c``, the errors are ``|g − p_c|``
(``1 − p_c`` on the class's positions, ``p_c`` elsewhere), ``p`` the softmax of the logits (or the
given probabilities); the loss is the mean of the per-class extensions over the classes chosen by
``classes``: ``"present"`` (the classes that occur in the target of the image, or of the batch with
``per_image=False``; a class absent from the target contributes nothing, whatever is predicted),
``"all"`` (every class; an absent class contributes its largest predicted probability, the
extension at an empty foreground) or a list of class indices (always averaged, present or not).
A row without any class to average (every position ignored) has loss 0. ``LovaszHingeLoss``
(binary, one logit channel ``z``): the errors are the hinge ``max(1 − z·s, 0)`` with the sign
``s = 2g − 1``; the loss is the extension of the foreground's Jaccard loss at them.

**Rows.** ``per_image=True``: one loss per image, positions sorted within the image;
``per_image=False``: one loss for the batch, the positions of every image sorted together (the
IoU of the batch).

**Ignored positions** (``ignore_index``) are neither foreground nor background: they do not count
in ``G``, ``F_i`` or ``B_i``, so their weight is 0 and they change no other weight, wherever the
sort puts them. Their gradient is exactly 0.

**Ties.** The extension is continuous, so its value does not depend on the order of equal errors,
but its gradient does: there the loss has a kink and every order of the tied positions gives a
subgradient (a vertex of the base polytope of ``Δ``). Both frontends sort stably: among equal
errors, the position that comes first in the flattened row (row-major over the spatial axes; over
the batch then the spatial axes with ``per_image=False``) is taken first, i.e. counted as the larger
error. The derivative of ``|g − p|`` at ``p = g`` (a saturated probability) and of the hinge's
``max(·, 0)`` at 0 (``z·s = 1`` exactly) are taken as 0.

**Non-finite values.** A NaN or ±inf anywhere in a row's input (also at an ignored position) gives
that row a NaN loss and a NaN gradient for every element of it, as the overlap losses do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from losses._validation import check_bool, check_int, check_int_sequence

LOSSES = {"lovasz_softmax": "LovaszSoftmaxLoss", "lovasz_hinge": "LovaszHingeLoss"}
CLASS_CHOICES = ("present", "all")
_OPTIONS: dict[str, dict[str, Any]] = {
    "lovasz_softmax": {"classes": "present", "per_image": True, "ignore_index": None, "from_logits": True},
    "lovasz_hinge": {"per_image": True, "ignore_index": None},
}


@dataclass(frozen=True)
class LovaszOptions:
    """The options of a Lovász loss except the reduction, validated once.

    It offers what the shared input checks read (``mode``, ``from_logits``, ``ignore_index``,
    ``check_num_classes``): the softmax loss checks its input as a multiclass prediction, the hinge
    as a binary one whose inputs are logits.
    """

    loss: str = "lovasz_softmax"
    classes: str | tuple[int, ...] = "present"
    per_image: bool = True
    ignore_index: int | None = None
    from_logits: bool = True

    @classmethod
    def create(cls, loss: str, **kwargs: Any) -> LovaszOptions:
        """The options of ``loss``; an option it does not take is a ``TypeError``."""
        accepted = _OPTIONS[loss]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(f"{LOSSES[loss]} takes no option {unknown[0]!r}; its options are {sorted(accepted)}")
        values = {**accepted, **kwargs}
        classes = values.get("classes", "all")  # the hinge has one class, its foreground, always counted
        if isinstance(classes, str):
            if classes not in CLASS_CHOICES:
                raise ValueError(f"classes must be 'present', 'all' or a sequence of class indices; got {classes!r}")
        else:
            classes = check_int_sequence("classes", classes)
            if classes is None:
                raise TypeError("classes must be 'present', 'all' or a sequence of class indices; got None")
        ignore_index = values["ignore_index"]
        return cls(
            loss=loss,
            classes=classes,
            per_image=check_bool("per_image", values["per_image"]),
            ignore_index=None if ignore_index is None else check_int("ignore_index", ignore_index),
            from_logits=check_bool("from_logits", values.get("from_logits", True)),
        )

    @property
    def mode(self) -> str:
        return "multiclass" if self.loss == "lovasz_softmax" else "binary"

    def to_dict(self) -> dict[str, Any]:
        """The options the loss takes, as a config (a list, not a tuple, of classes)."""
        config = {name: getattr(self, name) for name in _OPTIONS[self.loss]}
        if isinstance(config.get("classes"), tuple):
            config["classes"] = list(config["classes"])
        return config

    def changed(self) -> dict[str, Any]:
        """The options that differ from the defaults (for repr)."""
        return {k: v for k, v in self.to_dict().items() if v != _OPTIONS[self.loss][k]}

    def check_num_classes(self, num_classes: int) -> None:
        """Checks that need the number of channels ``C`` of the prediction."""
        if self.loss == "lovasz_hinge" and num_classes != 1:
            raise ValueError(
                f"input must have exactly 1 channel (one logit per position) for LovaszHingeLoss; got "
                f"{num_classes} channels. Use LovaszSoftmaxLoss for a softmax over several classes."
            )
        if self.loss == "lovasz_softmax" and num_classes < 2:
            raise ValueError(
                f"input must have at least 2 channels (one per class) for LovaszSoftmaxLoss; got "
                f"{num_classes}. Use LovaszHingeLoss for a single foreground logit."
            )
        if isinstance(self.classes, tuple):
            bad = [c for c in self.classes if not 0 <= c < num_classes]
            if bad:
                raise ValueError(
                    f"classes must lie in [0, {num_classes}) for an input with {num_classes} "
                    f"channels; got {list(self.classes)}"
                )

    def class_mask(self, num_classes: int) -> tuple[float, ...] | None:
        """1 for each class averaged, 0 for the others; None for ``"present"`` (taken from the target)."""
        if self.classes == "present":
            return None
        if self.classes == "all":
            return (1.0,) * num_classes
        return tuple(1.0 if c in self.classes else 0.0 for c in range(num_classes))


def extension_weights(ops: Any, foreground: Any, background: Any, dtype: Any) -> Any:
    """The weights ``w_i`` of the Lovász extension (the module docstring) along the last axis.

    ``foreground`` and ``background``: bool arrays in sorted order (both False at an ignored
    position). ``ops``: ``cumsum(x)`` and ``count(x)`` (integer counts along the last axis, the
    count with its axis kept), ``cast(x, dtype)``, ``where``, ``maximum(x, value)``. The counts are
    integers, so they stay exact beyond 2^24 positions; the result has ``dtype``. The last step
    multiplies by the masks instead of selecting with them: a selection by a random mask is several
    times slower on the CPU.
    """
    total = ops.count(foreground)
    union = ops.cast(total + ops.cumsum(background), dtype)  # G + B_i
    outside = ops.cast(total - ops.cumsum(foreground), dtype)  # G − F_i
    previous = union - 1.0  # G + B_{i−1} at a background position
    union = ops.maximum(union, 1.0)
    on_background = ops.where(previous > 0, outside / (union * ops.maximum(previous, 1.0)), 1.0)
    return ops.cast(foreground, dtype) / union + ops.cast(background, dtype) * on_background


def class_average(ops: Any, per_class: Any, selected: Any) -> Any:
    """``Σ_c s_c·L_c / Σ_c s_c`` over the last axis, 0 where no class is selected."""
    count = ops.sum(selected)
    total = ops.sum(selected * per_class)
    return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)


__all__ = ["CLASS_CHOICES", "LOSSES", "LovaszOptions", "class_average", "extension_weights"]
