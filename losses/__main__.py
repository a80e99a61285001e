"""Command line: ``python -m losses demo | doctor | info``."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import losses


def cmd_info(_: argparse.Namespace) -> int:
    print(f"losses {losses.__version__} from {losses.__file__}")
    for name in ("torch", "tensorflow", "keras", "jax", "triton"):
        found = importlib.util.find_spec(name) is not None
        print(f"  {name:<11} {'installed' if found else 'not installed'}")
    if importlib.util.find_spec("torch") is not None:
        from losses.torch._kernels import cpu

        library = cpu.library()
        status = f"built: {library._name}" if library is not None else f"not available ({cpu.build_error()})"
        print(f"  CPU kernels: {status}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from losses._demo import run_demo

    return run_demo(steps=args.steps, frameworks=args.framework)


def cmd_doctor(args: argparse.Namespace) -> int:
    from losses.doctor._cli import run_cli

    return run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m losses", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version, location and installed frameworks")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="train a tiny segmentation model with DiceLoss in every installed framework")
    demo.add_argument("--steps", type=int, default=60, help="training steps per framework (default 60)")
    demo.add_argument(
        "--framework",
        action="append",
        choices=("torch", "keras"),
        help="run only this frontend (repeatable); default: every installed one",
    )
    demo.set_defaults(func=cmd_demo)

    from losses.doctor._cli import add_arguments

    doctor = sub.add_parser("doctor", help="diagnose why a loss gives no gradient: FILE.py:FUNCTION")
    add_arguments(doctor)
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
