r"""Cross-entropy and focal terms, and their pairing with an overlap loss: the framework-free half.

**Focal loss** (Lin et al., 2017), with p the predicted probability, q the target, ``γ >= 0``
(``γ = 0``: the cross-entropy) and ``w_c`` the class weights (relative: divided by the largest):

- multiclass (softmax over C), per position: ``ℓ = −Σ_c w_c·α_c·q_c·(1 − p_c)^γ·log p_c``, with
  ``q`` the one-hot label (or the per-class target), label-smoothed:
  ``q = (1 − ε)·q + ε/C``; ``alpha`` is None (every ``α_c = 1``) or one weight per class;
- binary and multilabel (a sigmoid per element): ``ℓ = w_c·α_t·(1 − p_t)^γ·BCE(x, t)`` with the
  label-smoothed target ``t = (1 − ε)·t + ε/2``, ``p_t = p·t + (1 − p)·(1 − t)`` and
  ``α_t = α·t + (1 − α)·(1 − t)`` for a float ``alpha`` in [0, 1] (1 when None): α weighs the
  positives, as in torchvision's ``sigmoid_focal_loss`` and MONAI.

Every term is weighted by ``v``, the weight of its position (0 where the target equals
``ignore_index``; the weight map's value, or 1). A mean is ``Σ v·ℓ / Σ v`` over positions
(multiclass) or elements (binary, multilabel); a mean over nothing is NaN, as in
``torch.nn.functional.cross_entropy``. Logarithms are taken of the logits (log-softmax, log-sigmoid),
never of a probability that could underflow to 0, so a finite input gives a finite loss; with
``from_logits=False`` the probabilities are clamped at ``PROBABILITY_MIN`` inside the log. Where
``(1 − p)^γ`` has no derivative (``p = 1`` with ``γ < 1``) the gradient is that of the limit, 0.

**Pairs** (``DiceCELoss``, ``DiceFocalLoss``): per image (per batch with ``per_image=False``),
``λ_overlap·L_overlap + λ_term·mean(ℓ)``, both over the same valid positions, with one
``ignore_index``, one weight map and one rule for ``class_weights`` (class c's weight multiplies
everything class c contributes: its overlap loss in the class mean and its cross-entropy terms).
A row without a valid position (every position ignored) adds 0, as its overlap loss does.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from losses._overlap import MEMBERS, MODES, OverlapOptions
from losses._validation import (
    check_bool,
    check_choice,
    check_int,
    MAXIMUM_OPTION,
    check_number,
    check_weight_sequence,
)


@dataclass(frozen=True)
class FocalOptions:
    """The options of a focal (or, with ``gamma = 0``, cross-entropy) term, validated once."""

    mode: str = "multiclass"
    from_logits: bool = True
    gamma: float = 2.0
    alpha: float | tuple[float, ...] | None = None
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None
    ignore_index: int | None = None

    @classmethod
    def create(
        cls,
        *,
        mode: Any = "multiclass",
        from_logits: Any = True,
        gamma: Any = 2.0,
        alpha: Any = None,
        label_smoothing: Any = 0.0,
        class_weights: Any = None,
        ignore_index: Any = None,
    ) -> FocalOptions:
        mode = check_choice("mode", mode, MODES)
        if alpha is not None:
            # numbers.Real, not (int, float): a NumPy scalar such as np.float32(0.25) is a float alpha too.
            if not isinstance(alpha, bool) and isinstance(alpha, numbers.Real):
                alpha = check_number("alpha", alpha, minimum=0.0)
                if mode == "multiclass":
                    raise ValueError(
                        "alpha must be one weight per class in mode='multiclass' (a float alpha balances the "
                        "positives and negatives of a sigmoid); MONAI's float alpha a is [1 - a, a, a, ...], "
                        f"Keras' is [a] * C; got {alpha!r}"
                    )
                if alpha > 1:
                    raise ValueError(f"alpha must be in [0, 1] (the weight of the positives); got {alpha!r}")
            else:
                alpha = check_weight_sequence("alpha", alpha, maximum=MAXIMUM_OPTION)
                if mode != "multiclass":
                    raise ValueError(f"alpha must be a float in [0, 1] in mode={mode!r}; got a sequence")
        smoothing = check_number("label_smoothing", label_smoothing, minimum=0.0)
        if not smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {smoothing!r}")
        return cls(
            mode=mode,
            from_logits=check_bool("from_logits", from_logits),
            gamma=check_number("gamma", gamma, minimum=0.0, maximum=MAXIMUM_OPTION),
            alpha=alpha,
            label_smoothing=smoothing,
            class_weights=check_weight_sequence("class_weights", class_weights),
            ignore_index=None if ignore_index is None else check_int("ignore_index", ignore_index),
        )

    def check_num_classes(self, num_classes: int) -> None:
        """Checks that need the number of channels ``C`` of the prediction."""
        if self.mode == "binary" and num_classes != 1:
            raise ValueError(f"input must have exactly 1 channel in mode='binary'; got {num_classes} channels")
        if self.mode == "multiclass" and num_classes < 2:
            raise ValueError(f"input must have at least 2 channels in mode='multiclass'; got {num_classes}")
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"class_weights must have one weight per channel of the input ({num_classes}); "
                f"got {len(self.class_weights)} weights"
            )
        if isinstance(self.alpha, tuple) and len(self.alpha) != num_classes:
            raise ValueError(
                f"alpha must have one weight per channel of the input ({num_classes}); got {len(self.alpha)} weights"
            )

    def class_factors(self, num_classes: int) -> tuple[float, ...]:
        """``w_c·α_c`` per class (multiclass) or ``w_c`` (binary, multilabel): the class weights,
        divided by the largest, times the per-class alpha."""
        weights = self.class_weights or (1.0,) * num_classes
        largest = max(weights)
        factors = [w / largest for w in weights]
        if isinstance(self.alpha, tuple):
            factors = [f * a for f, a in zip(factors, self.alpha)]
        return tuple(factors)

    @property
    def positive_weight(self) -> float | None:
        """The α of the positives (binary, multilabel), or None: no balancing."""
        return self.alpha if isinstance(self.alpha, float) else None

    def to_dict(self) -> dict[str, Any]:
        """The focusing options (for repr and the pairs' configs)."""
        return {
            "gamma": self.gamma,
            "alpha": list(self.alpha) if isinstance(self.alpha, tuple) else self.alpha,
            "label_smoothing": self.label_smoothing,
        }

    def to_config(self) -> dict[str, Any]:
        """Every option, as the arguments of ``FocalLoss`` (lists, not tuples)."""
        return {
            "mode": self.mode,
            "from_logits": self.from_logits,
            **self.to_dict(),
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "ignore_index": self.ignore_index,
        }


# Below this a probability given as input (from_logits=False) is clamped inside the log: −log stays finite.
PROBABILITY_MIN = 1e-30

_DEFAULT_OVERLAP_OPTIONS = {name: default for member in MEMBERS.values() for name, default in member.options}
# The overlap options in the pairs' own signatures; the others go in ``overlap_options``.
PAIR_COMMON_OPTIONS = (
    "mode",
    "from_logits",
    "smooth_nr",
    "smooth_dr",
    "squared",
    "log_loss",
    "soft_labels",
    "per_image",
    "classes",
    "class_weights",
    "ignore_index",
    "empty_target",
    "average",
    "sync_across_ranks",
)


@dataclass(frozen=True)
class PairOptions:
    """An overlap loss and a cross-entropy / focal term over the same positions."""

    overlap: OverlapOptions
    term: FocalOptions
    lambda_overlap: float
    lambda_term: float

    @classmethod
    def create(
        cls,
        overlap: str,
        common_options: dict[str, Any],
        overlap_options: dict[str, Any] | None,
        lambda_overlap: Any,
        lambda_term: Any,
        lambda_names: tuple[str, str],
        **term_options: Any,
    ) -> PairOptions:
        """``common_options`` holds the overlap options of the caller's signature; those that the member
        ``overlap`` does not take must be at their defaults (else a ``TypeError`` names them).
        ``overlap_options`` are the member's own, each checked by the member."""
        overlap = check_choice("overlap", overlap, tuple(MEMBERS))
        accepted = set(MEMBERS[overlap].accepts())
        own = dict(overlap_options or {})
        chosen = {}
        for name, value in common_options.items():
            if name in own:
                continue  # the member's own options take precedence
            if name in accepted:
                chosen[name] = value
            elif value != _DEFAULT_OVERLAP_OPTIONS.get(name):
                raise TypeError(f"{MEMBERS[overlap].title} (overlap={overlap!r}) takes no option {name!r}")
        overlap_opts = OverlapOptions.create(overlap, **chosen, **own)
        term = FocalOptions.create(
            mode=overlap_opts.mode,
            from_logits=overlap_opts.from_logits,
            class_weights=overlap_opts.class_weights,
            ignore_index=overlap_opts.ignore_index,
            **term_options,
        )
        first = check_number(lambda_names[0], lambda_overlap, minimum=0.0, maximum=MAXIMUM_OPTION)
        second = check_number(lambda_names[1], lambda_term, minimum=0.0, maximum=MAXIMUM_OPTION)
        if not first + second > 0:
            raise ValueError(
                f"{lambda_names[0]} and {lambda_names[1]} must not both be 0: the loss would be 0 with no gradient"
            )
        return cls(overlap_opts, term, first, second)

    def for_target(self, label_map: bool) -> PairOptions:
        """These options for a target that is or is not a label map (see ``OverlapOptions.for_target``)."""
        overlap = self.overlap.for_target(label_map)
        if overlap is self.overlap:
            return self
        return PairOptions(overlap, self.term, self.lambda_overlap, self.lambda_term)

    def to_config(self, lambda_names: tuple[str, str]) -> dict[str, Any]:
        """The arguments of the pair's class that give these options (lists, not tuples)."""
        overlap = self.overlap.to_dict()
        config = {name: value for name, value in overlap.items() if name in PAIR_COMMON_OPTIONS}
        config.update(
            {
                lambda_names[0]: self.lambda_overlap,
                lambda_names[1]: self.lambda_term,
                "overlap": self.overlap.loss,
                "overlap_options": {k: v for k, v in overlap.items() if k not in PAIR_COMMON_OPTIONS},
                "label_smoothing": self.term.label_smoothing,
            }
        )
        if lambda_names[1] == "lambda_focal":
            config.update(gamma=self.term.gamma, alpha=self.term.to_dict()["alpha"])
        return config
