"""Fused passes of the overlap losses for CPU tensors, in the C library of :mod:`losses.torch._kernels._clib`.

PyTorch's CPU ops make every elementwise step of a Dice loss a pass over memory with an
input-sized result (sigmoid, products, sums, and as many again backwards). ``cpu_overlap.c`` does the
forward in one pass (probabilities and every per-class sum) and the backward in one pass (the
gradient written over the stored probabilities), each split into fixed tasks that up to
``torch.get_num_threads()`` threads share (started and joined in C, without the GIL).

How the library is built, cached and loaded, and when the portable PyTorch path runs instead:
:mod:`losses.torch._kernels._clib`.
"""

from __future__ import annotations

import ctypes
import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from losses._overlap import (
    DENOMINATOR_MIN,
    EMPTY_TARGET_POLICIES,
    LOG_CLAMP,
    NUM_STATS,
    POOLINGS,
    TRANSFORMS,
    VALID_COUNT,
    Form,
    layout_definitions,
)

if TYPE_CHECKING:
    from losses._cross_entropy import FocalOptions
from losses.torch._kernels import _clib
from losses.torch._kernels._clib import available, build_error, library

# The sums of losses._overlap, the counts of values out of range and of non-finite values, and the
# sum of the cross-entropy / focal term (multiclass label maps: in the slot of class 0).
OUT_OF_RANGE = NUM_STATS
NON_FINITE = NUM_STATS + 1
CROSS_ENTROPY = NUM_STATS + 2
NUM_PARTIALS = NUM_STATS + 3
# -ffinite-math-only and -fno-signed-zeros let the clamps of the passes become vector min/max.
C_SOURCE = _clib.Source(
    "cpu_overlap.c",
    flags=("-ffinite-math-only", "-fno-signed-zeros"),
    defines={
        **layout_definitions(),
        "PARTIAL_OUT_OF_RANGE": OUT_OF_RANGE,
        "PARTIAL_NON_FINITE": NON_FINITE,
        "PARTIAL_CE": CROSS_ENTROPY,
        "NUM_PARTIALS": NUM_PARTIALS,
    },
)
# The general form on the sums between the passes, in float64 (see cpu_formula.c): NaN propagates
# there, so no -ffinite-math-only; no fused multiply-add, so that it rounds as NumPy does.
FORMULA_SOURCE = _clib.Source(
    "cpu_formula.c",
    flags=("-ffp-contract=off",),
    defines={
        **layout_definitions(),
        "LOG_CLAMP": LOG_CLAMP,
        "DENOMINATOR_MIN": DENOMINATOR_MIN,
        "PARTIAL_NON_FINITE": NON_FINITE,
        "PARTIAL_CE": CROSS_ENTROPY,
        "NUM_PARTIALS": NUM_PARTIALS,
    },
)
MAX_CLASSES = 64  # classes per image held in one tile (MAX_CLASSES in cpu_overlap.c)
# Positions per task. Fixed, so the order of every sum is the same whatever the thread count.
ROW_CHUNK = 16384
IMAGE_CHUNK = 4096

_SUFFIX = {torch.float32: "f32", torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8"}
_LABEL_DTYPES = (torch.int64, torch.int32, torch.uint8)
# The rows kernels with a term, by γ: the cross-entropy, γ = 2 (products only), any other γ.
_TERM_KERNELS = {0.0: "_ce", 2.0: "_focal2"}


class _Pass(ctypes.Structure):
    """``struct Pass`` of cpu_overlap.c."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("target", ctypes.c_void_p),
        ("probs", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("coef", ctypes.c_void_p),
        ("classes", ctypes.c_int64),
        ("n", ctypes.c_int64),
        ("chunk", ctypes.c_int64),
        ("activation", ctypes.c_int32),
        ("has_ignore", ctypes.c_int32),
        ("ignore", ctypes.c_double),
        ("ignore_int", ctypes.c_int64),
        ("weight", ctypes.c_void_p),
        ("ce_factor", ctypes.c_void_p),
        ("ce_scale", ctypes.c_void_p),
        ("gamma", ctypes.c_float),
        ("smoothing", ctypes.c_float),
        ("alpha", ctypes.c_float),
    ]


class _Formula(ctypes.Structure):
    """``struct Formula`` of cpu_formula.c."""

    _fields_ = [
        ("stats", ctypes.c_void_p),
        ("weights", ctypes.c_void_p),
        ("numerator", ctypes.c_void_p),
        ("denominator", ctypes.c_void_p),
        ("loss", ctypes.c_void_p),
        ("grad", ctypes.c_void_p),
        ("rows", ctypes.c_int64),
        ("classes", ctypes.c_int64),
        ("transform", ctypes.c_int32),
        ("pooling", ctypes.c_int32),
        ("empty_target", ctypes.c_int32),
        ("gamma", ctypes.c_double),
        ("weight_power", ctypes.c_double),
        ("smooth_nr", ctypes.c_double),
        ("smooth_dr", ctypes.c_double),
    ]


class _TermRows(ctypes.Structure):
    """``struct TermRows`` of cpu_formula.c."""

    _fields_ = [
        ("partials", ctypes.c_void_p),
        ("overlap", ctypes.c_void_p),
        ("rows", ctypes.c_void_p),
        ("slope", ctypes.c_void_p),
        ("nan_row", ctypes.c_void_p),
        ("non_finite", ctypes.c_void_p),
        ("batch", ctypes.c_int64),
        ("classes", ctypes.c_int64),
        ("one_term_per_position", ctypes.c_int32),
        ("per_image", ctypes.c_int32),
        ("normalization", ctypes.c_int32),
        ("lambda_term", ctypes.c_double),
        ("lambda_overlap", ctypes.c_double),
    ]


TERM_NORMALIZATIONS = ("row", "mean", "sum")  # the order of the enum in cpu_formula.c


@functools.lru_cache(maxsize=64)
def _formula_constants(form: Form, weights: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, dict[str, float | int]]:
    """The class weights, the coefficients of the numerator and the denominator (row 0, 1), and
    the scalar fields of ``struct Formula``: what depends on the loss's options alone."""
    numerator, denominator = form.coefficients()
    weight_array, weight_address = new_array((len(weights),))
    weight_array[:] = weights
    coefficients, coefficients_address = new_array((2, NUM_STATS))
    coefficients[:] = numerator, denominator
    fields = dict(
        weights=weight_address,
        numerator=coefficients_address,
        denominator=coefficients_address + coefficients.strides[0],
        transform=TRANSFORMS.index(form.transform),
        pooling=POOLINGS.index(form.pooling),
        empty_target=EMPTY_TARGET_POLICIES.index(form.empty_target),
        gamma=form.gamma,
        weight_power=form.weight_power,
        smooth_nr=form.smooth_nr,
        smooth_dr=form.smooth_dr,
    )
    return weight_array, coefficients, fields  # the arrays keep the addresses valid


def new_array(shape: tuple[int, ...], dtype: type = np.float64) -> tuple[np.ndarray, int]:
    """A new C-contiguous array and its address, for arguments of the library's functions.

    ``ndarray.ctypes.data`` costs several microseconds a call, and the host step between the
    passes of a small loss would pay it several times."""
    size = dtype(0).itemsize
    for extent in shape:
        size *= extent
    buffer = (ctypes.c_char * size)()
    return np.frombuffer(buffer, dtype).reshape(shape), ctypes.addressof(buffer)


def overlap_formula(stats: np.ndarray, weights: tuple[float, ...], form: Form) -> tuple[np.ndarray, np.ndarray]:
    """``overlap_loss(NumpyOps, stats, weights, form, with_grad=True)`` of :mod:`losses._overlap`, in C:
    the loss of each row ``(S,)`` and its derivative by the sums ``(S, C, NUM_STATS)``, float64."""
    rows, classes = stats.shape[:2]
    constants = _formula_constants(form, weights)
    size = stats.size
    buffer, address = new_array((2 * size + rows,))  # the sums, their derivative, the loss
    buffer[:size].reshape(stats.shape)[...] = stats
    formula = _Formula(
        stats=address,
        grad=address + 8 * size,
        loss=address + 16 * size,
        rows=rows,
        classes=classes,
        **constants[2],
    )
    lib = _clib.library()
    assert lib is not None, "the fused path runs only where the library is built"
    lib.overlap_formula(ctypes.addressof(formula))
    return buffer[2 * size :], buffer[size : 2 * size].reshape(stats.shape)


@functools.lru_cache(maxsize=64)
def _class_factors(term: FocalOptions, classes: int) -> tuple[np.ndarray, int]:
    """The term's factor of each class (``ce_factor`` of ``struct Pass``), float32, and its address."""
    factors, address = new_array((classes,), np.float32)
    factors[:] = term.class_factors(classes)
    return factors, address


def term_rows(
    prepared: Prepared,
    per_image: bool,
    normalization: str,
    lambda_term: float,
    overlap_rows: np.ndarray | None,
    lambda_overlap: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The loss of each row of a cross-entropy / focal term beside an overlap loss (of rows
    ``overlap_rows``, or None), from the sums of ``prepared.stats``, in C: ``(rows, λ_term·∂T/∂Σ v·ℓ,
    rows whose gradient is NaN, images with a NaN or ±inf)``, float64 ``(S,)`` and ``(S,)``, bool
    ``(S,)`` and ``(B,)`` or None where there is none (see :class:`losses.torch._term_core.TermLoss`)."""
    assert prepared.partials_address, "stats() first"
    batch = prepared.batch
    rows = batch if per_image else 1
    buffer, address = new_array((4 * rows + batch,))
    if overlap_rows is not None:
        buffer[3 * rows + batch :] = overlap_rows
    lib = _clib.library()
    assert lib is not None, "the fused path runs only where the library is built"
    arguments = _TermRows(
        partials=prepared.partials_address,
        overlap=None if overlap_rows is None else address + 8 * (3 * rows + batch),
        rows=address,
        slope=address + 8 * rows,
        nan_row=address + 16 * rows,
        non_finite=address + 24 * rows,
        batch=batch,
        classes=prepared.classes,
        one_term_per_position=prepared.kind != "rows",
        per_image=per_image,
        normalization=TERM_NORMALIZATIONS.index(normalization),
        lambda_term=lambda_term,
        lambda_overlap=lambda_overlap,
    )
    found = lib.term_rows(ctypes.addressof(arguments))
    nan_rows = buffer[2 * rows : 3 * rows] != 0 if found & 1 else None
    non_finite = buffer[3 * rows : 3 * rows + batch] != 0 if found & 2 else None
    return buffer[:rows], buffer[rows : 2 * rows], nan_rows, non_finite


def supports(input: torch.Tensor, target: torch.Tensor, mode: str, label_map: bool) -> bool:
    """Whether the fused passes take this prediction and target (else the portable path runs)."""
    if input.device.type != "cpu" or target.device.type != "cpu" or input.numel() == 0:
        return False
    if input.dtype == torch.float64 or not input.is_floating_point():
        return False  # float64 keeps its precision on the portable path
    if label_map:
        return target.dtype in _LABEL_DTYPES and (mode == "binary" or input.shape[1] <= MAX_CLASSES)
    if mode == "multiclass" and input.shape[1] > MAX_CLASSES:
        return False
    return target.is_floating_point() or target.dtype == torch.bool or target.dtype in _LABEL_DTYPES


def _run(name: str, pass_: _Pass, tasks: int, elements: int) -> None:
    """Runs the kernel ``name`` over ``tasks`` tasks, on up to ``torch.get_num_threads()`` threads."""
    _clib.run(name, pass_, tasks, _clib.threads_for(tasks, elements))


class Prepared:
    """The prediction (B, C, N) as contiguous float32 and the target in a dtype the library reads.

    :meth:`stats` keeps the probabilities (one buffer of the prediction's size) and
    :meth:`gradient` turns that buffer into the gradient, once.
    """

    __slots__ = (
        "activation",
        "batch",
        "ce_factor",
        "classes",
        "has_ignore",
        "ignore",
        "ignore_int",
        "kind",
        "partials_address",
        "positions",
        "probs",
        "target",
        "term",
        "weight",
        "x",
    )

    def __init__(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        mode: str,
        from_logits: bool,
        ignore_index: int | None,
        label_map: bool,
        weight: torch.Tensor | None = None,
        term: FocalOptions | None = None,
    ) -> None:
        """``term``: the options of a cross-entropy / focal term (``losses._cross_entropy.FocalOptions``)
        to sum in the same pass, or None; with logits and label maps or binary / multilabel targets."""
        self.batch, self.classes = input.shape[0], input.shape[1]
        self.positions = input.numel() // (self.batch * self.classes)
        self.x = input.reshape(self.batch, self.classes, self.positions).to(torch.float32).contiguous()
        if label_map:
            target = target.reshape(self.batch, self.positions)
        else:
            # Per-class targets are probabilities, whatever their dtype.
            target = target.reshape(self.batch, self.classes, self.positions).to(torch.float32)
        self.target = target.contiguous()
        self.activation = int(from_logits)
        # rows: sigmoid (or probabilities) per channel; images: softmax over the channels
        if mode == "multiclass":
            self.kind = "labels" if label_map else "classes"
        else:
            self.kind = "rows"
        info = None if self.target.is_floating_point() else torch.iinfo(self.target.dtype)
        # An ignore_index the target's dtype cannot hold matches nothing.
        self.has_ignore = int(ignore_index is not None and (info is None or info.min <= ignore_index <= info.max))
        self.ignore = float(ignore_index) if ignore_index is not None and self.has_ignore else 0.0
        self.ignore_int = int(ignore_index) if ignore_index is not None and self.has_ignore and info is not None else 0
        # The weight map, one weight per position of each image.
        self.weight = (
            None if weight is None else weight.reshape(self.batch, self.positions).to(torch.float32).contiguous()
        )
        self.term = term
        # (array, address): the array lives as long as this object, whatever the cache keeps
        self.ce_factor = None if term is None else _class_factors(term, self.classes)
        self.probs: torch.Tensor | None = None
        self.partials_address = 0  # of the float64 sums of stats(), for the host step in C

    def _tasks(self) -> tuple[int, int, int]:
        """(tasks, positions per task, rows): rows of N positions, or images of C × N."""
        if self.kind == "rows":
            rows, chunk = self.batch * self.classes, ROW_CHUNK
        else:
            rows, chunk = self.batch, IMAGE_CHUNK
        return rows * -(-self.positions // chunk), chunk, rows

    def _pass(self, chunk: int, **pointers: int) -> _Pass:
        term = {}
        if self.term is not None:
            assert self.ce_factor is not None  # set with the term
            alpha = self.term.positive_weight
            term = dict(
                ce_factor=self.ce_factor[1],
                gamma=self.term.gamma,
                smoothing=self.term.label_smoothing,
                alpha=-1.0 if alpha is None else alpha,
            )
        return _Pass(
            x=self.x.data_ptr(),
            target=self.target.data_ptr(),
            classes=self.classes,
            n=self.positions,
            chunk=chunk,
            activation=self.activation,
            has_ignore=self.has_ignore,
            ignore=self.ignore,
            ignore_int=self.ignore_int,
            weight=None if self.weight is None else self.weight.data_ptr(),
            **term,
            **pointers,
        )

    def stats(self, basic: bool) -> np.ndarray:
        """The sums (B, C, NUM_PARTIALS) of cpu_overlap.c in float64, added in a fixed order.

        ``basic``: only Σp·g, Σp and Σg (and the checks) are needed, and nothing is ignored or weighted.
        """
        suffix = _SUFFIX[self.target.dtype]
        if self.weight is not None:
            variant = "weighted" if self.kind == "rows" else "full"
        else:
            variant = "basic" if basic and not self.has_ignore else "full"
        if self.kind == "rows":
            ce = "" if self.term is None else _TERM_KERNELS.get(self.term.gamma, "_focal")
            name = f"rows_stats_{suffix}_{'sigmoid' if self.activation else 'identity'}_{variant}{ce}"
        elif self.kind == "labels":
            name = f"labels_stats_{suffix}_{variant}"
        else:
            name = "classes_stats_f32"
        tasks, chunk, rows = self._tasks()
        per_task = 1 if self.kind == "rows" else self.classes
        out, out_address = new_array((tasks, per_task, NUM_PARTIALS), np.float32)
        self.probs = torch.empty_like(self.x)
        _run(name, self._pass(chunk, out=out_address, probs=self.probs.data_ptr()), tasks, self.x.numel())
        stats, self.partials_address = new_array((rows, per_task, NUM_PARTIALS))
        out.reshape(rows, -1, per_task, NUM_PARTIALS).sum(1, dtype=np.float64, out=stats)
        stats = stats.reshape(self.batch, self.classes, NUM_PARTIALS)
        if variant == "basic":
            stats[..., VALID_COUNT] = self.positions
        return stats

    def gradient(self, coefficients: np.ndarray, term_scale: np.ndarray | None = None) -> torch.Tensor:
        """∂loss/∂logits (B, C, N) from (B, C, 4) coefficients (or (1, C, 4), the same for every
        image): ∂loss/∂ of Σp·g, Σv·p, Σv·p², Σv·|p − g|, and (with a term) ``term_scale`` (B,):
        ∂loss/∂ of the sum of the term over each image.

        Written over the probabilities of :meth:`stats`, which are gone afterwards.
        """
        suffix = _SUFFIX[self.target.dtype]
        if self.kind == "rows":
            weighted = "weighted" if self.weight is not None else "full"
            ce = "" if self.term is None else _TERM_KERNELS.get(self.term.gamma, "_focal")
            name = f"rows_grad_{suffix}_{'sigmoid' if self.activation else 'identity'}_{weighted}{ce}"
        else:
            name = f"{self.kind}_grad_{suffix}"
        tasks, chunk, _ = self._tasks()
        coefficients_f32, coefficients_address = new_array((self.batch, self.classes, 4), np.float32)
        coefficients_f32[...] = coefficients
        assert self.probs is not None, "stats() keeps the probabilities for one gradient pass"
        pointers = dict(probs=self.probs.data_ptr(), coef=coefficients_address)
        if self.term is not None:
            term_scale_f32, pointers["ce_scale"] = new_array((self.batch,), np.float32)
            term_scale_f32[:] = term_scale
        grad, self.probs = self.probs, None
        _run(name, self._pass(chunk, **pointers), tasks, self.x.numel())
        return grad


__all__ = ["Prepared", "available", "build_error", "library", "overlap_formula", "supports"]
