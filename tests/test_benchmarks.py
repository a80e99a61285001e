"""The benchmark runner, in ``--quick`` mode on tiny sizes, so that it cannot rot.

Times are not asserted (speed is shown by ``python -m benchmarks``, never by timed tests); what is
asserted is that every case runs, that every row that runs computes the reference loss, and that
the results files are written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("tqdm")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # benchmarks/ is not installed with the package
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "2", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return completed, out


def test_quick_run_succeeds_and_writes_results(quick_run):
    completed, out = quick_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert {"cpu-quick.json", "cpu-quick.md"} <= set(os.listdir(out))
    markdown = (out / "cpu-quick.md").read_text()
    assert "| implementation | median ms |" in markdown
    assert "python -m benchmarks --quick" in markdown


def test_every_case_times_rows_that_match_the_reference(quick_run):
    completed, out = quick_run
    report = json.loads((out / "cpu-quick.json").read_text())
    from benchmarks.cases import cases_for

    assert [case["key"] for case in report["cases"]] == [case.key for case in cases_for("cpu", quick=True)]
    for case in report["cases"]:
        timed = [row for row in case["rows"] if row["status"] == "ok"]
        assert any(row["group"] == "naive" for row in timed), case["key"]
        for row in timed:
            assert row["median_ms"] > 0 and row["samples"] == 2, (case["key"], row["name"])
            assert row["loss_abs_error"] <= 1e-4, (case["key"], row["name"])
        for row in case["rows"]:
            assert row["status"] in ("ok", "unavailable"), (case["key"], row["name"], row["reason"])


def test_a_wrong_row_is_caught(monkeypatch):
    """Negative control: a row whose loss differs from the reference is reported, not timed."""
    from tqdm import tqdm

    from benchmarks import runner
    from benchmarks.cases import Case, Row

    def off_by_a_little(opts):
        from benchmarks import naive

        return lambda input, target: naive.penalized_mae_torch(input, target, delta=1.0, penalty=0.5) + 1e-3

    case = Case(
        "wrong",
        "penalized_mae",
        (1, 64),
        {"delta": 1.0, "penalty": 0.5},
        (Row("wrong", "torch", off_by_a_little, "naive"),),
    )
    with tqdm(disable=True) as progress:
        results, steps, _ = runner.run_case(
            case, "cpu", rounds=1, warmup=0, sample_ms=1.0, compile_rows=False, progress=progress
        )
    assert results[0].status == "wrong" and not steps


def test_an_unavailable_row_does_not_crash_the_run():
    from tqdm import tqdm

    from benchmarks import peers, runner
    from benchmarks.cases import Case, Row

    def missing(opts):
        raise peers.Unavailable("not here")

    case = Case(
        "missing",
        "soft_step",
        (1, 64),
        {"alpha": 5.0},
        (
            Row("missing", "torch", missing, "ours"),
            Row("naive", "torch", peers.naive_torch_surrogate("soft_step"), "naive"),
        ),
    )
    with tqdm(disable=True) as progress:
        results, steps, _ = runner.run_case(
            case, "cpu", rounds=1, warmup=0, sample_ms=1.0, compile_rows=False, progress=progress
        )
    assert [result.status for result in results] == ["unavailable", "ok"]
    assert results[0].reason == "not here" and list(steps) == ["naive"]


def test_a_row_computing_a_multiple_of_the_loss_is_checked_at_its_scale():
    """A peer computing scale × the loss (MONAI's softmax focal loss is 1/C of ours) is checked against
    that multiple; the same row without its scale is caught."""
    from tqdm import tqdm

    from benchmarks import naive, runner
    from benchmarks.cases import Case, Row

    def doubled(opts):
        return lambda input, target: 2 * naive.penalized_mae_torch(input, target, delta=1.0, penalty=0.5)

    case = Case(
        "scaled",
        "penalized_mae",
        (1, 64),
        {"delta": 1.0, "penalty": 0.5},
        (Row("scale 2", "torch", doubled, "peer", scale=2.0), Row("no scale", "torch", doubled, "peer")),
    )
    with tqdm(disable=True) as progress:
        results, steps, _ = runner.run_case(
            case, "cpu", rounds=1, warmup=0, sample_ms=1.0, compile_rows=False, progress=progress
        )
    assert [result.status for result in results] == ["ok", "wrong"]
    assert list(steps) == ["scale 2"]


def test_vector_width_cases_build_a_loss_with_a_gradient():
    """``python -m benchmarks.vector_width``: each case's set-up gives a differentiable loss, and the
    child program it runs is valid Python (the timing itself is not run here)."""
    import torch

    import losses.torch as L
    import losses.torch.functional as F
    from benchmarks import vector_width

    for name, (setup, _) in vector_width.CASES.items():
        scope = dict(torch=torch, F=F, L=L)
        exec(setup, scope)
        x = scope["x"].requires_grad_()
        scope["loss"](x).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
    setups = {name: setup for name, (setup, _) in vector_width.CASES.items()}
    compile(vector_width.CHILD.format(threads=1, width="512", rounds=1, setups=setups), "child", "exec")


def test_the_sample_length_is_an_option_and_is_recorded(tmp_path):
    from benchmarks import runner
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit, match="--sample-ms must be a positive number"):
        main(["--quick", "--only", "penalized_mae", "--sample-ms", "0", "--out", str(tmp_path)])
    report = runner.run(
        "cpu", quick=True, only=["penalized_mae"], out_dir=str(tmp_path), rounds=1, chart=False, sample_ms=5.0
    )
    assert report["sample_ms"] == 5.0
    assert all(row["samples"] == 1 for case in report["cases"] for row in case["rows"] if row["status"] == "ok")
