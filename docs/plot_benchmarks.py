"""Draw docs/img/benchmarks-<device>.png from the committed benchmarks/results/<device>.json.

The chart is the one ``python -m benchmarks`` draws beside its tables, redrawn from the recorded
results (nothing is timed here), so the site shows the run its tables come from. Run from the
repository root::

    python docs/plot_benchmarks.py
"""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package is not installed: it lives beside docs/

from benchmarks import runner  # noqa: E402

DEVICES = ("cpu", "cuda")


def main() -> None:
    for device in DEVICES:
        report = json.loads((ROOT / "benchmarks" / "results" / f"{device}.json").read_text())
        out = ROOT / "docs" / "img" / f"benchmarks-{device}.png"
        runner.plot(report, str(out))
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
