"""The overlap family in PyTorch (Dice, Jaccard, Tversky, focal Tversky, generalized Dice): every member
against the float64 reference on every CPU path, finite differences with a negative control,
weight maps, and the choice of execution path."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from torch.autograd.gradcheck import GradcheckError
from dice_cases import IGNORE, overlap_cases
from losses.torch import DiceLoss, FocalTverskyLoss, GeneralizedDiceLoss, JaccardLoss, TverskyLoss
from losses.torch import functional as F
from losses.torch._kernels import cpu as cpu_kernels

FUNCTIONS = {
    "dice": F.dice_loss,
    "jaccard": F.jaccard_loss,
    "tversky": F.tversky_loss,
    "focal_tversky": F.focal_tversky_loss,
    "generalized_dice": F.generalized_dice_loss,
}
MODULES = {
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "tversky": TverskyLoss,
    "focal_tversky": FocalTverskyLoss,
    "generalized_dice": GeneralizedDiceLoss,
}


@contextlib.contextmanager
def kernels(choice: str):
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = choice
    try:
        yield
    finally:
        os.environ.pop("LOSSES_KERNELS") if previous is None else os.environ.__setitem__("LOSSES_KERNELS", previous)


def ours(member, logits, target, weight=None, reduction="mean", dtype=torch.float64, **options):
    x = torch.tensor(np.asarray(logits), dtype=dtype)
    w = None if weight is None else torch.as_tensor(weight)
    return FUNCTIONS[member](x, torch.as_tensor(target), weight=w, reduction=reduction, **options)


def expected(member, logits, target, weight=None, reduction="mean", **options):
    return reference.OVERLAP_LOSSES[member](logits, target, reduction, weight, **options)


@given(overlap_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_every_member_matches_the_reference_in_float64(case, reduction):
    member, logits, target, options, weight = case
    np.testing.assert_allclose(
        ours(member, logits, target, weight, reduction, **options).numpy(),
        expected(member, logits, target, weight, reduction, **options),
        rtol=1e-10,
        atol=1e-12,
    )


@given(overlap_cases())
def test_every_member_is_between_zero_and_one(case):
    """Every score is at most 1 (TP <= the denominator) and at least 0, whatever the options: the loss
    is in [0, 1] (the log loss: >= 0), on every CPU path. (Soft labels with squared sums once gave
    an unbounded ratio.)"""
    member, logits, target, options, weight = case
    for path in ("torch", "auto"):
        with kernels(path):
            values = ours(member, logits, target, weight, "none", **options).numpy()
            values32 = ours(
                member, logits.astype(np.float32), target, weight, "none", dtype=torch.float32, **options
            ).numpy()
        for v in (values, values32):
            assert np.all(v >= -1e-6), v
            if not options.get("log_loss"):
                assert np.all(v <= 1 + 1e-6), v
            assert np.all(np.isfinite(v)), v


@pytest.mark.parametrize("member", ["dice", "jaccard"])
@pytest.mark.parametrize("path", ["torch", "auto"])
def test_squared_soft_labels_take_the_intersection_in_the_squared_norm(member, path):
    """With squared sums the soft-label TP is (Σp² + Σg² − Σ(p − g)²)/2 = Σp·g (MONAI): a score in
    [0, 1], 1 at p = g. The L1 form there made Jaccard's denominator negative (here for class 1)."""
    p = np.array([[[0.529], [0.471]]])
    g = np.array([[[0.631], [0.369]]])
    options = dict(mode="multiclass", from_logits=False, soft_labels=True, squared=True, smooth_nr=0.0)
    with kernels(path):
        value = ours(member, p, g, reduction="none", **options).item()
        at_target = ours(member, g, g, reduction="none", **options).item()
    tp = (p * g).sum(2)
    denominator = (p**2).sum(2) + (g**2).sum(2)
    score = 2 * tp / (denominator + 1e-5) if member == "dice" else tp / (denominator - tp + 1e-5)
    assert value == pytest.approx(1 - score.mean(), rel=1e-9)
    assert 0 <= value <= 1
    assert at_target == pytest.approx(0.0, abs=1e-4)


@given(overlap_cases())
def test_every_member_on_the_fused_cpu_path_matches_the_reference(case):
    member, logits, target, options, weight = case
    with kernels("auto"):
        value = ours(member, logits.astype(np.float32), target, weight, "none", dtype=torch.float32, **options)
    np.testing.assert_allclose(
        value.numpy(),
        expected(member, logits.astype(np.float32), target, weight, "none", **options),
        rtol=3e-5,
        atol=3e-6,
    )


@given(overlap_cases(max_side=5))
def test_the_fused_cpu_path_and_the_portable_path_agree_on_values_and_gradients(case):
    member, logits, target, options, weight = case
    results = []
    for path in ("auto", "torch"):
        with kernels(path):
            x = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
            w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
            loss = FUNCTIONS[member](x, torch.as_tensor(target), weight=w, **options)
            (grad,) = torch.autograd.grad(loss, x)
            results.append((loss.item(), grad.numpy()))
    (a, ga), (b, gb) = results
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(ga, gb, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(gb).max())))


def _clear_of_kinks(logits, target, options, weight):
    """Soft labels use |p − g|, whose kink at p = g finite differences cannot cross."""
    if not options["soft_labels"]:
        return True
    p, g, v = reference.dice_probabilities_and_targets(
        logits, target, options["mode"], options["from_logits"], options["ignore_index"], weight
    )
    return bool(np.all(np.abs(p - g)[v > 0] > 1e-3))


@settings(max_examples=15)
@given(overlap_cases(max_side=3))
def test_every_member_gradient_matches_central_differences(case):
    member, logits, target, options, weight = case
    assume(_clear_of_kinks(logits, target, options, weight))
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    t = torch.as_tensor(target)
    w = None if weight is None else torch.as_tensor(weight)
    assert torch.autograd.gradcheck(
        lambda x: FUNCTIONS[member](x, t, weight=w, **options), (x,), eps=1e-6, atol=1e-6, rtol=1e-4
    )


class _TverskyWithConstantFalsePositives(torch.autograd.Function):
    """A deliberately wrong backward: the false positives treated as a constant (only TP and FN move)."""

    @staticmethod
    def forward(ctx, logits, target):
        ctx.save_for_backward(logits, target)
        return F.tversky_loss(logits, target, alpha=0.7, beta=0.3)

    @staticmethod
    def backward(ctx, grad_output):
        logits, target = ctx.saved_tensors
        with torch.enable_grad():
            x = logits.detach().requires_grad_(True)
            p = torch.softmax(x, 1)
            g = torch.nn.functional.one_hot(target, p.shape[1]).movedim(-1, 1).to(p.dtype)
            tp = (p * g).sum((2, 3))
            fp = ((p * (1 - g)).sum((2, 3))).detach()
            fn = ((1 - p) * g).sum((2, 3))
            loss = (1 - (tp + 1e-5) / (tp + 0.7 * fp + 0.3 * fn + 1e-5)).mean()
            (grad,) = torch.autograd.grad(loss, x)
        return grad_output * grad, None


def test_negative_control_a_wrong_backward_fails_the_same_check():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(2, 3, 4, 4)), requires_grad=True)
    t = torch.as_tensor(rng.integers(0, 3, (2, 4, 4)))
    assert torch.autograd.gradcheck(lambda x: F.tversky_loss(x, t, alpha=0.7, beta=0.3), (x,), eps=1e-6, atol=1e-6)
    assert _TverskyWithConstantFalsePositives.apply(x, t).item() == pytest.approx(
        F.tversky_loss(x, t, alpha=0.7, beta=0.3).item(), rel=1e-12
    )
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda x: _TverskyWithConstantFalsePositives.apply(x, t), (x,), eps=1e-6, atol=1e-6)


# --- weight maps --------------------------------------------------------------------------------


@pytest.mark.parametrize("member", sorted(FUNCTIONS))
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_a_weight_map_of_ones_zeros_and_twos(member, path):
    """Ones change nothing; a zero leaves the position out as ignore_index does; a weight of 2
    counts the position twice (as if it were duplicated)."""
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(2, 3, 4, 6)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 4, 6)))
    with kernels(path):
        plain = FUNCTIONS[member](logits, labels)
        torch.testing.assert_close(FUNCTIONS[member](logits, labels, weight=torch.ones(2, 4, 6)), plain)
        zeros = torch.ones(2, 1, 4, 6)
        zeros[..., -2:] = 0
        ignored = labels.clone()
        ignored[..., -2:] = IGNORE
        torch.testing.assert_close(
            FUNCTIONS[member](logits, labels, weight=zeros), FUNCTIONS[member](logits, ignored, ignore_index=IGNORE)
        )
        twos = torch.ones(2, 4, 6)
        twos[..., :2] = 2
        duplicated = FUNCTIONS[member](
            torch.cat([logits, logits[..., :2]], -1), torch.cat([labels, labels[..., :2]], -1)
        )
        torch.testing.assert_close(FUNCTIONS[member](logits, labels, weight=twos), duplicated)


@pytest.mark.parametrize(
    "weight, error, text",
    [
        (torch.ones(2, 4, 5), ValueError, r"weight has shape \(2, 4, 5\); expected a weight per position"),
        (torch.ones(2, 3, 4, 4), ValueError, r"weight has shape \(2, 3, 4, 4\)"),
        (-torch.ones(2, 4, 4), ValueError, r"weight must be finite and >= 0; found \[-1.0\]"),
        (torch.full((2, 4, 4), float("nan")), ValueError, r"weight must be finite and >= 0; found \[nan\]"),
        (torch.ones(2, 4, 4, device="meta"), ValueError, "weight must be on the input's device"),
        ([[1.0]], TypeError, "weight must be a torch.Tensor"),
    ],
)
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_a_bad_weight_map_is_a_clear_error(weight, error, text, path):
    with kernels(path), pytest.raises(error, match=text):
        DiceLoss()(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), weight)


# --- paths, options, modules --------------------------------------------------------------------


def test_the_chosen_path_and_why():
    from losses.torch._overlap_core import choose_path
    from losses._overlap import OverlapOptions

    x, labels = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    options = OverlapOptions.create("tversky")
    if cpu_kernels.available():
        assert choose_path(x, labels, None, options, True).name == "cpu"
    assert choose_path(x.double(), labels, None, options, True).reason.startswith("the fused passes do not take")
    soft = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert "requires grad" in choose_path(x, soft, None, options, False).reason
    with kernels("torch"):
        assert choose_path(x, labels, None, options, True).reason == "LOSSES_KERNELS=torch"


@pytest.mark.parametrize("member", sorted(MODULES))
def test_module_equals_functional_and_repr_shows_the_changed_options(member):
    rng = np.random.default_rng(2)
    logits, labels = (
        torch.tensor(rng.normal(size=(2, 3, 4, 4)), dtype=torch.float32),
        torch.as_tensor(rng.integers(0, 3, (2, 4, 4))),
    )
    weight = torch.rand(2, 4, 4)
    criterion = MODULES[member](class_weights=[1.0, 2.0, 3.0], reduction="sum")
    torch.testing.assert_close(
        criterion(logits, labels, weight),
        FUNCTIONS[member](logits, labels, weight=weight, class_weights=[1, 2, 3], reduction="sum"),
    )
    assert list(criterion.parameters()) == []
    assert "class_weights=[1.0, 2.0, 3.0]" in repr(criterion) and "reduction='sum'" in repr(criterion)


def test_an_option_a_member_does_not_take_is_a_type_error():
    with pytest.raises(TypeError, match="squared"):
        TverskyLoss(squared=True)
    with pytest.raises(TypeError, match="empty_target"):
        F.generalized_dice_loss(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), empty_target="exclude")


@pytest.mark.parametrize("member", ["tversky", "generalized_dice"])
def test_compiles_with_fullgraph(member):
    torch._dynamo.reset()
    criterion = MODULES[member](ignore_index=IGNORE)
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager")
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, 0] = IGNORE
    weight = torch.rand(2, 8, 8)
    loss = compiled(logits, labels, weight)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(criterion(logits, labels, weight), logits)
    torch.testing.assert_close(loss, criterion(logits, labels, weight))
    torch.testing.assert_close(grad, expected_grad)
    torch._dynamo.reset()


def test_repr_shows_the_mode_and_only_the_options_that_differ_from_the_defaults():
    assert repr(DiceLoss()) == "DiceLoss(mode='multiclass')"
    assert (
        repr(TverskyLoss("binary", alpha=0.3, reduction="sum"))
        == "TverskyLoss(mode='binary', alpha=0.3, reduction='sum')"
    )
    assert repr(FocalTverskyLoss(gamma=0.75, beta=0.5)) == "FocalTverskyLoss(mode='multiclass', beta=0.5)"


@pytest.mark.parametrize(
    "loss, options, name",
    [
        (F.dice_loss, {"smooth_nr": 1e39, "smooth_dr": 1e39}, "smooth_nr"),
        (F.generalized_dice_loss, {"smooth_dr": 1e300}, "smooth_dr"),
        (F.tversky_loss, {"alpha": 1e39}, "alpha"),
        (F.tversky_loss, {"beta": 1e300}, "beta"),
        (F.focal_tversky_loss, {"gamma": 1e39}, "gamma"),
    ],
)
def test_a_float_option_beyond_float32s_range_is_rejected(loss, options, name):
    """Rounded to inf in the float32 computation, these gave NaN for finite input (smoothing 1e39:
    inf / inf; gamma 1e39: γ·(1 − T)^(γ−1) = inf · 0; alpha 1e39: α·P' − α·TP = inf − inf), on the
    portable path and, for gamma, the C kernel too."""
    logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for path in ("auto", "torch"):
        with kernels(path), pytest.raises(ValueError, match=rf"^{name} must be <= 1e\+38 \(beyond, the float32"):
            loss(logits, labels, **options)
    loss(logits, labels, **{key: 1e38 for key in options})  # the largest value taken


@pytest.mark.parametrize("smoothing", [1e37, 1e38])
def test_generalized_dice_with_large_smoothing_is_finite_on_every_path(smoothing):
    """The smoothing of the generalized Dice loss is scaled by G_min^q, which target sums of 12 pixels
    made 144·1e37, beyond float32's range: inf / inf, a NaN loss on the portable path (the C
    kernel's float64 formula gave a number). The smoothing scale is now at most 1."""
    logits = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    labels = (torch.arange(36) % 3).reshape(1, 6, 6).expand(2, 6, 6)  # 12 pixels of each class
    want = expected(
        "generalized_dice",
        logits.double().numpy(),
        labels.numpy(),
        None,
        "none",
        smooth_nr=smoothing,
        smooth_dr=smoothing,
    )
    for path in ("auto", "torch"):
        x = logits.clone().requires_grad_(True)
        with kernels(path):
            loss = F.generalized_dice_loss(x, labels, smooth_nr=smoothing, smooth_dr=smoothing, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), x)
        assert torch.isfinite(grad).all(), path
        np.testing.assert_allclose(loss.detach().numpy(), want, rtol=1e-5, atol=1e-6, err_msg=path)
