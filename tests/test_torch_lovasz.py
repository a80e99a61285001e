"""The Lovász losses in PyTorch: both losses against the float64 reference on both sort paths, finite
differences away from ties with a negative control, the documented subgradient at ties, ignored
positions, class selection, rows, non-finite and empty inputs, and bad input."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.autograd.gradcheck import GradcheckError

import reference
from lovasz_cases import IGNORE, clear_of_kinks, hinge_gradient, lovasz_cases, reference_loss, softmax_gradient
from losses._lovasz import extension_weights
from losses.torch import LovaszHingeLoss, LovaszSoftmaxLoss
from losses.torch import functional as F
from losses.torch._lovasz import _descending_order, _LovaszOps, _sorts_on_host

FUNCTIONS = {"lovasz_softmax": F.lovasz_softmax_loss, "lovasz_hinge": F.lovasz_hinge_loss}
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@contextlib.contextmanager
def kernels(choice: str):
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = choice
    try:
        yield
    finally:
        os.environ.pop("LOSSES_KERNELS") if previous is None else os.environ.__setitem__("LOSSES_KERNELS", previous)


def ours(loss, logits, labels, reduction="none", dtype=torch.float64, **options):
    return FUNCTIONS[loss](
        torch.tensor(np.asarray(logits), dtype=dtype), torch.as_tensor(labels), reduction=reduction, **options
    )


def loss_and_grad(loss, logits, labels, reduction="mean", dtype=torch.float64, **options):
    x = torch.tensor(np.asarray(logits), dtype=dtype, requires_grad=True)
    value = FUNCTIONS[loss](x, torch.as_tensor(labels), reduction=reduction, **options)
    (grad,) = torch.autograd.grad(value, x, torch.ones_like(value))
    return value.detach(), grad


# --- values ---------------------------------------------------------------------------------------


@given(lovasz_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_both_losses_match_the_reference_in_float64(case, reduction):
    loss, logits, labels, options = case
    np.testing.assert_allclose(
        ours(loss, logits, labels, reduction, **options).numpy(),
        reference_loss(loss, logits, labels, reduction, **options),
        rtol=1e-12,
        atol=1e-14,
    )


@given(lovasz_cases(max_side=6), st.sampled_from(["auto", "torch"]))
def test_float32_on_both_sort_paths_matches_the_reference(case, path):
    """``auto`` sorts float32 CPU errors with NumPy, ``torch`` with torch.sort."""
    loss, logits, labels, options = case
    logits = logits.astype(np.float32)
    with kernels(path):
        value = ours(loss, logits, labels, dtype=torch.float32, **options)
    np.testing.assert_allclose(value.numpy(), reference_loss(loss, logits, labels, **options), rtol=1e-5, atol=1e-6)


def test_the_numpy_sort_runs_on_float32_cpu_tensors_only_and_not_with_losses_kernels_torch():
    errors = torch.rand(2, 3, 5)
    assert _sorts_on_host(errors)
    assert not _sorts_on_host(errors.double())
    with kernels("torch"):
        assert not _sorts_on_host(errors)


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3, 300]))
def test_both_sort_paths_give_the_stable_descending_order(seed, levels):
    """Errors with many ties (few distinct values), zeros of either sign and a NaN: NumPy on packed
    keys and torch.sort give the same order, the stable one (earlier position first among equals)."""
    rng = np.random.default_rng(seed)
    errors = (rng.integers(0, levels, (3, 2, 40)) / levels).astype(np.float32)
    errors[0, 0, :5] = -0.0
    errors[1, 1, 7] = np.nan
    tensor = torch.from_numpy(errors)
    expected = np.argsort(-errors, axis=-1, kind="stable")
    expected[1, 1] = np.concatenate([[7], [i for i in expected[1, 1] if i != 7]])  # NaN first, as torch.sort
    with kernels("auto"):
        np.testing.assert_array_equal(_descending_order(tensor).numpy(), expected)
    with kernels("torch"):
        np.testing.assert_array_equal(_descending_order(tensor).numpy(), expected)


def test_the_weights_are_the_differences_of_the_jaccard_loss_and_stay_accurate_in_float32():
    """The closed form agrees with Δ(M_i) − Δ(M_{i−1}) in float64; in float32 it keeps the weights
    of 2^17 positions to 1e-6, where the difference of consecutive Δ in float32 (the reference
    implementation's, smp's and kornia's) loses them to cancellation."""
    rng = np.random.default_rng(0)
    small = rng.uniform(size=(3, 50)) < 0.3
    for row in small:
        errors = np.linspace(1.0, 0.0, row.size)  # already in decreasing order
        _, expected = reference.lovasz_extension(errors, row)
        weights = extension_weights(_LovaszOps, torch.from_numpy(row), torch.from_numpy(~row), torch.float64)
        np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-12, atol=1e-15)
    foreground = torch.from_numpy(rng.uniform(size=2**17) < 0.25)
    exact = extension_weights(_LovaszOps, foreground, ~foreground, torch.float64)
    ours32 = extension_weights(_LovaszOps, foreground, ~foreground, torch.float32).double()
    g = foreground.float()
    jaccard = 1 - (g.sum() - g.cumsum(0)) / (g.sum() + (1 - g).cumsum(0))
    differences = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]]).double()
    relative = lambda w: ((w - exact).abs() / exact)[exact > 0].median().item()  # noqa: E731
    assert relative(ours32) < 1e-6
    assert relative(differences) > 1e-4


# --- gradients ------------------------------------------------------------------------------------


@settings(max_examples=15)
@given(lovasz_cases(max_side=3))
def test_gradient_matches_central_differences_away_from_ties(case):
    loss, logits, labels, options = case
    assume(clear_of_kinks(loss, logits, labels, options))
    x = torch.tensor(logits, requires_grad=True)
    t = torch.as_tensor(labels)
    assert torch.autograd.gradcheck(lambda x: FUNCTIONS[loss](x, t, **options), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


class _SoftmaxWithWrongWeights(torch.autograd.Function):
    """A deliberately wrong backward: the background weights without the −1 of
    ``(G − F_i) / ((G + B_i)(G + B_i − 1))``; the value is the loss's own."""

    @staticmethod
    def forward(ctx, logits, labels):
        ctx.save_for_backward(logits, labels)
        return F.lovasz_softmax_loss(logits, labels, per_image=False, classes="all")

    @staticmethod
    def backward(ctx, grad_output):
        logits, labels = ctx.saved_tensors
        with torch.enable_grad():
            x = logits.detach().requires_grad_(True)
            p = torch.softmax(x, 1).flatten(2).transpose(0, 1).flatten(1)  # (C, B·N)
            foreground = labels.flatten()[None, :] == torch.arange(p.shape[0])[:, None]
            errors = (p - foreground.double()).abs()
            order = torch.argsort(errors.detach(), dim=-1, descending=True, stable=True)
            fg = foreground.gather(-1, order).double()
            total = fg.sum(-1, keepdim=True)
            union = total + (1 - fg).cumsum(-1)
            weights = fg / union + (1 - fg) * (total - fg.cumsum(-1)) / union**2
            loss = (errors.gather(-1, order) * weights).sum(-1).mean()
            (grad,) = torch.autograd.grad(loss, x)
        return grad_output * grad, None


def test_negative_control_a_wrong_backward_fails_the_same_check():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(2, 3, 3, 3)), requires_grad=True)
    t = torch.as_tensor(rng.integers(0, 3, (2, 3, 3)))
    correct = lambda x: F.lovasz_softmax_loss(x, t, per_image=False, classes="all")  # noqa: E731
    assert torch.autograd.gradcheck(correct, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert _SoftmaxWithWrongWeights.apply(x, t).item() == pytest.approx(correct(x).item(), rel=1e-14)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda x: _SoftmaxWithWrongWeights.apply(x, t), (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


@given(lovasz_cases(max_side=5), st.sampled_from(["mean", "sum"]))
def test_the_gradient_is_the_reference_weights_put_back_in_place(case, reduction):
    """Also at ties and kinks: there the subgradient of the stable order."""
    loss, logits, labels, options = case
    assume(options.pop("from_logits", True))
    _, grad = loss_and_grad(loss, logits, labels, reduction, **options)
    expected = (softmax_gradient if loss == "lovasz_softmax" else hinge_gradient)(
        logits, labels, reduction=reduction, **options
    )
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("per_image", [True, False])
def test_ties_give_the_subgradient_of_the_stable_order(dtype, per_image):
    """Logits of 0: every softmax error of two classes is 1/2 and every hinge error 1, all tied.
    Among equal errors the earlier position counts as the larger one (both sort paths)."""
    labels = np.array([[[0, 1, 1, 0, 1, 0]], [[1, 1, 0, 0, 0, 1]]])
    for loss, expected_grad, channels in (("lovasz_softmax", softmax_gradient, 2), ("lovasz_hinge", hinge_gradient, 1)):
        logits = np.zeros((2, channels, 1, 6))
        for path in ("auto", "torch"):
            with kernels(path):
                value, grad = loss_and_grad(loss, logits, labels, dtype=DTYPES[dtype], per_image=per_image)
            np.testing.assert_allclose(
                value.item(), reference_loss(loss, logits, labels, "mean", per_image=per_image), rtol=1e-6
            )
            np.testing.assert_allclose(
                grad.double().numpy(), expected_grad(logits, labels, per_image=per_image), rtol=1e-6, atol=1e-9
            )
    # The order matters: the first background position of the first image gets the largest weight.
    _, grad = loss_and_grad("lovasz_hinge", np.zeros((1, 1, 1, 4)), np.array([[[0, 0, 1, 1]]]))
    assert grad[0, 0, 0, 0] > grad[0, 0, 0, 1] > 0


# --- options --------------------------------------------------------------------------------------


def test_ignored_positions_get_a_gradient_of_exactly_zero_and_change_nothing_else():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 5))
    labels = rng.integers(0, 3, (2, 4, 5))
    ignored = labels.copy()
    ignored[:, :, -2:] = IGNORE
    binary = np.where(ignored == IGNORE, IGNORE, ignored % 2)
    for loss, x, t in (("lovasz_softmax", logits, ignored), ("lovasz_hinge", logits[:, :1], binary)):
        value, grad = loss_and_grad(loss, x, t, ignore_index=IGNORE)
        assert torch.all(grad[..., -2:] == 0)
        kept, kept_grad = loss_and_grad(loss, x[..., :-2], t[..., :-2])
        assert value.item() == pytest.approx(kept.item(), rel=1e-13)
        np.testing.assert_allclose(grad[..., :-2].numpy(), kept_grad.numpy(), rtol=1e-12, atol=1e-15)


def test_ignore_index_may_be_a_class():
    """ignore_index=0 leaves out the positions labelled 0: class 0 is then absent from the target."""
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(2, 3, 4, 4)), rng.integers(0, 3, (2, 4, 4))
    for classes in ("present", "all"):
        np.testing.assert_allclose(
            ours("lovasz_softmax", logits, labels, ignore_index=0, classes=classes).numpy(),
            reference_loss("lovasz_softmax", logits, labels, ignore_index=0, classes=classes),
            rtol=1e-12,
        )


def test_class_selection_present_all_and_a_list():
    """ "present": a class absent from the image contributes nothing (smp); "all": it contributes
    its largest probability (kornia); a list: its classes, present or not."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(1, 3, 4, 4))
    labels = rng.integers(0, 2, (1, 4, 4))  # class 2 absent
    probability = torch.softmax(torch.tensor(logits), 1)
    per_class = [ours("lovasz_softmax", logits, labels, classes=[c]).item() for c in range(3)]
    assert per_class[2] == pytest.approx(probability[0, 2].max().item(), rel=1e-12)
    assert ours("lovasz_softmax", logits, labels).item() == pytest.approx(np.mean(per_class[:2]), rel=1e-12)
    assert ours("lovasz_softmax", logits, labels, classes="all").item() == pytest.approx(np.mean(per_class), rel=1e-12)
    assert ours("lovasz_softmax", logits, labels, classes=[0, 2]).item() == pytest.approx(
        (per_class[0] + per_class[2]) / 2, rel=1e-12
    )


def test_a_row_with_every_position_ignored_has_loss_zero_and_no_gradient():
    logits = np.random.default_rng(4).normal(size=(2, 3, 2, 2))
    labels = np.full((2, 2, 2), IGNORE)
    labels[1] = 1
    for classes in ("present", "all", [1]):
        value, grad = loss_and_grad("lovasz_softmax", logits, labels, "none", ignore_index=IGNORE, classes=classes)
        assert value[0].item() == 0.0 and value[1].item() > 0
        assert torch.all(grad[0] == 0)


def test_per_image_false_sorts_the_positions_of_every_image_together():
    """The batch loss is that of one image made of all the images side by side."""
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(3, 4, 7)), rng.integers(0, 4, (3, 7))
    joined_logits = np.concatenate(list(logits), axis=-1)[None]
    joined_labels = labels.reshape(1, -1)
    assert ours("lovasz_softmax", logits, labels, "none", per_image=False).shape == ()
    assert ours("lovasz_softmax", logits, labels, per_image=False).item() == pytest.approx(
        ours("lovasz_softmax", joined_logits, joined_labels).item(), rel=1e-13
    )
    assert ours("lovasz_hinge", logits[:, :1], labels % 2, per_image=False).item() == pytest.approx(
        ours("lovasz_hinge", joined_logits[:, :1], joined_labels % 2).item(), rel=1e-13
    )


def test_hinge_targets_of_every_form_agree():
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(size=(2, 1, 3, 4)))
    labels = torch.as_tensor(rng.integers(0, 2, (2, 3, 4)))
    expected = F.lovasz_hinge_loss(x, labels)
    for target in (labels[:, None], labels.bool(), labels.float()[:, None], labels.to(torch.uint8)):
        assert F.lovasz_hinge_loss(x, target).item() == pytest.approx(expected.item(), rel=1e-14)


def test_an_image_without_foreground_costs_the_hinge_of_its_worst_background_logit():
    x = torch.tensor([[[[0.5, -3.0, 2.0]]]])
    assert F.lovasz_hinge_loss(x, torch.zeros(1, 1, 3, dtype=torch.long)).item() == pytest.approx(3.0)


def test_modules_hold_the_options_of_the_functions():
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(size=(2, 3, 4, 4)))
    labels = torch.as_tensor(rng.integers(0, 3, (2, 4, 4)))
    criterion = LovaszSoftmaxLoss(classes=[1, 2], per_image=False, ignore_index=9, reduction="sum")
    assert (
        criterion(x, labels).item()
        == F.lovasz_softmax_loss(x, labels, classes=[1, 2], per_image=False, ignore_index=9, reduction="sum").item()
    )
    assert repr(criterion) == "LovaszSoftmaxLoss(classes=[1, 2], per_image=False, ignore_index=9, reduction='sum')"
    assert repr(LovaszHingeLoss()) == "LovaszHingeLoss()"
    assert LovaszHingeLoss(reduction="none")(x[:, :1], labels % 2).shape == (2,)


def test_torch_func_grad_takes_the_same_gradient():
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.normal(size=(2, 3, 4, 4)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 4, 4)))
    _, grad = loss_and_grad("lovasz_softmax", x.numpy(), labels.numpy(), dtype=torch.float32)
    torch.testing.assert_close(torch.func.grad(lambda x: F.lovasz_softmax_loss(x, labels))(x), grad)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("loss", sorted(FUNCTIONS))
def test_forward_mode_tangents_have_the_dtype_of_the_loss(loss, per_image):
    """torch.func.jvp and jacfwd: the tangent of a float32 loss is float32 (the mean over images once
    gave float64, from PyTorch's forward-mode rule for a 0-dim tensor divided by a Python float)."""
    channels = 3 if loss == "lovasz_softmax" else 1
    x, labels = torch.randn(2, channels, 2, 2), torch.randint(0, 2, (2, 2, 2))

    def function(v):
        return FUNCTIONS[loss](v, labels, per_image=per_image)

    value, tangent = torch.func.jvp(function, (x,), (torch.ones_like(x),))
    assert tangent.dtype == value.dtype == torch.float32
    assert torch.func.jacfwd(function)(x).dtype == torch.float32


# --- nothing fails silently -----------------------------------------------------------------------


@settings(max_examples=10)
@given(lovasz_cases(), st.sampled_from(list(DTYPES)), st.sampled_from([1.0, 30.0, 1e4]))
def test_finite_input_gives_a_finite_loss_and_gradient_in_every_dtype(case, dtype, scale):
    loss, logits, labels, options = case
    if options.get("from_logits", True):
        logits = logits * scale
    if dtype == "float16":
        logits = np.clip(logits, -6e4, 6e4)  # finite in float16 too
    value, grad = loss_and_grad(loss, logits, labels, "none", dtype=DTYPES[dtype], **options)
    assert grad.dtype == DTYPES[dtype]
    assert torch.all(torch.isfinite(value)) and torch.all(torch.isfinite(grad))
    if dtype in ("float32", "float64"):
        np.testing.assert_allclose(
            value.double().numpy(), reference_loss(loss, logits, labels, **options), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("loss", sorted(FUNCTIONS))
@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_a_non_finite_input_gives_its_image_a_nan_loss_and_gradient(loss, poison, path):
    """Also at an ignored position; the other images keep their values, and with per_image=False
    the whole batch is NaN."""
    rng = np.random.default_rng(9)
    channels = 3 if loss == "lovasz_softmax" else 1
    logits = rng.normal(size=(3, channels, 2, 3)).astype(np.float32)
    labels = rng.integers(0, channels if channels > 1 else 2, (3, 2, 3))
    labels[1, 0, 0] = IGNORE
    poisoned = logits.copy()
    poisoned[1, 0, 0, 0] = poison
    with kernels(path):
        clean, clean_grad = loss_and_grad(loss, logits, labels, "none", dtype=torch.float32, ignore_index=IGNORE)
        value, grad = loss_and_grad(loss, poisoned, labels, "none", dtype=torch.float32, ignore_index=IGNORE)
        batch, batch_grad = loss_and_grad(
            loss, poisoned, labels, "none", dtype=torch.float32, ignore_index=IGNORE, per_image=False
        )
    assert torch.isnan(value[1]) and torch.all(torch.isnan(grad[1]))
    torch.testing.assert_close(value[[0, 2]], clean[[0, 2]])
    torch.testing.assert_close(grad[[0, 2]], clean_grad[[0, 2]])
    assert torch.isnan(batch) and torch.all(torch.isnan(batch_grad))


@pytest.mark.parametrize("loss", sorted(FUNCTIONS))
def test_empty_batches_and_images(loss):
    channels = 3 if loss == "lovasz_softmax" else 1
    for per_image, expected in (
        (True, {"none": (0,), "sum": 0.0, "mean": "nan"}),
        (False, {"none": (), "sum": 0.0, "mean": 0.0}),
    ):
        for reduction, result in expected.items():
            x = torch.zeros(0, channels, 4, 4, requires_grad=True)
            value = FUNCTIONS[loss](x, torch.zeros(0, 4, 4, dtype=torch.long), per_image=per_image, reduction=reduction)
            if isinstance(result, tuple):
                assert value.shape == result
            elif result == "nan":
                assert torch.isnan(value)
            else:
                assert value.item() == result
            if value.numel():
                (grad,) = torch.autograd.grad(value, x)
                assert grad.shape == x.shape
    value = FUNCTIONS[loss](
        torch.zeros(2, channels, 0, requires_grad=True), torch.zeros(2, 0, dtype=torch.long), reduction="none"
    )
    assert value.tolist() == [0.0, 0.0]


BAD = [
    ("lovasz_softmax", (2, 3, 4), (2, 5), {}, ValueError, "target has shape"),
    ("lovasz_softmax", (2, 3, 4), (2, 3, 4), {}, ValueError, "label map"),
    ("lovasz_softmax", (2, 1, 4), (2, 4), {}, ValueError, "at least 2 channels"),
    ("lovasz_softmax", (2, 3), (2,), {}, ValueError, "input must have shape"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"classes": "some"}, ValueError, "classes"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"classes": [3]}, ValueError, "classes"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"classes": []}, ValueError, "classes"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"classes": None}, TypeError, "classes"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"per_image": 1}, TypeError, "per_image"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"ignore_index": 1.5}, TypeError, "ignore_index"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"from_logits": "yes"}, TypeError, "from_logits"),
    ("lovasz_softmax", (2, 3, 4), (2, 4), {"reduction": "avg"}, ValueError, "reduction"),
    ("lovasz_hinge", (2, 2, 4), (2, 4), {}, ValueError, "exactly 1 channel"),
    ("lovasz_hinge", (2, 1, 4), (2, 4), {"from_logits": False}, TypeError, "from_logits"),
    ("lovasz_hinge", (2, 1, 4), (2, 4), {"classes": "all"}, TypeError, "classes"),
]


@pytest.mark.parametrize("loss, input_shape, target_shape, options, error, text", BAD)
def test_bad_input_names_the_argument(loss, input_shape, target_shape, options, error, text):
    with pytest.raises(error, match=text):
        FUNCTIONS[loss](torch.zeros(input_shape), torch.zeros(target_shape, dtype=torch.long), **options)


def test_bad_values_name_the_argument():
    x = torch.zeros(1, 3, 4)
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\).*found \[3\]"):
        F.lovasz_softmax_loss(x, torch.tensor([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="target labels must be whole numbers"):
        F.lovasz_softmax_loss(x, torch.tensor([[0.0, 1.5, 2.0, 0.0]]))
    with pytest.raises(ValueError, match="target labels must be 0 or 1.*found \\[2\\]"):
        F.lovasz_hinge_loss(x[:, :1], torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match="input must be probabilities"):
        F.lovasz_softmax_loss(x + 2.0, torch.tensor([[0, 1, 2, 0]]), from_logits=False)
    with pytest.raises(TypeError, match="input must have a floating-point dtype"):
        F.lovasz_softmax_loss(x.long(), torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(TypeError, match="mode"):
        LovaszSoftmaxLoss(mode="multiclass")
    assert F.lovasz_softmax_loss(x, torch.tensor([[0, 1, 255, 0]]), ignore_index=255).isfinite()
