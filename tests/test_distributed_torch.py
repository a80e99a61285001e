"""The overlap losses with sync_across_ranks=True under DistributedDataParallel equal the single-process run.

Two worker processes (gloo backend, CPU) train a small conv net with DDP for a few steps on their
slices of a batch; the test compares each step's loss on every rank and the parameter gradients DDP
leaves (averaged over the ranks) with a single-process run on the whole batch, and checks that
without the option they differ. The workers are this file run as a script.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with the gloo backend"
)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
# (name, Dice options, images on rank 0 and rank 1)
CASES = [
    ("batch_sync", dict(per_image=False, sync_across_ranks=True), (2, 2)),
    ("batch_local", dict(per_image=False, sync_across_ranks=False), (2, 2)),
    ("batch_sync_uneven", dict(per_image=False, sync_across_ranks=True, reduction="sum"), (3, 1)),
    ("image_sync_uneven", dict(per_image=True, sync_across_ranks=True), (3, 1)),
    ("image_local_uneven", dict(per_image=True, sync_across_ranks=False), (3, 1)),
    ("image_sync_sum", dict(per_image=True, sync_across_ranks=True, reduction="sum"), (2, 2)),
    # Other members of the overlap family: the same sums, the same synchronisation.
    (
        "tversky_batch_sync",
        dict(loss="TverskyLoss", alpha=0.3, beta=0.7, per_image=False, sync_across_ranks=True),
        (2, 2),
    ),
    ("generalized_batch_sync", dict(loss="GeneralizedDiceLoss", per_image=False, sync_across_ranks=True), (3, 1)),
    ("jaccard_micro_sync", dict(loss="JaccardLoss", average="micro", per_image=False, sync_across_ranks=True), (2, 2)),
]


def _data(batch: int = 4) -> tuple:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 2, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (batch, 8, 8), generator=generator)
    labels[:2] = 2 * (labels[:2] > 0)  # class 1 absent from the first slice: local batch Dice is far off
    return images, labels


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 1))


def _train(model, images, labels, options: dict) -> tuple[list, list]:
    """Loss and parameter gradients of each step of plain SGD."""
    import losses.torch

    options = dict(options)
    criterion = getattr(losses.torch, options.pop("loss", "DiceLoss"))(mode="multiclass", **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, grads = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        # a plain tensor, waited for: not a collective's AsyncCollectiveTensor
        assert type(loss) is torch.Tensor, (options, type(loss))
        loss.backward()
        losses.append(loss.detach().clone())
        grads.append([p.grad.detach().clone() for p in model.parameters()])
        optimizer.step()
    return losses, grads


def _worker(rank: int, world_size: int, store: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    # A file store needs no free port; the timeout ends a worker whose peer died.
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60)
    )
    try:
        images, labels = _data()
        results = {}
        for name, options, sizes in CASES:
            start = sum(sizes[:rank])
            part = slice(start, start + sizes[rank])
            model = DistributedDataParallel(_model())
            results[name] = _train(model, images[part], labels[part], options)
        torch.save(results, out)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "LOSSES_KERNELS": "torch",
    }
    outs = [tmp / f"rank{rank}.pt" for rank in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), "2", str(tmp / "store"), str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, out in enumerate(outs)
    ]
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=120)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, f"DDP worker failed:\n{log}"
        assert "unwaited collective" not in log, log
    return [torch.load(out) for out in outs]


def _single(options: dict) -> tuple[list, list]:
    images, labels = _data()
    return _train(_model(), images, labels, options)


def _close(a, b) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[1]["sync_across_ranks"]])
def test_ddp_with_sync_equals_single_process(ddp_results, name):
    options = dict(next(c[1] for c in CASES if c[0] == name))
    single_losses, single_grads = _single(options)
    for rank, results in enumerate(ddp_results):
        losses, grads = results[name]
        for step in range(STEPS):
            assert _close(losses[step], single_losses[step]), (rank, step, losses[step], single_losses[step])
            for got, want in zip(grads[step], single_grads[step]):
                assert _close(got, want), (rank, step, (got - want).abs().max())


def test_ddp_without_sync_differs_from_single_process(ddp_results):
    single_losses, single_grads = _single(dict(per_image=False))
    losses, grads = ddp_results[0]["batch_local"]
    assert not _close(losses[0], single_losses[0])
    assert not all(_close(got, want) for got, want in zip(grads[0], single_grads[0]))


def test_ddp_per_image_without_sync_reports_the_local_loss(ddp_results):
    # Per-image losses need no synchronisation of the sums; without it each rank reports the mean of
    # its own images and, with uneven slices, DDP's averaging weights the images unequally.
    single_losses, single_grads = _single(dict(per_image=True))
    losses, grads = ddp_results[0]["image_local_uneven"]
    assert not _close(losses[0], single_losses[0])
    assert not all(_close(got, want) for got, want in zip(grads[0], single_grads[0]))


def test_sync_is_a_no_op_without_a_process_group():
    assert not (dist.is_available() and dist.is_initialized())
    for per_image in (False, True):
        with_sync = _single(dict(per_image=per_image, sync_across_ranks=True))
        without = _single(dict(per_image=per_image))
        assert all(torch.equal(a, b) for a, b in zip(with_sync[0], without[0]))


def test_sync_compiles_without_a_process_group():
    from losses.torch import DiceLoss

    criterion = DiceLoss(mode="multiclass", per_image=False, sync_across_ranks=True)
    images, labels = _data()
    logits = _model()(images).detach()
    compiled = torch.compile(criterion, fullgraph=True, backend="eager")
    assert _close(compiled(logits, labels), criterion(logits, labels))


def test_sync_across_ranks_must_be_a_bool():
    from losses.torch import DiceLoss

    with pytest.raises(TypeError, match="sync_across_ranks must be True or False"):
        DiceLoss(sync_across_ranks=1)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
