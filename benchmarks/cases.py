"""The case registry: what is measured, at which sizes, against which rows.

A case is one loss at one size. Its rows are implementations of the same loss with options
aligned so that they compute the same value; a row may override the case's options (kornia's Dice
is per image only), and is then checked against the reference at its own options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from benchmarks import peers


@dataclass(frozen=True)
class Row:
    name: str
    framework: str  # "torch" or "keras" (Keras 3 on TensorFlow, inside tf.function)
    build: object
    group: str  # "ours", "peer", "naive"
    opts: dict = field(default_factory=dict)  # overrides of the case's options
    jit: bool = False  # keras rows: tf.function(jit_compile=True)
    compiled: bool = False  # torch.compile / XLA rows: slow to warm up, skipped by --no-compile
    scale: float = 1.0  # the row computes scale × the case's loss (and gradient), and is checked so
    reference: bool = False  # another loss on the same input (Dice alone beside a pair): not in the headline


@dataclass(frozen=True)
class Case:
    key: str  # stable name, what --only matches
    loss: str  # "dice_binary", "dice_multiclass", "overlap" (opts["member"]), "lovasz", "focal", "dice_ce",
    # "dice_focal", "penalized_mae", or a surrogate's name
    shape: tuple  # of the prediction
    opts: dict
    rows: tuple
    note: str = ""
    grad_rtol: float | None = None  # the gradient check's tolerance, if not the runner's GRAD_RTOL

    @property
    def title(self) -> str:
        return f"{self.loss} {'x'.join(map(str, self.shape))}" + (f" ({self.note})" if self.note else "")

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _dice_rows(multiclass: bool, two_d: bool):
    rows = [
        Row("losses (ours)", "torch", peers.ours_torch_dice, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(peers.ours_torch_dice), "ours", compiled=True),
        Row("naive torch", "torch", peers.naive_torch_dice, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(peers.naive_torch_dice), "naive", compiled=True),
        Row("MONAI DiceLoss", "torch", peers.monai_dice, "peer"),
        Row("smp DiceLoss", "torch", peers.smp_dice, "peer"),
        Row("losses.keras (ours), tf.function", "keras", peers.ours_keras_dice, "ours"),
        Row("losses.keras (ours), jit_compile", "keras", peers.ours_keras_dice, "ours", jit=True, compiled=True),
        Row("keras.losses.Dice, tf.function", "keras", peers.keras_dice, "peer"),
        Row("keras.losses.Dice, jit_compile", "keras", peers.keras_dice, "peer", jit=True, compiled=True),
    ]
    if multiclass and two_d:
        per_image = {"per_image": True}
        rows += [
            Row("losses (ours), per_image=True", "torch", peers.ours_torch_dice, "ours", opts=per_image),
            Row("kornia dice_loss (macro), per_image=True", "torch", peers.kornia_dice, "peer", opts=per_image),
        ]
    return tuple(rows)


def _overlap_rows(member: str):
    rows = [
        Row("losses (ours)", "torch", peers.ours_torch_overlap, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(peers.ours_torch_overlap), "ours", compiled=True),
        Row("naive torch", "torch", peers.naive_torch_overlap, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(peers.naive_torch_overlap), "naive", compiled=True),
    ]
    monai_names = {
        "tversky": "MONAI TverskyLoss",
        "generalized_dice": "MONAI GeneralizedDiceLoss",
        "jaccard": "MONAI DiceLoss(jaccard=True)",
    }
    if member in monai_names:
        rows.append(Row(monai_names[member], "torch", peers.monai_overlap, "peer"))
    if member in ("jaccard", "tversky"):
        rows.append(
            Row(f"smp {'JaccardLoss' if member == 'jaccard' else 'TverskyLoss'}", "torch", peers.smp_overlap, "peer")
        )
    rows += [
        Row("losses.keras (ours), tf.function", "keras", peers.ours_keras_overlap, "ours"),
        Row("losses.keras (ours), jit_compile", "keras", peers.ours_keras_overlap, "ours", jit=True, compiled=True),
    ]
    if member == "tversky":
        per_image = {"per_image": True}
        rows += [
            Row("keras.losses.Tversky, tf.function", "keras", peers.keras_tversky, "peer"),
            Row("keras.losses.Tversky, jit_compile", "keras", peers.keras_tversky, "peer", jit=True, compiled=True),
            Row("losses (ours), per_image=True", "torch", peers.ours_torch_overlap, "ours", opts=per_image),
            Row("kornia tversky_loss, per_image=True", "torch", peers.kornia_tversky, "peer", opts=per_image),
        ]
    return tuple(rows)


def _lovasz_rows():
    all_per_image = {"per_image": True, "classes": "all"}
    return (
        Row("losses (ours)", "torch", peers.ours_torch_lovasz, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(peers.ours_torch_lovasz), "ours", compiled=True),
        Row("naive torch", "torch", peers.naive_torch_lovasz, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(peers.naive_torch_lovasz), "naive", compiled=True),
        Row("smp LovaszLoss", "torch", peers.smp_lovasz, "peer"),
        Row("losses.keras (ours), tf.function", "keras", peers.ours_keras_lovasz, "ours"),
        Row("losses.keras (ours), jit_compile", "keras", peers.ours_keras_lovasz, "ours", jit=True, compiled=True),
        Row(
            "losses (ours), per_image=True, classes='all'", "torch", peers.ours_torch_lovasz, "ours", opts=all_per_image
        ),
        Row(
            "kornia lovasz_softmax_loss, per image, all classes",
            "torch",
            peers.kornia_lovasz,
            "peer",
            opts=all_per_image,
        ),
    )


def _focal_rows(mode: str, num_classes: int):
    multiclass = mode == "multiclass"
    rows = [
        Row("losses (ours)", "torch", peers.ours_torch_focal, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(peers.ours_torch_focal), "ours", compiled=True),
        Row("naive torch", "torch", peers.naive_torch_focal, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(peers.naive_torch_focal), "naive", compiled=True),
    ]
    # MONAI's softmax focal loss is also a mean over the classes: C times less than ours.
    monai_scale = 1 / num_classes if multiclass else 1.0
    monai_name = "MONAI FocalLoss" + (" (use_softmax; ÷ C)" if multiclass else "")
    rows += [
        Row(monai_name, "torch", peers.monai_focal, "peer", scale=monai_scale),
        Row(
            monai_name + " + torch.compile",
            "torch",
            peers.compiled(peers.monai_focal),
            "peer",
            compiled=True,
            scale=monai_scale,
        ),
    ]
    if not multiclass:
        rows += [
            Row("smp FocalLoss", "torch", peers.smp_focal, "peer"),
            Row("torchvision sigmoid_focal_loss", "torch", peers.torchvision_focal, "peer"),
            Row(
                "torchvision sigmoid_focal_loss + torch.compile",
                "torch",
                peers.compiled(peers.torchvision_focal),
                "peer",
                compiled=True,
            ),
        ]
    keras_name = "keras.losses.CategoricalFocalCrossentropy" if multiclass else "keras.losses.BinaryFocalCrossentropy"
    rows += [
        Row("losses.keras (ours), tf.function", "keras", peers.ours_keras_focal, "ours"),
        Row("losses.keras (ours), jit_compile", "keras", peers.ours_keras_focal, "ours", jit=True, compiled=True),
        Row(f"{keras_name}, tf.function", "keras", peers.keras_focal, "peer"),
        Row(f"{keras_name}, jit_compile", "keras", peers.keras_focal, "peer", jit=True, compiled=True),
    ]
    return tuple(rows)


def _pair_rows(pair: str):
    """``dice_ce`` or ``dice_focal``: the fused pair, and Dice alone on the same input (the pair with
    the term's weight at 0), what the term costs."""
    ours = peers.ours_torch_pair(pair)
    rows = [
        Row("losses (ours)", "torch", ours, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(ours), "ours", compiled=True),
        Row(
            "losses DiceLoss alone (ours)",
            "torch",
            peers.ours_torch_dice,
            "ours",
            opts={"lambda_term": 0.0},
            reference=True,
        ),
    ]
    if pair == "dice_ce":
        rows.append(
            Row(
                "losses DiceLoss + torch cross-entropy, composed",
                "torch",
                peers.ours_dice_plus_torch_cross_entropy,
                "naive",
            )
        )
    rows += [
        Row("naive torch", "torch", peers.naive_torch_pair, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(peers.naive_torch_pair), "naive", compiled=True),
        Row(
            "MONAI DiceCELoss" if pair == "dice_ce" else "MONAI DiceFocalLoss",
            "torch",
            peers.monai_dice_ce if pair == "dice_ce" else peers.monai_dice_focal,
            "peer",
        ),
        Row("losses.keras (ours), tf.function", "keras", peers.ours_keras_pair(pair), "ours"),
        Row("losses.keras (ours), jit_compile", "keras", peers.ours_keras_pair(pair), "ours", jit=True, compiled=True),
    ]
    return tuple(rows)


def _elementwise_rows(name: str):
    if name == "penalized_mae":
        ours_torch, naive_torch = peers.ours_torch_penalized_mae, peers.naive_torch_penalized_mae
        ours_keras, naive_keras = peers.ours_keras_penalized_mae, peers.naive_keras_penalized_mae
    else:
        ours_torch, naive_torch = peers.ours_torch_surrogate(name), peers.naive_torch_surrogate(name)
        ours_keras, naive_keras = peers.ours_keras_surrogate(name), peers.naive_keras_surrogate(name)
    return (
        Row("losses (ours)", "torch", ours_torch, "ours"),
        Row("losses (ours) + torch.compile", "torch", peers.compiled(ours_torch), "ours", compiled=True),
        Row("naive torch", "torch", naive_torch, "naive"),
        Row("naive torch + torch.compile", "torch", peers.compiled(naive_torch), "naive", compiled=True),
        Row("losses.keras (ours), tf.function", "keras", ours_keras, "ours"),
        Row("losses.keras (ours), jit_compile", "keras", ours_keras, "ours", jit=True, compiled=True),
        Row("naive keras, tf.function", "keras", naive_keras, "naive"),
        Row("naive keras, jit_compile", "keras", naive_keras, "naive", jit=True, compiled=True),
    )


def _binary(shape, note=""):
    return Case(
        f"dice_binary_{'x'.join(map(str, shape))}",
        "dice_binary",
        shape,
        {"mode": "binary", "per_image": False},
        _dice_rows(False, len(shape) == 4),
        note,
    )


def _multiclass(shape, note=""):
    return Case(
        f"dice_multiclass_{'x'.join(map(str, shape))}",
        "dice_multiclass",
        shape,
        {"mode": "multiclass", "per_image": False},
        _dice_rows(True, len(shape) == 4),
        note,
    )


def _overlap(member, shape, note="int64 label maps", **member_opts):
    opts = {"member": member, "per_image": False, **member_opts}
    return Case(
        f"{member}_{'x'.join(map(str, shape))}",
        "overlap",
        shape,
        opts,
        _overlap_rows(member),
        ", ".join(filter(None, (member, note))),
    )


def _lovasz(shape):
    # The weights as differences of consecutive Jaccard losses in float32 (naive, smp) lose about
    # 0.5% of the largest gradient at 131072 positions per row: checked to 1% here, to time them.
    return Case(
        f"lovasz_softmax_{'x'.join(map(str, shape))}",
        "lovasz",
        shape,
        {"per_image": False, "classes": "present"},
        _lovasz_rows(),
        "int64 label maps, gradients checked to 1% of the largest",
        grad_rtol=1e-2,
    )


def _elementwise(loss, numel, note="", straight_through=False):
    opts = {"delta": 1.0, "penalty": 0.5} if loss == "penalized_mae" else {"alpha": 5.0}
    if straight_through:
        opts["straight_through"] = True
        note = ", ".join(filter(None, ("straight_through=True", note)))
    shape = (numel // 65536, 65536) if numel >= 65536 else (1, numel)
    size = f"2^{int(math.log2(numel))} elements" if numel & (numel - 1) == 0 else f"{numel} elements"
    key = f"{loss}{'_straight_through' if straight_through else ''}_{numel}"
    return Case(key, loss, shape, opts, _elementwise_rows(loss), ", ".join(filter(None, (size, note))))


def _focal(mode, shape):
    # The torchvision default alpha (0.25) for a sigmoid; none for a softmax (MONAI's and Keras' differ).
    opts = {"mode": mode, "gamma": 2.0, "alpha": None if mode == "multiclass" else 0.25}
    note = "int64 label maps" if mode == "multiclass" else "float 0/1 targets, alpha=0.25"
    return Case(
        f"focal_loss_{mode}_{'x'.join(map(str, shape))}",
        "focal",
        shape,
        opts,
        _focal_rows(mode, shape[1]),
        f"{mode}, gamma=2, {note}",
    )


def _pair(pair, mode, shape):
    opts = {"mode": mode, "per_image": False, "lambda_term": 1.0}
    if pair == "dice_focal":
        opts.update(gamma=2.0, alpha=None)
    note = "int64 label maps" if mode == "multiclass" else "float 0/1 targets"
    return Case(
        f"{pair}_{mode}_{'x'.join(map(str, shape))}",
        pair,
        shape,
        opts,
        _pair_rows(pair),
        f"{mode}, per_image=False, {note}",
    )


def _cross_entropy_cases(multiclass_shape, binary_shape):
    """The focal loss and the Dice pairs, multiclass and binary."""
    return [
        _focal("multiclass", multiclass_shape),
        _pair("dice_ce", "multiclass", multiclass_shape),
        _pair("dice_focal", "multiclass", multiclass_shape),
        _focal("binary", binary_shape),
        _pair("dice_ce", "binary", binary_shape),
        _pair("dice_focal", "binary", binary_shape),
    ]


SURROGATES = ("soft_round", "soft_floor", "soft_ceil", "soft_step", "soft_sign")


def _elementwise_cases(numel):
    """Penalized MAE and every surrogate, plain and straight through."""
    return [_elementwise("penalized_mae", numel)] + [
        _elementwise(name, numel, straight_through=straight_through)
        for name in SURROGATES
        for straight_through in (False, True)
    ]


def _extra_rows(device: str):
    """Rows that ``benchmarks/gpu_kernels.py`` contributes, if it defines ``benchmark_rows(device)``
    returning ``{loss: [Row, ...]}``; they are checked and timed like every other row."""
    if device != "cuda":
        return {}
    try:
        from benchmarks import gpu_kernels
    except Exception:  # no Triton, or no such module: the common rows still run
        return {}
    provide = getattr(gpu_kernels, "benchmark_rows", None)
    return provide(device) if callable(provide) else {}


def cases_for(device: str, quick: bool = False) -> list[Case]:
    """Every case for a device; ``quick``: tiny sizes, to check that the runner works."""
    extra = _extra_rows(device)
    return [
        case if not extra.get(case.loss) else replace(case, rows=case.rows + tuple(extra[case.loss]))
        for case in _cases(device, quick)
    ]


def _cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return [
            _binary((2, 1, 16, 16)),
            _multiclass((2, 3, 16, 16)),
            _multiclass((1, 3, 8, 8, 8)),
            _overlap("tversky", (2, 3, 16, 16), alpha=0.3, beta=0.7),
            _lovasz((2, 3, 16, 16)),
            *_cross_entropy_cases((2, 3, 16, 16), (2, 1, 16, 16)),
            *_elementwise_cases(4096),
        ]
    if device == "cpu":
        return [
            _binary((16, 1, 256, 256)),
            _multiclass((8, 4, 128, 128), "int64 label maps"),
            _multiclass((2, 3, 64, 64, 64), "3D, int64 label maps"),
            _overlap("jaccard", (8, 4, 128, 128)),
            _overlap("tversky", (8, 4, 128, 128), alpha=0.3, beta=0.7),
            _overlap("focal_tversky", (8, 4, 128, 128), alpha=0.3, beta=0.7, gamma=0.75),
            _overlap("generalized_dice", (8, 4, 128, 128), weight_type="square"),
            _lovasz((8, 4, 128, 128)),
            *_cross_entropy_cases((8, 4, 128, 128), (16, 1, 256, 256)),
            *_elementwise_cases(2**22),
        ]
    return [
        # Sizes that fill the GPU: memory bandwidth sets the time.
        _binary((16, 1, 2048, 2048)),
        _multiclass((16, 4, 1024, 1024), "int64 label maps"),
        _multiclass((2, 4, 160, 160, 160), "3D, int64 label maps"),
        _overlap("jaccard", (16, 4, 1024, 1024)),
        _overlap("tversky", (16, 4, 1024, 1024), alpha=0.3, beta=0.7),
        _overlap("focal_tversky", (16, 4, 1024, 1024), alpha=0.3, beta=0.7, gamma=0.75),
        _overlap("generalized_dice", (16, 4, 1024, 1024), weight_type="square"),
        *_elementwise_cases(2**26),
        # Sizes people train with: host overhead sets the time.
        _multiclass((8, 4, 256, 256), "training size"),
        _multiclass((2, 4, 96, 96, 96), "3D, training size"),
    ]
