"""The Triton kernels, run on CPU tensors by Triton's interpreter, against float64 PyTorch references.

Triton decides when it is first imported whether its own library functions are interpreted, so
``TRITON_INTERPRET=1`` must be set before ``import triton``. This file therefore runs itself in a
subprocess with ``TRITON_INTERPRET=1`` and ``LOSSES_KERNELS=triton`` (the one test the main
process sees), whatever else the test session imported before it. Sizes are odd and larger than
one block, so that ragged tails and several programs per row are exercised.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

IN_CHILD = os.environ.get("LOSSES_KERNEL_TESTS_CHILD") == "1"
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_kernels_under_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", LOSSES_KERNELS="triton", LOSSES_KERNEL_TESTS_CHILD="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(pathlib.Path(__file__)), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


torch = pytest.importorskip("torch")

from losses.torch import _kernels  # noqa: E402  (no triton import: the kernels load lazily)
from losses.torch._kernels.overlap_stats import overlap_kernel_supports, overlap_stats_triton  # noqa: E402
from losses.torch._kernels.penalized_mae import penalized_mae_triton  # noqa: E402


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


# ----------------------------------------------------------------------------------------------
# References (float64, plain PyTorch; one-hot is fine here)
# ----------------------------------------------------------------------------------------------


def pmae_reference(input, target, delta, penalty, reduction):
    e = input.double() - target.double()
    over = (e.abs() - delta).clamp_min(0)
    loss = e.abs() + penalty * over**2
    return {"mean": loss.mean, "sum": loss.sum, "none": lambda: loss}[reduction]()


def dice_stats_reference(input, target, *, mode, from_logits, ignore_index, per_image):
    x = input.double()
    batch, classes = x.shape[:2]
    if target.dtype.is_floating_point:
        g = target.double()
        valid = torch.ones_like(g, dtype=torch.bool) if ignore_index is None else g != ignore_index
    else:
        labels = target.reshape(batch, *x.shape[2:]).long()
        valid = torch.ones_like(labels, dtype=torch.bool) if ignore_index is None else labels != ignore_index
        valid = valid.unsqueeze(1).expand_as(x)
        if mode == "binary":
            g = (labels == 1).double().unsqueeze(1)
        else:
            g = torch.stack([(labels == c).double() for c in range(classes)], dim=1)
    if from_logits:
        p = x.softmax(dim=1) if mode == "multiclass" else x.sigmoid()
    else:
        p = x
    v = valid.double()
    p, g = p * v, g * v
    terms = [p * g, p, g, p * p, g * g, (p - g).abs(), v]
    dims = tuple(range(2, x.dim())) if per_image else (0, *range(2, x.dim()))
    stats = torch.stack([t.sum(dim=dims) for t in terms], dim=-1)
    return stats if per_image else stats.unsqueeze(0)


# ----------------------------------------------------------------------------------------------
# Path selection
# ----------------------------------------------------------------------------------------------


def test_path_selection(monkeypatch):
    cpu = torch.zeros(3)
    assert _kernels.use_triton(cpu, None)
    monkeypatch.setenv("LOSSES_KERNELS", "torch")
    assert not _kernels.use_triton(cpu)
    monkeypatch.setenv("LOSSES_KERNELS", "auto")
    assert not _kernels.use_triton(cpu), "auto must keep CPU tensors on the portable path"
    monkeypatch.setenv("LOSSES_KERNELS", "cuda")
    with pytest.raises(ValueError, match="LOSSES_KERNELS"):
        _kernels.use_triton(cpu)
    monkeypatch.setenv("LOSSES_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        _kernels.use_triton(cpu)


def test_kernels_follow_the_interpreter_setting(monkeypatch):
    assert _kernels.triton_module("_triton_elementwise").INTERPRET
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not _kernels.triton_module("_triton_elementwise").INTERPRET
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _kernels.triton_module("_triton_elementwise").INTERPRET


def test_import_losses_torch_does_not_import_triton():
    import subprocess
    import sys

    code = "import sys, losses.torch, losses.torch._kernels; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------
# Penalized MAE
# ----------------------------------------------------------------------------------------------

PMAE_SHAPE = (3, 1379)  # 4137 elements: two blocks of 4096, the second nearly empty


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_penalized_mae_value_and_gradients(reduction, dtype):
    gen = torch.Generator().manual_seed(1)
    delta, penalty = 0.7, 0.45
    x = (torch.randn(PMAE_SHAPE, generator=gen) * 2).to(dtype).requires_grad_()
    t = (torch.randn(PMAE_SHAPE, generator=gen) * 2).to(dtype).requires_grad_()
    loss = penalized_mae_triton(x, t, delta, penalty, reduction)
    ref = pmae_reference(x.detach(), t.detach(), delta, penalty, reduction)
    assert loss.dtype == torch.float32 and loss.shape == ref.shape
    assert rel_err(loss, ref) < 1e-6
    grad_out = torch.rand(loss.shape, generator=gen) + 0.5
    gx, gt = torch.autograd.grad(loss, (x, t), grad_out)
    xr = x.detach().double().requires_grad_()
    (gxr,) = torch.autograd.grad(pmae_reference(xr, t.detach(), delta, penalty, reduction), xr, grad_out.double())
    assert gx.dtype == dtype and gt.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert rel_err(gx, gxr) < tol
    assert torch.equal(gt, -gx)


def test_penalized_mae_subgradient_at_kinks():
    x = torch.tensor([0.0, 1.0, -1.0, 2.5, -2.5, 0.3], requires_grad=True)
    t = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    loss = penalized_mae_triton(x, t, 1.0, 0.5, "sum")
    (g,) = torch.autograd.grad(loss, x)
    # sign(0) = 0; at |e| = delta the penalty's derivative is 0; beyond it 1 + 2*0.5*(|e| - 1).
    assert torch.equal(g, torch.tensor([0.0, 1.0, -1.0, 2.5, -2.5, 1.0]))
    assert loss.item() == pytest.approx(0 + 1 + 1 + 2.5 + 0.5 * 1.5**2 + 2.5 + 0.5 * 1.5**2 + 0.3)


def test_penalized_mae_backward_scales_without_host_values():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 901, generator=gen).requires_grad_()
    t = torch.randn(5, 901, generator=gen)
    loss = penalized_mae_triton(x, t, 0.5, 1.0, "mean")
    xr = x.detach().double().requires_grad_()
    (expected,) = torch.autograd.grad(pmae_reference(xr, t, 0.5, 1.0, "mean"), xr)
    # grad_output 1 (kernel leaves the buffer alone), then 3 on a retained graph (recomputed).
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g3,) = torch.autograd.grad(loss, x, torch.tensor(3.0))
    assert rel_err(g1, expected) < 1e-6
    assert rel_err(g3, 3 * expected) < 1e-6
    assert not torch.equal(g1, g3)


def test_penalized_mae_non_contiguous_and_no_grad():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(37, 61, generator=gen).t()
    t = torch.randn(61, 37, generator=gen)
    assert not x.is_contiguous()
    loss = penalized_mae_triton(x, t, 1.0, 0.5, "none")
    assert rel_err(loss, pmae_reference(x, t, 1.0, 0.5, "none")) < 1e-6
    assert loss.shape == (61, 37)


def test_penalized_mae_negative_control():
    """The gradient comparison above fails for a gradient that drops the penalty's factor 2."""
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(2000, generator=gen) * 3).requires_grad_()
    t = torch.zeros(2000)
    (g,) = torch.autograd.grad(penalized_mae_triton(x, t, 0.5, 0.8, "sum"), x)
    e = x.detach()
    wrong = torch.sign(e) * (1 + 0.8 * (e.abs() - 0.5).clamp_min(0))
    right = torch.sign(e) * (1 + 2 * 0.8 * (e.abs() - 0.5).clamp_min(0))
    assert rel_err(g, right) < 1e-6
    assert rel_err(g, wrong) > 1e-2


# ----------------------------------------------------------------------------------------------
# Dice
# ----------------------------------------------------------------------------------------------

SPATIAL = (3, 347)  # 1041 positions: more than one block of every kernel, with a ragged tail


def make_dice_case(mode, target_kind, dtype, ignore_index, from_logits, spatial=SPATIAL, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch, classes = (3, 1) if mode == "binary" else (2, 3)
    x = torch.randn(batch, classes, *spatial, generator=gen) * 2
    if not from_logits:
        x = x.softmax(1) if mode == "multiclass" else x.sigmoid()
    x = x.to(dtype).requires_grad_()
    if target_kind == "dense":
        target = torch.rand(batch, classes, *spatial, generator=gen)
        if ignore_index is not None:
            target[torch.rand(target.shape, generator=gen) < 0.2] = float(ignore_index)
        return x, target
    high = 2 if mode == "binary" else classes
    labels = torch.randint(0, high, (batch, *spatial), generator=gen)
    if ignore_index is not None:
        labels[torch.rand(labels.shape, generator=gen) < 0.2] = ignore_index
    label_dtype = {"uint8": torch.uint8, "int64": torch.int64, "int32": torch.int32}[target_kind]
    return x, labels.to(label_dtype)


def stats_triton(x, target, weight=None, **options):
    return overlap_stats_triton(x, target, weight, **options)


def kernel_supports(x, target, mode, weight=None):
    return overlap_kernel_supports(x, target, weight, mode)


def check_dice(x, target, **options):
    assert kernel_supports(x, target, options["mode"])
    stats = stats_triton(x, target, **options)
    xr = x.detach().double().requires_grad_()
    ref = dice_stats_reference(xr, target, **options)
    assert stats.dtype == torch.float32 and stats.shape == ref.shape
    assert rel_err(stats, ref) < (1e-6 if x.dtype == torch.float32 else 1e-5)
    grad_stats = torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))
    (g,) = torch.autograd.grad(stats, x, grad_stats)
    (gr,) = torch.autograd.grad(ref, xr, grad_stats.double())
    assert g.dtype == x.dtype and g.shape == x.shape
    assert rel_err(g, gr) < (1e-5 if x.dtype == torch.float32 else 1e-2)
    return stats, g


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_dice_label_maps(mode, from_logits, per_image, ignore_index):
    target_kind = "int64" if per_image else "uint8"
    x, target = make_dice_case(mode, target_kind, torch.float32, ignore_index, from_logits)
    _, g = check_dice(x, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, per_image=per_image)
    if ignore_index is not None:
        ignored = (target == ignore_index).unsqueeze(1).expand_as(g)
        assert ignored.any() and torch.all(g[ignored] == 0)


@pytest.mark.parametrize(
    "mode, bad_label",
    [
        ("binary", 2),
        ("binary", -3),
        ("multilabel", 3),
        ("multiclass", 4),
        ("multiclass", -1),
        ("multiclass", 300),
        ("binary", 2**32 + 1),
        ("multiclass", 2**32),
        ("multiclass", -(2**40)),
    ],
)
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_dice_stats_kernels_flag_labels_out_of_range(mode, bad_label, ignore_index):
    # On CUDA the reduction asserts on the device; the interpreter skips device asserts, so the
    # kernels' count is read on the host there. Several blocks per image, ragged tail.
    classes = {"binary": 1, "multilabel": 3, "multiclass": 4}[mode]
    x = torch.randn(2, classes, 37, 61)
    target = torch.randint(0, 2 if mode == "binary" else classes, (2, 37, 61))
    if ignore_index is not None:
        target[1, 36, 60] = ignore_index  # ignored: never an error
    options = dict(mode=mode, from_logits=True, ignore_index=ignore_index, per_image=True)
    stats_triton(x, target, **options)
    target[0, 30, 59] = bad_label
    with pytest.raises(RuntimeError, match="input or target out of range"):
        stats_triton(x, target, **options)


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_dice_stats_kernels_make_the_sums_of_a_non_finite_image_nan(mode, value):
    classes = {"binary": 1, "multilabel": 3, "multiclass": 4}[mode]
    x = torch.randn(2, classes, 37, 61)
    target = torch.randint(0, 2 if mode == "binary" else classes, (2, 37, 61))
    if mode == "multilabel":
        target = torch.rand(2, classes, 37, 61).round()
    x[1, classes - 1, 20, 7] = value
    stats = stats_triton(x, target, mode=mode, from_logits=True, ignore_index=None, per_image=True)
    assert torch.isfinite(stats[0]).all()
    assert torch.isnan(stats[1, classes - 1]).all()


@pytest.mark.parametrize(
    "mode, case",
    [
        ("multilabel", "target above 1"),
        ("binary", "target below 0"),
        ("binary", "probability above 1"),
        ("multiclass", "probability below 0"),
    ],
)
def test_dice_stats_kernels_flag_targets_and_probabilities_out_of_range(mode, case):
    classes = {"binary": 1, "multilabel": 3, "multiclass": 4}[mode]
    probs = torch.rand(2, classes, 37, 61)
    target = torch.rand(2, classes, 37, 61) if mode != "multiclass" else torch.randint(0, classes, (2, 37, 61))
    options = dict(mode=mode, from_logits=False, ignore_index=None, per_image=True)
    stats_triton(probs, target, **options)
    if case.startswith("target"):
        target[1, 0, 3, 4] = 1.5 if "above" in case else -0.5
    else:
        probs[1, 0, 3, 4] = 1.5 if "above" in case else -0.5
    with pytest.raises(RuntimeError, match="input or target out of range"):
        stats_triton(probs, target, **options)


def test_dice_gradient_kernel_saturates_float16():
    from losses.torch import DiceLoss

    probs = torch.zeros(1, 1, 4, 4, dtype=torch.float16, requires_grad=True)
    loss = DiceLoss(mode="binary", from_logits=False)(probs, torch.zeros(1, 4, 4, dtype=torch.long))
    (grad,) = torch.autograd.grad(loss, probs)
    assert torch.isfinite(grad).all() and grad.max().item() == 65504.0


def test_dice_loss_label_range_error_names_the_labels_under_the_interpreter():
    from losses.torch import DiceLoss

    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\).*found \[5\]"):
        DiceLoss()(torch.randn(1, 3, 4, 5), torch.tensor([[[0, 1, 2, 5, 0]] * 4]))


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("ignore_index", [None, -1])
def test_dice_dense_targets(mode, per_image, ignore_index):
    x, target = make_dice_case(mode, "dense", torch.float32, ignore_index, True)
    _, g = check_dice(x, target, mode=mode, from_logits=True, ignore_index=ignore_index, per_image=per_image)
    if ignore_index is not None:
        assert torch.all(g[target == ignore_index] == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_dice_low_precision_inputs(dtype, mode):
    x, target = make_dice_case(mode, "uint8", dtype, 255 if mode == "multiclass" else None, True)
    check_dice(
        x, target, mode=mode, from_logits=True, ignore_index=255 if mode == "multiclass" else None, per_image=True
    )


def test_dice_label_map_with_channel_axis_and_3d():
    x, target = make_dice_case("multiclass", "int32", torch.float32, None, True, spatial=(3, 7, 101))
    check_dice(x, target.unsqueeze(1), mode="multiclass", from_logits=True, ignore_index=None, per_image=False)


def test_dice_many_classes_and_non_contiguous_input():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 37, 29, 11, generator=gen).transpose(2, 3).requires_grad_()  # C_PAD 64, non-contiguous
    labels = torch.randint(0, 37, (2, 11, 29), generator=gen)
    check_dice(x, labels, mode="multiclass", from_logits=True, ignore_index=None, per_image=True)


def test_dice_is_deterministic():
    x, target = make_dice_case("multiclass", "int64", torch.float32, 1, True)
    a = stats_triton(x, target, mode="multiclass", from_logits=True, ignore_index=1, per_image=False)
    b = stats_triton(x, target, mode="multiclass", from_logits=True, ignore_index=1, per_image=False)
    assert torch.equal(a, b)


def test_dice_negative_control():
    """The gradient comparison catches a backward that mixes up two statistics."""
    x, target = make_dice_case("multiclass", "int64", torch.float32, None, True, spatial=(7, 9))
    options = dict(mode="multiclass", from_logits=True, ignore_index=None, per_image=True)
    grad_stats = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(6))
    (g,) = torch.autograd.grad(stats_triton(x, target, **options), x, grad_stats)
    xr = x.detach().double().requires_grad_()
    ref = dice_stats_reference(xr, target, **options)
    (right,) = torch.autograd.grad(ref, xr, grad_stats.double(), retain_graph=True)
    (wrong,) = torch.autograd.grad(ref, xr, grad_stats[..., [1, 0, 2, 3, 4, 5, 6]].double())
    assert rel_err(g, right) < 1e-5
    assert rel_err(g, wrong) > 1e-2


def test_dice_kernel_supports():
    x = torch.randn(2, 3, 4, 4)
    assert kernel_supports(x, torch.zeros(2, 4, 4, dtype=torch.long), "multiclass")
    assert not kernel_supports(x, torch.rand(2, 3, 4, 4), "multiclass"), "dense multiclass: portable path"
    assert kernel_supports(x, torch.rand(2, 3, 4, 4), "multilabel")
    assert not kernel_supports(x, torch.rand(2, 3, 4, 4, requires_grad=True), "multilabel")
    assert not kernel_supports(x, torch.zeros(2, 4, 5, dtype=torch.long), "multiclass")
    assert not kernel_supports(x, torch.zeros(2, 4, 4, dtype=torch.long), "binary"), "binary needs C = 1"
    assert not kernel_supports(x.double(), torch.zeros(2, 4, 4, dtype=torch.long), "multiclass")


# ----------------------------------------------------------------------------------------------
# Against tests/reference.py and the portable PyTorch path, where they exist
# ----------------------------------------------------------------------------------------------


def test_dice_stats_match_the_numpy_reference():
    reference = pytest.importorskip("tests.reference")
    dice_stats = getattr(reference, "dice_stats", None)
    if dice_stats is None:
        pytest.skip("tests/reference.py has no dice_stats")
    for mode, kind, ignore in [
        ("binary", "dense", None),
        ("multilabel", "dense", -1),
        ("multiclass", "int64", 1),
        ("binary", "uint8", 255),
    ]:
        for per_image in (True, False):
            x, target = make_dice_case(mode, kind, torch.float32, ignore, True, spatial=(7, 151))
            options = dict(mode=mode, from_logits=True, ignore_index=ignore, per_image=per_image)
            expected = torch.as_tensor(dice_stats(x.detach().double().numpy(), target.numpy(), **options))
            assert rel_err(stats_triton(x, target, **options), expected.reshape(-1, x.shape[1], 7)) < 1e-6


def _functional(name):
    from losses.torch import functional

    fn = getattr(functional, name, None)
    if fn is None:
        pytest.skip(f"losses.torch.functional.{name} is not there yet")
    return fn


def _both_paths(monkeypatch, fn, x, *args, **kwargs):
    """(loss, gradient) of fn on the portable path and on the kernels."""
    out = {}
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        xi = x.detach().clone().requires_grad_()
        loss = fn(xi, *args, **kwargs)
        (grad,) = torch.autograd.grad(loss, xi, torch.ones_like(loss))
        out[path] = (loss, grad)
    return out["torch"], out["triton"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_penalized_mae_matches_the_portable_path(monkeypatch, reduction):
    fn = _functional("penalized_mae")
    gen = torch.Generator().manual_seed(7)
    x, t = torch.randn(3, 1379, generator=gen) * 2, torch.randn(3, 1379, generator=gen) * 2
    (loss_t, grad_t), (loss_k, grad_k) = _both_paths(monkeypatch, fn, x, t, reduction=reduction)
    assert rel_err(loss_k, loss_t) < 1e-6 and rel_err(grad_k, grad_t) < 1e-6


def test_penalized_mae_dispatch_to_the_kernel():
    """float32 inputs (of one element too) take the Triton kernel; float64 does not (the kernel
    computes in float32, and float64 is documented to give a float64 loss), nor does a torch.func
    transform (the kernel reads raw memory). The value test above cannot tell: both paths agree."""
    from losses.torch._kernels.penalized_mae import _PenalizedMAE

    fn = _functional("penalized_mae")
    kernel_backward = _PenalizedMAE._backward_cls
    for numel in (1, 5):
        x = torch.linspace(-2.0, 2.0, numel, requires_grad=True)
        loss = fn(x, torch.zeros(numel))
        assert isinstance(loss.grad_fn, kernel_backward), type(loss.grad_fn)
    x64 = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64, requires_grad=True)
    loss64 = fn(x64, torch.zeros(5, dtype=torch.float64))
    assert loss64.dtype == torch.float64 and not isinstance(loss64.grad_fn, kernel_backward)
    assert loss64.item() == pytest.approx(
        float(pmae_reference(x64.detach(), torch.zeros(5), 1.0, 0.5, "mean")), rel=1e-14
    )
    x = torch.tensor([-3.0, 0.5, 2.0])
    grad = torch.func.grad(lambda v: fn(v, torch.zeros(3), reduction="sum"))(x)
    assert torch.equal(grad, torch.tensor([-3.0, 1.0, 2.0]))


@pytest.mark.parametrize(
    "mode, kind, ignore",
    [
        ("binary", "dense", None),
        ("multilabel", "dense", None),
        ("multiclass", "int64", 2),
        ("multiclass", "uint8", None),
    ],
)
def test_dice_loss_matches_the_portable_path(monkeypatch, mode, kind, ignore):
    fn = _functional("dice_loss")
    x, target = make_dice_case(mode, kind, torch.float32, ignore, True)
    kwargs = dict(mode=mode) if ignore is None else dict(mode=mode, ignore_index=ignore)
    (loss_t, grad_t), (loss_k, grad_k) = _both_paths(monkeypatch, fn, x, target, **kwargs)
    assert rel_err(loss_k, loss_t) < 1e-5 and rel_err(grad_k, grad_t) < 1e-5


# ----------------------------------------------------------------------------------------------
# The general form on Triton (finalize kernel) against losses._overlap.overlap_loss
# ----------------------------------------------------------------------------------------------


def finalize_stats(seed=0, rows=6, classes=5):
    """Float64 stats (S, C, 7) with the corner cases of the formula in chosen rows.

    Row 0 class 0: empty target; row 1 class 1: empty prediction (dice 0 with smooth 0, the
    log clamp); row 2 class 2: all sums 0 (no valid position); row 3: every target empty (no
    class counts with exclude); row 4 class 4: empty target and no valid position.
    """
    gen = torch.Generator().manual_seed(seed)
    n = torch.randint(50, 400, (rows, 1), generator=gen).double().expand(rows, classes)
    p = torch.rand(rows, classes, generator=gen, dtype=torch.float64) * n
    g = torch.rand(rows, classes, generator=gen, dtype=torch.float64) * n
    i = torch.minimum(p, g) * torch.rand(rows, classes, generator=gen, dtype=torch.float64)
    p2 = p * torch.rand(rows, classes, generator=gen, dtype=torch.float64)
    g2 = g * torch.rand(rows, classes, generator=gen, dtype=torch.float64)
    a = (p + g - 2 * i) * (0.5 + 0.5 * torch.rand(rows, classes, generator=gen, dtype=torch.float64))
    stats = torch.stack([i, p, g, p2, g2, a, n], -1).contiguous()
    stats[0, 0, [0, 2, 4]] = 0
    stats[1, 1, [0, 1, 3]] = 0
    stats[1, 1, 5] = stats[1, 1, 2]
    stats[2, 2] = 0
    stats[3, :, [0, 2, 4]] = 0
    stats[3, :, 5] = stats[3, :, 1]
    stats[4, 4] = 0
    return stats


def finalize_reference(stats, weights, options):
    from losses._overlap import overlap_loss
    from losses.torch._ops import TorchOps

    return overlap_loss(TorchOps, stats, weights, options.form)


# Every member of the family with the options that change its general form.
FINALIZE_CASES = [
    ("dice", dict(squared=squared, log_loss=log_loss, soft_labels=soft, empty_target=empty))
    for squared in (False, True)
    for log_loss in (False, True)
    for soft in (False, True)
    for empty in ("smooth", "exclude", "penalize")
] + [
    ("dice", dict(average="micro")),
    ("dice", dict(average="micro", empty_target="penalize")),
    ("jaccard", {}),
    ("jaccard", dict(squared=True, log_loss=True)),
    ("jaccard", dict(average="micro")),
    ("tversky", dict(alpha=0.3, beta=0.7)),
    ("tversky", dict(alpha=0.0, beta=1.0, soft_labels=True)),
    ("tversky", dict(alpha=0.9, beta=0.2, empty_target="exclude", average="micro")),
    ("focal_tversky", {}),
    ("focal_tversky", dict(gamma=2.0, empty_target="penalize")),
    ("focal_tversky", dict(gamma=0.5, average="micro")),
    ("generalized_dice", {}),
    ("generalized_dice", dict(weight_type="simple")),
    ("generalized_dice", dict(weight_type="uniform", soft_labels=True)),
]


def finalize_case(loss, options, weighted, smooth):
    from losses._overlap import OverlapOptions

    options = OverlapOptions.create(loss, **options, smooth_nr=smooth, smooth_dr=smooth)
    stats = finalize_stats()
    weights = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0] if weighted else [1.0] * 5, dtype=torch.float64)
    return options, stats, weights


@pytest.mark.parametrize("loss, options", FINALIZE_CASES)
@pytest.mark.parametrize("weighted, smooth", [(False, 1e-5), (True, 0.0), (True, 1.0)])
def test_finalize_kernel_matches_the_general_form(loss, options, weighted, smooth):
    from losses.torch._kernels.overlap_finalize import overlap_from_stats_triton

    options, stats, weights = finalize_case(loss, options, weighted, smooth)
    upstream = torch.randn(stats.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s32 = stats.float().requires_grad_()
    value = overlap_from_stats_triton(s32, weights.float(), options.form)
    (grad,) = torch.autograd.grad(value, s32, upstream.float())
    s64 = stats.clone().requires_grad_()
    ref = finalize_reference(s64, weights, options)
    (grad_ref,) = torch.autograd.grad(ref, s64, upstream)
    assert value.dtype == torch.float32 and value.shape == ref.shape
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert rel_err(value, ref) < 1e-6
    assert rel_err(grad, grad_ref) < 1e-5
    # Entry by entry too: a zero gradient where the reference has one (or the reverse) shows.
    assert torch.allclose(grad.double(), grad_ref, rtol=1e-4, atol=1e-6 * float(grad_ref.abs().max()) + 1e-12)
    if options.empty_target == "exclude" and options.average == "macro":
        assert value[3] == 0 and torch.all(grad[3] == 0), "no class counts: loss 0, gradient 0"


@pytest.mark.parametrize("rows, classes", [(600, 5), (9, 300)])
def test_finalize_kernel_many_rows_or_classes(rows, classes):
    # Several (BLOCK_S, C_PAD) tiles, or a wide one; and the reduction output over all of them.
    from losses._overlap import OverlapOptions
    from losses.torch._kernels.overlap_finalize import _finalize

    stats = finalize_stats(seed=1, rows=rows, classes=classes)
    weights = torch.rand(classes, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for options in (
        OverlapOptions.create(empty_target="penalize", log_loss=True),
        OverlapOptions.create("generalized_dice"),
    ):
        loss, mean, grad_stats = _finalize(stats.float(), weights.float(), options.form, 1.0 / rows)
        s64 = stats.clone().requires_grad_()
        ref = finalize_reference(s64, weights, options)
        (grad_ref,) = torch.autograd.grad(ref.sum(), s64)
        assert rel_err(loss, ref) < 1e-6 and rel_err(mean, ref.mean()) < 1e-6
        assert rel_err(grad_stats, grad_ref) < 1e-5


def test_finalize_kernel_on_float32_stats():
    # The formula in float32 on both sides agrees to rounding: what the losses' users see.
    from losses.torch._kernels.overlap_finalize import overlap_from_stats_triton

    options, stats, weights = finalize_case(
        "dice", dict(squared=True, log_loss=True, soft_labels=True, empty_target="penalize"), True, 1e-5
    )
    s32 = stats.float()
    assert (
        rel_err(
            overlap_from_stats_triton(s32, weights.float(), options.form),
            finalize_reference(s32, weights.float(), options),
        )
        < 1e-6
    )


def test_finalize_kernel_negative_control():
    """The comparison catches a derivative that leaves out one term (here d/dΣp of the denominator)."""
    from losses.torch._kernels.overlap_finalize import overlap_from_stats_triton

    options, stats, weights = finalize_case("dice", {}, True, 1e-5)
    s32 = stats.float().requires_grad_()
    (grad,) = torch.autograd.grad(overlap_from_stats_triton(s32, weights.float(), options.form).sum(), s32)
    s64 = stats.clone().requires_grad_()
    (right,) = torch.autograd.grad(finalize_reference(s64, weights, options).sum(), s64)
    keep = torch.ones(7, dtype=torch.float64)
    keep[1] = 0  # PRED_SUM: its gradient is dropped
    wrong_stats = s64 * keep + (s64 * (1 - keep)).detach()
    (wrong,) = torch.autograd.grad(finalize_reference(wrong_stats, weights, options).sum(), s64)
    assert rel_err(grad, right) < 1e-5
    assert rel_err(grad, wrong) > 1e-2


def _fused_both_paths(monkeypatch, x, target, **kwargs):
    from losses.torch.functional import dice_loss

    out = {}
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        xi = x.detach().clone().requires_grad_()
        loss = dice_loss(xi, target, **kwargs)
        upstream = 0.5 + torch.arange(loss.numel(), dtype=torch.float32).reshape(loss.shape)  # distinct per image
        (grad,) = torch.autograd.grad(loss, xi, upstream)
        out[path] = (loss, grad, type(loss.grad_fn).__name__)
    return out["torch"], out["triton"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize(
    "mode, kind, options",
    [
        (
            "multiclass",
            "int64",
            dict(classes=[2, 0], class_weights=[1.0, 0.0, 3.0], empty_target="penalize", ignore_index=1),
        ),
        ("multiclass", "uint8", dict(squared=True, log_loss=True, empty_target="exclude")),
        ("multilabel", "dense", dict(soft_labels=True, class_weights=[0.2, 1.0, 2.0])),
        ("binary", "uint8", dict(smooth_nr=0.0, smooth_dr=0.0, log_loss=True)),
    ],
)
def test_dice_fused_loss_matches_the_portable_path(monkeypatch, reduction, per_image, mode, kind, options):
    x, target = make_dice_case(mode, kind, torch.float32, options.get("ignore_index"), True, spatial=(5, 7))
    if kind != "dense":
        target[0][target[0] == (1 if mode == "binary" else 0)] = 0 if mode == "binary" else 2  # an empty class
    (loss_t, grad_t, _), (loss_k, grad_k, node) = _fused_both_paths(
        monkeypatch, x, target, mode=mode, per_image=per_image, reduction=reduction, **options
    )
    assert node == "_OverlapLossBackward", "the fused path was taken"
    assert loss_k.shape == loss_t.shape and loss_k.dtype == loss_t.dtype
    assert rel_err(loss_k, loss_t) < 1e-6 and rel_err(grad_k, grad_t) < 1e-5


def test_dice_fused_loss_negative_control(monkeypatch):
    """The end-to-end comparison catches an upstream gradient that is not applied per image."""
    from losses.torch._kernels import overlap_finalize

    x, target = make_dice_case("multiclass", "int64", torch.float32, None, True, spatial=(5, 7))
    kwargs = dict(mode="multiclass", reduction="none")
    (_, grad_t, _), (_, grad_k, _) = _fused_both_paths(monkeypatch, x, target, **kwargs)
    assert rel_err(grad_k, grad_t) < 1e-5
    original = overlap_finalize._OverlapLoss.forward

    def forward_with_shared_scale(ctx, *args):
        out = original(ctx, *args)
        ctx.scale = (0, ctx.scale[1])  # every image takes the upstream gradient of image 0
        return out

    monkeypatch.setattr(overlap_finalize._OverlapLoss, "forward", staticmethod(forward_with_shared_scale))
    (_, grad_t, _), (_, grad_wrong, _) = _fused_both_paths(monkeypatch, x, target, **kwargs)
    assert rel_err(grad_wrong, grad_t) > 1e-2


# ----------------------------------------------------------------------------------------------
# Focal loss and the pairs: the term in the stats kernel, one gradient kernel
# ----------------------------------------------------------------------------------------------


def _term_both_paths(monkeypatch, name, x, target, **kwargs):
    from losses.torch import functional

    out = {}
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        xi = x.detach().clone().requires_grad_()
        loss = getattr(functional, name)(xi, target, **kwargs)
        upstream = 0.5 + torch.arange(loss.numel(), dtype=torch.float32).reshape(loss.shape)  # distinct per image
        (grad,) = torch.autograd.grad(loss, xi, upstream)
        out[path] = (loss, grad, type(loss.grad_fn).__name__)
    return out["torch"], out["triton"]


TERM_CASES = [
    ("multiclass", "int64", dict(label_smoothing=0.1, class_weights=[1.0, 0.5, 2.0], ignore_index=1)),
    ("multiclass", "uint8", dict(gamma=0.5, alpha=[0.2, 0.3, 0.5])),
    ("binary", "int64", dict(gamma=1.0, alpha=0.25, label_smoothing=0.2, ignore_index=2)),
    ("multilabel", "dense", dict(alpha=0.75, class_weights=[0.2, 1.0, 2.0])),
]


# reduction="none" of the focal loss is the term of each position: the portable path.
TERM_LOSSES = [
    (name, reduction)
    for name in ("focal_loss", "dice_ce_loss", "dice_focal_loss")
    for reduction in ("mean", "sum", "none")
    if (name, reduction) != ("focal_loss", "none")
]


@pytest.mark.parametrize("name, reduction", TERM_LOSSES)
@pytest.mark.parametrize("mode, kind, options", TERM_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_term_losses_match_the_portable_path(monkeypatch, reduction, name, mode, kind, options, weighted):
    x, target = make_dice_case(mode, kind, torch.float32, options.get("ignore_index"), True, spatial=(37, 41))
    if kind != "dense" and mode == "binary" and options.get("ignore_index") is None:
        target = target.clamp(max=1)
    kwargs = dict(options, mode=mode, reduction=reduction)
    if name == "dice_ce_loss":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("gamma", "alpha")}
    if weighted:
        kwargs["weight"] = torch.rand(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(3)) * 2
    for per_image in [True, False] if name != "focal_loss" else [None]:
        if per_image is not None:
            kwargs["per_image"] = per_image
        (loss_t, grad_t, _), (loss_k, grad_k, node) = _term_both_paths(monkeypatch, name, x, target, **kwargs)
        assert node == "_TermLossBackward", "the fused path was taken"
        assert loss_k.shape == loss_t.shape
        assert rel_err(loss_k, loss_t) < 1e-5 and rel_err(grad_k, grad_t) < 1e-5


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("focal_loss", {}),
        ("focal_loss", {"gamma": 0.0}),
        ("dice_focal_loss", {}),
        ("dice_focal_loss", {"lambda_dice": 0.0}),
        ("dice_ce_loss", {"lambda_dice": 0.0}),
    ],
)
@pytest.mark.parametrize("mode", ["multiclass", "binary"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_term_losses_carry_a_non_finite_logit_as_the_portable_path(monkeypatch, name, kwargs, mode, value):
    """Also where the term's limit is finite (+inf for the label's class): the loss is not finite, nor is
    the gradient at that logit; elsewhere the gradient is finite and the same on both paths."""
    x, target = make_dice_case(mode, "int64", torch.float32, None, True, spatial=(9, 11))
    x = x.detach()
    x[1, 0, 3, 4] = value
    if target.dim() == x.dim():
        target[1, 0, 3, 4] = 1
    else:
        target[1, 3, 4] = 0
    (loss_t, grad_t, _), (loss_k, grad_k, _) = _term_both_paths(
        monkeypatch, name, x, target, reduction="sum", mode=mode, **kwargs
    )
    assert not loss_t.isfinite() and not loss_k.isfinite()
    assert not grad_t[1, 0, 3, 4].isfinite() and not grad_k[1, 0, 3, 4].isfinite()
    elsewhere = torch.ones_like(grad_t, dtype=torch.bool)
    elsewhere[1, :, 3, 4] = False  # multiclass: the position's other classes may be NaN too
    if name != "focal_loss" and kwargs.get("lambda_dice", 1.0) != 0:  # the overlap's row: the whole image
        assert not grad_t[1].isfinite().any() and not grad_k[1].isfinite().any()
        elsewhere[1] = False
    assert grad_t[elsewhere].isfinite().all() and grad_k[elsewhere].isfinite().all()
    assert rel_err(grad_k[elsewhere], grad_t[elsewhere]) < 1e-5


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_value_in_a_class_left_out_makes_the_image_nan(monkeypatch, reduction, value):
    """``classes=[0]``: a NaN or ±inf in class 1, at a position whose target is ignored, still makes its
    image's loss NaN (and its gradient), as on the portable path, also where no class is counted."""
    from losses.torch import functional

    gen = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, 3, 3, 2, generator=gen)
    target = (torch.rand(3, 3, 3, 3, 2, generator=gen) > 0.5).float()
    x[0, 1, 0, 0, 0] = value
    target[0, 1, 0, 0, 0] = 255.0
    target[0, 0] = 0.0  # and class 0, the one selected, is empty there: excluded, nothing is counted
    options = dict(mode="multilabel", from_logits=False, classes=[0], ignore_index=255, smooth_nr=0.0)
    results = {}
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        xi = x.clone().requires_grad_()
        loss = functional.dice_loss(xi, target, empty_target="exclude", reduction=reduction, **options)
        (grad,) = torch.autograd.grad(loss.sum(), xi)
        results[path] = loss.detach()
        assert loss.isnan().any(), path
        assert grad[0].isnan().all() and grad[1:].isfinite().all(), path
    if reduction == "none":
        assert rel_err(results["triton"][1:], results["torch"][1:]) < 1e-5


def test_term_losses_saturate_float16_gradients(monkeypatch):
    x, target = make_dice_case("binary", "int64", torch.float16, None, True, spatial=(9, 11))
    target = target.clamp(max=1)
    (_, grad_t, _), (_, grad_k, _) = _term_both_paths(
        monkeypatch, "dice_ce_loss", x, target, reduction="sum", mode="binary", lambda_ce=1e9
    )
    assert grad_k.dtype == torch.float16 and torch.isfinite(grad_k).all()
    assert torch.equal(grad_k.abs() == 65504, grad_t.abs() == 65504)


def test_term_loss_negative_control(monkeypatch):
    """The comparison catches a term gradient whose scale is not applied per image."""
    from losses.torch._kernels import overlap_finalize

    x, target = make_dice_case("multiclass", "int64", torch.float32, None, True, spatial=(9, 11))
    (_, grad_t, _), (_, grad_k, _) = _term_both_paths(monkeypatch, "dice_ce_loss", x, target, reduction="none")
    assert rel_err(grad_k, grad_t) < 1e-5
    original = overlap_finalize.stats_backward

    def backward_with_one_scale(*args, term_scale=None, **kwargs):
        return original(*args, term_scale=term_scale.mean().expand_as(term_scale).contiguous(), **kwargs)

    monkeypatch.setattr(overlap_finalize, "stats_backward", backward_with_one_scale)
    (_, grad_t, _), (_, grad_wrong, _) = _term_both_paths(monkeypatch, "dice_ce_loss", x, target, reduction="none")
    assert rel_err(grad_wrong, grad_t) > 1e-2


def test_dice_fused_loss_compiles_fullgraph(monkeypatch):
    from losses.torch import DiceLoss

    torch._dynamo.reset()
    monkeypatch.setenv("LOSSES_KERNELS", "triton")
    x, target = make_dice_case("multiclass", "int64", torch.float32, 0, True, spatial=(9, 13))
    criterion = DiceLoss(
        mode="multiclass",
        ignore_index=0,
        classes=[1, 2],
        class_weights=[1.0, 2.0, 0.5],
        empty_target="penalize",
        reduction="none",
    )
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager")
    out = compiled(x, target)
    expected = criterion(x, target)
    assert type(expected.grad_fn).__name__ == "_OverlapLossBackward"
    upstream = torch.tensor([0.3, 1.7])
    (g,) = torch.autograd.grad(out, x, upstream)
    (ge,) = torch.autograd.grad(expected, x, upstream)
    assert rel_err(out, expected) < 1e-6 and rel_err(g, ge) < 1e-6
    torch._dynamo.reset()


# ----------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True) traces the custom ops
# ----------------------------------------------------------------------------------------------


def test_custom_ops_compile_fullgraph():
    torch._dynamo.reset()
    x, target = make_dice_case("multiclass", "int64", torch.float32, 0, True, spatial=(9, 13))
    t = torch.randn(x.shape)

    def fn(x, target, t):
        stats = stats_triton(x, target, mode="multiclass", from_logits=True, ignore_index=0, per_image=True)
        return (stats[..., 0] / (stats[..., 1] + stats[..., 2] + 1)).sum() + penalized_mae_triton(
            x, t, 1.0, 0.5, "mean"
        )

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    out = compiled(x, target, t)
    (g,) = torch.autograd.grad(out, x)
    expected = fn(x, target, t)
    (ge,) = torch.autograd.grad(expected, x)
    assert rel_err(out, expected) < 1e-6
    assert rel_err(g, ge) < 1e-6
    torch._dynamo.reset()


def test_custom_ops_pass_opcheck():
    x, target = make_dice_case("multilabel", "dense", torch.float32, None, True, spatial=(3, 5))
    torch.library.opcheck(
        torch.ops.losses.overlap_stats_triton.default,
        (x, target, None, "multilabel", True, None, False),
        test_utils=("test_schema", "test_faketensor"),
    )
    torch.library.opcheck(
        torch.ops.losses.overlap_stats_triton.default,
        (x, target, torch.rand(x.shape[0], *x.shape[2:]), "multilabel", True, None, False),
        test_utils=("test_schema", "test_faketensor"),
    )
    torch.library.opcheck(
        torch.ops.losses.penalized_mae_triton.default,
        (x, target, 1.0, 0.5, "sum", True),
        test_utils=("test_schema", "test_faketensor"),
    )
    from dataclasses import astuple

    from losses._overlap import OverlapOptions
    from losses.torch._kernels import overlap_finalize  # noqa: F401  (registers the op)

    stats = finalize_stats().float()
    form = OverlapOptions.create("tversky", alpha=0.3, beta=0.7, empty_target="penalize").form
    torch.library.opcheck(
        torch.ops.losses.overlap_finalize_triton.default,
        (stats, torch.ones(5), *astuple(form)),
        test_utils=("test_schema", "test_faketensor"),
    )


# ----------------------------------------------------------------------------------------------
# What the kernels must not do silently: read a multilabel target of integers as class indices,
# cast a float32 target to a float16 input's dtype, drop a second derivative, refuse torch.func
# ----------------------------------------------------------------------------------------------

OVERLAP_AND_TERM = (
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "focal_loss",
    "dice_ce_loss",
    "dice_focal_loss",
)


@pytest.mark.parametrize("name", OVERLAP_AND_TERM)
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
@pytest.mark.parametrize("classes", [1, 3])
def test_multilabel_integer_targets_are_per_class_values(monkeypatch, name, dtype, classes):
    """An integer target of the input's shape holds 0/1 per class (with one class too, where a label
    map's [label == 0] would invert it): the same loss as its float copy, on both paths."""
    from losses.torch import functional

    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, classes, 7, 5, generator=gen)
    for target in (torch.zeros(2, classes, 7, 5, dtype=dtype), torch.randint(0, 2, (2, classes, 7, 5), generator=gen)):
        target = target.to(dtype)
        results = []
        for path, t in (("torch", target.float()), ("triton", target), ("triton", target.float())):
            monkeypatch.setenv("LOSSES_KERNELS", path)
            xi = x.clone().requires_grad_()
            loss = getattr(functional, name)(xi, t, mode="multilabel")
            results.append((loss, torch.autograd.grad(loss, xi)[0]))
        (loss_t, grad_t), *kernels = results
        for loss_k, grad_k in kernels:
            assert rel_err(loss_k, loss_t) < 1e-5 and rel_err(grad_k, grad_t) < 1e-5


def test_penalized_mae_reads_a_float32_target_in_float32_beside_float16_input(monkeypatch):
    """A float32 target is not rounded to a float16 input's dtype: 70000 would become inf, 1.0001 1."""
    fn = _functional("penalized_mae")
    x = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float16)
    t = torch.tensor([70000.0, 1e-20, 1.0001, 2.0])
    expected = pmae_reference(x, t, 0.0, 0.0, "none")
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        loss = fn(x, t, delta=0.0, penalty=0.0, reduction="none")
        assert torch.allclose(loss.double(), expected, rtol=1e-6, atol=0), (path, loss)


SECOND_ORDER = [
    ("dice_loss", {}),
    ("dice_ce_loss", {}),
    ("focal_loss", {}),
    ("dice_focal_loss", {"mode": "binary"}),
    ("penalized_mae", {}),
]


@pytest.mark.parametrize("name, kwargs", SECOND_ORDER)
def test_second_derivatives_through_the_kernels(monkeypatch, name, kwargs):
    """create_graph=True gives a gradient that is itself differentiable, the same as the portable
    path's (a gradient penalty must not be dropped silently)."""
    fn = _functional(name)
    gen = torch.Generator().manual_seed(5)
    if name == "penalized_mae":
        x, target = torch.randn(3, 17, generator=gen) * 2, torch.randn(3, 17, generator=gen)
    elif kwargs.get("mode") == "binary":
        x, target = torch.randn(2, 1, 6, 5, generator=gen), torch.randint(0, 2, (2, 6, 5), generator=gen)
    else:
        x, target = torch.randn(2, 3, 6, 5, generator=gen), torch.randint(0, 3, (2, 6, 5), generator=gen)
    out = {}
    for path in ("torch", "triton"):
        monkeypatch.setenv("LOSSES_KERNELS", path)
        xi = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(xi, target, **kwargs), xi, create_graph=True)
        assert grad.requires_grad, path
        (second,) = torch.autograd.grad((grad**2).sum(), xi)
        out[path] = (grad, second)
    assert rel_err(out["triton"][0], out["torch"][0]) < 1e-5
    assert rel_err(out["triton"][1], out["torch"][1]) < 1e-4
    assert out["torch"][1].abs().max() > 0  # the penalty has a gradient to drop


@pytest.mark.parametrize("name", ["dice_loss", "dice_ce_loss", "focal_loss"])
def test_torch_func_transforms_take_the_portable_path(monkeypatch, name):
    fn = _functional(name)
    gen = torch.Generator().manual_seed(2)
    x, target = torch.randn(2, 3, 4, 5, generator=gen), torch.randint(0, 3, (2, 4, 5), generator=gen)
    monkeypatch.setenv("LOSSES_KERNELS", "torch")
    expected = torch.func.grad(lambda v: fn(v, target))(x)
    monkeypatch.setenv("LOSSES_KERNELS", "triton")
    assert rel_err(torch.func.grad(lambda v: fn(v, target))(x), expected) < 1e-6
    tangent = torch.randn(x.shape, generator=gen)
    _, jvp = torch.func.jvp(lambda v: fn(v, target), (x,), (tangent,))
    assert jvp.item() == pytest.approx(float((expected * tangent).sum()), rel=1e-4, abs=1e-6)


# The main process runs only the subprocess test above; the subprocess runs everything else.
for _name in [n for n in list(globals()) if n.startswith("test_")]:
    if (_name == "test_kernels_under_the_triton_interpreter") == IN_CHILD:
        del globals()[_name]
