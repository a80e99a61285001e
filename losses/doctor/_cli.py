"""``python -m losses doctor FILE.py:FUNCTION``: diagnose a loss from the shell.

Exit status: 0 when no error was found (warnings allowed), 1 when at least one finding has
severity ``error``, 2 when the diagnosis could not run: the file does not load (syntax error,
failing import), the name is missing, a class needs constructor arguments, the framework cannot
be told, the loss raises at the given shapes, or it runs past ``--timeout``. A status 2 prints one
line that says why (the traceback too with ``--verbose``).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from typing import Any

import numpy as np
import numpy.typing as npt

from losses.doctor._report import ORDERS

DEFAULT_SHAPE = (8, 4)
FRAMEWORK_CHOICES = ("torch", "tensorflow", "keras", "jax")


class CannotRun(Exception):
    """The diagnosis could not run; the message is the one line the command prints."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="FILE.py:FUNCTION",
        help="the file that defines the loss and the loss's name (a function, a class instantiated "
        "without arguments, or a torch.autograd.Function subclass)",
    )
    parser.add_argument(
        "--framework",
        choices=FRAMEWORK_CHOICES,
        help="keras means Keras 3 on its configured backend (KERAS_BACKEND); default: read from the "
        "modules the file imports",
    )
    parser.add_argument(
        "--shape",
        type=_shape,
        default=None,
        help=f"shape of both random inputs, e.g. 8,4 (default {','.join(map(str, DEFAULT_SHAPE))})",
    )
    parser.add_argument("--pred-shape", type=_shape, default=None, help="shape of the random prediction")
    parser.add_argument("--true-shape", type=_shape, default=None, help="shape of the random target")
    parser.add_argument("--y-pred", metavar="PRED.npy", help="load the prediction from a .npy file")
    parser.add_argument("--y-true", metavar="TRUE.npy", help="load the target from a .npy file")
    parser.add_argument(
        "--order",
        choices=tuple(_ORDER_FLAGS),
        help="argument order of the loss: true-first is (y_true, y_pred), pred-first is "
        "(input, target) (default: from its parameter names)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="give up (exit status 2) when the diagnosis runs longer (default 120; 0: no limit)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true", help="print the traceback when the diagnosis cannot run")


_ORDER_FLAGS = {"true-first": ORDERS[0], "pred-first": ORDERS[1]}


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is integers separated by commas, e.g. 8,4; got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"a shape needs positive sizes, e.g. 8,4; got {text!r}")
    return shape


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _is_function_class(obj: Any) -> bool:
    # torch.autograd.Function subclasses are used through .apply, never instantiated.
    return inspect.isclass(obj) and any(
        c.__name__ == "Function" and c.__module__.startswith("torch.autograd") for c in obj.__mro__
    )


def _raise_load_error(path: str, error: BaseException) -> None:
    if isinstance(error, SyntaxError):
        raise CannotRun(f"{path} does not compile: SyntaxError: {error.msg} (line {error.lineno})") from error
    if isinstance(error, ImportError):
        raise CannotRun(f"{path} fails to import: {_one_line(error)}") from error
    if isinstance(error, Exception):
        raise CannotRun(f"{path} raised {_one_line(error)} while loading") from error
    raise error


def load_function(target: str) -> Any:
    """The object named ``FUNCTION`` in ``FILE.py`` (``FILE.py:FUNCTION``); a class is instantiated
    (but for a ``torch.autograd.Function``). Raises :class:`CannotRun` with the reason."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise CannotRun(f"expected FILE.py:FUNCTION; got {target!r}")
    if not os.path.isfile(path):
        raise CannotRun(f"no such file: {path!r}")
    module_name = "_losses_doctor_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CannotRun(f"{path} is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file's own imports of its neighbours
    sys.modules[module_name] = module  # classes defined in the file find their module by name
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        sys.modules.pop(module_name, None)
        _raise_load_error(path, error)
    finally:
        sys.path.remove(folder)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise CannotRun(f"{path} has no {name!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj) and not _is_function_class(obj):
        try:
            obj = obj()
        except TypeError as error:
            try:
                signature = str(inspect.signature(obj))
            except (TypeError, ValueError):
                signature = "(...)"
            raise CannotRun(
                f"{name}{signature} needs constructor arguments ({_one_line(error)}); name a function, "
                "or a class whose constructor takes none (e.g. a function that builds it and calls it)"
            ) from error
    if not callable(obj):
        raise CannotRun(f"{name} in {path} is a {type(obj).__name__}, not a function or a loss class")
    return obj


def random_inputs(
    pred_shape: tuple[int, ...], true_shape: tuple[int, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A prediction in (0.05, 0.95) (valid as probabilities and as logits) and a 0/1 target, or class
    labels (int64 in [0, C), C >= 2) where the target's shape is the prediction's without its class
    axis (the last, or the second: channels last or first)."""
    rng = np.random.default_rng(seed)
    y_pred = rng.uniform(0.05, 0.95, size=pred_shape).astype(np.float32)
    classes = None
    if len(true_shape) == len(pred_shape) - 1:
        if true_shape == pred_shape[:-1]:
            classes = pred_shape[-1]
        elif true_shape == pred_shape[:1] + pred_shape[2:]:
            classes = pred_shape[1]
    if classes is not None and classes >= 2:  # (N, 1) beside (N,) is a regression's shape mismatch
        return rng.integers(0, classes, size=true_shape).astype(np.int64), y_pred
    y_true = (rng.uniform(size=true_shape) > 0.5).astype(np.float32)
    return y_true, y_pred


def to_framework(values: npt.ArrayLike, framework: str) -> Any:
    array = np.asarray(values)
    if framework == "torch":
        import torch

        return torch.from_numpy(array)
    if framework == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    import tensorflow as tf

    return tf.convert_to_tensor(array)


def _framework(args: argparse.Namespace, fn: Any) -> str:
    from losses.doctor import _imported_modules, detect_framework, keras_backend, resolve_framework

    try:
        framework = resolve_framework(args.framework) if args.framework else detect_framework(fn=fn)
    except ImportError as error:
        raise CannotRun(f"--framework {args.framework} is not installed: {_one_line(error)}") from error
    except ValueError:
        raise CannotRun(
            f"could not tell the framework of {args.target} from the modules its file imports; "
            f"pass --framework ({' | '.join(FRAMEWORK_CHOICES)})"
        ) from None
    modules = _imported_modules(fn)
    if "keras" in modules and framework not in modules and framework != keras_backend():
        # Keras runs on the backend chosen when it is first imported: the inputs must be its tensors.
        raise CannotRun(
            f"{args.target} uses Keras, which runs on {keras_backend()} here; set "
            f"KERAS_BACKEND={framework} to diagnose it on {framework} (or pass --framework keras)"
        )
    return framework


def _watchdog(seconds: float, target: str) -> threading.Timer | None:
    """A loss that hangs (in Python or inside a framework's kernel) ends the command with status 2."""
    if not seconds or seconds <= 0:
        return None

    def give_up() -> None:
        print(
            f"losses doctor: {target} did not finish within {seconds:g} s (--timeout); it may hang, or need "
            "smaller inputs (--pred-shape, --true-shape)",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(2)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


def _diagnose(args: argparse.Namespace) -> Any:
    from losses.doctor import diagnose

    fn = load_function(args.target)
    framework = _framework(args, fn)
    default_shapes = not (args.pred_shape or args.shape or args.true_shape or args.y_pred or args.y_true)
    pred_shape = args.pred_shape or args.shape or DEFAULT_SHAPE
    true_shape = args.true_shape or args.shape or pred_shape
    y_true, y_pred = random_inputs(pred_shape, true_shape, args.seed)
    try:
        if args.y_pred:
            y_pred = np.load(args.y_pred)
        if args.y_true:
            y_true = np.load(args.y_true)
    except (OSError, ValueError) as error:
        raise CannotRun(f"cannot read the inputs: {_one_line(error)}") from error
    order = _ORDER_FLAGS[args.order] if args.order else None
    try:
        return diagnose(
            fn, to_framework(y_true, framework), to_framework(y_pred, framework), framework=framework, order=order
        )
    except Exception as error:  # the loss failed for a reason that is not about gradients
        shapes = f"y_pred {tuple(np.shape(y_pred))}, y_true {tuple(np.shape(y_true))}"
        hint = (
            "; the default shapes may not fit this loss: pass --pred-shape and --true-shape (e.g. "
            "--pred-shape 8,3 --true-shape 8 for class labels), or --y-pred / --y-true"
            if default_shapes
            else "; check --pred-shape / --true-shape / --order"
        )
        if isinstance(error, TypeError) and "legacy torch.autograd.Function" in str(error):
            hint = ""
        raise CannotRun(f"{args.target} raised {_one_line(error)} (at {shapes}){hint}") from error


def run_cli(args: argparse.Namespace) -> int:
    timer = _watchdog(args.timeout, args.target)
    try:
        report = _diagnose(args)
    except CannotRun as error:
        if args.verbose and error.__cause__ is not None:
            traceback.print_exception(error.__cause__)
        print(f"losses doctor: {error}", file=sys.stderr)
        return 2
    finally:
        if timer is not None:
            timer.cancel()
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1
