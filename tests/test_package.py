"""Packaging promises: no framework on `import losses`, the CLI, CI calling the README's command."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_losses_loads_no_framework():
    code = (
        "import sys, losses; print(losses.__version__); "
        "print(' '.join(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    version, *leaked = run_python(code).splitlines()
    assert version
    assert leaked in ([], [""]), f"import losses imported {leaked}"


def test_unknown_attribute_is_an_attribute_error():
    out = run_python("import losses\ntry:\n    losses.nope\nexcept AttributeError as e:\n    print(e)")
    assert "nope" in out


def test_info_names_the_imported_file():
    result = subprocess.run(
        [sys.executable, "-m", "losses", "info"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "losses/__init__.py" in result.stdout


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(python3 -m venv .*pytest.*)$", readme, flags=re.M)
    assert commands, "README has no test command"
    assert commands[0] in ci
    # set -e does not stop at a failed command inside an && list (but for its last): a failed
    # set-up step must end the script rather than skip the tests.
    (line,) = [line for line in ci.splitlines() if commands[0] in line]
    assert line.strip().endswith("|| exit 1"), line
