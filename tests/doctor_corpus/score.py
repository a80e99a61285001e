"""The doctor's score on this corpus: right code, right line, false alarms.

    python tests/doctor_corpus/score.py                  # torch, tensorflow, then jax in a subprocess
    python tests/doctor_corpus/score.py --framework torch
    python tests/doctor_corpus/score.py --verbose        # each case that misses, with its report

A broken case counts as *right code* when the doctor reports exactly the codes its markers
expect, and as *right line* when, moreover, every finding is one of the expected ``(code, line)``
pairs of the corpus file. A *false alarm* is a correct loss with any finding. A case whose
diagnosis raises counts as a miss (broken) or a false alarm (correct).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
for path in (ROOT, TESTS):  # the corpus package and the worktree's losses, run from anywhere
    if path not in sys.path:
        sys.path.insert(0, path)

from doctor_corpus.markers import expected_findings, healthy_functions  # noqa: E402

# Broken and correct modules per framework. "jax" is Keras 3 on the JAX backend (keras.ops losses)
# and plain JAX losses.
MODULES = {
    "torch": (["torch_broken"], ["torch_healthy"]),
    "tensorflow": (["tf_broken", "keras_broken"], ["tf_healthy", "keras_healthy"]),
    "jax": (["keras_broken", "jax_broken"], ["keras_healthy", "jax_healthy"]),
}
DEFAULT_SHAPES = ((8, 4), (8, 4))


def _load(name: str):
    try:
        return importlib.import_module(f"doctor_corpus.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"doctor_corpus.{name}":
            return None  # a module this version of the corpus does not have
        raise


def case_arrays(module, name: str, seed: int = 0):
    """``(y_true, y_pred)`` NumPy arrays: a prediction in (0.05, 0.95) and a 0/1 target."""
    import numpy as np

    pred_shape, true_shape = getattr(module, "SHAPES", {}).get(name, DEFAULT_SHAPES)
    rng = np.random.default_rng(seed)
    y_pred = rng.uniform(0.05, 0.95, size=pred_shape).astype(np.float32)
    y_true = (rng.uniform(size=true_shape) > 0.5).astype(np.float32)
    return y_true, y_pred


def to_framework(array, framework: str):
    if framework == "torch":
        import torch

        return torch.from_numpy(array)
    if framework == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


def case_loss(module, name: str):
    """The corpus object as a loss: classes are instantiated, except ``torch.autograd.Function``
    subclasses, which the doctor takes as they are."""
    obj = getattr(module, name)
    if inspect.isclass(obj) and not any(
        c.__name__ == "Function" and c.__module__.startswith("torch.autograd") for c in obj.__mro__
    ):
        obj = obj()
    return obj


def diagnose_case(module, name: str, framework: str):
    from losses.doctor import diagnose

    y_true, y_pred = case_arrays(module, name)
    return diagnose(
        case_loss(module, name), to_framework(y_true, framework), to_framework(y_pred, framework), framework=framework
    )


def score(framework: str, verbose: bool = False) -> dict:
    broken_names, healthy_names = MODULES[framework]
    result = {
        "framework": framework,
        "cases": 0,
        "right_code": 0,
        "right_line": 0,
        "correct": 0,
        "false_alarms": 0,
        "misses": [],
        "alarms": [],
    }
    for module_name in broken_names:
        module = _load(module_name)
        if module is None:
            continue
        corpus_file = inspect.getsourcefile(module)
        for name, expected in sorted(expected_findings(module).items()):
            result["cases"] += 1
            try:
                report = diagnose_case(module, name, framework)
            except Exception as error:  # a miss: the doctor could not diagnose it
                result["misses"].append(f"{module_name}.{name}: raised {type(error).__name__}: {error}"[:300])
                continue
            codes = {f.code for f in report.findings}
            found = {
                (f.code, f.line)
                for f in report.findings
                if f.file and os.path.exists(f.file) and os.path.samefile(f.file, corpus_file)
            }
            if codes == {code for code, _ in expected}:
                result["right_code"] += 1
                if found == expected and len(report.findings) == len(expected):
                    result["right_line"] += 1
                    continue
            result["misses"].append(
                f"{module_name}.{name}: expected {sorted(expected)}, got "
                f"{sorted((f.code, f.line) for f in report.findings)}" + (f"\n{report.to_text()}" if verbose else "")
            )
    for module_name in healthy_names:
        module = _load(module_name)
        if module is None:
            continue
        for name in healthy_functions(module):
            result["correct"] += 1
            try:
                report = diagnose_case(module, name, framework)
            except Exception as error:
                result["false_alarms"] += 1
                result["alarms"].append(f"{module_name}.{name}: raised {type(error).__name__}: {error}"[:300])
                continue
            if report.findings:
                result["false_alarms"] += 1
                result["alarms"].append(
                    f"{module_name}.{name}: {report.codes}" + (f"\n{report.to_text()}" if verbose else "")
                )
    return result


def summary(result: dict) -> str:
    return (
        f"{result['framework']}: {result['cases']} broken cases, right code {result['right_code']}, "
        f"right line {result['right_line']}; {result['correct']} correct losses, "
        f"false alarms {result['false_alarms']}"
    )


def _score_in_subprocess(framework: str, verbose: bool) -> int:
    env = {**os.environ, "KERAS_BACKEND": framework}
    command = [sys.executable, os.path.abspath(__file__), "--framework", framework] + (["--verbose"] if verbose else [])
    return subprocess.run(command, env=env, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--framework",
        choices=sorted(MODULES),
        action="append",
        help="score only this framework (repeatable); jax runs Keras on the JAX backend",
    )
    parser.add_argument("--verbose", action="store_true", help="print the report of every miss and false alarm")
    args = parser.parse_args(argv)
    frameworks = args.framework or ["torch", "tensorflow", "jax"]
    status = 0
    for framework in frameworks:
        if framework == "jax" and os.environ.get("KERAS_BACKEND") != "jax":
            status |= _score_in_subprocess("jax", args.verbose)  # the Keras backend is fixed at import
            continue
        result = score(framework, args.verbose)
        print(summary(result))
        for line in result["misses"] + result["alarms"]:
            print("  " + line.replace("\n", "\n    "))
        if result["misses"] or result["alarms"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
