"""Data-parallel training: the sums and the reductions of the global batch (``sync_across_ranks``)."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor


def distributed() -> bool:
    """Whether a default process group is initialised (both calls constant-fold under torch.compile)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def all_reduce_sum(x: Tensor) -> Tensor:
    """Σ of ``x`` over the ranks of the default process group; its backward is Σ over the ranks too."""
    from torch.distributed import _functional_collectives as collectives

    if hasattr(collectives, "all_reduce_backward"):
        # The functional collective is differentiable (sum) and traceable by torch.compile.
        # Called only with a default process group initialised: WORLD is that group.
        # Waited here: otherwise a loss computed without a further op (per_image with
        # reduction="sum") came back as an AsyncCollectiveTensor, and collectives left unwaited
        # at exit made c10d warn. wait_tensor is differentiable and traceable too.
        world = cast(torch.distributed.ProcessGroup, torch.distributed.group.WORLD)
        return cast(Tensor, collectives.wait_tensor(collectives.all_reduce(x, "sum", world)))  # type: ignore[no-untyped-call]
    from torch.distributed.nn.functional import all_reduce  # older PyTorch: autograd-aware, eager only

    return all_reduce(x)


def reduce_across_ranks(per_image: Tensor, reduction: str) -> Tensor:
    """The mean or sum of the per-image losses of the global batch, on every rank.

    Rank r's value depends on its own images through the local sum; the backward of the
    all-reduce hands each rank W times the single-process gradient, which DDP's averaging over the
    W ranks turns back into it, whatever the batch size of each rank.
    """
    count = torch.ones_like(per_image).sum()
    totals = all_reduce_sum(torch.stack([per_image.sum(), count]))
    return totals[0] / totals[1] if reduction == "mean" else totals[0]
