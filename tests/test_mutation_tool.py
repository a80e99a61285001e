"""The mutation tool's table names regions that exist: a renamed function must be renamed there too."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_target_region_exists():
    listed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mutation.py"), "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    assert "no region" not in listed.stdout + listed.stderr
