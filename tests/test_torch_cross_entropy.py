"""FocalLoss, DiceCELoss and DiceFocalLoss in PyTorch: against the float64 reference on every CPU path,
finite differences with a negative control, extreme and non-finite inputs, bad options."""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.autograd.gradcheck import GradcheckError

import reference
from dice_cases import IGNORE
from focal_cases import focal_cases, pair_cases
from losses.torch import DiceCELoss, DiceFocalLoss, FocalLoss
from losses.torch.functional import dice_ce_loss, dice_focal_loss, dice_loss, focal_loss

PAIRS = {"dice_ce": dice_ce_loss, "dice_focal": dice_focal_loss}


@contextlib.contextmanager
def kernels(choice: str):
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = choice
    try:
        yield
    finally:
        os.environ.pop("LOSSES_KERNELS") if previous is None else os.environ.__setitem__("LOSSES_KERNELS", previous)


def tensor(array, dtype=torch.float64):
    return None if array is None else torch.as_tensor(np.asarray(array), dtype=dtype)


def float32_and_float64(function, logits, target, path="auto", **options):
    """``[(value, gradient)]`` of ``function`` on ``path`` in float32, then on the portable path in float64
    (a float target in the input's dtype), as float64."""
    results = []
    for kernel, dtype in ((path, torch.float32), ("torch", torch.float64)):
        with kernels(kernel):
            x = tensor(logits, dtype).requires_grad_(True)
            t = target.to(dtype) if target.is_floating_point() else target
            value = function(x, t, **options)
            (grad,) = torch.autograd.grad(value, x)
            results.append((value.item(), grad.double().numpy()))
    return results


@given(focal_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_focal_loss_matches_the_reference_in_float64(case, reduction):
    logits, target, options, weight = case
    ours = focal_loss(tensor(logits), torch.as_tensor(target), weight=tensor(weight), reduction=reduction, **options)
    expected = reference.focal_loss(logits, target, reduction, weight, **options)
    np.testing.assert_allclose(ours.numpy().reshape(np.shape(expected)), expected, rtol=1e-9, atol=1e-12)


@given(pair_cases(), st.sampled_from(["mean", "sum", "none"]))
def test_pairs_match_the_reference_in_float64(case, reduction):
    kind, logits, target, arguments, weight, reference_kwargs = case
    ours = PAIRS[kind](tensor(logits), torch.as_tensor(target), weight=tensor(weight), reduction=reduction, **arguments)
    np.testing.assert_allclose(
        ours.numpy(), reference.pair_loss(logits, target, reduction, weight, **reference_kwargs), rtol=1e-9, atol=1e-12
    )


@given(pair_cases(max_side=5))
def test_pairs_on_every_cpu_path_agree_in_float32(case):
    kind, logits, target, arguments, weight, reference_kwargs = case
    results = []
    for path in ("auto", "torch"):
        with kernels(path):
            x = tensor(logits, torch.float32).requires_grad_(True)
            loss = PAIRS[kind](x, torch.as_tensor(target), weight=tensor(weight, torch.float32), **arguments)
            (grad,) = torch.autograd.grad(loss, x)
            results.append((loss.item(), grad.numpy()))
    expected = reference.pair_loss(logits.astype(np.float32), target, "mean", weight, **reference_kwargs)
    for loss, _ in results:
        assert loss == pytest.approx(float(expected), rel=1e-4, abs=1e-5)
    (_, a), (_, b) = results
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@given(focal_cases(max_side=5), st.sampled_from(["mean", "sum"]))
def test_focal_loss_on_every_cpu_path_agrees_in_float32(case, reduction):
    logits, target, options, weight = case
    results = []
    for path in ("auto", "torch"):
        with kernels(path):
            x = tensor(logits, torch.float32).requires_grad_(True)
            loss = focal_loss(
                x, torch.as_tensor(target), weight=tensor(weight, torch.float32), reduction=reduction, **options
            )
            (grad,) = torch.autograd.grad(loss, x)
            results.append((loss.item(), grad.numpy()))
    expected = float(reference.focal_loss(logits.astype(np.float32), target, reduction, weight, **options))
    for loss, _ in results:  # NaN: a mean over no valid position
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5, nan_ok=True)
    (_, a), (_, b) = results
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize(
    "mode, classes, label_map",
    [("binary", 1, True), ("multiclass", 3, True), ("multilabel", 3, False), ("binary", 1, False)],
)
def test_the_fused_cpu_passes_take_logits_with_label_maps_or_sigmoid_targets(mode, classes, label_map):
    from losses._cross_entropy import FocalOptions
    from losses.torch._term_core import TermLoss, choose_term_path

    x = torch.randn(2, classes, 4, 4)
    if label_map:
        target = torch.randint(0, max(classes, 2), (2, 4, 4))
    else:
        target = torch.randint(0, 2, (2, classes, 4, 4)).float()
    spec = TermLoss.focal(FocalOptions.create(mode=mode), "mean")
    assert choose_term_path(x, target, None, spec, label_map).name == "cpu"
    probabilities = TermLoss.focal(FocalOptions.create(mode=mode, from_logits=False), "mean")
    assert "from_logits=False" in choose_term_path(x.sigmoid(), target, None, probabilities, label_map).reason
    dense = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    multiclass = TermLoss.focal(FocalOptions.create(mode="multiclass"), "mean")
    assert "label maps" in choose_term_path(torch.randn(2, 3, 4, 4), dense, None, multiclass, False).reason


def _clear_of_kinks(logits, target, soft_labels, options):
    if not soft_labels:
        return True
    p, g, v = reference.dice_probabilities_and_targets(
        logits, target, options["mode"], options["from_logits"], options["ignore_index"]
    )
    return bool(np.all(np.abs(p - g)[v > 0] > 1e-3))


@settings(max_examples=15)
@given(focal_cases(max_side=3))
def test_focal_gradient_matches_central_differences(case):
    logits, target, options, weight = case
    if not options["from_logits"]:  # (1 − p)^γ with γ < 1 has an infinite slope at p = 1
        assume(options["gamma"] in (0.0, 1.0, 2.0))
    _, _, valid = reference.dice_probabilities_and_targets(
        logits, target, options["mode"], options["from_logits"], options["ignore_index"]
    )
    if options["mode"] == "multiclass":  # a position counts where every class of it is valid
        valid = valid.all(axis=1)
    assume(valid.any())  # the mean over no valid position is the documented NaN
    x = tensor(logits).requires_grad_(True)
    t, w = torch.as_tensor(target), tensor(weight)
    assert torch.autograd.gradcheck(
        lambda x: focal_loss(x, t, weight=w, **options), (x,), eps=1e-6, atol=1e-6, rtol=1e-4
    )


@settings(max_examples=15)
@given(pair_cases(max_side=3))
def test_pair_gradient_matches_central_differences(case):
    kind, logits, target, arguments, weight, _ = case
    assume(_clear_of_kinks(logits, target, arguments["soft_labels"], arguments))
    x = tensor(logits).requires_grad_(True)
    t, w = torch.as_tensor(target), tensor(weight)
    # Central differences of a loss of size |L| carry rounding errors of about 1e-16·|L|/eps: a row with
    # no class present is 1 − smooth_nr/smooth_dr, up to −1e5 here.
    size = abs(float(PAIRS[kind](x, t, weight=w, **arguments)))
    assert torch.autograd.gradcheck(
        lambda x: PAIRS[kind](x, t, weight=w, **arguments), (x,), eps=1e-6, atol=1e-6 + 1e-9 * size, rtol=1e-4
    )


class _FocalWithoutModulatorGradient(torch.autograd.Function):
    """A deliberately wrong backward: the focal factor (1 − p_t)^γ treated as a constant."""

    @staticmethod
    def forward(ctx, logits, target):
        ctx.save_for_backward(logits, target)
        return focal_loss(logits, target, gamma=2.0)

    @staticmethod
    def backward(ctx, grad_output):
        logits, target = ctx.saved_tensors
        with torch.enable_grad():
            x = logits.detach().requires_grad_(True)
            log_p = torch.log_softmax(x, 1).gather(1, target[:, None]).squeeze(1)
            factor = (1 - log_p.exp()).detach() ** 2
            (grad,) = torch.autograd.grad((-factor * log_p).mean(), x)
        return grad_output * grad, None


def test_negative_control_a_wrong_backward_fails_the_same_check():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(2, 3, 4, 4)), requires_grad=True)
    t = torch.as_tensor(rng.integers(0, 3, (2, 4, 4)))
    assert torch.autograd.gradcheck(lambda x: focal_loss(x, t), (x,), eps=1e-6, atol=1e-6)
    assert _FocalWithoutModulatorGradient.apply(x, t).item() == pytest.approx(focal_loss(x, t).item(), rel=1e-12)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda x: _FocalWithoutModulatorGradient.apply(x, t), (x,), eps=1e-6, atol=1e-6)


def test_gamma_zero_is_cross_entropy_and_the_pair_is_the_sum_of_its_terms():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(2, 3, 5, 4)))
    labels = torch.as_tensor(rng.integers(0, 3, (2, 5, 4)))
    labels[0, 0] = IGNORE
    ce = torch.nn.functional.cross_entropy(x, labels, ignore_index=IGNORE, label_smoothing=0.1)
    torch.testing.assert_close(focal_loss(x, labels, gamma=0.0, ignore_index=IGNORE, label_smoothing=0.1), ce)
    pair = dice_ce_loss(x, labels, per_image=False, ignore_index=IGNORE)
    expected = dice_loss(x, labels, per_image=False, ignore_index=IGNORE) + torch.nn.functional.cross_entropy(
        x, labels, ignore_index=IGNORE
    )
    torch.testing.assert_close(pair, expected)


@pytest.mark.parametrize(
    "make", [lambda: FocalLoss(), lambda: DiceCELoss(), lambda: DiceFocalLoss(), lambda: FocalLoss(mode="binary")]
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_extreme_logits_give_finite_losses_and_gradients(make, dtype, path):
    criterion = make()
    binary = criterion.options.mode == "binary" if isinstance(criterion, FocalLoss) else False
    channels = 1 if binary else 3
    x = (torch.randint(0, 2, (2, channels, 6, 6)).float() * 2e4 - 1e4).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 2 if binary else 3, (2, 6, 6))
    with kernels(path):
        loss = criterion(x, labels)
        (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


@pytest.mark.parametrize("make", [lambda: FocalLoss(), lambda: DiceCELoss(), lambda: DiceFocalLoss(per_image=False)])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_a_non_finite_logit_comes_out(make, value, path):
    x = torch.randn(2, 3, 4, 4)
    x[1, 2, 1, 1] = value
    x.requires_grad_(True)
    with kernels(path):
        loss = make()(x, torch.randint(0, 3, (2, 4, 4)))
        (grad,) = torch.autograd.grad(loss, x)
    assert not torch.isfinite(loss)
    assert not torch.isfinite(grad[1]).all()


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(gamma=-1.0), ValueError, "gamma must be >= 0"),
        (dict(label_smoothing=1.0), ValueError, r"label_smoothing must be in \[0, 1\)"),
        (dict(alpha=0.25), ValueError, "alpha must be one weight per class in mode='multiclass'"),
        (dict(alpha=[1.0, 2.0]), ValueError, r"alpha must have one weight per channel of the input \(3\)"),
    ],
)
def test_bad_focal_options_name_the_argument(kwargs, error, text):
    with pytest.raises(error, match=text):
        focal_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(lambda_dice=0.0, lambda_ce=0.0), ValueError, "lambda_dice and lambda_ce must not both be 0"),
        (dict(lambda_ce=-1.0), ValueError, "lambda_ce must be >= 0"),
        (
            dict(overlap="tversky", squared=True),
            TypeError,
            "TverskyLoss \\(overlap='tversky'\\) takes no option 'squared'",
        ),
        (dict(overlap="iou"), ValueError, "overlap must be one of"),
        (dict(overlap_options={"gamma": 2.0}), TypeError, "DiceLoss takes no option 'gamma'"),
    ],
)
def test_bad_pair_options_name_the_argument(kwargs, error, text):
    with pytest.raises(error, match=text):
        dice_ce_loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), **kwargs)


def test_remembered_pair_options_are_checked_again_for_a_value_of_another_type():
    """The functional pairs remember the checked options of plain values: a call whose value equals a
    remembered one but has another type (1 == True, 0 == False) is checked anew, as is one whose
    overlap options differ."""
    logits, labels = torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    first = dice_focal_loss(logits, labels, from_logits=True, per_image=False, overlap_options={"squared": False})
    with pytest.raises(TypeError, match="from_logits must be True or False; got 1"):
        dice_focal_loss(logits, labels, from_logits=1, per_image=False, overlap_options={"squared": False})
    with pytest.raises(TypeError, match="squared must be True or False; got 0"):
        dice_focal_loss(logits, labels, from_logits=True, per_image=False, overlap_options={"squared": 0})
    with pytest.raises(ValueError, match="lambda_focal must be >= 0"):
        dice_focal_loss(logits, labels, from_logits=True, per_image=False, lambda_focal=-1.0)
    again = dice_focal_loss(logits, labels, from_logits=True, per_image=False, overlap_options={"squared": False})
    torch.testing.assert_close(again, first)
    lighter = dice_focal_loss(logits, labels, from_logits=True, per_image=False, lambda_focal=0.5)
    assert not torch.allclose(lighter, first)


def test_an_image_without_a_valid_position_adds_nothing():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[1] = IGNORE
    per_image = dice_ce_loss(x, labels, ignore_index=IGNORE, reduction="none")
    assert torch.isfinite(per_image).all() and per_image[1].item() == 0.0
    (grad,) = torch.autograd.grad(per_image.sum(), x)
    assert torch.all(grad[1] == 0)


@pytest.mark.parametrize(
    "mode, channels, kwargs, text",
    [
        ("binarie", 1, {}, "mode must be one of 'binary', 'multiclass', 'multilabel'; got 'binarie'"),
        ("binary", 1, dict(alpha=1.5), r"alpha must be in \[0, 1\] \(the weight of the positives\); got 1.5"),
        ("binary", 1, dict(alpha=[0.5]), r"alpha must be a float in \[0, 1\] in mode='binary'; got a sequence"),
        ("multilabel", 2, dict(alpha=-0.5), "alpha must be >= 0"),
        ("binary", 3, {}, "input must have exactly 1 channel in mode='binary'; got 3 channels"),
        ("multiclass", 1, {}, "input must have at least 2 channels in mode='multiclass'; got 1"),
        (
            "multilabel",
            2,
            dict(class_weights=[1.0, 2.0, 3.0]),
            r"class_weights must have one weight per channel of the input \(2\); got 3 weights",
        ),
    ],
)
def test_bad_focal_options_and_channel_counts_are_errors_naming_the_argument(mode, channels, kwargs, text):
    target = torch.zeros(1, channels, 2, 2) if mode == "multilabel" else torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=text):
        focal_loss(torch.randn(1, channels, 2, 2), target, mode=mode, **kwargs)


@pytest.mark.parametrize("alpha", [np.float32(0.25), np.float16(0.25), np.float64(0.25)])
def test_a_numpy_scalar_alpha_is_the_float_alpha(alpha):
    """np.float32 is a real number but not a Python float: it is the positives' weight, not a
    sequence (and in multiclass mode the error that explains the float alpha)."""
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    labels = torch.tensor([[[1, 0], [0, 1]]])
    expected = focal_loss(logits, labels, mode="binary", alpha=0.25)
    assert focal_loss(logits, labels, mode="binary", alpha=alpha).item() == expected.item()
    assert FocalLoss(mode="multilabel", alpha=alpha).options.alpha == 0.25
    with pytest.raises(ValueError, match="alpha must be one weight per class in mode='multiclass'"):
        FocalLoss(alpha=alpha)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_at_the_ends_of_its_range_weighs_only_the_negatives_or_the_positives(alpha):
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]], dtype=torch.float64)
    labels = torch.tensor([[[1, 0], [0, 1]]])
    per_element = focal_loss(logits, labels, mode="binary", alpha=alpha, reduction="none")
    unbalanced = focal_loss(logits, labels, mode="binary", reduction="none")
    kept = labels[:, None] == (1 if alpha == 1.0 else 0)
    torch.testing.assert_close(per_element, torch.where(kept, unbalanced, 0.0))


@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_a_probability_of_zero_for_the_target_gives_the_clamped_finite_loss(mode):
    """With from_logits=False, log p is clamped at log(1e-30): a confident miss costs 69.08, not inf."""
    if mode == "multiclass":
        probabilities, target = torch.tensor([[[[0.0]], [[1.0]]]], dtype=torch.float64), torch.tensor([[[0]]])
    else:
        probabilities, target = torch.tensor([[[[0.0]]]], dtype=torch.float64), torch.tensor([[[1]]])
    for path in ("auto", "torch"):
        with kernels(path):
            loss = focal_loss(probabilities, target, mode=mode, from_logits=False, gamma=0.0)
        np.testing.assert_allclose(loss.item(), -np.log(1e-30), rtol=1e-12)


def test_the_pair_repr_names_the_term_options():
    assert repr(DiceFocalLoss(mode="binary", alpha=0.25)) == (
        "DiceFocalLoss(overlap='dice', mode='binary', lambdas=(1.0, 1.0), "
        "term={'gamma': 2.0, 'alpha': 0.25, 'label_smoothing': 0.0})"
    )
    assert "term={'gamma': 1.0, 'alpha': [1.0, 2.0], 'label_smoothing': 0.1}" in repr(
        DiceFocalLoss(gamma=1.0, alpha=[1.0, 2.0], label_smoothing=0.1)
    )


def test_the_focal_repr_names_every_option_that_is_not_its_default():
    assert repr(FocalLoss()) == "FocalLoss(mode='multiclass', gamma=2.0, alpha=None, reduction='mean')"
    assert repr(
        FocalLoss(label_smoothing=0.1, class_weights=[1, 2], ignore_index=255, from_logits=False, reduction="sum")
    ) == (
        "FocalLoss(mode='multiclass', gamma=2.0, alpha=None, label_smoothing=0.1, class_weights=(1.0, 2.0), "
        "ignore_index=255, from_logits=False, reduction='sum')"
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_where_one_non_finite_logit_makes_the_gradient_nan(value, mode, path):
    """The focal loss alone: NaN at that logit's position only (multiclass: in every class, through the
    softmax); a pair: in the whole image, whose overlap loss is NaN. The loss is NaN either way."""
    rng = np.random.default_rng(11)
    channels = 1 if mode == "binary" else 3
    logits = torch.as_tensor(rng.normal(size=(2, channels, 3, 4)), dtype=torch.float32)
    logits[1, channels - 1, 2, 1] = value
    target = (
        torch.as_tensor(rng.uniform(size=logits.shape) < 0.5).float()
        if mode == "multilabel"
        else torch.as_tensor(rng.integers(0, max(channels, 2), (2, 3, 4)))
    )
    expected = torch.zeros(logits.shape, dtype=torch.bool)
    if mode == "multiclass":
        expected[1, :, 2, 1] = True
    else:
        expected[1, channels - 1, 2, 1] = True
    for loss_function, nan_where in ((focal_loss, expected), (dice_ce_loss, expected.any((1, 2, 3), keepdim=True))):
        x = logits.clone().requires_grad_(True)
        with kernels(path):
            loss = loss_function(x, target, mode=mode, reduction="none" if loss_function is dice_ce_loss else "sum")
            (grad,) = torch.autograd.grad(loss.sum(), x)
        assert torch.isnan(loss.sum())
        assert torch.equal(torch.isnan(grad), nan_where.expand_as(grad)), loss_function.__name__


@pytest.mark.parametrize(
    "mode, bad, loss_function, path",
    [
        (mode, bad, loss_function, path)
        for mode, bad in (("binary", 2), ("multiclass", 3), ("multiclass", -1), ("multiclass", 2**40))
        for loss_function in (focal_loss, dice_focal_loss, dice_ce_loss)
        for path in ("auto", "torch")
    ],
)
def test_labels_out_of_range_are_an_error_for_the_term_alone_and_in_a_pair(mode, bad, loss_function, path):
    channels = 1 if mode == "binary" else 3
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[1, 2, 3] = bad
    with kernels(path), pytest.raises(ValueError, match=rf"target labels must be .*found \[{bad}\]"):
        loss_function(torch.randn(2, channels, 4, 4), labels, mode=mode)


@pytest.mark.parametrize("path", ["auto", "torch"])
def test_the_focal_mean_over_no_valid_position_is_nan_and_so_is_its_gradient(path):
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.full((2, 4, 4), IGNORE)
    with kernels(path):
        loss = focal_loss(x, labels, ignore_index=IGNORE)
        (grad,) = torch.autograd.grad(loss, x)
    assert torch.isnan(loss) and torch.isnan(grad).all()
    with kernels(path):
        assert focal_loss(x, labels, ignore_index=IGNORE, reduction="sum").item() == 0.0


def test_lambdas_are_free_as_long_as_one_is_positive():
    x, labels = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (2, 4, 4))
    torch.testing.assert_close(
        dice_ce_loss(x, labels, lambda_dice=0.0, lambda_ce=0.25),
        0.25 * dice_ce_loss(x, labels, lambda_dice=0.0, lambda_ce=1.0),
    )
    torch.testing.assert_close(dice_ce_loss(x, labels, lambda_dice=0.25, lambda_ce=0.0), 0.25 * dice_loss(x, labels))


@pytest.mark.parametrize("pair", [dice_ce_loss, dice_focal_loss])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_a_pair_without_its_term_is_its_overlap_loss_exactly(pair, mode):
    """λ_term = 0: the overlap loss's own passes (the term would only add 0), every option kept."""
    x = torch.randn(2, 1 if mode == "binary" else 3, 5, 6, requires_grad=True)
    labels = torch.randint(0, 2 if mode == "binary" else 3, (2, 5, 6))
    labels[0, 0, :2] = IGNORE
    weight = torch.rand(2, 5, 6)
    options = dict(mode=mode, ignore_index=IGNORE, per_image=True, smooth_dr=1e-3, reduction="sum")
    lambda_term = {"lambda_ce" if pair is dice_ce_loss else "lambda_focal": 0.0}
    loss = pair(x, labels, weight=weight, lambda_dice=0.5, **lambda_term, **options)
    (grad,) = torch.autograd.grad(loss, x)
    alone = 0.5 * dice_loss(x, labels, weight=weight, **options)
    (grad_alone,) = torch.autograd.grad(alone, x)
    assert torch.equal(loss, alone) and torch.equal(grad, grad_alone)


@pytest.mark.parametrize(
    "options, text",
    [
        (dict(mode="binarie"), "mode must be one of 'binary', 'multiclass', 'multilabel'; got 'binarie'"),
        (dict(mode="binary", alpha=1.5), r"alpha must be in \[0, 1\]"),
        (dict(mode="multiclass", alpha=0.25), "alpha must be one weight per class in mode='multiclass'"),
        (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_focal_options_are_errors_when_the_loss_is_built(options, text):
    """Before any forward pass: a misspelled mode must not wait for the first batch."""
    with pytest.raises(ValueError, match=text):
        FocalLoss(**options)


@pytest.mark.parametrize("fn", [focal_loss, dice_ce_loss, dice_focal_loss])
def test_a_batch_of_zero_images(fn):
    """As the overlap losses: the sum over no image is 0, the mean NaN (the focal loss: the sum of no
    term 0, their mean NaN)."""
    x = torch.zeros(0, 3, 4, 4, requires_grad=True)
    labels = torch.zeros(0, 4, 4, dtype=torch.long)
    total = fn(x, labels, reduction="sum")
    assert total.item() == 0.0
    assert torch.isnan(fn(x, labels))
    assert torch.autograd.grad(total, x)[0].shape == x.shape


@pytest.mark.parametrize("path", ["auto", "torch"])
@pytest.mark.parametrize("empty", ["ignored", "zero weight"])
def test_a_nan_in_a_row_without_valid_positions_comes_out(empty, path):
    """A NaN logit at an ignored (or zero-weight) position makes its row NaN, as in the overlap
    losses, also where the row has no valid position and the pair is its cross-entropy alone."""
    x = torch.randn(2, 3, 2, 2)
    x[0, 1, 0, 0] = float("nan")
    labels = torch.randint(0, 3, (2, 2, 2))
    weight = None
    if empty == "ignored":
        labels[0] = IGNORE
    else:
        weight = torch.ones(2, 2, 2)
        weight[0] = 0.0
    with kernels(path):
        values = dice_ce_loss(x, labels, weight=weight, lambda_dice=0.0, ignore_index=IGNORE, reduction="none")
    assert torch.isnan(values[0]) and torch.isfinite(values[1])


@pytest.mark.parametrize("path", ["auto", "torch"])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_the_focal_sum_over_no_valid_position_keeps_a_nan_where_it_entered(mode, path):
    """Every position ignored: the sum of the focal terms is NaN from the NaN logit, and so is the
    gradient there (multiclass: at every class of its position), and nowhere else (each term is
    independent; the sum over nothing else is 0)."""
    channels = 1 if mode == "binary" else 3
    x = torch.randn(2, channels, 2, 2)
    x[0, 0, 0, 0] = float("nan")
    x.requires_grad_(True)
    labels = torch.full((2, 2, 2), IGNORE)
    with kernels(path):
        total = focal_loss(x, labels, mode=mode, ignore_index=IGNORE, reduction="sum")
        (grad,) = torch.autograd.grad(total, x)
    assert torch.isnan(total)
    assert torch.isnan(grad[0, :, 0, 0]).all()
    grad[0, :, 0, 0] = 0.0
    assert torch.all(grad == 0)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_the_fused_cpu_term_of_one_position_is_accurate_to_float32_precision(mode, gamma):
    """Position by position (one per call: the pass sums), the fused term is within a few float32 roundings
    of the float64 reference, also where its logarithm (log σ(x), log Σ e^x) takes the ends of the
    polynomial's range (|x| about 0.9 for σ): looser agreement would hide a wrong coefficient."""
    errors = []
    with kernels("auto"):
        for i, value in enumerate(np.linspace(-2.0, 2.0, 41, dtype=np.float32)):
            logits = np.array([value, -0.5 * value, 0.25], np.float32)[: 1 if mode == "binary" else 3].reshape(1, -1, 1)
            target = np.full((1, 1, 1), i % 2, np.float32) if mode == "binary" else np.full((1, 1), i % 3)
            ours = focal_loss(torch.as_tensor(logits), torch.as_tensor(target), mode=mode, gamma=gamma, reduction="sum")
            expected = reference.focal_loss(logits.astype(np.float64), target, "sum", mode=mode, gamma=gamma)
            errors.append(abs(ours.item() - expected) / max(1.0, abs(expected)))
    assert max(errors) < 1e-6


def test_the_fused_cpu_cross_entropy_of_a_confident_right_logit_is_e_to_the_minus_logit():
    """−log σ(x) = log(1 + e^−x) ≈ e^−x for a large logit with target 1: tiny but positive, to float32's relative
    precision; the rounding of 1 + e^−x must be compensated, not doubled (which gives −e^−x, a negative loss)."""
    logits = np.array([5.0, 10.0, 17.0, 25.0, 40.0, 60.0], np.float32)
    with kernels("auto"):
        for value in logits:
            ours = focal_loss(
                torch.tensor([[[value]]]), torch.ones(1, 1, 1), mode="binary", gamma=0.0, reduction="sum"
            ).item()
            assert ours == pytest.approx(np.log1p(np.exp(-np.float64(value))), rel=1e-5)


# Logit magnitudes over the whole range of the short logarithms of the binary passes (e^−|x| and
# σ(−|x|) from 1 down to 1e-35), normal float32 results only.
_MAGNITUDES = np.concatenate([[0.0, 1e-8, 1e-3], np.linspace(0.01, 80.0, 997)])
_BINARY_LOGITS = np.concatenate([_MAGNITUDES, -_MAGNITUDES]).astype(np.float32)


@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
def test_the_fused_binary_cross_entropy_keeps_float_precision_at_every_logit(t):
    """Position by position (a batch of one-position images, per image), max(x, 0) − t·x + log(1 + e^−|x|)
    of the stats pass: within a few float32 roundings of float64 also where it is far below 1 (a
    confident right answer), so a wrong coefficient of its logarithm shows."""
    x = torch.as_tensor(_BINARY_LOGITS).view(-1, 1, 1, 1)
    with kernels("auto"):
        got = dice_ce_loss(x, torch.full(x.shape, t), "binary", lambda_dice=0.0, reduction="none").double().numpy()
    xd = _BINARY_LOGITS.astype(np.float64)
    exact = np.maximum(xd, 0) - t * xd + np.log1p(np.exp(-np.abs(xd)))
    np.testing.assert_allclose(got, exact, rtol=4e-7, atol=0)


@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
def test_the_fused_binary_focal_gradient_keeps_float_precision_at_every_logit(t):
    """The focal gradient pass takes log(1 + e^−|x|) as −log(1 − σ(−|x|)) from the stored σ(−|x|):
    each position's gradient against float64 over the whole range, to float32's precision where it
    is a normal float. The float64 side is written so that it keeps its own relative precision
    (1 − p_t from σ(±x), the cross-entropy from softplus): 1 − σ(x) in float64 would not at x = 25."""
    logits = _BINARY_LOGITS.reshape(1, 1, -1)
    with kernels("auto"):
        x32 = torch.as_tensor(logits).requires_grad_(True)
        (got,) = torch.autograd.grad(focal_loss(x32, torch.full(logits.shape, t), mode="binary", reduction="sum"), x32)
    x = torch.as_tensor(logits, dtype=torch.float64).requires_grad_(True)
    miss = t * torch.sigmoid(-x) + (1 - t) * torch.sigmoid(x)  # 1 − p_t
    cross_entropy = t * F.softplus(-x) + (1 - t) * F.softplus(x)
    (exact,) = torch.autograd.grad((miss**2 * cross_entropy).sum(), x)
    normal = exact.abs() > 1e-36
    assert normal.sum() > 1000
    np.testing.assert_allclose(got[normal].double().numpy(), exact[normal].numpy(), rtol=1e-5, atol=0)
    np.testing.assert_allclose(got[~normal].double().numpy(), exact[~normal].numpy(), rtol=0, atol=2e-38)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_fused_multiclass_focal_loss_beyond_the_first_tile(gamma, smoothing):
    """Images of more positions than one tile of the C passes (256): each tile reads its own positions'
    logits, and the gradient pass recomputes the log-sum-exp of every tile from them."""
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(2, 3, 24, 25)).astype(np.float32)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 24, 25)))
    (value_32, grad_32), (value_64, grad_64) = float32_and_float64(
        focal_loss, logits, labels, mode="multiclass", gamma=gamma, label_smoothing=smoothing
    )
    assert value_32 == pytest.approx(value_64, rel=2e-6)
    np.testing.assert_allclose(grad_32, grad_64, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_a_confident_right_logit_adds_nothing_to_the_fused_focal_value(mode):
    """A logit margin of 20, where p_t rounds to 1 in float32, with the general power (γ = 1.5): the
    term is about e^(−2.5·20) ≈ 2e-22 in float64; the fused pass gives that or 0, not the cross-entropy
    e^(−20) ≈ 2e-9 that a modulator of 1 would leave."""
    if mode == "binary":
        logits, target = np.array([[[20.0, -20.0]]], np.float32), torch.tensor([[[1.0, 0.0]]])
    else:
        logits, target = np.array([[[20.0], [0.0]]], np.float32), torch.tensor([[0]])
    with kernels("auto"):
        value = focal_loss(tensor(logits, torch.float32), target, mode=mode, gamma=1.5, reduction="sum")
    assert 0.0 <= value.item() < 1e-15


@pytest.mark.parametrize("loss", ["focal", "dice_focal"])
@pytest.mark.parametrize("target", [0.0, 1.0])
def test_the_fused_binary_focal_gradient_of_confident_logits_keeps_its_relative_precision(loss, target):
    """Where σ(x) rounds to 1 (x up to 15 here), 1 − σ(x) = σ(−|x|) still has float32's relative precision
    in the gradient pass: the gradient of a confident right logit (about −3·e^(−3x) for γ = 2) matches
    float64 to 1e-4 of itself, as does that of a confident wrong one."""
    logits = np.array([-15.0, -10.0, -5.0, 5.0, 10.0, 15.0], np.float32).reshape(1, 1, 6)
    targets = torch.full((1, 1, 6), target)
    options = dict(reduction="sum") if loss == "focal" else {}
    function = focal_loss if loss == "focal" else dice_focal_loss
    (_, grad_32), (_, grad_64) = float32_and_float64(function, logits, targets, mode="binary", gamma=2.0, **options)
    np.testing.assert_allclose(grad_32, grad_64, rtol=1e-4, atol=0)


_TARGET_KINDS = {
    "multiclass labels": ("multiclass", 3, lambda rng: rng.integers(0, 3, (2, 5, 6))),
    "multiclass one-hot": ("multiclass", 3, lambda rng: np.eye(3)[rng.integers(0, 3, (2, 5, 6))].transpose(0, 3, 1, 2)),
    "binary labels": ("binary", 1, lambda rng: rng.integers(0, 2, (2, 1, 5, 6))),
    "binary soft": ("binary", 1, lambda rng: rng.uniform(0, 1, (2, 1, 5, 6))),
    "multilabel": ("multilabel", 3, lambda rng: rng.integers(0, 2, (2, 3, 5, 6)).astype(np.float64)),
}


@pytest.mark.parametrize("kind", sorted(_TARGET_KINDS))
@pytest.mark.parametrize("loss", ["focal", *sorted(PAIRS)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("per_image", [True, False])
def test_the_fused_cpu_term_matches_float64_for_every_target_kind(kind, loss, smoothing, per_image):
    """Every kernel of the fused CPU term, alone and in a pair (each target kind, with and without label
    smoothing, which take different branches), against the portable path in float64: value and
    gradient, the overlap and the term both weighing in."""
    mode, classes, make_target = _TARGET_KINDS[kind]
    rng = np.random.default_rng(sorted(_TARGET_KINDS).index(kind))
    logits = rng.normal(size=(2, classes, 5, 6)).astype(np.float32)
    target = torch.as_tensor(make_target(rng))
    if loss == "focal":
        function, options = focal_loss, dict(mode=mode, label_smoothing=smoothing, gamma=1.5)
    else:
        function, options = (
            PAIRS[loss],
            dict(mode=mode, label_smoothing=smoothing, per_image=per_image, lambda_dice=0.7),
        )
    (value_32, grad_32), (value_64, grad_64) = float32_and_float64(function, logits, target, **options)
    assert value_32 == pytest.approx(value_64, rel=2e-6)
    np.testing.assert_allclose(grad_32, grad_64, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("loss", ["focal", "dice_focal"])
@pytest.mark.parametrize("large", [120.0, 300.0, 1e4])
@pytest.mark.parametrize("gamma, smoothing", [(1.5, 0.1), (0.0, 0.0), (2.0, 0.0), (0.0, 0.1)])
def test_the_fused_multiclass_focal_loss_of_a_dominant_class(loss, large, gamma, smoothing):
    """The log-sum-exp of each position is taken relative to its largest logit: classes 1 and 2 far above
    class 0 and one apart (so that both of their log p count), or class 0 far above the rest. A shift
    that missed the largest class would overflow e^(x − m), and log p = x − (max + log Σ e^(x − max))
    would round at the scale of the logits (1e-3 at 1e4): it is (x − max) − log Σ e^(x − max). With
    label smoothing every class's log p is read. Value and gradient against float64."""
    logits = np.zeros((1, 3, 2, 5), np.float32)
    logits[:, 1, 0] = large
    logits[:, 2, 0] = large - 1.0
    logits[:, 0, 1] = large
    logits[:, 2, 1, ::2] = -large
    labels = torch.tensor([[[0, 1, 2, 0, 1], [2, 1, 0, 0, 2]]])
    options = dict(mode="multiclass", gamma=gamma, label_smoothing=smoothing)
    function = focal_loss if loss == "focal" else dice_focal_loss
    (value_32, grad_32), (value_64, grad_64) = float32_and_float64(function, logits, labels, **options)
    assert np.isfinite(value_32) and np.isfinite(grad_32).all()
    assert value_32 == pytest.approx(value_64, rel=1e-5)
    np.testing.assert_allclose(grad_32, grad_64, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss", ["focal", "dice_focal"])
@pytest.mark.parametrize("gamma", [0.5, 1.5, 2.0])
@pytest.mark.parametrize("path", ["auto", "torch"])
def test_the_binary_focal_gradient_of_logits_whose_sigmoid_is_subnormal_is_finite(loss, gamma, path):
    """Logits of magnitude 90 to 103: σ(−|x|) and 1 − p_t are subnormal in float32. The gradient's
    factor p·(1 − p)/(1 − p_t) is at most 1; taken as 1/(1 − p_t) first, it overflowed to inf and met a
    product that underflowed to 0 (NaN for a finite input)."""
    logits = np.array([-103.0, -99.65, -90.0, 90.0, 99.65, 103.0], np.float32).reshape(1, 1, 6)
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0]).reshape(1, 1, 6)
    options = dict(reduction="sum") if loss == "focal" else {}
    function = focal_loss if loss == "focal" else dice_focal_loss
    (_, grad_32), (_, grad_64) = float32_and_float64(
        function, logits, targets, path=path, mode="binary", gamma=gamma, **options
    )
    assert np.isfinite(grad_32).all()
    np.testing.assert_allclose(grad_32, grad_64, rtol=1e-4, atol=1e-30)


@pytest.mark.parametrize("loss", ["focal", *sorted(PAIRS)])
@pytest.mark.parametrize("class_weights", [[1.0, 2.0, 1.0], [1.0, 1.0, 0.5]])
def test_the_fused_multiclass_term_with_one_class_weighted_apart(loss, class_weights):
    """The fused pass takes one factor for every class when all class weights are equal; a single class
    weighted apart (the second or the last) must be seen. Value and gradient against float64."""
    rng = np.random.default_rng(21)
    logits = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 5, 6)))
    function = focal_loss if loss == "focal" else PAIRS[loss]
    (value_32, grad_32), (value_64, grad_64) = float32_and_float64(
        function, logits, labels, mode="multiclass", class_weights=class_weights
    )
    assert value_32 == pytest.approx(value_64, rel=2e-6)
    np.testing.assert_allclose(grad_32, grad_64, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("loss_function", [focal_loss, dice_ce_loss, dice_focal_loss])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_forward_mode_tangents_have_the_dtype_of_the_loss(loss_function, dtype):
    """torch.func.jvp and jacfwd: the mean over images divided a 0-dim sum by a Python float, whose
    forward-mode rule in PyTorch gives a float64 tangent for a float32 loss."""
    x, labels = torch.randn(2, 3, 2, 2, dtype=dtype), torch.randint(0, 3, (2, 2, 2))
    value, tangent = torch.func.jvp(lambda v: loss_function(v, labels), (x,), (torch.ones_like(x),))
    assert tangent.dtype == value.dtype
    assert torch.func.jacfwd(lambda v: loss_function(v, labels))(x).dtype == value.dtype


@pytest.mark.parametrize("name", ["FocalLoss", "DiceCELoss", "DiceFocalLoss"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compiles_with_fullgraph(name, dtype):
    """torch.compile(fullgraph=True) traces the term (its NaN mark and float16 upcast are Functions
    without a forward-mode rule under the compiler, which cannot trace one that has it), without
    Dynamo's warning about an ``lru_cache`` it traces through."""
    import losses.torch

    torch._dynamo.reset()
    torch._dynamo.utils.warn_once_cache.clear()  # Dynamo warns once per process
    criterion = getattr(losses.torch, name)(ignore_index=2)
    compiled = torch.compile(criterion, fullgraph=True, backend="aot_eager")
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4)).to(dtype).requires_grad_()
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = compiled(logits, labels)
    # No cache the compiler would trace through, with its "Silent incorrectness" warning to the user.
    assert not [w for w in caught if "lru_cache" in str(w.message)]
    (grad,) = torch.autograd.grad(loss, logits)
    expected = criterion(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    torch._dynamo.reset()
