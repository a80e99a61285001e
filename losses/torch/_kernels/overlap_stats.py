"""Overlap statistics on Triton: a stats pass, and a gradient pass for the backward.

For ``input`` of shape ``(B, C, *spatial)``, with p = sigmoid(x) (binary, multilabel) or the
softmax over C (multiclass) when ``from_logits``, else p = x; g the target probability of class
c; v the weight of a position (the weight map's value, or 1; 0 where the target equals
``ignore_index``), the stats are float32 of shape ``(S, C, NUM_STATS)`` (S = B if ``per_image``
else 1) in the layout of :mod:`losses._overlap`: sums over the spatial positions (and the batch when
not ``per_image``) of v·p·g, v·p, v·g, v·p², v·g², v·|p − g| and v.

Targets: a label map of an integer dtype, ``(B, *spatial)`` or ``(B, 1, *spatial)``, with
g = [label == c] (binary: C = 1 and g = [label == 1]) and v = 0 where label == ignore_index, for
every class of the pixel; or (binary, multilabel) a dense float target of the input's shape with
g = target and v = 0 where target == ignore_index, per element. Labels are compared in registers:
no one-hot tensor is ever made.

The backward receives ``grad_stats`` ``(S, C, NUM_STATS)`` and computes in one pass over input, target
(and weight map)::

    dL/dp_c = v * (g*gI + gP + 2*p*gP2 + sign(p - g)*gA)

chained through the sigmoid, p*(1 - p), or the softmax, p_c*(dp_c - sum_k p_k*dp_k). Only the
inputs are kept for it. Target and weight map get no gradient on this path (see
``overlap_kernel_supports``). Per-block partial sums are added in a fixed order: the stats are the
same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from losses._overlap import NUM_STATS

if TYPE_CHECKING:
    from losses._cross_entropy import FocalOptions
    from losses._overlap import OverlapOptions
from losses.torch._kernels import device_guard, next_pow2, triton_module

# The gradient pass is not differentiable; the fused path (``overlap_finalize``) computes a second
# derivative from the composed loss instead, but this one knows the sums alone.
SECOND_DERIVATIVE_ERROR = (
    "a second derivative (create_graph=True) is not available where the Triton stats kernels feed a "
    "formula of their own (sync_across_ranks, or more classes than the formula kernel takes); "
    "set LOSSES_KERNELS=torch for the portable path"
)
_MODES = ("binary", "multiclass", "multilabel")
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_MAX_GRID_Y = 65535
_MAX_CLASSES = 256
_RANGE_ERROR = (
    "input or target out of range: labels must lie in [0, C) ({0, 1} in binary mode), per-class "
    "targets and probabilities in [0, 1], or equal ignore_index"
)

# Launch shapes, measured on an H100 (benchmarks/gpu_kernels.py). The multiclass tile keeps every
# class of a pixel in one thread (all warps along the pixels: BLOCK = 128 * warps) so that the
# softmax and its gradient need no exchange between warps.
ROWS_BLOCK, ROWS_WARPS, ROWS_PROGRAMS = 1024, 4, 8192
MULTICLASS_WARPS, MULTICLASS_PROGRAMS = 4, 4096


@dataclass(frozen=True)
class TermArgs:
    """The cross-entropy / focal term the kernels add (``losses._cross_entropy.FocalOptions``): its
    code (1 cross-entropy, 2 focal, 3 focal with γ = 2), scalars and class factors ``w_c·α_c``
    (float32, on the input's device)."""

    code: int
    factors: torch.Tensor
    gamma: float
    smoothing: float
    a_pos: float
    a_neg: float

    @classmethod
    def of(cls, options: FocalOptions, num_classes: int, device: torch.device) -> TermArgs:
        from losses.torch._ops import constant

        code = 1 if options.gamma == 0 else 3 if options.gamma == 2 else 2
        alpha = options.positive_weight
        a_pos, a_neg = (1.0, 1.0) if alpha is None else (float(alpha), 1.0 - float(alpha))
        return cls(
            code,
            constant(options.class_factors(num_classes), torch.float32, device),
            float(options.gamma),
            float(options.label_smoothing),
            a_pos,
            a_neg,
        )


_NO_TERM = (0.0, 0.0, 1.0, 1.0)  # gamma, smoothing, a_pos, a_neg of kernels without a term


@dataclass(frozen=True)
class StatsOptions:
    """What the stats and gradient kernels need of the loss's options."""

    mode: str
    from_logits: bool
    ignore_index: int | None
    per_image: bool

    @classmethod
    def of(cls, options: OverlapOptions) -> StatsOptions:
        """From the options of an overlap loss."""
        return cls(options.mode, bool(options.from_logits), options.ignore_index, bool(options.per_image))


def overlap_kernel_supports(input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, mode: str) -> bool:
    """Whether :func:`overlap_stats_triton` handles these tensors (else use the portable path).

    Not handled: dense multiclass targets, a target or weight map that requires a gradient, more
    than 256 classes in multiclass mode, float64 or integer predictions, and shapes that are not
    ``(B, C, *spatial)`` with a matching target.
    """
    if mode not in _MODES or input.dtype not in _FLOATS or input.dim() < 2:
        return False
    if target.requires_grad or target.device != input.device:
        return False
    if weight is not None and (weight.requires_grad or weight.device != input.device):
        return False
    batch, classes = input.shape[0], input.shape[1]
    if batch * classes > _MAX_GRID_Y or (mode == "binary" and classes != 1):
        return False
    if target.dtype in _LABEL_DTYPES:
        spatial = tuple(input.shape[2:])
        if tuple(target.shape) not in ((batch, *spatial), (batch, 1, *spatial)):
            return False
        if mode == "multiclass":  # of the input's shape: per-class values (one class), not labels
            return classes <= _MAX_CLASSES and target.shape != input.shape
        return True
    if target.dtype not in _FLOATS + (torch.float64,) or target.shape != input.shape:
        return False
    return mode != "multiclass"


@dataclass(frozen=True)
class _Tensors:
    """The kernels' view of the inputs: contiguous, the target in a dtype the kernels read."""

    x: torch.Tensor
    t: torch.Tensor
    w: torch.Tensor | None
    labels: bool
    batch: int
    classes: int
    hw: int

    @classmethod
    def of(cls, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, mode: str) -> _Tensors:
        # Kept to attribute checks where possible: at small sizes every PyTorch call is host time.
        # A contiguous (B, *spatial) or (B, 1, *spatial) label map already is (B, HW) in memory.
        shape = input.shape
        x = input if input.is_contiguous() else input.contiguous()
        t = target if target.is_contiguous() else target.contiguous()
        # An integer target of the input's shape holds per-class 0/1 values, not class indices (with
        # one class, a label map's g = [label == 0] would invert it), except in binary mode, where
        # both read the same.
        labels = target.dtype in _LABEL_DTYPES and (target.shape != shape or mode == "binary")
        if not labels and t.dtype not in _FLOATS:
            t = t.to(torch.float32)
        w = None
        if weight is not None:
            w = weight if weight.dtype == torch.float32 and weight.is_contiguous() else weight.float().contiguous()
        return cls(x, t, w, labels, shape[0], shape[1], math.prod(shape[2:]))

    def ignore(self, options: StatsOptions) -> int | float:
        if options.ignore_index is None:
            return 0 if self.labels else 0.0
        return int(options.ignore_index) if self.labels else float(options.ignore_index)


def _chunks(blocks: int, rows: int, programs: int) -> tuple[int, int]:
    """(iterations per program, programs per row) for about ``programs`` programs in the stats pass."""
    per_row = max(1, min(blocks, -(-programs // rows)))
    iters = -(-blocks // per_row)
    return iters, -(-blocks // iters)


def _multiclass_block(classes: int) -> tuple[int, int]:
    """(padded class count, pixels per tile)."""
    c_pad = max(2, next_pow2(classes))
    pixels = 128 * MULTICLASS_WARPS
    # Beyond 4 classes the registers would not hold that tile: fewer pixels, and warps split
    # the classes (the class sums then go through shared memory).
    return c_pad, pixels if c_pad <= 4 else max(16, pixels * 4 // c_pad)


def _partial_and_out(
    batch: int, classes: int, n_chunks: int, groups: int, device: torch.device, partials: int, spare: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    # With spare > 0: one allocation for the per-block partial sums, the stats and ``spare`` more
    # floats (allocations are host time at training sizes), each part 16-byte aligned; only for
    # tensors that stay internal (custom ops must not return views, nor may a returned view be
    # modified in place).
    size = batch * classes * n_chunks * partials
    if spare == 0:
        return (
            torch.empty((batch, classes, n_chunks, partials), dtype=torch.float32, device=device),
            torch.empty((groups, classes, NUM_STATS), dtype=torch.float32, device=device),
            None,
        )
    n_out = groups * classes * NUM_STATS
    start = size + -(-n_out // 4) * 4
    buffer = torch.empty(start + spare, dtype=torch.float32, device=device)
    return (
        buffer[:size].view(batch, classes, n_chunks, partials),
        buffer[size : size + n_out].view(groups, classes, NUM_STATS),
        buffer[start:],
    )


def stats(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, options: StatsOptions, spare: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(stats, ``spare`` float32 scratch elements or None), both views into one buffer when spare > 0."""
    with device_guard(input):
        return _launch_stats(_Tensors.of(input, target, weight, options.mode), options, spare)[:2]


def stats_with_term(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, options: StatsOptions, term: TermArgs
) -> tuple[torch.Tensor, torch.Tensor]:
    """(stats, the term's sums ``(B, C, 2)``: Σ v·ℓ of each image and class, and Σ v (for multiclass,
    whose terms are per position, the same Σ v in every class)), from the same pass."""
    with device_guard(input):
        out, _, term_sums = _launch_stats(_Tensors.of(input, target, weight, options.mode), options, 0, term)
        assert term_sums is not None  # a term was given
        return out, term_sums


def _launch_stats(
    tensors: _Tensors, options: StatsOptions, spare: int, term: TermArgs | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    kernels = triton_module("_triton_overlap")
    x, t, w, batch, classes, hw = tensors.x, tensors.t, tensors.w, tensors.batch, tensors.classes, tensors.hw
    groups = batch if options.per_image else 1
    if hw == 0 or batch == 0:
        out = torch.zeros((groups, classes, NUM_STATS), dtype=torch.float32, device=x.device)
        term_sums = None if term is None else torch.zeros((batch, classes, 2), dtype=torch.float32, device=x.device)
        return out, torch.empty(spare, dtype=torch.float32, device=x.device) if spare else None, term_sums
    has_ignore = options.ignore_index is not None
    weight_arg = w if w is not None else x
    gamma, smoothing, a_pos, a_neg = _NO_TERM if term is None else (term.gamma, term.smoothing, term.a_pos, term.a_neg)
    code = 0 if term is None else term.code
    factors = x if term is None else term.factors
    if options.mode == "multiclass":
        c_pad, block = _multiclass_block(classes)
        iters, n_chunks = _chunks(-(-hw // block), batch, MULTICLASS_PROGRAMS)
        partial, out, scratch = _partial_and_out(batch, classes, n_chunks, groups, x.device, kernels.PARTIALS, spare)
        term_part = _term_partials(term, batch, classes, n_chunks, x)
        kernels.stats_multiclass_kernel[(n_chunks, batch)](
            x,
            t,
            weight_arg,
            partial,
            classes,
            hw,
            n_chunks,
            iters,
            tensors.ignore(options),
            term_part,
            factors,
            gamma,
            smoothing,
            FROM_LOGITS=options.from_logits,
            HAS_IGNORE=has_ignore,
            HAS_WEIGHT=w is not None,
            TERM=code,
            C_PAD=c_pad,
            BLOCK=block,
            num_warps=MULTICLASS_WARPS,
        )
    else:
        block = ROWS_BLOCK
        binary = options.mode == "binary"
        iters, n_chunks = _chunks(-(-hw // block), batch * classes, ROWS_PROGRAMS)
        partial, out, scratch = _partial_and_out(batch, classes, n_chunks, groups, x.device, kernels.PARTIALS, spare)
        term_part = _term_partials(term, batch, classes, n_chunks, x)
        kernels.stats_rows_kernel[(n_chunks, batch * classes)](
            x,
            t,
            weight_arg,
            partial,
            classes,
            hw,
            n_chunks,
            iters,
            tensors.ignore(options),
            1 if binary else 0,
            2 if binary else classes,
            term_part,
            factors,
            gamma,
            smoothing,
            a_pos,
            a_neg,
            FROM_LOGITS=options.from_logits,
            LABELS=tensors.labels,
            HAS_IGNORE=has_ignore,
            HAS_WEIGHT=w is not None,
            TERM=code,
            BLOCK=block,
            num_warps=ROWS_WARPS,
        )
    # The reduction also asserts, on the device, that no value was out of range.
    kernels.reduce_kernel[(groups * classes,)](
        partial,
        out,
        classes,
        n_chunks,
        batch // groups,
        BLOCK=kernels.REDUCE_BLOCK,
        num_warps=2,
    )
    if kernels.INTERPRET:
        # The interpreter skips device asserts; it runs synchronously on the CPU, so read the count.
        if bool(partial[..., kernels.OUT_OF_RANGE].nansum() > 0):
            raise RuntimeError(_RANGE_ERROR)
    return out, scratch, None if term is None else term_part.sum(2)


def _term_partials(term: TermArgs | None, batch: int, classes: int, n_chunks: int, x: torch.Tensor) -> torch.Tensor:
    """The per-block sums of the term and its weight, ``(B, C, n_chunks, 2)``; without a term, a
    placeholder pointer the kernels do not read."""
    if term is None:
        return x
    return torch.empty((batch, classes, n_chunks, 2), dtype=torch.float32, device=x.device)


def stats_backward(
    grad_stats: torch.Tensor,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    options: StatsOptions,
    scale: torch.Tensor | None = None,
    scale_stride: int = 0,
    scale_mult: float = 1.0,
    term: TermArgs | None = None,
    term_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The input gradient for ``grad_stats``; with ``scale``, for ``grad_stats`` of image row s times
    ``scale[s * scale_stride] * scale_mult`` (the upstream gradient of a per-image loss, folded in);
    with ``term``, plus ``term_scale[b]`` (float32, ``(B,)``) times the gradient of image b's Σ v·ℓ."""
    with device_guard(input):
        return _launch_stats_backward(
            grad_stats,
            _Tensors.of(input, target, weight, options.mode),
            options,
            scale,
            scale_stride,
            scale_mult,
            term,
            term_scale,
        )


def _launch_stats_backward(
    grad_stats: torch.Tensor,
    tensors: _Tensors,
    options: StatsOptions,
    scale: torch.Tensor | None,
    scale_stride: int,
    scale_mult: float,
    term: TermArgs | None = None,
    term_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    kernels = triton_module("_triton_overlap")
    x, t, w, batch, classes, hw = tensors.x, tensors.t, tensors.w, tensors.batch, tensors.classes, tensors.hw
    grad = torch.empty_like(x)
    if hw == 0 or batch == 0:
        return grad.zero_()
    gs = grad_stats
    if gs.dtype != torch.float32 or not gs.is_contiguous():
        gs = gs.to(torch.float32).contiguous()
    scaled = scale is not None
    scale_arg = scale if scaled else gs
    weight_arg = w if w is not None else x
    common = dict(
        FROM_LOGITS=options.from_logits,
        HAS_IGNORE=options.ignore_index is not None,
        HAS_WEIGHT=w is not None,
        SCALED=scaled,
        SATURATE=grad.dtype == torch.float16,
        TERM=0 if term is None else term.code,
    )
    gamma, smoothing, a_pos, a_neg = _NO_TERM if term is None else (term.gamma, term.smoothing, term.a_pos, term.a_neg)
    factors = x if term is None else term.factors
    term_scale_arg = x if term_scale is None else term_scale
    if options.mode == "multiclass":
        c_pad, block = _multiclass_block(classes)
        kernels.grad_multiclass_kernel[(-(-hw // block), batch)](
            x,
            t,
            weight_arg,
            gs,
            grad,
            classes,
            hw,
            int(options.per_image),
            tensors.ignore(options),
            scale_arg,
            scale_stride,
            float(scale_mult),
            term_scale_arg,
            factors,
            gamma,
            smoothing,
            C_PAD=c_pad,
            BLOCK=block,
            num_warps=MULTICLASS_WARPS,
            **common,
        )
    else:
        block = ROWS_BLOCK
        kernels.grad_rows_kernel[(-(-hw // block), batch * classes)](
            x,
            t,
            weight_arg,
            gs,
            grad,
            classes,
            hw,
            int(options.per_image),
            tensors.ignore(options),
            1 if options.mode == "binary" else 0,
            scale_arg,
            scale_stride,
            float(scale_mult),
            term_scale_arg,
            factors,
            gamma,
            smoothing,
            a_pos,
            a_neg,
            LABELS=tensors.labels,
            BLOCK=block,
            num_warps=ROWS_WARPS,
            **common,
        )
    return grad


class _OverlapStats(torch.autograd.Function):
    """The eager path: fewer Python layers than going through the custom op."""

    @staticmethod
    def forward(
        ctx: Any, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, options: StatsOptions
    ) -> torch.Tensor:
        ctx.options = options
        ctx.save_for_backward(input, target, weight)
        return stats(input, target, weight, options)[0]

    @staticmethod
    def backward(ctx: Any, grad_stats: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(SECOND_DERIVATIVE_ERROR)
        input, target, weight = ctx.saved_tensors
        grad = None
        if ctx.needs_input_grad[0]:
            grad = stats_backward(grad_stats, input, target, weight, ctx.options)
        return grad, None, None, None


# torch.compile path: custom ops the compiler keeps as opaque nodes, with their autograd. Their
# arguments are plain values: the options are unpacked here and nowhere else.
@torch.library.custom_op("losses::overlap_stats_triton", mutates_args=())
def _stats_op(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
) -> torch.Tensor:
    return stats(input, target, weight, StatsOptions(mode, from_logits, ignore_index, per_image))[0]


@_stats_op.register_fake
def _(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
) -> torch.Tensor:
    groups = input.shape[0] if per_image else 1
    return input.new_empty((groups, input.shape[1], NUM_STATS), dtype=torch.float32)


@torch.library.custom_op("losses::overlap_stats_triton_backward", mutates_args=())
def _stats_backward_op(
    grad_stats: torch.Tensor,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
) -> torch.Tensor:
    return stats_backward(grad_stats, input, target, weight, StatsOptions(mode, from_logits, ignore_index, per_image))


@_stats_backward_op.register_fake
def _(
    grad_stats: torch.Tensor,
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
) -> torch.Tensor:
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _op_setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    input, target, weight, *options = inputs
    ctx.options = tuple(options)
    ctx.save_for_backward(input, target, weight)


def _op_backward(ctx: Any, grad_stats: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None, None, None]:
    input, target, weight = ctx.saved_tensors
    grad = _stats_backward_op(grad_stats, input, target, weight, *ctx.options)
    return grad, None, None, None, None, None, None


_stats_op.register_autograd(_op_backward, setup_context=_op_setup_context)


def overlap_stats_triton(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    *,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
) -> torch.Tensor:
    """The ``(S, C, NUM_STATS)`` float32 statistics (see the module docstring), differentiable in ``input``.

    Call it only where ``overlap_kernel_supports`` is True; option checks are the caller's. A value
    out of range (a label outside ``[0, C)``, binary ``{0, 1}``, other than ``ignore_index``; a
    per-class target or probability outside [0, 1]) triggers a device assert ("input or target out
    of range": asynchronous, no host synchronisation; like every device assert it leaves the CUDA
    context unusable); under ``TRITON_INTERPRET=1`` a ``RuntimeError``.
    """
    options = StatsOptions(mode, bool(from_logits), ignore_index, bool(per_image))
    if torch.compiler.is_compiling():
        return _stats_op(
            input, target, weight, options.mode, options.from_logits, options.ignore_index, options.per_image
        )
    return _OverlapStats.apply(input, target, weight, options)


__all__ = [
    "StatsOptions",
    "TermArgs",
    "overlap_kernel_supports",
    "overlap_stats_triton",
    "stats",
    "stats_backward",
    "stats_with_term",
]
