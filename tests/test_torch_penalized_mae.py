"""PenalizedMAELoss / penalized_mae in PyTorch: values, hand-written gradients, transforms, errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from penalized_mae_cases import MARGIN, penalized_mae_cases
from losses.testing import GradientMismatch, check_gradient
from losses.torch import PenalizedMAELoss
from losses.torch._penalized_mae import _PenalizedMAEFunction
from losses.torch.functional import penalized_mae

REDUCTIONS = ("mean", "sum", "none")


cases = penalized_mae_cases


def t64(array):
    return torch.tensor(array, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


@given(cases(min_delta=0.0), st.sampled_from(REDUCTIONS), st.booleans())
def test_value_matches_reference(case, reduction, requires_grad):
    prediction, target, delta, penalty = case
    x = t64(prediction).requires_grad_(requires_grad)  # with and without the autograd.Function
    loss = penalized_mae(x, t64(target), delta, penalty, reduction)
    expected = reference.penalized_mae(prediction, target, delta, penalty, reduction)
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@given(cases(), st.sampled_from(REDUCTIONS))
def test_float32_value_and_gradient_match_reference(case, reduction):
    prediction, target, delta, penalty = case
    x = torch.tensor(prediction, dtype=torch.float32, requires_grad=True)
    t = torch.tensor(target, dtype=torch.float32)
    loss = penalized_mae(x, t, delta, penalty, reduction)
    assert loss.dtype == torch.float32
    loss.sum().backward()
    expected = reference.penalized_mae(x.detach().double().numpy(), t.double().numpy(), delta, penalty, reduction)
    grad = reference.penalized_mae_grad(x.detach().double().numpy(), t.double().numpy(), delta, penalty, reduction)
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_float32_reduction_is_accurate_on_large_inputs(reduction):
    # A naive float32 accumulation (as torch.linalg.vector_norm does on the CPU) is off by ~1e-4 here.
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(2**20, generator=gen) * 3, torch.randn(2**20, generator=gen)
    loss = penalized_mae(x.requires_grad_(), t, reduction=reduction)
    expected = reference.penalized_mae(x.detach().double().numpy(), t.double().numpy(), reduction=reduction)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)


def test_known_values():
    prediction = torch.tensor([0.5, -2.0, 3.0, 0.0])
    target = torch.zeros(4)
    # |e| + 0.5 max(|e| - 1, 0)^2: 0.5, 2 + 0.5, 3 + 2, 0
    assert torch.equal(penalized_mae(prediction, target, reduction="none"), torch.tensor([0.5, 2.5, 5.0, 0.0]))
    assert penalized_mae(prediction, target, reduction="sum").item() == 8.0
    assert penalized_mae(prediction, target).item() == 2.0
    # delta = 2, penalty = 1: only 3.0 exceeds it, by 1
    assert penalized_mae(prediction, target, 2.0, 1.0, "sum").item() == 0.5 + 2.0 + 4.0


def test_berhu_equivalence():
    from losses._penalized_mae import berhu_penalty

    e = torch.linspace(-4, 4, 81, dtype=torch.float64)
    c = 0.7
    berhu = torch.where(e.abs() <= c, e.abs(), (e**2 + c**2) / (2 * c))
    loss = penalized_mae(e, torch.zeros_like(e), delta=c, penalty=berhu_penalty(c), reduction="none")
    torch.testing.assert_close(loss, berhu)


def test_berhu_penalty_needs_a_positive_finite_delta():
    from losses._penalized_mae import berhu_penalty

    assert berhu_penalty(2) == 0.25
    for bad in (0.0, -0.5, float("inf")):
        with pytest.raises(ValueError, match="delta must be"):
            berhu_penalty(bad)
    with pytest.raises(TypeError, match="delta must be a real number"):
        berhu_penalty("0.5")


def test_module_matches_functional_and_repr():
    criterion = PenalizedMAELoss(delta=0.5, penalty=2, reduction="sum")
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.equal(criterion(x, y), penalized_mae(x, y, 0.5, 2.0, "sum"))
    assert repr(criterion) == "PenalizedMAELoss(delta=0.5, penalty=2.0, reduction='sum')"
    assert PenalizedMAELoss().delta == 1.0 and PenalizedMAELoss().penalty == 0.5
    assert PenalizedMAELoss().reduction == "mean"


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,)])
def test_empty_input_is_the_reduction_of_nothing(shape):
    """As in torch.nn.functional: the mean of nothing is NaN, the sum 0; the gradient is empty."""
    for reduction, expected in (("mean", float("nan")), ("sum", 0.0)):
        x = torch.zeros(shape, requires_grad=True)
        loss = penalized_mae(x, torch.zeros(shape), reduction=reduction)
        torch.testing.assert_close(loss, torch.tensor(expected), equal_nan=True)
        loss.backward()
        assert x.grad.shape == shape
    assert penalized_mae(torch.zeros(shape), torch.zeros(shape), reduction="none").shape == shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(dtype):
    x = (torch.randn(4, 5) * 3).to(dtype).requires_grad_()
    t = torch.randn(4, 5).to(dtype)
    loss = penalized_mae(x, t)
    assert loss.dtype == torch.float32
    loss.backward()
    assert x.grad.dtype == dtype
    expected = reference.penalized_mae(x.detach().double().numpy(), t.double().numpy())
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)


def test_extreme_finite_inputs_give_no_nan():
    x = torch.tensor([3e38, -3e38, 1e-45, 0.0, 1e20], requires_grad=True)
    for reduction in REDUCTIONS:
        loss = penalized_mae(x, torch.zeros(5), reduction=reduction)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        assert not torch.isnan(loss).any() and not torch.isnan(grad).any()
        assert torch.isfinite(grad).all()


def test_integer_target_and_non_contiguous_input():
    x = torch.randn(4, 3, dtype=torch.float64).t().requires_grad_()  # (3, 4), not contiguous
    t = torch.randint(-2, 3, (3, 4))
    loss = penalized_mae(x, t, reduction="sum")
    loss.backward()
    np.testing.assert_allclose(loss.item(), reference.penalized_mae(x.detach().numpy(), t.numpy(), reduction="sum"))
    expected_grad = reference.penalized_mae_grad(x.detach().numpy(), t.numpy(), reduction="sum")
    np.testing.assert_allclose(x.grad.numpy(), expected_grad)


# ---------------------------------------------------------------------------------------------
# Gradients: finite differences, kinks, negative control
# ---------------------------------------------------------------------------------------------


def weighted(fn, reduction):
    """A scalar from the loss; "none" is weighted so that a wrong use of the upstream gradient shows."""
    if reduction == "none":
        return lambda x, t, w: (fn(x, t) * w).sum()
    return lambda x, t, w: fn(x, t) * w.sum()


@given(cases(), st.sampled_from(REDUCTIONS), st.sampled_from([0, 1]))
def test_gradient_matches_finite_differences(case, reduction, argnum):
    prediction, target, delta, penalty = case
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=prediction.shape)
    fn = weighted(lambda x, t: penalized_mae(x, t, delta, penalty, reduction), reduction)
    check_gradient(fn, prediction, target, w, argnum=argnum, framework="torch")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck(reduction):
    gen = torch.Generator().manual_seed(0)
    # errors in (-4, 4), none within 1e-2 of the kinks 0 and +-delta
    e = torch.rand(3, 5, generator=gen, dtype=torch.float64) * 3.9 + 0.05
    e = torch.where((e - 1.3).abs() < 0.02, e + 0.05, e) * torch.where(torch.rand(3, 5, generator=gen) < 0.5, -1, 1)
    t = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    x = (t + e).requires_grad_()
    t.requires_grad_()

    def fn(x, t):
        return penalized_mae(x, t, 1.3, 0.7, reduction)

    assert torch.autograd.gradcheck(fn, (x, t))
    assert torch.autograd.gradgradcheck(fn, (x, t))


def test_second_derivative_is_documented_curvature():
    e = torch.tensor([-3.0, -0.5, 0.25, 2.0, 5.0], dtype=torch.float64)
    zeros = torch.zeros(5, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(lambda x: penalized_mae(x, zeros, 1.0, 0.5), e)
    # 2·penalty·[|e| > delta] / N on the diagonal
    expected = torch.diag(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64)) / 5
    torch.testing.assert_close(hessian, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("delta", [0.0, 0.5, 2.0])
def test_gradient_at_kinks_is_documented_subgradient(reduction, delta):
    # e = 0 -> 0; |e| = delta -> sign(e) (both one-sided derivatives agree there)
    target = torch.tensor([1.0, -2.0, 0.5, 0.5, 3.0], dtype=torch.float64)
    x = (target + torch.tensor([0.0, 0.0, delta, -delta, 0.0], dtype=torch.float64)).requires_grad_()
    t = target.clone().requires_grad_()
    loss = penalized_mae(x, t, delta, 1.5, reduction)
    loss.sum().backward()
    scale = 1 / 5 if reduction == "mean" else 1.0
    expected = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0], dtype=torch.float64) * scale
    if delta == 0.0:
        expected[2:4] = 0.0  # e = 0 there too
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    torch.testing.assert_close(t.grad, -expected, rtol=0, atol=0)


class SeedCustomMAELoss(torch.autograd.Function):
    """The backward of the article this package started from (Scenario 3), kept as a negative control:
    it drops the 1/N of the mean and the linear term (and the sign) past the threshold."""

    @staticmethod
    def forward(ctx, y_true, y_pred):
        abs_diff = torch.abs(y_true - y_pred)
        quadratic_penalty = torch.where(abs_diff > 1, 0.5 * (abs_diff - 1) ** 2, torch.zeros_like(abs_diff))
        loss = torch.mean(abs_diff + quadratic_penalty)
        ctx.save_for_backward(y_true, y_pred, abs_diff)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        y_true, y_pred, abs_diff = ctx.saved_tensors
        grad_abs_diff = torch.where(abs_diff > 1, abs_diff - 1, torch.sign(y_pred - y_true))
        grad_input = grad_output * grad_abs_diff
        return -grad_input, grad_input


def seed_loss(prediction, target):
    return SeedCustomMAELoss.apply(target, prediction)


def test_negative_control_seed_backward_fails_the_same_checks():
    prediction = np.array([0.4, -0.3, 2.5, -3.0])
    target = np.zeros(4)
    # The seed's forward is right: it equals ours with the defaults ...
    np.testing.assert_allclose(
        seed_loss(t64(prediction), t64(target)).item(), penalized_mae(t64(prediction), t64(target)).item()
    )
    # ... while its backward fails the finite-difference check that ours passes.
    check_gradient(penalized_mae, prediction, target, framework="torch")
    with pytest.raises(GradientMismatch):
        check_gradient(seed_loss, prediction, target, framework="torch")
    x = t64(prediction).requires_grad_()
    assert not torch.autograd.gradcheck(lambda x: seed_loss(x, t64(target)), (x,), raise_exception=False)
    # A single element past the threshold: no 1/N to forget, the dropped linear term alone fails.
    with pytest.raises(GradientMismatch):
        check_gradient(seed_loss, np.array([2.5]), np.zeros(1), framework="torch")


@given(cases())
@settings(max_examples=10)
def test_negative_control_fails_at_generated_points(case):
    prediction, target, _, _ = case
    if prediction.size == 1 and abs(prediction - target).item() < 1 + MARGIN:
        return  # one element inside the threshold: there the seed's gradient happens to be right
    with pytest.raises(GradientMismatch):
        check_gradient(seed_loss, prediction, target, framework="torch")


# ---------------------------------------------------------------------------------------------
# Memory, transforms, compile
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def portable_path(monkeypatch):
    """Tests of the PyTorch autograd.Function itself, whatever LOSSES_KERNELS says."""
    monkeypatch.setenv("LOSSES_KERNELS", "torch")


@pytest.mark.usefixtures("portable_path")
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_input_sized_tensor_is_saved_for_backward(reduction):
    x = torch.randn(8, 16, requires_grad=True)
    t = torch.randn(8, 16, requires_grad=True)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = penalized_mae(x, t, reduction=reduction)
    assert [s.shape for s in saved] == [x.shape]
    loss.sum().backward()
    assert x.grad is not None and t.grad is not None


@pytest.mark.usefixtures("portable_path")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 4)])
def test_portable_path_matches_reference(reduction, shape):
    # The path of torch.compile, torch.func transforms and machines without a C compiler.
    rng = np.random.default_rng(0)
    prediction, target = rng.normal(0, 2, shape), rng.normal(0, 2, shape)
    prediction.flat[0] = target.flat[0] + 1.75  # past delta: the quadratic part counts
    for requires_grad in (False, True):
        x = t64(prediction).requires_grad_(requires_grad)
        loss = penalized_mae(x, t64(target), 0.5, 0.75, reduction)
        expected = reference.penalized_mae(prediction, target, 0.5, 0.75, reduction)
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    loss.sum().backward()
    expected = reference.penalized_mae_grad(prediction, target, 0.5, 0.75, reduction)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_torch_func_grad_and_vmap():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64) * 3
    t = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    grad = torch.func.grad(penalized_mae)(x, t, 0.8, 0.3)
    np.testing.assert_allclose(grad.numpy(), reference.penalized_mae_grad(x.numpy(), t.numpy(), 0.8, 0.3), rtol=1e-12)
    per_sample = torch.vmap(penalized_mae, in_dims=(0, 0, None, None))(x, t, 0.8, 0.3)
    expected = reference.penalized_mae(x.numpy(), t.numpy(), 0.8, 0.3, "per_sample")
    np.testing.assert_allclose(per_sample.numpy(), expected)
    per_sample_grad = torch.vmap(torch.func.grad(penalized_mae), in_dims=(0, 0, None, None))(x, t, 0.8, 0.3)
    np.testing.assert_allclose(
        per_sample_grad.numpy(), reference.penalized_mae_grad(x.numpy(), t.numpy(), 0.8, 0.3, "per_sample"), rtol=1e-12
    )
    hessian = torch.func.jacrev(torch.func.jacrev(penalized_mae))(x[0, 0], t[0, 0], 0.8, 0.3)
    curvature = 2 * 0.3 * ((x[0, 0] - t[0, 0]).abs() > 0.8).double() / 5
    torch.testing.assert_close(hessian, torch.diag(curvature))


def test_forward_mode_works_and_forward_over_reverse_raises_clearly():
    # Documented: without reverse-mode the loss is plain framework ops, so jvp works; the
    # hand-written backward has no custom jvp (it would break torch.compile(fullgraph=True)).
    x = torch.randn(3, dtype=torch.float64) * 3
    t, tangent = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    _, derivative = torch.func.jvp(lambda x: penalized_mae(x, t), (x,), (tangent,))
    expected = reference.penalized_mae_grad(x.numpy(), t.numpy()) @ tangent.numpy()
    np.testing.assert_allclose(derivative.item(), expected, rtol=1e-12)
    with pytest.raises(NotImplementedError, match="jvp"):
        torch.func.hessian(lambda x: penalized_mae(x, t))(x)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_mode_tangent_has_the_loss_dtype(reduction, dtype):
    # PyTorch's forward-mode rule for a 0-dim tensor times a Python float gives a float64 tangent.
    x = torch.randn(5, dtype=dtype) * 3
    t, tangent = torch.randn(5, dtype=dtype), torch.randn(5, dtype=dtype)
    value, derivative = torch.func.jvp(lambda x: penalized_mae(x, t, 0.8, 0.3, reduction), (x,), (tangent,))
    assert value.dtype == derivative.dtype == dtype and derivative.shape == ()
    grad = reference.penalized_mae_grad(x.double().numpy(), t.double().numpy(), 0.8, 0.3, reduction)
    np.testing.assert_allclose(derivative.item(), grad @ tangent.double().numpy(), rtol=1e-5)


def test_torch_compile_fullgraph():
    # aot_eager traces forward and backward through AOTAutograd like inductor, without compiling C++.
    compiled = torch.compile(penalized_mae, fullgraph=True, backend="aot_eager")
    x = (torch.randn(2, 3, 4) * 3).requires_grad_()
    t = torch.randn(2, 3, 4)
    loss = compiled(x, t, 0.7, 0.4, "mean")
    loss.backward()
    expected = reference.penalized_mae(x.detach().numpy(), t.numpy(), 0.7, 0.4)
    grad = reference.penalized_mae_grad(x.detach().numpy(), t.numpy(), 0.7, 0.4)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-5, atol=1e-7)


@pytest.mark.usefixtures("portable_path")
def test_autograd_function_is_the_only_path_with_grad():
    # The hand-written backward runs (not autograd through framework ops) whenever a gradient is needed.
    x = torch.randn(3, requires_grad=True)
    loss = penalized_mae(x, torch.zeros(3))
    assert "_PenalizedMAEFunction" in type(loss.grad_fn).__name__
    assert _PenalizedMAEFunction.generate_vmap_rule


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_mismatched_shapes_raise_naming_both():
    with pytest.raises(ValueError, match=r"target has shape \(4,\) but input has shape \(4, 1\)"):
        penalized_mae(torch.zeros(4, 1), torch.zeros(4))


@pytest.mark.parametrize("name", ["delta", "penalty"])
@pytest.mark.parametrize(
    "value, error, message",
    [
        (-0.5, ValueError, ">= 0; got -0.5"),
        (float("nan"), ValueError, "finite"),
        ("1", TypeError, "real number"),
        (True, TypeError, "real number"),
        (1e39, ValueError, r"<= 1e\+38 \(beyond, the float32 computation overflows\); got 1e\+39"),
    ],
)
def test_bad_delta_or_penalty_raise(name, value, error, message):
    with pytest.raises(error, match=f"{name} must be .*{message}"):
        penalized_mae(torch.zeros(3), torch.zeros(3), **{name: value})
    with pytest.raises(error, match=name):
        PenalizedMAELoss(**{name: value})


def test_non_float_prediction_raises():
    with pytest.raises(TypeError, match="input must have a floating-point dtype.*torch.int64"):
        penalized_mae(torch.zeros(3, dtype=torch.long), torch.zeros(3))
    with pytest.raises(TypeError, match="target must have a real dtype"):
        penalized_mae(torch.zeros(3), torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        penalized_mae([1.0, 2.0], torch.zeros(2))
    for target in ([1.0, 2.0], np.zeros(2)):
        with pytest.raises(TypeError, match="target must be a torch.Tensor"):
            penalized_mae(torch.zeros(2), target)


def test_bad_reduction_raises():
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'; got 'batchmean'"):
        penalized_mae(torch.zeros(3), torch.zeros(3), reduction="batchmean")
    with pytest.raises(ValueError, match="reduction"):
        PenalizedMAELoss(reduction="sum_over_batch_size")
