"""The general form of the overlap losses (losses/_overlap.py): its hand-written derivative against
autograd of its own value, and the C formula of the fused CPU path against that definition, for
every member and option; NaN rows; the options' checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from losses._overlap import MEMBERS, PRED_SUM, NumpyOps, OverlapOptions, overlap_loss
from losses.torch._ops import TorchOps


@st.composite
def member_options(draw):
    """(member name, options) over every option that changes the general form."""
    name = draw(st.sampled_from(sorted(MEMBERS)))
    accepted = MEMBERS[name].accepts()
    smooth_nr = draw(st.sampled_from([0.0, 1e-5, 1.0]))
    options = dict(
        smooth_nr=smooth_nr,
        smooth_dr=draw(st.sampled_from([v for v in (0.0, 1e-5, 1.0) if v >= smooth_nr])),
        soft_labels=draw(st.booleans()),
    )
    choices = dict(
        squared=st.booleans(),
        log_loss=st.booleans(),
        empty_target=st.sampled_from(["smooth", "exclude", "penalize"]),
        average=st.sampled_from(["macro", "micro"]),
        alpha=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
        beta=st.sampled_from([0.2, 0.7, 1.0]),
        gamma=st.sampled_from([0.5, 0.75, 1.0, 2.0]),
        weight_type=st.sampled_from(["square", "simple", "uniform"]),
    )
    for key, strategy in choices.items():
        if key in accepted:
            options[key] = draw(strategy)
    return name, options


def random_stats(seed):
    """(S, C, 7) sums with the corner cases: empty targets, an empty row, subnormal sums, no valid position."""
    rng = np.random.default_rng(seed)
    stats = rng.uniform(0.0, 5.0, size=(4, 4, 7))
    stats[rng.uniform(size=(4, 4)) < 0.3, 2] = 0.0  # empty targets
    stats[0, 1] = 0.0  # nothing at all: a zero denominator without smoothing
    stats[1, 3] = 1e-35  # subnormal in float32: the denominator is clamped without smoothing
    stats[2, :, 6] = 0.0 if rng.uniform() < 0.5 else stats[2, :, 6]  # no valid position
    stats[3, :, 2] = 0.0  # no class present in the image
    return stats


@given(member_options(), st.integers(0, 2**32 - 1))
def test_the_hand_written_derivative_matches_autograd_of_the_value(case, seed):
    name, options = case
    options = OverlapOptions.create(name, **options)
    stats = random_stats(seed)
    weights = np.array([1.0, 0.0, 2.5, 0.5])  # class 1 unselected
    leaf = torch.tensor(stats, requires_grad=True)
    expected = overlap_loss(TorchOps, leaf, torch.tensor(weights), options.form)
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    loss, grad = overlap_loss(NumpyOps, stats, weights, options.form, with_grad=True)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, expected_grad.numpy(), rtol=1e-9, atol=1e-12)


def test_negative_control_a_denominator_held_constant_fails_the_comparison():
    """Autograd of a formula whose Σp is held constant in the denominator (the seed article's kind
    of mistake) must not match the hand-written derivative."""
    stats = np.random.default_rng(6).uniform(0.5, 5.0, size=(2, 3, 7))
    weights, options = np.ones(3), OverlapOptions.create()
    leaf = torch.tensor(stats, requires_grad=True)
    held = torch.cat([leaf[..., :PRED_SUM], leaf[..., PRED_SUM : PRED_SUM + 1].detach(), leaf[..., PRED_SUM + 1 :]], -1)
    (wrong_grad,) = torch.autograd.grad(overlap_loss(TorchOps, held, torch.tensor(weights), options.form).sum(), leaf)
    _, grad = overlap_loss(NumpyOps, stats, weights, options.form, with_grad=True)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(grad, wrong_grad.numpy(), rtol=1e-10, atol=1e-12)


# The formula of the fused CPU path (losses/torch/_kernels/cpu_formula.c) against this definition.


def c_formula():
    from losses.torch._kernels import cpu

    if cpu.library() is None:
        pytest.skip(f"the C library is not available: {cpu.build_error()}")
    return cpu.overlap_formula


@given(member_options(), st.integers(0, 2**32 - 1))
def test_the_c_formula_of_the_fused_cpu_path_matches_the_definition(case, seed):
    name, options = case
    form = OverlapOptions.create(name, **options).form
    stats = random_stats(seed)
    weights = (1.0, 0.0, 2.5, 0.5)  # class 1 unselected
    expected_loss, expected_grad = overlap_loss(NumpyOps, stats, np.array(weights), form, with_grad=True)
    loss, grad = c_formula()(stats, weights, form)
    # The same operations in the same order: equal but for the last bits of pow and log.
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, options", [("dice", {}), ("dice", {"average": "micro"}), ("generalized_dice", {})])
def test_the_c_formula_with_many_classes_and_nan_rows(name, options):
    """70 classes (NumPy adds long rows pairwise), and NaN rows as the fused path makes them."""
    rng = np.random.default_rng(11)
    stats = rng.uniform(0.0, 5.0, size=(5, 70, 7))
    stats[rng.uniform(size=(5, 70)) < 0.2, 2] = 0.0
    stats[2] = np.nan
    weights = tuple(rng.uniform(0.0, 1.0, size=70))
    form = OverlapOptions.create(name, **options).form
    expected_loss, expected_grad = overlap_loss(NumpyOps, stats, np.array(weights), form, with_grad=True)
    loss, grad = c_formula()(stats, weights, form)
    assert np.isnan(loss[2]) and np.isnan(grad[2]).all()
    assert np.isfinite(np.delete(loss, 2)).all() and np.isfinite(np.delete(grad, 2, axis=0)).all()
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("weight_type", ["square", "simple"])
def test_the_c_formula_takes_the_smallest_target_sum_among_the_selected_classes_alone(weight_type):
    """Generalized Dice's weights (G_min/G_c)^q: G_min over the selected classes present. An unselected
    class (weight 0) with the smallest target sum changes nothing, and a row where only unselected
    classes are present has no class present (weights 0: the loss 1 − smooth_nr/smooth_dr)."""
    stats = random_stats(5)
    stats[:, :, 2] = [0.5, 3.0, 4.0, 2.0]  # class 0 has the smallest target sum
    stats[3, :, 2] = [0.5, 0.0, 0.0, 0.0]  # and in row 3 it alone is present
    weights = (0.0, 1.0, 2.5, 0.5)  # class 0 is not selected
    form = OverlapOptions.create("generalized_dice", weight_type=weight_type, smooth_nr=0.5, smooth_dr=1.0).form
    expected_loss, expected_grad = overlap_loss(NumpyOps, stats, np.array(weights), form, with_grad=True)
    assert expected_loss[3] == 0.5
    loss, grad = c_formula()(stats, weights, form)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("log_loss", [False, True])
@pytest.mark.parametrize("name, options", [("dice", {}), ("tversky", {"alpha": 0.0, "beta": 0.7})])
def test_the_c_formula_of_a_zero_denominator(name, options, log_loss):
    """No smoothing and a class with a denominator of 0: its score is 1 and the derivative of its
    numerator 0. With α = 0 (Tversky) and soft labels, the class below predicts Σp = 2 where its target
    is empty, so its numerator ½(Σp + Σg − Σ|p − g|) still moves with Σp."""
    stats = random_stats(8)
    stats[:, 1] = 0.0  # nothing predicted, nothing to find
    stats[:, 2, :6] = [0.0, 2.0, 0.0, 1.5, 0.0, 2.0]  # Σp = Σ|p − g| = 2, empty target
    options = dict(options, smooth_nr=0.0, smooth_dr=0.0, soft_labels=True)
    if log_loss and name == "dice":
        options["log_loss"] = True
    elif log_loss:
        options["gamma"] = 0.5  # focal Tversky's power transform instead
        name = "focal_tversky"
    form = OverlapOptions.create(name, **options).form
    weights = (1.0, 1.0, 2.5, 0.5)
    expected_loss, expected_grad = overlap_loss(NumpyOps, stats, np.array(weights), form, with_grad=True)
    loss, grad = c_formula()(stats, weights, form)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_the_c_formula_comparison_catches_a_missing_term():
    """Negative control: the comparison above fails for a derivative without the penalty's ∂/∂Σp."""
    stats = random_stats(3)
    weights = (1.0, 0.0, 2.5, 0.5)
    form = OverlapOptions.create("dice", empty_target="penalize").form
    _, grad = c_formula()(stats, weights, form)
    leaf = torch.tensor(stats, requires_grad=True)
    held = torch.cat([leaf[..., :PRED_SUM], leaf[..., PRED_SUM : PRED_SUM + 1].detach(), leaf[..., PRED_SUM + 1 :]], -1)
    (wrong_grad,) = torch.autograd.grad(overlap_loss(TorchOps, held, torch.tensor(weights), form).sum(), leaf)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(grad, wrong_grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "name, options",
    [
        ("dice", {}),
        ("dice", {"log_loss": True, "squared": True}),
        ("dice", {"empty_target": "penalize"}),
        ("jaccard", {"average": "micro"}),
        ("tversky", {"empty_target": "exclude", "soft_labels": True}),
        ("focal_tversky", {}),
        ("generalized_dice", {}),
    ],
)
def test_a_nan_row_gives_a_nan_loss_and_derivative_and_finite_values_elsewhere(name, options):
    stats = np.random.default_rng(7).uniform(0.5, 5.0, size=(3, 2, 7))
    stats[1] = np.nan
    options = OverlapOptions.create(name, **options)
    loss, grad = overlap_loss(NumpyOps, stats, np.ones(2), options.form, with_grad=True)
    expected = overlap_loss(TorchOps, torch.tensor(stats), torch.ones(2, dtype=torch.float64), options.form)
    assert np.isnan(loss[1]) and np.isnan(expected[1].item())
    assert np.isnan(grad[1]).all()
    assert np.isfinite(loss[[0, 2]]).all() and np.isfinite(grad[[0, 2]]).all()
    np.testing.assert_allclose(loss, expected.numpy(), rtol=1e-12)


def sums_of(seed):
    """(S, C, 7) sums of real probabilities and targets, some classes absent from the target."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=(3, 4, 50))
    g = (rng.uniform(size=(3, 4, 50)) < 0.3).astype(float)
    g[0, 2] = 0.0  # a class absent from one image
    g[1] = 0.0  # an image with no class at all
    return np.stack(
        [
            (p * g).sum(-1),
            p.sum(-1),
            g.sum(-1),
            (p * p).sum(-1),
            (g * g).sum(-1),
            np.abs(p - g).sum(-1),
            np.full((3, 4), 50.0),
        ],
        -1,
    )


def test_members_reduce_to_one_another_where_they_should():
    """Tversky at α = β = ½ is Dice with the smoothing doubled; at α = β = 1 it is Jaccard; focal
    Tversky at γ = 1 is Tversky; generalized Dice with uniform weights is micro Dice (also for an
    image without any class: uniform weights do not depend on the target)."""
    stats = sums_of(3)
    weights = np.array([1.0, 0.5, 2.0, 1.0])

    def value(name, **options):
        return overlap_loss(NumpyOps, stats, weights, OverlapOptions.create(name, **options).form)

    np.testing.assert_allclose(
        value("tversky", smooth_nr=0.5, smooth_dr=0.5), value("dice", smooth_nr=1.0, smooth_dr=1.0)
    )
    np.testing.assert_allclose(value("tversky", alpha=1.0, beta=1.0), value("jaccard"))
    np.testing.assert_allclose(value("focal_tversky", alpha=0.5, beta=0.5, gamma=1.0), value("tversky"))
    np.testing.assert_allclose(value("generalized_dice", weight_type="uniform"), value("dice", average="micro"))
    assert not np.allclose(value("generalized_dice"), value("dice", average="micro"))


def test_generalized_weights_of_absent_classes_and_empty_images():
    """A class absent from the target gets the largest weight of the present ones (no infinity);
    an image with no class present only its smoothing, 1 − s_nr / s_dr."""
    stats = np.zeros((2, 3, 7))
    stats[0, 0] = [2.0, 4.0, 4.0, 0, 0, 0, 10]  # present, G = 4
    stats[0, 1] = [0.0, 3.0, 0.0, 0, 0, 0, 10]  # absent from the target, predicted
    stats[0, 2] = [1.0, 2.0, 2.0, 0, 0, 0, 10]  # present, G = 2: the largest weight 1/4
    stats[1, :, 1] = 1.0  # nothing present at all
    form = OverlapOptions.create("generalized_dice", smooth_nr=1e-5, smooth_dr=1e-3).form
    loss, grad = overlap_loss(NumpyOps, stats, np.ones(3), form, with_grad=True)
    w = np.array([1 / 16, 1 / 4, 1 / 4])
    numerator = 2 * (w * stats[0, :, 0]).sum() + 1e-5
    denominator = (w * (stats[0, :, 1] + stats[0, :, 2])).sum() + 1e-3
    np.testing.assert_allclose(loss[0], 1 - numerator / denominator, rtol=1e-12)
    np.testing.assert_allclose(loss[1], 1 - 1e-5 / 1e-3, rtol=1e-12)
    assert np.isfinite(grad).all() and np.all(grad[1] == 0)


@pytest.mark.parametrize(
    "name, options, error, text",
    [
        ("tversky", {"alpha": -0.1}, ValueError, "alpha must be >= 0"),
        ("tversky", {"alpha": 0.0, "beta": 0.0}, ValueError, "alpha and beta must not both be 0"),
        ("focal_tversky", {"gamma": 0.0}, ValueError, "gamma must be > 0"),
        ("focal_tversky", {"gamma": float("nan")}, ValueError, "gamma must be finite"),
        ("generalized_dice", {"weight_type": "cubic"}, ValueError, "weight_type must be one of"),
        (
            "generalized_dice",
            {"empty_target": "exclude"},
            TypeError,
            "GeneralizedDiceLoss takes no option 'empty_target'",
        ),
        ("tversky", {"squared": True}, TypeError, "TverskyLoss takes no option 'squared'"),
        ("focal_tversky", {"log_loss": True}, TypeError, "FocalTverskyLoss takes no option 'log_loss'"),
        ("dice", {"alpha": 0.3}, TypeError, "DiceLoss takes no option 'alpha'"),
        ("dice", {"average": "weighted"}, ValueError, "average must be one of 'macro', 'micro'"),
    ],
)
def test_bad_options_name_the_argument(name, options, error, text):
    with pytest.raises(error, match=text):
        OverlapOptions.create(name, **options)


def test_every_member_takes_the_common_options_and_its_own():
    for name, member in MEMBERS.items():
        options = OverlapOptions.create(name)
        assert set(options.to_dict()) == set(member.accepts())


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_the_defaults_are_those_of_the_documented_signatures(name):
    """The Keras functions (``dice_loss(y_true, y_pred, **options)``) and ``OverlapOptions.create`` take
    the defaults of OverlapOptions and of the member: they must be those the PyTorch signatures document."""
    import inspect

    from losses.torch import functional

    parameters = inspect.signature(getattr(functional, f"{name}_loss")).parameters
    documented = {key: parameters[key].default for key in MEMBERS[name].accepts()}
    assert OverlapOptions.create(name).to_dict() == documented


@pytest.mark.parametrize("smooth_nr, smooth_dr", [(1e-5, 0.0), (0.5, 0.0), (1.0, 1e-5), (3.0, 2.9)])
def test_numerator_smoothing_above_the_denominators_is_an_error(smooth_nr, smooth_dr):
    """With smooth_nr > smooth_dr an empty image scores smooth_nr / smooth_dr > 1: a negative loss."""
    with pytest.raises(ValueError, match=r"smooth_nr must be <= smooth_dr \(got smooth_nr="):
        OverlapOptions.create("dice", smooth_nr=smooth_nr, smooth_dr=smooth_dr)
    assert OverlapOptions.create("dice", smooth_nr=0.0, smooth_dr=0.0).form.smooth_dr == 0.0  # no smoothing at all
    assert OverlapOptions.create("dice", smooth_nr=smooth_dr, smooth_dr=smooth_dr).form.smooth_nr == smooth_dr


def test_only_a_denominator_below_the_documented_minimum_is_clamped():
    """Without smoothing, a positive denominator below 1e-30 is clamped there (the score stays finite
    in float32); one at or above 1e-30 is not."""
    form = OverlapOptions.create("dice", smooth_nr=0.0, smooth_dr=0.0).form
    stats = np.zeros((3, 1, 7))
    for row, (intersection, total) in enumerate([(0.5e-30, 1.5e-30), (0.25e-30, 1e-30), (0.1e-30, 0.4e-30)]):
        stats[row, 0, [0, 1, 2]] = intersection, total / 2, total / 2
    loss, grad = overlap_loss(NumpyOps, stats, np.ones(1), form, with_grad=True)
    np.testing.assert_allclose(loss, [1 - 1.0 / 1.5, 0.5, 1 - 0.2 / 1.0], rtol=1e-12)
    # Unclamped rows: ∂(1 − 2I/D)/∂P = 2I/D²; the clamped row's denominator is a constant.
    np.testing.assert_allclose(grad[:2, 0, 1], [1.0 / 1.5 / 1.5e-30, 0.5 / 1e-30], rtol=1e-12)
    assert grad[2, 0, 1] == 0.0


@pytest.mark.parametrize("weight_type, power", [("square", 2), ("simple", 1), ("uniform", 0)])
def test_generalized_weights_are_the_inverse_target_sums_to_the_power_of_the_weight_type(weight_type, power):
    """Sudre et al.'s weights w_c·G_c^-q (the smoothing is not weighted), with G_c = 2, 4, 8, 16."""
    stats = sums_of(5)[:1]  # one image, every class present
    stats[0, :, 2] = [2.0, 4.0, 8.0, 16.0]
    class_weights = np.array([1.0, 0.5, 0.25, 1.0])
    w = class_weights / stats[0, :, 2] ** power
    numerator = 2 * (w * stats[0, :, 0]).sum() + 1e-5
    denominator = (w * (stats[0, :, 1] + stats[0, :, 2])).sum() + 1e-5
    form = OverlapOptions.create("generalized_dice", weight_type=weight_type).form
    loss = overlap_loss(NumpyOps, stats, class_weights, form)
    np.testing.assert_allclose(loss, [1 - numerator / denominator], rtol=1e-12)
