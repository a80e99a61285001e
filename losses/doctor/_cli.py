"""``python -m losses doctor FILE.py:FUNCTION``: diagnose a loss from the shell.

Exit status: 0 when no error was found, 1 when at least one finding has severity ``error``,
2 when the file or function cannot be loaded, the inputs are malformed, or the loss raises an
error unrelated to gradient flow.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback
from typing import Any

import numpy as np

from losses.doctor._report import ORDERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE.py:FUNCTION",
                        help="the file that defines the loss and the loss's name (a function or a class "
                             "instantiated without arguments)")
    parser.add_argument("--framework", choices=("torch", "tensorflow", "keras"),
                        help="keras means Keras 3 on TensorFlow; default: read from the modules the file imports")
    parser.add_argument("--shape", type=_shape, default=None,
                        help="shape of both random inputs, e.g. 8,4 (default 8,4)")
    parser.add_argument("--pred-shape", type=_shape, default=None, help="shape of the random prediction")
    parser.add_argument("--true-shape", type=_shape, default=None, help="shape of the random target")
    parser.add_argument("--y-pred", metavar="PRED.npy", help="load the prediction from a .npy file")
    parser.add_argument("--y-true", metavar="TRUE.npy", help="load the target from a .npy file")
    parser.add_argument("--order", choices=tuple(_ORDER_FLAGS),
                        help="argument order of the loss: true-first is (y_true, y_pred), pred-first is "
                             "(input, target) (default: from its parameter names)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


_ORDER_FLAGS = {"true-first": ORDERS[0], "pred-first": ORDERS[1]}


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is integers separated by commas, e.g. 8,4; got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"a shape needs positive sizes, e.g. 8,4; got {text!r}")
    return shape


def load_function(target: str) -> Any:
    """The object named ``FUNCTION`` in ``FILE.py`` (``FILE.py:FUNCTION``); a class is instantiated."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise ValueError(f"expected FILE.py:FUNCTION; got {target!r}")
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {path!r}")
    module_name = "_losses_doctor_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file's own imports of its neighbours
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{path} has no {name!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj()
    return obj


def random_inputs(pred_shape: tuple[int, ...], true_shape: tuple[int, ...], seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A prediction in (0.05, 0.95) (valid as probabilities and as logits) and a 0/1 target."""
    rng = np.random.default_rng(seed)
    y_pred = rng.uniform(0.05, 0.95, size=pred_shape).astype(np.float32)
    y_true = (rng.uniform(size=true_shape) > 0.5).astype(np.float32)
    return y_true, y_pred


def run_cli(args: argparse.Namespace) -> int:
    from losses.doctor import detect_framework, diagnose

    try:
        fn = load_function(args.target)
        pred_shape = args.pred_shape or args.shape or (8, 4)
        true_shape = args.true_shape or args.shape or pred_shape
        y_true, y_pred = random_inputs(pred_shape, true_shape, args.seed)
        if args.y_pred:
            y_pred = np.load(args.y_pred)
        if args.y_true:
            y_true = np.load(args.y_true)
        framework = args.framework or detect_framework(fn=fn)
        framework = "tensorflow" if framework == "keras" else framework
    except (ValueError, OSError) as error:
        print(f"losses doctor: {error}", file=sys.stderr)
        return 2
    if framework == "torch":
        import torch

        y_true, y_pred = torch.from_numpy(np.asarray(y_true)), torch.from_numpy(np.asarray(y_pred))
    else:
        import tensorflow as tf

        y_true, y_pred = tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred)
    order = _ORDER_FLAGS[args.order] if args.order else None
    try:
        report = diagnose(fn, y_true, y_pred, framework=framework, order=order)
    except Exception:  # the loss failed for a reason that is not about gradients: show it as Python would
        traceback.print_exc()
        print(f"losses doctor: {args.target} raised an error unrelated to gradient flow (above)", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1
