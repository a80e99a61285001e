"""Reads the ``# expect: CODE`` markers of a corpus module: the findings each function must give."""

import ast
import inspect
import re

MARKER = re.compile(r"#\s*expect(?:-(\w+))?:\s*([A-Z_]+)")


def expected_findings(module, tag=None):
    """``{function name: {(code, line), ...}}`` for every function with a marker (``# expect-TAG:`` with ``tag``)."""
    path = inspect.getsourcefile(module)
    source = open(path).read()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:  # top-level functions and classes
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for lineno in range(node.lineno, node.end_lineno + 1):
                match = MARKER.search(lines[lineno - 1])
                if match and match.group(1) == tag:
                    found.setdefault(node.name, set()).add((match.group(2), lineno))
    return found


def broken_functions(module):
    return sorted(expected_findings(module))


def healthy_functions(module):
    return sorted(name for name, obj in vars(module).items()
                  if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__
                  and not name.startswith("_"))
