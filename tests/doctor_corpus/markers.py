"""Reads the ``# expect: CODE`` markers of a corpus module: the findings each function must give.

``# expect: CODE`` belongs to the top-level function or class around it; ``# expect(NAME): CODE``
to the case ``NAME`` (a helper defined elsewhere in the module, such as a custom gradient, holds
the line the case must point at); ``# expect-TAG: CODE`` is read only with ``tag="TAG"``.
"""

import ast
import inspect
import re

MARKER = re.compile(r"#\s*expect(?:-(\w+))?(?:\((\w+)\))?:\s*([A-Z_]+)")


def expected_findings(module, tag=None):
    """``{case name: {(code, line), ...}}`` for every case with a marker (``# expect-TAG:`` with ``tag``)."""
    path = inspect.getsourcefile(module)
    source = open(path).read()
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:  # top-level functions and classes
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for lineno in range(node.lineno, node.end_lineno + 1):
                match = MARKER.search(lines[lineno - 1])
                if match and match.group(1) == tag:
                    found.setdefault(match.group(2) or node.name, set()).add((match.group(3), lineno))
    return found


def broken_functions(module):
    return sorted(expected_findings(module))


def healthy_functions(module):
    return sorted(
        name
        for name, obj in vars(module).items()
        # a decorated function (jax.jit) counts as the function it wraps
        if (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
        and not name.startswith("_")
    )
