"""The overlap losses on PyTorch tensors: which execution path runs, and the loss on each.

Paths (:func:`choose_path` says which one runs, and why):

- ``"triton"``: CUDA tensors with Triton: a stats kernel, a formula kernel (the general form of
  :mod:`losses._overlap` with its derivative and the reduction) and one gradient kernel in the
  backward (``_kernels/overlap_stats.py``, ``_kernels/overlap_finalize.py``);
- ``"triton-stats"``: the Triton stats kernels and the formula from PyTorch ops (with
  ``sync_across_ranks``, whose all-reduce sits between the two, or more classes than the formula
  kernel holds);
- ``"cpu"``: CPU tensors: two fused passes of the C library and the formula between them, also in
  C (:mod:`losses.torch._fused_cpu`);
- ``"portable"``: PyTorch ops and autograd, everywhere else (float64, ``torch.compile``,
  ``torch.func``, second derivatives, a target or weight map that requires grad, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from losses._overlap import OverlapOptions, overlap_loss
from losses.torch._checks import check_inputs, check_values, check_weight_values, transformed
from losses.torch._distributed import all_reduce_sum, distributed, reduce_across_ranks
from losses.torch._fused_cpu import FusedCpuOverlap
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch._kernels import kernels_choice, use_triton
from losses.torch._kernels.overlap_finalize import finalize_supports, overlap_loss_triton
from losses.torch._kernels.overlap_stats import overlap_kernel_supports, overlap_stats_triton
from losses.torch._ops import TorchOps, constant, reduce
from losses.torch._overlap_stats import overlap_stats_torch


@dataclass(frozen=True)
class Path:
    """The execution path of one call, and why it was chosen."""

    name: str
    reason: str


_CPU_PATH = Path("cpu", "CPU tensors: the fused passes of the C library")


def choose_path(input: Tensor, target: Tensor, weight: Tensor | None, options: OverlapOptions, label_map: bool) -> Path:
    """The path a loss with ``options`` takes on these tensors (see the module docstring)."""
    sync = options.sync_across_ranks and distributed()
    choice = kernels_choice()  # read once per call
    if use_triton(input, target, weight, choice=choice):
        # the kernels' Functions have no setup_context (vmap, jvp); torch.compile takes the custom ops
        if not torch.compiler.is_compiling() and transformed(input):
            return Path("portable", "a torch.func transform or forward-mode AD")
        if not overlap_kernel_supports(input, target, weight, options.mode):
            return Path(
                "portable",
                "the Triton kernels do not take these tensors (a dense multiclass target, a "
                "target or weight map that requires grad, float64, or over 256 classes)",
            )
        rows = input.shape[0] if options.per_image else 1
        if sync:
            return Path(
                "triton-stats", "sync_across_ranks: the sums are all-reduced between the stats kernels and the formula"
            )
        if not finalize_supports(rows, input.shape[1]):
            return Path("triton-stats", "too many classes for the formula kernel")
        return Path("triton", "CUDA tensors and Triton: fused stats, formula and gradient kernels")
    if input.device.type != "cpu":
        return Path("portable", "not CPU tensors, and the Triton kernels are not used")
    reason = _cpu_refusal(input, target, weight, options, label_map, sync, choice)
    if reason is not None:
        return Path("portable", reason)
    return _CPU_PATH


def _cpu_refusal(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: OverlapOptions,
    label_map: bool,
    sync: bool,
    choice: str,
) -> str | None:
    """Why the fused CPU passes do not run here (None when they do); ``choice``: "auto" or "torch"
    (``LOSSES_KERNELS=triton`` has taken the Triton path or raised by now)."""
    if choice == "torch":
        return "LOSSES_KERNELS=torch"
    if torch.compiler.is_compiling():
        return "under torch.compile (the portable path compiles)"
    if sync:
        return "sync_across_ranks with a process group (the all-reduce sits between the sums and the formula)"
    if target.requires_grad or (weight is not None and weight.requires_grad):
        return "a target or weight map that requires grad (the fused passes differentiate the input only)"
    if transformed(input):
        return "a torch.func transform or forward-mode AD"
    if not cpu_kernels.supports(input, target, options.mode, label_map):
        return (
            "the fused passes do not take these tensors (float64 keeps its precision on the portable path; "
            "empty inputs; over 64 classes)"
        )
    if cpu_kernels.library() is None:
        return f"the C library is not available: {cpu_kernels.build_error()}"
    return None


def loss(input: Tensor, target: Tensor, weight: Tensor | None, options: OverlapOptions, reduction: str) -> Tensor:
    """The loss of ``options.loss``; shape ``()``, or ``(B,)`` for ``reduction="none"`` with ``per_image``."""
    label_map = check_inputs(input, target, weight, options)
    options = options.for_target(label_map)
    num_classes = input.shape[1]
    full_weights = options.full_weights(num_classes)  # raises when no selected class has a weight
    path = choose_path(input, target, weight, options, label_map)
    if weight is not None and path.name in ("triton", "cpu"):
        check_weight_values(weight)
    if path.name == "triton":
        # Stats, formula and reduction in two launches, the backward in one (host time is the
        # cost at training sizes). On CUDA the stats kernels check the values themselves (a device
        # assert, without a pass of its own); the CPU (the interpreter) keeps the detailed ValueError.
        if input.device.type == "cpu":
            check_values(input, target, weight, options, label_map)
        weights = constant(full_weights, torch.float32, input.device)
        return overlap_loss_triton(input, target, weight, weights, options, reduction)
    if path.name == "cpu":
        return FusedCpuOverlap.apply(input, target, weight, options, reduction, label_map)
    sync = options.sync_across_ranks and distributed()
    return composed_loss(input, target, weight, options, reduction, label_map, sync, path.name == "triton-stats")


def composed_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: OverlapOptions,
    reduction: str,
    label_map: bool,
    sync: bool,
    triton_stats: bool = False,
) -> Tensor:
    """The loss from PyTorch ops (the sums from the Triton stats kernels with ``triton_stats``),
    differentiated by autograd."""
    per_row = row_losses(input, target, weight, options, label_map, sync, triton_stats)
    if not options.per_image:
        return per_row.squeeze(0)
    if sync and reduction != "none":
        return reduce_across_ranks(per_row, reduction)
    return reduce(per_row, reduction)


def row_losses(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    options: OverlapOptions,
    label_map: bool,
    sync: bool,
    triton_stats: bool = False,
) -> Tensor:
    """The loss of each row, ``(S,)``: of each image, or (``per_image=False``) of the batch, from the
    sums of all ranks when ``sync``."""
    if triton_stats:
        if input.device.type == "cpu":  # on CUDA the stats kernels assert themselves
            check_values(input, target, weight, options, label_map)
        stats = overlap_stats_triton(
            input,
            target,
            weight,
            mode=options.mode,
            from_logits=options.from_logits,
            ignore_index=options.ignore_index,
            per_image=options.per_image,
        )
    else:
        stats = overlap_stats_torch(input, target, weight, options, label_map)
    if sync and not options.per_image:
        stats = all_reduce_sum(stats)
    # A row with a NaN sum in any class (also one left out by `classes`) has a NaN loss.
    stats = stats + 0 * stats.sum((1, 2), keepdim=True)
    weights = constant(options.full_weights(input.shape[1]), stats.dtype, stats.device)
    return overlap_loss(TorchOps, stats, weights, options.form)
