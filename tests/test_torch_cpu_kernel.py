"""The fused CPU passes of the overlap losses (``losses/torch/_kernels/cpu_overlap.c``) against the portable
path and the reference."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reference
from dice_cases import dice_cases
from losses.torch._kernels import cpu as cpu_kernels
from losses.torch.functional import dice_loss

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None and shutil.which("gcc") is None,
    reason="no C compiler: the portable path runs instead",
)


@contextlib.contextmanager
def kernels(choice: str):
    previous = os.environ.get("LOSSES_KERNELS")
    os.environ["LOSSES_KERNELS"] = choice
    try:
        yield
    finally:
        if previous is None:
            del os.environ["LOSSES_KERNELS"]
        else:
            os.environ["LOSSES_KERNELS"] = previous


def loss_and_grad(logits, target, reduction="mean", upstream=None, **options):
    x = torch.as_tensor(logits).clone().requires_grad_(True)
    loss = dice_loss(x, torch.as_tensor(target), reduction=reduction, **options)
    weight = torch.ones_like(loss) if upstream is None else torch.as_tensor(upstream, dtype=loss.dtype)
    (grad,) = torch.autograd.grad(loss, x, weight)
    return loss.detach().double().numpy(), grad.double().numpy()


def fused_matches_portable(logits, target, reduction="mean", upstream=None, **options):
    """The fused float32 passes against the portable path in float64: value and gradient."""
    with kernels("auto"):
        label_map = tuple(np.shape(target)) != tuple(np.shape(logits))
        assert cpu_kernels.supports(
            torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(target), options["mode"], label_map
        )
        loss, grad = loss_and_grad(np.asarray(logits, np.float32), target, reduction, upstream, **options)
    with kernels("torch"):
        expected_loss, expected_grad = loss_and_grad(
            np.asarray(logits, np.float64), target, reduction, upstream, **options
        )
    np.testing.assert_allclose(loss, expected_loss, rtol=2e-5, atol=2e-6)
    scale = max(1.0, float(np.abs(expected_grad).max()))
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=2e-6 * scale)


def test_the_library_builds_where_a_compiler_exists():
    assert cpu_kernels.library() is not None, cpu_kernels.build_error()
    assert cpu_kernels.available()


@settings(max_examples=60)
@given(dice_cases(max_side=6), st.sampled_from(["mean", "sum", "none"]))
def test_fused_passes_match_the_portable_path_and_the_reference(case, reduction):
    logits, target, options = case
    # Soft labels under a log: float32 cancellation (see test_torch_dice.test_float32_matches_reference).
    assume(not (options["soft_labels"] and options["log_loss"]))
    rows = logits.shape[0] if options["per_image"] else 1
    upstream = np.linspace(0.5, 2.0, rows) if reduction == "none" and options["per_image"] else None
    fused_matches_portable(logits, target, reduction, upstream, **options)
    with kernels("auto"):
        ours, _ = loss_and_grad(logits.astype(np.float32), target, reduction, **options)
    np.testing.assert_allclose(ours, reference.dice_loss(logits, target, reduction, **options), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("ignore_index", [None, 255, -100])
def test_label_dtypes_and_sizes_beyond_one_task(dtype, mode, ignore_index):
    # Rows of 130·131 positions span two tasks of the rows kernel (16384), images of 67·65 two of
    # the images kernel (4096), with partial tiles.
    rng = np.random.default_rng(0)
    channels = 1 if mode == "binary" else 3
    shape = (2, channels, 130, 131) if mode == "binary" else (3, channels, 67, 65)
    logits = rng.normal(scale=2.0, size=shape)
    labels = rng.integers(0, 2 if mode == "binary" else channels, (shape[0], *shape[2:]))
    if ignore_index == 255:
        labels[rng.uniform(size=labels.shape) < 0.2] = 255
    target = torch.as_tensor(labels).to(dtype)
    for per_image in (True, False):
        fused_matches_portable(
            logits, target, mode=mode, ignore_index=ignore_index, per_image=per_image, squared=ignore_index is not None
        )


def test_multilabel_and_soft_multiclass_targets():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 70, 71))
    fused_matches_portable(logits, (rng.uniform(size=logits.shape) < 0.3).astype(np.float32), mode="multilabel")
    soft = np.exp(rng.normal(size=logits.shape))
    fused_matches_portable(logits, soft / soft.sum(1, keepdims=True), mode="multiclass", soft_labels=True)
    fused_matches_portable(
        logits,
        (rng.uniform(size=logits.shape) < 0.3).astype(bool),
        mode="multilabel",
        ignore_index=1,
        empty_target="penalize",
    )


def test_a_wrong_gradient_pass_fails_the_comparison(monkeypatch):
    """Negative control: a gradient pass that forgets the softmax Jacobian must not pass the checks."""
    original = cpu_kernels.Prepared.gradient

    def forgets_the_jacobian(self, coefficients):
        self.activation = 0
        return original(self, coefficients)

    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(2, 3, 9, 9)), rng.integers(0, 3, (2, 9, 9))
    fused_matches_portable(logits, labels, mode="multiclass")
    monkeypatch.setattr(cpu_kernels.Prepared, "gradient", forgets_the_jacobian)
    with pytest.raises(AssertionError):
        fused_matches_portable(logits, labels, mode="multiclass")


def test_sums_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(3)
    logits = torch.as_tensor(rng.normal(size=(4, 4, 96, 97)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 4, (4, 96, 97)))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(loss_and_grad(logits, labels, mode="multiclass", per_image=False))
    finally:
        torch.set_num_threads(threads)
    for loss, grad in results[1:]:
        assert loss == results[0][0] and np.array_equal(grad, results[0][1])


@pytest.mark.parametrize("mode, bad", [("binary", 2), ("binary", -1), ("multiclass", 3), ("multiclass", -1)])
def test_labels_out_of_range_raise_as_on_the_portable_path(mode, bad):
    channels = 1 if mode == "binary" else 3
    logits = torch.randn(2, channels, 5, 5)
    labels = torch.zeros(2, 5, 5, dtype=torch.long)
    labels[1, 2, 3] = bad
    with pytest.raises(ValueError, match=rf"target labels must be .*found \[{bad}\]"):
        dice_loss(logits, labels, mode=mode)


def test_second_backward_and_second_derivative_fall_back_to_the_portable_graph():
    rng = np.random.default_rng(4)
    logits = torch.as_tensor(rng.normal(size=(2, 3, 6, 6)), dtype=torch.float32).requires_grad_(True)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 6, 6)))
    loss = dice_loss(logits, labels)
    (first,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (second,) = torch.autograd.grad(loss, logits)  # the first pass used up the probabilities
    torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-7)

    (grad,) = torch.autograd.grad(dice_loss(logits, labels), logits, create_graph=True)
    (hessian_row,) = torch.autograd.grad(grad.square().sum(), logits)
    with kernels("torch"):
        (expected,) = torch.autograd.grad(dice_loss(logits, labels), logits, create_graph=True)
        (expected_row,) = torch.autograd.grad(expected.square().sum(), logits)
    torch.testing.assert_close(hessian_row, expected_row, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    logits = (torch.randn(2, 4, 16, 16) * 3).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 4, (2, 16, 16), dtype=torch.uint8)
    loss = dice_loss(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss.dtype == torch.float32 and grad.dtype == dtype and torch.isfinite(grad.float()).all()
    with kernels("torch"):
        expected = dice_loss(logits.detach().float(), labels)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_extreme_logits_stay_finite():
    logits = torch.tensor([[[-1e4, 1e4, 0.0, 88.5, -88.5, 1e30, -1e30]]]).requires_grad_(True)  # (1, 1, 7)
    loss = dice_loss(logits, torch.tensor([[0, 1, 1, 1, 0, 1, 0]]), mode="binary")
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_without_gradient_and_with_the_portable_path_forced():
    logits, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    with torch.no_grad():
        value = dice_loss(logits, labels)
    with kernels("torch"):
        torch.testing.assert_close(value, dice_loss(logits, labels), rtol=1e-5, atol=1e-7)


def test_without_a_compiler_the_portable_path_runs(tmp_path):
    code = (
        "import torch\nfrom losses.torch._kernels import cpu\nfrom losses.torch.functional import dice_loss\n"
        "x = torch.randn(2, 3, 4, 4, requires_grad=True)\n"
        "dice_loss(x, torch.randint(0, 3, (2, 4, 4))).backward()\n"
        "assert cpu.library() is None and 'no C compiler' in cpu.build_error(), cpu.build_error()\n"
        "assert torch.isfinite(x.grad).all()\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "missing-cc"), "PATH": str(tmp_path), "LOSSES_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_the_passes_on_one_thread():
    """GNU OpenMP (shared with PyTorch) hangs in a forked child once the parent used its threads."""
    code = (
        "import os, torch\nfrom losses.torch.functional import dice_loss\ntorch.set_num_threads(2)\n"
        "x, t = torch.randn(2, 4, 128, 128), torch.randint(0, 4, (2, 128, 128))\n"
        "expected = dice_loss(x, t)\n"  # the parent's thread pool exists from here on
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if torch.equal(dice_loss(x, t), expected) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_channels_last_predictions_and_strided_labels():
    rng = np.random.default_rng(5)
    logits = torch.as_tensor(rng.normal(size=(2, 3, 8, 9)), dtype=torch.float32).to(memory_format=torch.channels_last)
    labels = torch.as_tensor(rng.integers(0, 3, (2, 9, 8))).transpose(1, 2)  # not contiguous
    with kernels("auto"):
        loss, grad = loss_and_grad(logits, labels)
    with kernels("torch"):
        expected_loss, expected_grad = loss_and_grad(logits.double(), labels)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(
    "mode, value, channel",
    [
        ("binary", float("inf"), 0),
        ("binary", float("nan"), 0),
        ("binary", float("-inf"), 0),
        ("multilabel", float("-inf"), 2),
        *[("multiclass", value, c) for value in (float("inf"), float("-inf"), float("nan")) for c in (0, 2)],
    ],
)
def test_one_non_finite_logit_makes_its_image_nan_and_leaves_the_others_finite(mode, value, channel):
    """Also −inf in any class of a softmax, whose probabilities stay finite (0 for that class)."""
    rng = np.random.default_rng(6)
    channels = 1 if mode == "binary" else 3
    logits = torch.as_tensor(rng.normal(size=(3, channels, 5, 5)), dtype=torch.float32)
    logits[1, channel, 2, 3] = value
    target = (
        torch.as_tensor(rng.uniform(size=logits.shape) < 0.4).float()
        if mode == "multilabel"
        else torch.as_tensor(rng.integers(0, max(channels, 2), (3, 5, 5)))
    )
    x = logits.clone().requires_grad_(True)
    loss = dice_loss(x, target, mode=mode, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()
    assert torch.isnan(grad[1]).all() and torch.isfinite(grad[[0, 2]]).all()


@pytest.mark.parametrize(
    "mode, shape",
    [
        ("binary", (1, 1, 128, 128)),
        ("binary", (1, 1, 256, 128)),
        ("multiclass", (2, 3, 64, 64)),
        ("multiclass", (1, 3, 128, 64)),
    ],
)
def test_positions_that_fill_whole_tasks_exactly(mode, shape):
    """Rows of exactly one or two tasks of the rows kernel (16384 positions), images of one or two of
    the images kernel (4096): no partial task. Label maps, and per-class targets."""
    rng = np.random.default_rng(7)
    logits = rng.normal(size=shape)
    labels = rng.integers(0, 2 if mode == "binary" else shape[1], (shape[0], *shape[2:]))
    for options in ({}, {"ignore_index": 255, "squared": True}):
        fused_matches_portable(logits, labels, mode=mode, **options)
    dense = np.moveaxis(np.eye(shape[1], dtype=np.float32)[labels], -1, 1) if mode == "multiclass" else labels[:, None]
    fused_matches_portable(logits, dense.astype(np.float32), mode=mode, squared=True)


@pytest.mark.parametrize("mode, ignore_index", [("multiclass", 0), ("multiclass", 2), ("binary", 0), ("binary", 1)])
def test_an_ignore_index_that_is_also_a_class(mode, ignore_index):
    """Positions labelled ignore_index are left out of every class, also when it is a valid class."""
    rng = np.random.default_rng(8)
    channels = 1 if mode == "binary" else 3
    logits = rng.normal(size=(2, channels, 6, 7))
    labels = rng.integers(0, 2 if mode == "binary" else channels, (2, 6, 7))
    for options in ({}, {"squared": True}, {"empty_target": "penalize"}):
        fused_matches_portable(logits, labels, mode=mode, ignore_index=ignore_index, **options)
        with kernels("auto"):
            ours, _ = loss_and_grad(logits.astype(np.float32), labels, mode=mode, ignore_index=ignore_index, **options)
        expected = reference.dice_loss(logits, labels, "mean", mode=mode, ignore_index=ignore_index, **options)
        np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("empty_target", ["exclude", "penalize"])
@pytest.mark.parametrize("options", [{}, {"squared": True}, {"soft_labels": True}, {"ignore_index": 2}])
def test_dense_multiclass_targets_with_an_absent_class(empty_target, options):
    """One-hot (B, C, ...) targets in which class 1 is absent from an image: the empty-target policy
    applies to it on the fused path as on the portable path."""
    rng = np.random.default_rng(9)
    logits = rng.normal(size=(2, 3, 5, 6))
    labels = rng.choice([0, 2], size=(2, 5, 6))
    labels[1, :2] = 1
    one_hot = np.moveaxis(np.eye(3, dtype=np.float32)[labels], -1, 1)
    fused_matches_portable(logits, one_hot, mode="multiclass", empty_target=empty_target, **options)
    with kernels("auto"):
        ours, _ = loss_and_grad(
            logits.astype(np.float32),
            one_hot,
            reduction="none",
            mode="multiclass",
            empty_target=empty_target,
            **options,
        )
    expected = reference.dice_loss(logits, one_hot, "none", mode="multiclass", empty_target=empty_target, **options)
    np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
def test_extreme_logits_agree_with_the_portable_path(mode):
    """Logits where e^x is subnormal, 0 or beyond float32's range: the fused probabilities are those
    of PyTorch's sigmoid and softmax, so the loss and gradient agree (not merely stay finite)."""
    extremes = np.array([-1e4, -120.0, -100.0, -95.0, -88.5, 0.0, 3.0, 87.5, 88.5, 95.0, 100.0, 1e4])
    rng = np.random.default_rng(10)
    channels = 1 if mode == "binary" else 3
    logits = rng.choice(extremes, size=(2, channels, 4, 6))
    if mode == "multiclass":
        logits[:, 0] = 0.0  # differences of about -100 and -1e4 below the maximum
    labels = rng.integers(0, max(channels, 2), (2, 4, 6))
    target = (rng.uniform(size=logits.shape) < 0.5).astype(np.float32) if mode == "multilabel" else labels
    for options in ({"per_image": True}, {"per_image": False, "squared": True, "smooth_nr": 0.0, "smooth_dr": 1e-7}):
        fused_matches_portable(logits, target, mode=mode, **options)


@pytest.mark.parametrize("per_image", [True, False])
def test_large_multiclass_logits_beyond_the_first_tile_agree_with_the_portable_path(per_image):
    """Images of 1600 positions, several tiles of the passes: each position's softmax is shifted by
    the maximum of its own classes in every tile (a maximum taken from other positions would make
    e^(x − m) overflow for logits this far apart)."""
    rng = np.random.default_rng(11)
    logits = rng.uniform(-300.0, 300.0, size=(2, 3, 40, 40))
    labels = rng.integers(0, 3, (2, 40, 40))
    fused_matches_portable(logits, labels, mode="multiclass", per_image=per_image)


@pytest.mark.parametrize(
    "mode, bad", [("multilabel", 1.5), ("multilabel", -0.5), ("multiclass", 2.0), ("binary", -0.25)]
)
def test_per_class_targets_outside_the_unit_interval_raise_on_the_fused_path(mode, bad):
    channels = 1 if mode == "binary" else 3
    target = torch.zeros(2, channels, 4, 5)
    target[:, 0] = 1.0 if mode == "multiclass" else 0.0
    target[1, 0, 2, 3] = bad
    with kernels("auto"), pytest.raises(ValueError, match=rf"target must be in \[0, 1\].*found \[{bad}\]"):
        dice_loss(torch.randn(2, channels, 4, 5), target, mode=mode)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("bad", [1.25, -0.5])
def test_probabilities_outside_the_unit_interval_raise_on_the_fused_path(mode, bad):
    channels = 1 if mode == "binary" else 3
    probabilities = torch.full((2, channels, 4, 5), 1.0 / channels)
    probabilities[0, 0, 1, 1] = bad
    with kernels("auto"), pytest.raises(ValueError, match=rf"input must be probabilities in \[0, 1\].*found \[{bad}\]"):
        dice_loss(probabilities, torch.zeros(2, 4, 5, dtype=torch.long), mode=mode, from_logits=False)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("where", ["target", "probabilities"])
def test_a_non_finite_target_or_probability_makes_its_image_nan_and_is_no_range_error(value, where):
    """±inf is not a value out of [0, 1] to raise about but a non-finite input: it comes out as NaN for
    its image on the fused path, as NaN does."""
    target = torch.zeros(2, 3, 4, 5)
    target[:, 0] = 1.0
    probabilities = torch.full((2, 3, 4, 5), 0.25)
    (target if where == "target" else probabilities)[1, 0, 2, 3] = value
    with kernels("auto"):
        loss = dice_loss(probabilities, target, mode="multilabel", from_logits=False, reduction="none")
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])


@pytest.mark.parametrize("ignored", [False, True], ids=["counted", "ignored"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_probability_makes_its_label_map_image_nan_loss_and_gradient(value, ignored):
    """Probabilities (from_logits=False) with a multiclass label map: a non-finite value makes the
    loss and the gradient of all of its image NaN, and no other image's, also at an ignored position
    (where it enters no sum)."""
    probabilities = torch.full((2, 3, 4, 5), 1.0 / 3.0)
    probabilities[1, 1, 2, 3] = value
    x = probabilities.clone().requires_grad_(True)
    labels = torch.as_tensor(np.random.default_rng(12).integers(0, 3, (2, 4, 5)))
    if ignored:
        labels[1, 2, 3] = 7
    with kernels("auto"):
        loss = dice_loss(x, labels, mode="multiclass", from_logits=False, reduction="none", ignore_index=7)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])
    assert torch.isfinite(grad[0]).all() and torch.isnan(grad[1]).all()


@pytest.mark.parametrize("channel", [0, 1])
@pytest.mark.parametrize("value", [float("-inf"), float("inf"), float("nan")])
def test_a_non_finite_logit_of_any_class_makes_its_multiclass_image_nan(channel, value):
    """Also in the first class, the one the softmax's running maximum starts from: a −inf there would
    otherwise just give that class a probability of 0 and a finite loss."""
    rng = np.random.default_rng(11)
    logits = torch.as_tensor(rng.normal(size=(2, 3, 4, 5)), dtype=torch.float32)
    logits[1, channel, 2, 3] = value
    x = logits.clone().requires_grad_(True)
    with kernels("auto"):
        loss = dice_loss(x, torch.as_tensor(rng.integers(0, 3, (2, 4, 5))), mode="multiclass", reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])
    assert torch.isfinite(grad[0]).all() and torch.isnan(grad[1]).all()


def test_probabilities_and_labels_both_out_of_range_in_one_image_raise():
    """The fused pass counts both kinds of bad value in one sum: one of each must not cancel out."""
    probabilities = torch.full((1, 3, 4, 5), 1.0 / 3.0)
    probabilities[0, 0, 1, 1] = 1.5
    labels = torch.zeros(1, 4, 5, dtype=torch.long)
    labels[0, 2, 2] = 7
    with kernels("auto"), pytest.raises(ValueError):
        dice_loss(probabilities, labels, mode="multiclass", from_logits=False)


def _outcome(function):
    """What a loss call gives: ("error", type, message) or ("value", loss, gradient), NaN kept."""
    try:
        return ("value",) + function()
    except (ValueError, RuntimeError) as error:
        return ("error", type(error), str(error))


@settings(max_examples=60)
@given(
    st.sampled_from(["label", "target", "logit", "probability"]),
    st.sampled_from([2.0, -1.0, 1.5, -0.5, -0.0, float("nan"), float("inf"), float("-inf")]),
    st.integers(0, 2 * 16384 + 5 - 1),
    st.sampled_from(["basic", "ignore", "weight"]),
    st.sampled_from([dice_loss, "dice_ce", "dice_focal"]),
    st.sampled_from([torch.int64, torch.int32, torch.uint8]),
)
def test_one_unusual_value_anywhere_in_a_binary_pass_is_found_as_on_the_portable_path(
    where, value, position, variant, loss, label_dtype
):
    """The rows passes check every value with one maximum of its bits per chunk and count a chunk
    exactly only when that maximum is suspect: one bad value at any position (chunk boundaries
    included), a −0.0 (suspect, but no bad value) and values at ignored positions must give what the
    portable path gives: the same error, or the same loss and gradient with NaN where it belongs."""
    from losses.torch.functional import dice_ce_loss, dice_focal_loss

    if where == "label" and not (np.isfinite(value) and value == int(value)):
        value = 3.0  # a label map holds integers
    if where == "label" and label_dtype == torch.uint8 and value < 0:
        value = 254.0  # uint8 holds no negative label
    assume(not (where == "logit" and value in (2.0, -1.0, 1.5, -0.5)))  # ordinary logits
    loss_fn = {"dice_ce": dice_ce_loss, "dice_focal": dice_focal_loss}.get(loss, loss)
    from_logits = where != "probability"
    assume(from_logits or loss is dice_loss)  # the terms read logits
    rng = np.random.default_rng(position)
    shape = (2, 1, 5, 2 * 16384 // 5 + 1)  # two images, each beyond one chunk of positions
    size = shape[2] * shape[3]
    x = torch.as_tensor(rng.normal(size=shape) if from_logits else rng.random(shape), dtype=torch.float32)
    labels = where == "label"
    # A label map (B, H, W) of class indices, or per-class targets of the prediction's shape.
    target_shape = (shape[0], *shape[2:]) if labels else shape
    target = torch.as_tensor(rng.integers(0, 2, target_shape), dtype=label_dtype if labels else torch.float32)
    options = {"mode": "binary", "from_logits": from_logits, "reduction": "none"}
    if variant == "ignore":
        options["ignore_index"] = 255
        target.view(-1)[::7] = 255  # ignored positions: any value there is no bad value
    weight = torch.as_tensor(rng.random((2, 1, *shape[2:])), dtype=torch.float32) if variant == "weight" else None
    index = size + position % size  # in the second image
    if where in ("label", "target"):
        target.view(-1)[index] = value
    else:
        x.view(-1)[index] = value

    def run():
        leaf = x.clone().requires_grad_(True)
        kwargs = dict(options, weight=weight) if weight is not None else options
        result = loss_fn(leaf, target, **kwargs)
        (grad,) = torch.autograd.grad(result.sum(), leaf)
        return result.detach().double().numpy(), grad.double().numpy()

    with kernels("auto"):
        fused = _outcome(run)
    with kernels("torch"):
        portable = _outcome(run)
    assert fused[0] == portable[0], (fused, portable)
    if fused[0] == "error":
        assert fused[1] is portable[1] and fused[2].split(":")[0] == portable[2].split(":")[0]
        return
    np.testing.assert_allclose(fused[1], portable[1], rtol=2e-5, atol=2e-6, equal_nan=True)
    assert np.array_equal(np.isnan(fused[2]), np.isnan(portable[2]))
    assert np.isfinite(fused[1][0])  # the first image is clean


def test_the_short_logarithms_of_the_binary_passes_are_within_two_ulps():
    """The coefficients of log1p_unit and neg_log1m_half in cpu_overlap.c, evaluated in float32 as the
    kernels do (tools/fit_log_polynomials.py, which fitted them), over their whole ranges."""
    import importlib.util
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("fit_log_polynomials", root / "tools" / "fit_log_polynomials.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    source = (root / "losses" / "torch" / "_kernels" / "cpu_overlap.c").read_text()
    for name, f, high in (("log1p_unit", np.log1p, 1.0), ("neg_log1m_half", lambda t: -np.log1p(-t), 0.5)):
        body = re.search(rf"float {name}\(float \w+\) {{\s*static const float g\[8\] = {{([^}}]*)}}", source)
        assert body is not None, name
        coefficients = np.array([float(c.strip().rstrip("f")) for c in body.group(1).split(",")], np.float32)
        worst, _ = tool._ulps(f, coefficients, high)
        assert worst < 2.0, (name, worst)
