"""Builders of every row a case can time: this package, its peers, the naive versions.

A builder takes the case's options and returns a loss function: for torch rows ``fn(input,
target) -> scalar`` on channels-first tensors, for Keras rows ``fn(y_true, y_pred) -> scalar`` on
channels-last tensors. A builder that cannot run here (package missing, API not there yet) raises
``Unavailable`` with the reason, and the runner reports the row as unavailable.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types

from benchmarks import naive


class Unavailable(Exception):
    """The row cannot run in this environment; the message says why."""


def _import(module: str, hint: str):
    try:
        return importlib.import_module(module)
    except Exception as error:  # ImportError, or a package broken by a missing dependency
        raise Unavailable(f"{module} not importable ({type(error).__name__}: {error}); {hint}") from None


def version_of(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _same_smoothing(per_image: bool) -> dict:
    return {"smooth_nr": naive.SMOOTH_NR, "smooth_dr": naive.SMOOTH_DR, "per_image": per_image}


# This package -----------------------------------------------------------------------------------


def ours_torch_dice(opts):
    functional = _import("losses.torch.functional", "the torch Dice loss has not landed yet")
    if not hasattr(functional, "dice_loss"):
        raise Unavailable("losses.torch.functional.dice_loss does not exist yet")
    dice_loss = functional.dice_loss
    kwargs = dict(mode=opts["mode"], from_logits=True, reduction="mean", **_same_smoothing(opts["per_image"]))
    return lambda input, target: dice_loss(input, target, **kwargs)


def ours_torch_penalized_mae(opts):
    functional = _import("losses.torch.functional", "the torch penalized MAE has not landed yet")
    if not hasattr(functional, "penalized_mae"):
        raise Unavailable("losses.torch.functional.penalized_mae does not exist yet")
    penalized_mae = functional.penalized_mae
    return lambda input, target: penalized_mae(
        input, target, delta=opts["delta"], penalty=opts["penalty"], reduction="mean"
    )


def ours_torch_surrogate(name):
    def build(opts):
        module = _import("losses.torch", "the torch surrogates have not landed yet")
        if not hasattr(module, name):
            raise Unavailable(f"losses.torch.{name} does not exist yet")
        function = getattr(module, name)
        straight_through = opts.get("straight_through", False)
        return lambda x, _target: function(x, alpha=opts["alpha"], straight_through=straight_through).mean()

    return build


def ours_keras_dice(opts):
    module = _import("losses.keras", "the Keras Dice loss has not landed yet")
    if not hasattr(module, "dice_loss"):
        raise Unavailable("losses.keras.dice_loss does not exist yet")
    from keras import ops

    dice_loss = module.dice_loss
    kwargs = dict(mode=opts["mode"], from_logits=True, **_same_smoothing(opts["per_image"]))
    return lambda y_true, y_pred: ops.mean(dice_loss(y_true, y_pred, **kwargs))


def ours_keras_penalized_mae(opts):
    module = _import("losses.keras", "the Keras penalized MAE has not landed yet")
    if not hasattr(module, "penalized_mae"):
        raise Unavailable("losses.keras.penalized_mae does not exist yet")
    from keras import ops

    penalized_mae = module.penalized_mae
    return lambda y_true, y_pred: ops.mean(penalized_mae(y_true, y_pred, delta=opts["delta"], penalty=opts["penalty"]))


def ours_keras_surrogate(name):
    def build(opts):
        module = _import("losses.keras", "the Keras surrogates have not landed yet")
        if not hasattr(module, name):
            raise Unavailable(f"losses.keras.{name} does not exist yet")
        from keras import ops

        function = getattr(module, name)
        straight_through = opts.get("straight_through", False)
        return lambda _y_true, x: ops.mean(function(x, alpha=opts["alpha"], straight_through=straight_through))

    return build


def _overlap_kwargs(opts):
    """This package's options for an overlap case: the member's own and the naive version's smoothing."""
    member = opts["member"]
    kwargs = dict(mode="multiclass", from_logits=True, **_same_smoothing(opts["per_image"]))
    kwargs.update({k: opts[k] for k in ("alpha", "beta", "gamma", "weight_type") if k in opts})
    return member, kwargs


def ours_torch_overlap(opts):
    functional = _import("losses.torch.functional", "the overlap family has not landed yet")
    member, kwargs = _overlap_kwargs(opts)
    loss = getattr(functional, f"{member}_loss")
    return lambda input, target: loss(input, target, **kwargs)


def ours_keras_overlap(opts):
    module = _import("losses.keras", "the Keras overlap family has not landed yet")
    from keras import ops

    member, kwargs = _overlap_kwargs(opts)
    loss = getattr(module, f"{member}_loss")
    return lambda y_true, y_pred: ops.mean(loss(y_true, y_pred, **kwargs))


def _lovasz_kwargs(opts):
    return dict(per_image=opts["per_image"], classes=opts["classes"])


def ours_torch_lovasz(opts):
    functional = _import("losses.torch.functional", "the Lovász losses have not landed yet")
    if not hasattr(functional, "lovasz_softmax_loss"):
        raise Unavailable("losses.torch.functional.lovasz_softmax_loss does not exist yet")
    loss, kwargs = functional.lovasz_softmax_loss, _lovasz_kwargs(opts)
    return lambda input, target: loss(input, target, **kwargs)


def ours_keras_lovasz(opts):
    module = _import("losses.keras", "the Keras Lovász losses have not landed yet")
    if not hasattr(module, "lovasz_softmax_loss"):
        raise Unavailable("losses.keras.lovasz_softmax_loss does not exist yet")
    from keras import ops

    loss, kwargs = module.lovasz_softmax_loss, _lovasz_kwargs(opts)
    return lambda y_true, y_pred: ops.mean(loss(y_true, y_pred, **kwargs))


def _ours_torch(function, kwargs_of):
    """A builder of ``losses.torch.functional.<function>`` with the options ``kwargs_of(opts)``."""

    def build(opts):
        functional = _import("losses.torch.functional", f"the torch {function} has not landed yet")
        if not hasattr(functional, function):
            raise Unavailable(f"losses.torch.functional.{function} does not exist yet")
        loss, kwargs = getattr(functional, function), kwargs_of(opts)
        return lambda input, target: loss(input, target, **kwargs)

    return build


def _ours_keras(function, kwargs_of):
    """A builder of ``losses.keras.<function>``, averaged over the samples."""

    def build(opts):
        module = _import("losses.keras", f"the Keras {function} has not landed yet")
        if not hasattr(module, function):
            raise Unavailable(f"losses.keras.{function} does not exist yet")
        from keras import ops

        loss, kwargs = getattr(module, function), kwargs_of(opts)
        return lambda y_true, y_pred: ops.mean(loss(y_true, y_pred, **kwargs))

    return build


def _focal_kwargs(opts):
    return dict(mode=opts["mode"], gamma=opts["gamma"], alpha=opts["alpha"])


def _pair_kwargs(pair, opts):
    """This package's options for ``dice_ce`` or ``dice_focal``: the Dice options of the case (with
    the naive version's smoothing) and the term's weight, focusing and balancing."""
    kwargs = dict(mode=opts["mode"], **_same_smoothing(opts["per_image"]))
    if pair == "dice_ce":
        return dict(kwargs, lambda_ce=opts["lambda_term"])
    return dict(kwargs, lambda_focal=opts["lambda_term"], gamma=opts["gamma"], alpha=opts["alpha"])


ours_torch_focal = _ours_torch("focal_loss", _focal_kwargs)
ours_keras_focal = _ours_keras("focal_loss", _focal_kwargs)


def ours_torch_pair(pair):
    """``dice_ce`` or ``dice_focal``."""
    return _ours_torch(f"{pair}_loss", functools.partial(_pair_kwargs, pair))


def ours_keras_pair(pair):
    return _ours_keras(f"{pair}_loss", functools.partial(_pair_kwargs, pair))


def ours_dice_plus_torch_cross_entropy(opts):
    """This package's Dice plus PyTorch's own cross-entropy, two calls composed by hand: what the
    fused pair saves."""
    import torch.nn.functional as F

    dice, weight = ours_torch_dice(opts), opts["lambda_term"]
    if opts["mode"] == "multiclass":
        return lambda input, target: dice(input, target) + weight * F.cross_entropy(input, target)
    return lambda input, target: dice(input, target) + weight * F.binary_cross_entropy_with_logits(input, target)


# Naive versions ---------------------------------------------------------------------------------


def naive_torch_lovasz(opts):
    return lambda input, target: naive.lovasz_softmax_torch(input, target, **_lovasz_kwargs(opts))


def naive_torch_overlap(opts):
    options = {k: opts[k] for k in ("alpha", "beta", "gamma", "weight_type") if k in opts}
    return lambda input, target: naive.overlap_torch(
        input, target, member=opts["member"], per_image=opts["per_image"], **options
    )


def naive_torch_dice(opts):
    return lambda input, target: naive.dice_torch(input, target, mode=opts["mode"], per_image=opts["per_image"])


def naive_torch_penalized_mae(opts):
    return lambda input, target: naive.penalized_mae_torch(input, target, delta=opts["delta"], penalty=opts["penalty"])


def naive_torch_surrogate(name):
    return lambda opts: lambda x, _target: naive.surrogate_torch(x, name=name, **opts)


def naive_keras_penalized_mae(opts):
    return lambda y_true, y_pred: naive.penalized_mae_keras(
        y_true, y_pred, delta=opts["delta"], penalty=opts["penalty"]
    )


def naive_keras_surrogate(name):
    return lambda opts: lambda _y_true, x: naive.surrogate_keras(x, name=name, **opts)


def naive_torch_focal(opts):
    return lambda input, target: naive.focal_torch(input, target, **_focal_kwargs(opts))


def naive_torch_pair(opts):
    return lambda input, target: naive.dice_term_torch(input, target, **opts)


def compiled(build):
    """``torch.compile`` (default mode, static shapes) of what ``build`` returns."""

    def build_compiled(opts):
        import torch

        if not hasattr(torch, "compile"):
            raise Unavailable("this torch has no torch.compile")
        return torch.compile(build(opts), dynamic=False)

    return build_compiled


# Peers ------------------------------------------------------------------------------------------


def monai_dice(opts):
    losses = _import("monai.losses", "pip install monai")
    loss = losses.DiceLoss(
        sigmoid=opts["mode"] == "binary",
        softmax=opts["mode"] == "multiclass",
        to_onehot_y=opts["mode"] == "multiclass",
        batch=not opts["per_image"],
        smooth_nr=naive.SMOOTH_NR,
        smooth_dr=naive.SMOOTH_DR,
        reduction="mean",
    )
    if opts["mode"] == "multiclass":  # MONAI takes label maps with a size-1 channel
        return lambda input, target: loss(input, target.unsqueeze(1))
    return loss


def monai_overlap(opts):
    """MONAI's TverskyLoss, GeneralizedDiceLoss, or DiceLoss(jaccard=True), whose Jaccard smoothing is
    twice ours: (2·I + s) / (2·(P + G − I) + s) = (I + s/2) / (P + G − I + s/2)."""
    losses = _import("monai.losses", "pip install monai")
    common = dict(softmax=True, to_onehot_y=True, batch=not opts["per_image"])
    member = opts["member"]
    if member == "tversky":
        loss = losses.TverskyLoss(
            alpha=opts["alpha"], beta=opts["beta"], smooth_nr=naive.SMOOTH_NR, smooth_dr=naive.SMOOTH_DR, **common
        )
    elif member == "generalized_dice":
        loss = losses.GeneralizedDiceLoss(
            w_type=opts["weight_type"], smooth_nr=naive.SMOOTH_NR, smooth_dr=naive.SMOOTH_DR, **common
        )
    elif member == "jaccard":
        loss = losses.DiceLoss(jaccard=True, smooth_nr=2 * naive.SMOOTH_NR, smooth_dr=2 * naive.SMOOTH_DR, **common)
    else:
        raise Unavailable(f"MONAI has no {member} loss")
    return lambda input, target: loss(input, target.unsqueeze(1))


def _smp_losses():
    """``segmentation_models_pytorch.losses`` without the package's ``__init__``.

    The package's ``__init__`` imports its model zoo, which needs torchvision; PyPI's torchvision
    does not import beside a CPU build of torch. Its ``losses`` subpackage needs only torch, so it
    is loaded on its own from the installed package (nothing is copied).
    """
    name = "segmentation_models_pytorch"
    if name + ".losses" in sys.modules:
        return sys.modules[name + ".losses"]
    try:
        return importlib.import_module(name + ".losses")
    except Exception:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise Unavailable(
                "segmentation-models-pytorch not installed: pip install --no-deps segmentation-models-pytorch"
            ) from None
    for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
        del sys.modules[key]  # a half-imported package left by the failed import
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package
    try:
        return importlib.import_module(name + ".losses")
    except Exception as error:
        del sys.modules[name]
        raise Unavailable(f"segmentation_models_pytorch.losses not importable: {error}") from None


def smp_dice(opts):
    if opts["per_image"]:
        raise Unavailable("smp's DiceLoss sums over the whole batch only (per_image=False)")
    losses = _smp_losses()
    return losses.DiceLoss(mode=opts["mode"], from_logits=True, smooth=naive.SMOOTH_NR, eps=1e-7)


def smp_overlap(opts):
    if opts["per_image"]:
        raise Unavailable("smp's losses sum over the whole batch only (per_image=False)")
    losses = _smp_losses()
    if opts["member"] == "jaccard":
        return losses.JaccardLoss(mode="multiclass", from_logits=True, smooth=naive.SMOOTH_NR, eps=1e-7)
    if opts["member"] == "tversky":
        return losses.TverskyLoss(
            mode="multiclass",
            from_logits=True,
            smooth=naive.SMOOTH_NR,
            eps=1e-7,
            alpha=opts["alpha"],
            beta=opts["beta"],
        )
    raise Unavailable(f"smp has no {opts['member']} loss with these options")


def kornia_tversky(opts):
    if not opts["per_image"]:
        raise Unavailable("kornia's tversky_loss is per image only")
    module = _import("kornia.losses", "pip install kornia")
    return lambda input, target: module.tversky_loss(input, target, alpha=opts["alpha"], beta=opts["beta"], eps=1e-8)


def keras_tversky(opts):
    """Keras' built-in ``keras.losses.Tversky`` on probabilities and one-hot targets, channels last.

    Its ``alpha`` weighs the false negatives: it gets this package's ``beta``, and the reverse."""
    import keras
    from keras import ops

    if opts["per_image"]:
        raise Unavailable("keras.losses.Tversky over (batch, *spatial) axes: per_image=False only")
    losses = {}

    def fn(y_true, y_pred):
        ndim = len(y_pred.shape)
        if ndim not in losses:
            losses[ndim] = keras.losses.Tversky(alpha=opts["beta"], beta=opts["alpha"], axis=tuple(range(ndim - 1)))
        onehot = ops.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype)
        return losses[ndim](onehot, ops.softmax(y_pred, axis=-1))

    return fn


def kornia_dice(opts):
    if opts["mode"] != "multiclass":
        raise Unavailable("kornia's dice_loss applies a softmax over channels: multiclass only")
    if not opts["per_image"]:
        raise Unavailable("kornia's dice_loss is per image only ('macro': per image and class)")
    module = _import("kornia.losses", "pip install kornia")
    return lambda input, target: module.dice_loss(input, target, average="macro", eps=1e-8)


def keras_dice(opts):
    """Keras' built-in ``keras.losses.Dice`` on probabilities and one-hot targets, channels last."""
    import keras
    from keras import ops

    def build_axes(ndim):
        spatial = tuple(range(1, ndim - 1))
        return spatial if opts["per_image"] else (0,) + spatial

    losses = {}

    def fn(y_true, y_pred):
        ndim = len(y_pred.shape)
        if ndim not in losses:
            losses[ndim] = keras.losses.Dice(axis=build_axes(ndim))
        if opts["mode"] == "binary":
            return losses[ndim](y_true, ops.sigmoid(y_pred))
        onehot = ops.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype)
        return losses[ndim](onehot, ops.softmax(y_pred, axis=-1))

    return fn


def smp_lovasz(opts):
    if opts["classes"] != "present":
        raise Unavailable("smp's LovaszLoss averages over the classes present in the target only")
    losses = _smp_losses()
    return losses.LovaszLoss(mode="multiclass", per_image=opts["per_image"])


def kornia_lovasz(opts):
    if not opts["per_image"] or opts["classes"] != "all":
        raise Unavailable("kornia's lovasz_softmax_loss is per image over all classes only")
    module = _import("kornia.losses", "pip install kornia")
    return lambda input, target: module.lovasz_softmax_loss(input, target)


# Peers of the focal loss and the Dice pairs ------------------------------------------------------------


def monai_focal(opts):
    """MONAI's FocalLoss: the sigmoid one is this package's binary / multilabel focal loss; the softmax
    one averages over the classes too, C times less (the row's ``scale``)."""
    losses = _import("monai.losses", "pip install monai")
    if opts["mode"] == "multiclass":
        if opts["alpha"] is not None:
            raise Unavailable("MONAI's softmax alpha is [1 - a, a, ...]: the case has none")
        loss = losses.FocalLoss(gamma=opts["gamma"], use_softmax=True, to_onehot_y=True)
        return lambda input, target: loss(input, target.unsqueeze(1))
    return losses.FocalLoss(gamma=opts["gamma"], alpha=opts["alpha"])


def smp_focal(opts):
    if opts["mode"] != "binary":
        raise Unavailable("smp's multiclass FocalLoss is one sigmoid per class against the rest, not a softmax")
    return _smp_losses().FocalLoss(mode="binary", alpha=opts["alpha"], gamma=opts["gamma"])


def torchvision_focal(opts):
    if opts["mode"] == "multiclass":
        raise Unavailable("torchvision's sigmoid_focal_loss is binary / multilabel only")
    ops = _import(
        "torchvision.ops",
        "PyPI's torchvision pins its own torch build, not the CPU one: run the "
        "case in an environment with both (benchmarks/results/cross_entropy-torchvision/)",
    )
    alpha = -1 if opts["alpha"] is None else opts["alpha"]  # torchvision's "no balancing"
    return lambda input, target: ops.sigmoid_focal_loss(
        input, target, alpha=alpha, gamma=opts["gamma"], reduction="mean"
    )


def keras_focal(opts):
    """Keras' ``BinaryFocalCrossentropy`` (class balancing by ``alpha``: this package's multilabel loss)
    or ``CategoricalFocalCrossentropy`` on one-hot targets (its ``alpha=a`` is ``[a] * C``: 1 here)."""
    import keras
    from keras import ops

    if opts["mode"] == "multiclass":
        if opts["alpha"] is not None:
            raise Unavailable("the case's alpha per class differs from Keras' one alpha for every class")
        loss = keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=opts["gamma"], from_logits=True)
        return lambda y_true, y_pred: loss(ops.one_hot(y_true, y_pred.shape[-1], dtype=y_pred.dtype), y_pred)
    balanced = opts["alpha"] is not None
    return keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=balanced, alpha=opts["alpha"] if balanced else 0.25, gamma=opts["gamma"], from_logits=True
    )


def monai_dice_ce(opts):
    """MONAI's DiceCELoss: with ``batch=not per_image``, this package's ``dice_ce_loss`` (softmax and
    one-hot label maps, or a sigmoid with one channel, where its cross-entropy is the binary one)."""
    losses = _import("monai.losses", "pip install monai")
    multiclass = opts["mode"] == "multiclass"
    loss = losses.DiceCELoss(
        softmax=multiclass,
        sigmoid=not multiclass,
        to_onehot_y=multiclass,
        batch=not opts["per_image"],
        smooth_nr=naive.SMOOTH_NR,
        smooth_dr=naive.SMOOTH_DR,
        lambda_ce=opts["lambda_term"],
    )
    return (lambda input, target: loss(input, target.unsqueeze(1))) if multiclass else loss


def monai_dice_focal(opts):
    if opts["mode"] == "multiclass":
        raise Unavailable(
            "MONAI's DiceFocalLoss takes its focal term from a sigmoid per channel even with "
            "softmax=True: binary and multilabel only"
        )
    losses = _import("monai.losses", "pip install monai")
    return losses.DiceFocalLoss(
        sigmoid=True,
        batch=not opts["per_image"],
        smooth_nr=naive.SMOOTH_NR,
        smooth_dr=naive.SMOOTH_DR,
        gamma=opts["gamma"],
        alpha=opts["alpha"],
        lambda_focal=opts["lambda_term"],
    )
