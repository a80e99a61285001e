"""``python -m benchmarks``: every loss of this package against its peers, side by side."""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Forward+backward time and peak extra memory of every loss against its peers.",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few rounds, to check that everything runs (writes <device>-quick.*)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only cases whose key contains NAME (e.g. dice_binary, penalized_mae); repeatable",
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per row (default: CPU 60, CUDA 25, --quick 3)")
    parser.add_argument(
        "--compile",
        dest="compile_rows",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include torch.compile and XLA (jit_compile) rows (default: yes, except with --quick)",
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads of torch and TensorFlow (default: their own, one per core)"
    )
    parser.add_argument(
        "--sample-ms",
        type=float,
        help="milliseconds of back-to-back steps per timed sample (default: CPU 2, which is one step of "
        "most rows, right after another row's; CUDA 20). A training loop repeats one loss: a longer "
        "sample measures that steady state",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
        help="folder for <device>.json, .md and .png (default benchmarks/results)",
    )
    parser.add_argument("--no-chart", dest="chart", action="store_false", help="skip the PNG chart")
    parser.add_argument(
        "--readme",
        action="store_true",
        help="also put the headline table into README.md (between its benchmarks markers)",
    )
    args = parser.parse_args(argv)

    from benchmarks import runner

    only = [name for item in args.only or [] for name in item.split(",") if name]
    given = list(sys.argv[1:] if argv is None else argv)
    shown = ["python -m benchmarks"]
    for index, arg in enumerate(given):  # where the output goes is not part of what was measured
        if not (
            arg.startswith("--out") or (index and given[index - 1] == "--out") or arg in ("--readme", "--no-chart")
        ):
            shown.append(arg)
    report = runner.run(
        args.device,
        quick=args.quick,
        only=only,
        out_dir=args.out,
        rounds=args.rounds,
        compile_rows=args.compile_rows,
        chart=args.chart,
        threads=args.threads,
        sample_ms=args.sample_ms,
        command=" ".join(shown[:1] + [shlex.quote(arg) for arg in shown[1:]]),
    )
    if args.readme and not args.quick:
        readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
        runner.update_readme(report, readme)
    print(runner.markdown(report))
    wrong = runner.wrong_rows(report)
    if wrong:
        print("Rows that do not compute the reference loss and gradient:\n  " + "\n  ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
