#!/usr/bin/env python
"""Mutation testing of the loss math: change one operator, constant or branch at a time, run the
tests that should notice, and report the mutants they did not kill.

    python tools/mutation.py                      # every target, one job
    python tools/mutation.py --target overlap-form --jobs 2
    python tools/mutation.py --list               # the targets and how many mutants each has
    python tools/mutation.py --show-mutants --target cpu-overlap
    python tools/mutation.py --sample 40 --seed 0 --report tools/mutation-results/run.md

Run by hand, not in CI: a mutant costs one run of its target's test selection (5-30 s).

What is mutated (only inside the regions of :data:`TARGETS`):

- Python (AST-based, the edit is made in the source text so everything else stays as written):
  arithmetic operators (``+ -``, ``* /``, ``** -> *``, ``// -> /``), dropping the right operand
  of ``+``/``-``, comparisons (the boundary ``< -> <=`` and the negation ``< -> >=``),
  ``and``/``or``, removal of unary ``-`` and ``not``, numeric constants (``0 -> 1``,
  ``1 -> 0``/``2``, an int ``c -> c+1``, a float ``c -> 2c``/``-c``), ``True``/``False``, the
  condition of ``if``/``elif``/``x if c else y``/``while`` negated, the branches of a three-argument
  ``where`` swapped, ``max``/``min``, ``maximum``/``minimum`` and ``floor``/``ceil`` swapped, the
  ``min=``/``max=`` keyword swapped, and statements removed (``raise``, a call statement, an
  augmented assignment, a ``x = f(x)`` reassignment) or inverted (``+= -> -=``, ``*= -> /=``).
  Docstrings, f-strings, error messages, annotations and the default values of parameters are
  left alone (the defaults of dataclass fields are mutated: they are the options' defaults).
- C (token-level): binary ``+ - * /``, comparisons as above, ``&&``/``||`` and ``&``/``|``,
  removal of unary ``-`` and ``!``, numeric constants as above, the condition of ``if`` and of
  ``c ? a : b`` negated (where ``c`` is a name or a parenthesised expression), compound
  assignments inverted (``+= -> -=``) or dropped (``x += e -> x += 0``), calls of ``fabsf``,
  ``negative_magnitude``, ``sigmoid``, ``exp_full``, ``exp_nonpositive`` and ``log_full`` replaced by their
  argument, and call statements (``memset``, ``memcpy``, ...) removed. Preprocessor lines are left
  alone, except the bodies of function-like macros. A C mutant is first compiled with
  ``-fsyntax-only`` (and the file's flags and ``-D`` definitions from the library's build); one that
  does not compile is reported as compile-failed, not as killed by the tests.

Each job works in its own copy of the working tree (tracked and untracked, not ignored files) in a
temporary directory, with its own ``LOSSES_CACHE_DIR`` (the C library is rebuilt there for a C
mutant), so the tree itself is never modified and several jobs can run at once. Every target's
selection is first run on the unmutated copy: it must pass, and its duration sets the timeout.
A mutant is killed when its selection fails (a failed test, a crash), survives when it passes,
and times out when it runs longer than ``--timeout-factor`` times the baseline plus 30 s. The
score is (killed + timeout) / (killed + survived + timeout); compile-failed mutants are left out.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import dataclasses
import datetime
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PYTEST = ("-x", "-q", "-p", "no:cacheprovider", "--no-header")


@dataclasses.dataclass(frozen=True)
class Target:
    """Mutants of ``path`` (only inside ``regions``, all of the file when empty), killed by ``tests``.

    ``regions``: Python: names of top-level functions, classes (all their methods), ``Class.method``
    or top-level assigned names; C: names of functions or of function-like macros (their body).
    ``tests``: pytest arguments, run from the root of a copy of the tree with ``CI=true``.
    """

    name: str
    path: str
    regions: tuple[str, ...]
    tests: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


# The general form of the overlap family and what defines its members (losses/_overlap.py).
_OVERLAP_FORM = ("LOG_CLAMP", "DENOMINATOR_MIN", "Form", "_linear", "_generalized_weights", "overlap_loss")
_OVERLAP_MEMBERS = (
    "_transform",
    "_pooling",
    "_SHARED",
    "DICE",
    "JACCARD",
    "TVERSKY",
    "FOCAL_TVERSKY",
    "GENERALIZED_DICE",
)
# cpu_overlap.c: the overlap passes, and the cross-entropy / focal terms they can carry.
_CPU_OVERLAP = (
    "exp_in_range",
    "exp_full",
    "exp_nonpositive",
    "sigmoid",
    "not_finite",
    "outside_unit",
    "float_bits",
    "magnitude_bits",
    "max_key",
    "times_sign",
    "store_partials",
    "ROWS_COUNT",
    "ROWS_STATS",
    "ROWS_GRAD",
    "ROWS_KERNELS",
    "tile_probabilities",
    "tile_weights",
    "tile_overlap_slopes",
    "tile_class_sums",
    "LABEL_KERNELS",
    "LABEL_STATS",
    "classes_stats_f32",
    "classes_grad_f32",
)
_CPU_TERM = (
    "log1p_remainder",
    "log_of_parts",
    "log_split",
    "log_softmax_of",
    "log_full",
    "short_log",
    "log1p_unit",
    "neg_log1m_half",
    "negative_magnitude",
    "pow_unit",
    "sigmoid_of",
    "sigmoid_of_low",
    "binary_ce",
    "focus_of",
    "focal_power",
    "focal_slope",
    "tile_gather_label",
    "log_probability",
    "tile_focal_sum_of",
    "tile_focal_gradient_of",
    "tile_label_slope_of",
    "tile_label_slope",
    "same_factors",
    "tile_log_normalizer",
)
_CPU_ELEMENTWISE = (
    "bf16_to_float",
    "float_to_bf16",
    "f16_to_float",
    "float_to_f16",
    "exp_nonpositive",
    "tanh_sech2_f",
    "tanh_sech2_d",
    "sigmoid_f",
    "sigmoid_d",
    "FUNCTIONS",
    "ARGUMENT_LOSS",
    "KERNELS",
    "SUM_KERNEL",
    "HARD_KERNEL",
)
_TORCH_PENALIZED_MAE = (
    "_penalized_mae_forward",
    "_PenalizedMAEFunction",
    "_penalized_mae_autograd",
    "_FusedCpuPenalizedMAE",
    "_penalized_mae_fused_cpu",
    "_check_tensor",
    "penalized_mae",
)
_TORCH_SURROGATES = (
    "_check",
    "_sech2",
    "_round_cell",
    "_round_value",
    "_round_derivative",
    "_floor_derivative",
    "_ceil_derivative",
    "_step_derivative",
    "_sign_derivative",
    "_hard_sign",
    "_hard_step",
    "_WithDerivative",
    "_WithDerivativeForwardMode",
    "_PORTABLE",
    "_KERNELS",
    "_Fused",
    "_parameters",
    "_surrogate",
)
_KERAS_PENALIZED_MAE = (
    "_check_shapes",
    "_sample_count",
    "_excess",
    "_loss_per_sample",
    "_gradient_of_prediction",
    "_penalized_mae_per_sample",
    "penalized_mae",
)
# _sample_count's static-shape branch runs only where functions are traced with a known batch size
# (JAX); TensorFlow traces with an unknown one and takes the other branch: the function is in both
# the TensorFlow row above and a JAX row.
# _floor, _ceil and _tanh fall back to other ops only where Keras changes the dtype (JAX): their own row.
_KERAS_SURROGATES = (
    "_prepare",
    "_sign",
    "_round_cell",
    "_shifted_cell",
    "_rounding",
    "_step_value",
    "_step_derivative",
    "_sign_value",
    "_sign_derivative",
    "_hard_step",
    "_FUNCTIONS",
    "_surrogate",
    "_with_gradient",
)
_KERAS_SURROGATES_JAX = ("_floor", "_ceil", "_tanh")
_KERAS_OVERLAP = ("_overlap_stats_keras", "overlap_rows", "overlap_per_sample", "per_sample")
_KERAS_INPUTS = (
    "is_label_map",
    "check_values",
    "check_range",
    "ignored_positions",
    "weight_map",
    "prepare_inputs",
    "label_indices",
    "_per_position",
    "resolve_data_format",
    "class_axis",
    "per_position_shapes",
)

# The table to edit when the code moves: one row per (source file, region) and the tests that
# should kill its mutants. Keep each selection to a few seconds up to ~30 s; put the file that
# fails first for most mutants first (pytest stops at the first failure, -x).
TARGETS = (
    Target(
        "overlap-options",
        "losses/_overlap.py",
        ("Member", "OverlapOptions"),
        ("tests/test_overlap_formula.py", "tests/test_torch_overlap.py", "tests/test_torch_dice.py"),
    ),
    Target(
        "overlap-form",
        "losses/_overlap.py",
        _OVERLAP_FORM,
        ("tests/test_overlap_formula.py", "tests/test_torch_overlap.py", "tests/test_torch_dice.py"),
    ),
    Target(
        "overlap-members",
        "losses/_overlap.py",
        _OVERLAP_MEMBERS,
        ("tests/test_overlap_formula.py", "tests/test_torch_overlap.py"),
    ),
    Target(
        "focal-options",
        "losses/_cross_entropy.py",
        ("FocalOptions", "PROBABILITY_MIN", "PairOptions"),
        ("tests/test_torch_cross_entropy.py",),
    ),
    Target(
        "torch-fused-cpu",
        "losses/torch/_fused_cpu.py",
        (),
        ("tests/test_torch_cpu_kernel.py", "tests/test_torch_cross_entropy.py"),
    ),
    Target(
        "cpu-overlap",
        "losses/torch/_kernels/cpu_overlap.c",
        _CPU_OVERLAP,
        ("tests/test_torch_cpu_kernel.py", "tests/test_torch_cross_entropy.py"),
    ),
    Target("cpu-term", "losses/torch/_kernels/cpu_overlap.c", _CPU_TERM, ("tests/test_torch_cross_entropy.py",)),
    Target(
        "cpu-formula",
        "losses/torch/_kernels/cpu_formula.c",
        (),
        ("tests/test_overlap_formula.py", "tests/test_torch_cpu_kernel.py", "tests/test_torch_cross_entropy.py"),
    ),
    Target(
        "cpu-elementwise",
        "losses/torch/_kernels/cpu_elementwise.c",
        _CPU_ELEMENTWISE,
        ("tests/test_torch_elementwise_cpu.py",),
    ),
    Target(
        "penalized-mae-math",
        "losses/_penalized_mae.py",
        (),
        ("losses/_penalized_mae.py", "tests/test_torch_penalized_mae.py"),
    ),
    Target(
        "surrogates-math",
        "losses/_surrogates.py",
        ("ALPHA_MIN", "ALPHA_MAX", "check_alpha", "check_options", "round_scale"),
        ("tests/test_torch_surrogates.py",),
    ),
    Target(
        "torch-penalized-mae",
        "losses/torch/_penalized_mae.py",
        _TORCH_PENALIZED_MAE,
        ("losses/torch/_penalized_mae.py", "tests/test_torch_penalized_mae.py"),
    ),
    Target(
        "torch-surrogates",
        "losses/torch/_surrogates.py",
        _TORCH_SURROGATES,
        ("losses/torch/_surrogates.py", "tests/test_torch_surrogates.py"),
    ),
    Target(
        "keras-penalized-mae",
        "losses/keras/_penalized_mae.py",
        _KERAS_PENALIZED_MAE,
        ("losses/keras/_penalized_mae.py", "tests/test_keras_penalized_mae.py"),
    ),
    Target(
        "keras-penalized-mae-jax",
        "losses/keras/_penalized_mae.py",
        ("_sample_count",),
        ("tests/test_keras_penalized_mae.py",),
        env=(("KERAS_BACKEND", "jax"),),
    ),
    Target(
        "keras-surrogates",
        "losses/keras/_surrogates.py",
        _KERAS_SURROGATES,
        ("losses/keras/_surrogates.py", "tests/test_keras_surrogates.py"),
    ),
    Target(
        "keras-surrogates-jax",
        "losses/keras/_surrogates.py",
        _KERAS_SURROGATES_JAX,
        ("tests/test_keras_surrogates.py",),
        env=(("KERAS_BACKEND", "jax"),),
    ),
    Target(
        "keras-overlap",
        "losses/keras/_overlap.py",
        _KERAS_OVERLAP,
        (
            "tests/test_keras_overlap.py",
            "tests/test_keras_dice.py",
            "tests/test_keras_robustness.py",
            "tests/test_distributed_tensorflow.py",
        ),
    ),
    Target(
        "keras-inputs",
        "losses/keras/_inputs.py",
        _KERAS_INPUTS,
        (
            "tests/test_keras_overlap.py",
            "tests/test_keras_dice.py",
            "tests/test_keras_robustness.py",
            "tests/test_keras_data_format.py",
        ),
    ),
)


@dataclasses.dataclass(frozen=True)
class Mutant:
    target: str
    path: str
    start: int  # character offsets of the replaced text in the file
    end: int
    replacement: str
    kind: str
    line: int
    original_text: str  # the changed line(s), before and after
    mutated_text: str

    @property
    def key(self) -> str:
        return f"{self.target}:{self.start}:{self.end}:{self.replacement}"

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.original_text} -> {self.mutated_text}"


def _line_starts(source: str) -> list[int]:
    starts = [0]
    for match in re.finditer("\n", source):
        starts.append(match.end())
    return starts


def _changed_lines(source: str, mutated: str, start: int, end: int, replacement: str) -> tuple[int, str, str]:
    """(first line number, original line(s), mutated line(s)) around the edit, stripped."""
    first = source.rfind("\n", 0, start) + 1
    last = source.find("\n", end)
    last = len(source) if last < 0 else last
    delta = len(replacement) - (end - start)

    def clean(text: str) -> str:
        lines = [line.rstrip().rstrip("\\").strip() for line in text.split("\n")]
        joined = " | ".join(line for line in lines if line)
        return joined if len(joined) <= 200 else joined[:197] + "..."

    return source.count("\n", 0, start) + 1, clean(source[first:last]), clean(mutated[first : last + delta])


def _number_mutations(value: float | int, is_float: bool) -> list[float | int]:
    if value == 0:
        return [1.0 if is_float else 1]
    if value == 1:
        return [0.0, 2.0] if is_float else [0, 2]
    if is_float:
        return [value * 2.0, -value]
    return [value + 1]


# ------------------------------------------------------------------------------------------------
# Python
# ------------------------------------------------------------------------------------------------

_BINOP_SWAPS = {
    ast.Add: "-",
    ast.Sub: "+",
    ast.Mult: "/",
    ast.Div: "*",
    ast.FloorDiv: "/",
    ast.Pow: "*",
    ast.Mod: "//",
    ast.BitAnd: "|",
    ast.BitOr: "&",
}
_BINOP_TOKENS = {
    ast.Add: r"\+",
    ast.Sub: "-",
    ast.Mult: r"\*(?!\*)",
    ast.Div: "/(?!/)",
    ast.FloorDiv: "//",
    ast.Pow: r"\*\*",
    ast.Mod: "%",
    ast.BitAnd: "&",
    ast.BitOr: r"\|",
}
_COMPARE_TOKENS = {
    ast.Lt: "<(?!=)",
    ast.LtE: "<=",
    ast.Gt: ">(?!=)",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: r"\bis\b(?!\s+not\b)",
    ast.IsNot: r"\bis\s+not\b",
    ast.In: r"(?<!not )\bin\b",
    ast.NotIn: r"\bnot\s+in\b",
}
_COMPARE_SWAPS = {
    ast.Lt: ["<=", ">="],
    ast.LtE: ["<", ">"],
    ast.Gt: [">=", "<="],
    ast.GtE: [">", "<"],
    ast.Eq: ["!="],
    ast.NotEq: ["=="],
    ast.Is: ["is not"],
    ast.IsNot: ["is"],
    ast.In: ["not in"],
    ast.NotIn: ["in"],
}
_AUGASSIGN_SWAPS = {ast.Add: "-=", ast.Sub: "+=", ast.Mult: "/=", ast.Div: "*="}
_NAME_SWAPS = {
    "max": "min",
    "min": "max",
    "maximum": "minimum",
    "minimum": "maximum",
    "floor": "ceil",
    "ceil": "floor",
    "amax": "amin",
    "amin": "amax",
}
# Arithmetic written as calls (keras.ops, torch, numpy): swapped only on those modules.
_TENSOR_MODULES = {"ops", "torch", "np", "numpy", "tf"}
_TENSOR_OPERATOR_SWAPS = {
    "add": "subtract",
    "subtract": "add",
    "multiply": "divide",
    "divide": "multiply",
    "greater": "greater_equal",
    "greater_equal": "greater",
    "less": "less_equal",
    "less_equal": "less",
}


class _PythonMutator:
    def __init__(self, target: Target, source: str) -> None:
        self.target = target
        self.source = source
        self.tree = ast.parse(source)
        self.line_starts = _line_starts(source)
        self.lines = source.split("\n")
        self.edits: list[tuple[int, int, str, str]] = []

    def offset(self, line: int, col: int) -> int:
        """Character offset of (1-based line, UTF-8 byte column) as the ast module gives them."""
        text = self.lines[line - 1]
        return self.line_starts[line - 1] + len(text.encode("utf-8")[:col].decode("utf-8"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.source[start:end]

    def add(self, start: int, end: int, replacement: str, kind: str) -> None:
        self.edits.append((start, end, replacement, kind))

    def add_node(self, node: ast.AST, replacement: str, kind: str) -> None:
        start, end = self.span(node)
        self.add(start, end, replacement, kind)

    def operator_between(self, left: ast.AST, right: ast.AST, pattern: str) -> tuple[int, int] | None:
        """The span of the operator token between two operands (comments ignored)."""
        gap_start, gap_end = self.span(left)[1], self.span(right)[0]
        gap = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), self.source[gap_start:gap_end])
        matches = list(re.finditer(pattern, gap))
        if len(matches) != 1:
            return None
        return gap_start + matches[0].start(), gap_start + matches[0].end()

    # The walk: statements and expressions of the regions, skipping what is no code to mutate.

    def regions(self) -> list[ast.AST]:
        if not self.target.regions:
            return list(self.tree.body)
        found = []
        for name in self.target.regions:
            owner, _, member = name.partition(".")
            nodes = []
            for node in self.tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == owner:
                    nodes.append(node)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)) and not member:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(isinstance(t, ast.Name) and t.id == owner for t in targets):
                        nodes.append(node)
            if member:
                nodes = [
                    n
                    for cls in nodes
                    if isinstance(cls, ast.ClassDef)
                    for n in cls.body
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == member
                ]
            if not nodes:
                raise SystemExit(f"target {self.target.name}: no region {name!r} in {self.target.path}")
            found.extend(nodes)
        return found

    def mutants(self) -> list[tuple[int, int, str, str]]:
        for node in self.regions():
            self.statement(node)
        return self.edits

    def body(self, statements: list[ast.stmt]) -> None:
        for index, statement in enumerate(statements):
            if (
                index == 0
                and isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                continue  # docstring
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.body(node.body)  # not the decorators, arguments, defaults or annotations
            return
        if isinstance(node, ast.Raise):
            self.add_node(node, "pass", "remove raise")
            return  # the message is no code to mutate
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self.add_node(node, "pass", "remove call statement")
        if isinstance(node, ast.AugAssign):
            self.add_node(node, "pass", "remove augmented assignment")
            swapped = _AUGASSIGN_SWAPS.get(type(node.op))
            span = self.operator_between(node.target, node.value, r"\S+=") if swapped else None
            if span:
                self.add(*span, swapped, "augmented assignment")
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.value)):
                self.add_node(node, "pass", "remove reassignment")
        if isinstance(node, (ast.If, ast.While)):
            self.negate(node.test)
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expression(node.value)
            return
        for _, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    for statement in value:
                        self.statement(statement)
                else:
                    for item in value:
                        if isinstance(item, ast.expr):
                            self.expression(item)
                        elif isinstance(item, ast.AST):
                            self.other(item)
            elif isinstance(value, ast.expr):
                self.expression(value)
            elif isinstance(value, ast.AST):
                self.other(value)

    def other(self, node: ast.AST) -> None:
        """Nodes that are neither statements nor expressions: keywords, comprehensions, handlers."""
        if isinstance(node, ast.keyword):
            if node.arg in ("min", "max"):
                start = self.offset(node.lineno, node.col_offset)
                self.add(start, start + len(node.arg), _NAME_SWAPS[node.arg], "keyword swap")
            self.expression(node.value)
            return
        if isinstance(node, ast.comprehension):
            for condition in node.ifs:
                self.negate(condition)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.statement(child)
            elif isinstance(child, ast.expr):
                self.expression(child)
            else:
                self.other(child)

    def expression(self, node: ast.expr) -> None:
        if isinstance(node, ast.JoinedStr):
            return
        if isinstance(node, ast.Constant):
            self.constant(node)
            return
        if isinstance(node, ast.BinOp):
            swapped = _BINOP_SWAPS.get(type(node.op))
            span = self.operator_between(node.left, node.right, _BINOP_TOKENS[type(node.op)]) if swapped else None
            if span:
                self.add(*span, swapped, "arithmetic operator")
            if isinstance(node.op, (ast.Add, ast.Sub)) and not isinstance(node.right, ast.Constant):
                self.add_node(node, f"({self.text(node.left)})", "drop right operand")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            self.add_node(node, f"({self.text(node.operand)})", "remove unary operator")
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for index, op in enumerate(node.ops):
                span = self.operator_between(operands[index], operands[index + 1], _COMPARE_TOKENS[type(op)])
                if span:
                    for replacement in _COMPARE_SWAPS[type(op)]:
                        self.add(*span, replacement, "comparison")
        elif isinstance(node, ast.BoolOp):
            word, other = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for left, right in zip(node.values, node.values[1:]):
                span = self.operator_between(left, right, rf"\b{word}\b")
                if span:
                    self.add(*span, other, "boolean operator")
        elif isinstance(node, ast.IfExp):
            self.negate(node.test)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.Lambda):
            self.expression(node.body)
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expression(child)
            elif isinstance(child, ast.AST) and not isinstance(
                child, (ast.expr_context, ast.operator, ast.cmpop, ast.unaryop, ast.boolop)
            ):
                self.other(child)

    def negate(self, condition: ast.expr) -> None:
        # `not x` and a single comparison already get their negation (removing `not`, `< -> >=`)
        if isinstance(condition, ast.UnaryOp) and isinstance(condition.op, ast.Not):
            return
        if isinstance(condition, ast.Compare) and len(condition.ops) == 1:
            return
        self.add_node(condition, f"not ({self.text(condition)})", "negate condition")

    def call(self, node: ast.Call) -> None:
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
        if name == "where" and len(node.args) == 3 and not node.keywords:
            _, yes, no = node.args
            (yes_start, yes_end), (no_start, no_end) = self.span(yes), self.span(no)
            self.add(
                yes_start, no_end, self.text(no) + self.source[yes_end:no_start] + self.text(yes), "swap where branches"
            )
        swapped = _NAME_SWAPS.get(name)
        if (
            swapped is None
            and isinstance(function, ast.Attribute)
            and isinstance(function.value, ast.Name)
            and function.value.id in _TENSOR_MODULES
        ):
            swapped = _TENSOR_OPERATOR_SWAPS.get(name)
        if swapped:
            end = self.span(function)[1]
            self.add(end - len(name), end, swapped, "function swap")

    def constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            self.add_node(node, str(not value), "constant")
        elif isinstance(value, (int, float)):
            for new in _number_mutations(value, isinstance(value, float)):
                text = repr(new)
                self.add_node(node, f"({text})" if new < 0 else text, "constant")


def python_mutants(target: Target, source: str) -> list[Mutant]:
    mutator = _PythonMutator(target, source)
    original = ast.dump(mutator.tree)
    seen = {original}
    mutants = []
    for start, end, replacement, kind in sorted(set(mutator.mutants())):
        mutated = source[:start] + replacement + source[end:]
        try:
            dump = ast.dump(ast.parse(mutated))
        except SyntaxError:
            raise SystemExit(
                f"internal error: an invalid mutant of {target.path} at offset {start}: "
                f"{source[start:end]!r} -> {replacement!r}"
            ) from None
        if dump in seen:
            continue  # equal to the original or to an earlier mutant
        seen.add(dump)
        line, before, after = _changed_lines(source, mutated, start, end, replacement)
        mutants.append(Mutant(target.name, target.path, start, end, replacement, kind, line, before, after))
    return mutants


# ------------------------------------------------------------------------------------------------
# C
# ------------------------------------------------------------------------------------------------

_C_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\\\n)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<number>0[xX][0-9a-fA-F]+[uUlL]*|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fFlLuU]*)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op><<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\+=|-=|\*=|/=|%=|&=|\|=|\^=|\#\#|[^\s\w])
""",
    re.VERBOSE | re.DOTALL,
)

# Words after which `*` and `&` are a declarator or address-of, not a binary operator.
_C_TYPES = {
    "const",
    "void",
    "char",
    "int",
    "float",
    "double",
    "long",
    "short",
    "unsigned",
    "signed",
    "struct",
    "int32_t",
    "int64_t",
    "uint8_t",
    "T",
    "Pass",
    "Share",
    "pthread_t",
    "pass_fn",
    "return",
    "sizeof",
    "static",
    "inline",
    "typedef",
    "uint16_t",
    "uint32_t",
    "Elementwise",
    "R",
    "S",
}
_C_CALLS_TO_ARGUMENT = {"fabsf", "negative_magnitude", "sigmoid", "exp_full", "exp_nonpositive", "log_full"}
_C_NO_STATEMENT_REMOVAL = {"for", "if", "while", "return", "sizeof", "switch", "do", "else"}


@dataclasses.dataclass
class _Token:
    kind: str
    text: str
    start: int
    end: int
    mutable: bool = False


def _c_tokens(source: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(source):
        match = _C_TOKEN.match(source, position)
        if match is None:
            raise SystemExit(f"cannot tokenize C at offset {position}: {source[position : position + 20]!r}")
        kind = match.lastgroup
        if kind not in ("space", "comment"):
            tokens.append(_Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    return tokens


def _logical_line_end(source: str, start: int) -> int:
    position = start
    while True:
        end = source.find("\n", position)
        if end < 0:
            return len(source)
        if source[end - 1] != "\\":
            return end
        position = end + 1


def _c_matching(tokens: list[_Token]) -> dict[int, int]:
    """Index of the matching bracket for every ( [ { and ) ] }."""
    pairs, stack = {}, []
    for index, token in enumerate(tokens):
        if token.text in "([{" and token.kind == "op":
            stack.append(index)
        elif token.text in ")]}" and token.kind == "op" and stack:
            opening = stack.pop()
            pairs[opening], pairs[index] = index, opening
    return pairs


def _c_region_spans(source: str, tokens: list[_Token], pairs: dict[int, int], target: Target) -> list[tuple[int, int]]:
    spans = []
    for name in target.regions:
        found = False
        define = re.search(rf"^[ \t]*#[ \t]*define[ \t]+{re.escape(name)}\(", source, re.MULTILINE)
        if define:
            spans.append((define.start(), _logical_line_end(source, define.start())))
            found = True
        for index, token in enumerate(tokens[:-1]):
            if token.kind == "name" and token.text == name and tokens[index + 1].text == "(":
                close = pairs.get(index + 1)
                if close is not None and close + 1 < len(tokens) and tokens[close + 1].text == "{":
                    spans.append((token.start, tokens[pairs[close + 1]].end))
                    found = True
        if not found:
            raise SystemExit(f"target {target.name}: no function or macro {name!r} in {target.path}")
    return spans or [(0, len(source))]


def _mark_mutable(source: str, tokens: list[_Token], spans: list[tuple[int, int]]) -> None:
    """Tokens inside a region and outside preprocessor lines (but inside function-like macro bodies)."""
    skipped = []
    for match in re.finditer(r"^[ \t]*#", source, re.MULTILINE):
        end = _logical_line_end(source, match.start())
        header = re.match(r"[ \t]*#[ \t]*define[ \t]+\w+\(", source[match.start() : end])
        if header:  # the body of a function-like macro is code
            close = source.index(")", match.start() + header.end())
            skipped.append((match.start(), close + 1))
        else:
            skipped.append((match.start(), end))
    skipped_starts = [s for s, _ in skipped]
    for token in tokens:
        inside = any(s <= token.start and token.end <= e for s, e in spans)
        k = bisect.bisect_right(skipped_starts, token.start) - 1
        in_directive = k >= 0 and token.start < skipped[k][1]
        token.mutable = inside and not in_directive


def _c_number(text: str) -> tuple[float | int, bool, str]:
    hexadecimal = text.lower().startswith("0x")
    suffix = re.search(r"[lLuU]*$" if hexadecimal else r"[fFlLuU]*$", text).group()
    body = text[: len(text) - len(suffix)] if suffix else text
    if hexadecimal:
        return int(body, 16), False, suffix
    is_float = any(c in body for c in ".eE") or "f" in suffix.lower()
    return (float(body) if is_float else int(body)), is_float, suffix


def _c_format(value: float | int, is_float: bool, suffix: str, hexadecimal: bool) -> str:
    if not is_float:
        text = hex(value).upper().replace("0X", "0x") if hexadecimal else str(value)
        return text + suffix
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    text += suffix
    return f"({text})" if value < 0 else text


def c_mutants(target: Target, source: str) -> list[Mutant]:
    tokens = _c_tokens(source)
    pairs = _c_matching(tokens)
    _mark_mutable(source, tokens, _c_region_spans(source, tokens, pairs, target))
    edits: list[tuple[int, int, str, str]] = []

    def binary(index: int) -> bool:
        previous = tokens[index - 1] if index else None
        if previous is None:
            return False
        if previous.kind == "number" or previous.text in (")", "]"):
            return True
        return previous.kind == "name" and previous.text not in _C_TYPES

    # The step of a for loop (`++j`, `n0 += TILE`) is left alone: changing it only makes the loop
    # endless, a timeout that says nothing about the tests.
    loop_steps = set()
    for index, token in enumerate(tokens[:-1]):
        if token.text == "for" and tokens[index + 1].text == "(":
            close = pairs[index + 1]
            semicolons = [k for k in range(index + 2, close) if tokens[k].text == ";"]
            if len(semicolons) == 2:
                loop_steps.update(range(semicolons[1] + 1, close))
    for index, token in enumerate(tokens):
        if not token.mutable or index in loop_steps:
            continue
        text, following = token.text, tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "number":
            value, is_float, suffix = _c_number(text)
            for new in _number_mutations(value, is_float):
                edits.append(
                    (
                        token.start,
                        token.end,
                        _c_format(new, is_float, suffix, text.lower().startswith("0x")),
                        "constant",
                    )
                )
        elif token.kind == "name":
            previous = tokens[index - 1].text if index else ""
            if (
                text in _C_CALLS_TO_ARGUMENT
                and following is not None
                and following.text == "("
                and previous not in _C_TYPES
            ):
                edits.append((token.start, following.start, "", "call replaced by its argument"))
            if text == "if" and following is not None and following.text == "(":
                close = tokens[pairs[index + 1]]
                edits.append(
                    (following.end, close.start, f"!({source[following.end : close.start]})", "negate condition")
                )
            at_statement = previous in (";", "{", "}") or (
                previous == ")"
                and pairs.get(index - 1) is not None
                and pairs[index - 1] > 0
                and tokens[pairs[index - 1] - 1].text in ("for", "if", "while")
            )
            if at_statement and text not in _C_NO_STATEMENT_REMOVAL and following is not None and following.text == "(":
                close = pairs.get(index + 1)
                if close is not None and close + 1 < len(tokens) and tokens[close + 1].text == ";":
                    edits.append((token.start, tokens[close].end, "(void)0", "remove call statement"))
            if following is not None and following.text == "?" and previous in ("=", "(", ",", "?", ":", "return"):
                edits.append((token.start, token.start, "!", "negate condition"))
        elif token.kind == "op":
            if text in "+-*/" and len(text) == 1:
                if binary(index):
                    edits.append(
                        (token.start, token.end, {"+": "-", "-": "+", "*": "/", "/": "*"}[text], "arithmetic operator")
                    )
                elif text == "-":
                    edits.append((token.start, token.end, "", "remove unary operator"))
            elif text in ("<", "<=", ">", ">=", "==", "!="):
                for replacement in {
                    "<": ["<=", ">="],
                    "<=": ["<", ">"],
                    ">": [">=", "<="],
                    ">=": [">", "<"],
                    "==": ["!="],
                    "!=": ["=="],
                }[text]:
                    edits.append((token.start, token.end, replacement, "comparison"))
            elif text in ("&&", "||"):
                edits.append((token.start, token.end, "||" if text == "&&" else "&&", "boolean operator"))
            elif text in ("&", "|") and binary(index):
                edits.append((token.start, token.end, "|" if text == "&" else "&", "boolean operator"))
            elif text == "!":
                edits.append((token.start, token.end, "", "remove unary operator"))
            elif text in ("+=", "-=", "*=", "/=") and index not in loop_steps:
                edits.append(
                    (
                        token.start,
                        token.end,
                        {"+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}[text],
                        "augmented assignment",
                    )
                )
                semicolon = next((k for k in range(index + 1, len(tokens)) if tokens[k].text == ";"), None)
                if semicolon is not None:
                    neutral = "0" if text in ("+=", "-=") else "1"
                    edits.append((token.end, tokens[semicolon].start, f" {neutral}", "remove augmented assignment"))
            elif text == "?":
                previous = tokens[index - 1]
                if previous.text == ")":
                    opening = pairs[index - 1]
                    before = tokens[opening - 1].text if opening else ""
                    if before in ("=", "(", ",", "?", ":", "return"):
                        edits.append((tokens[opening].start, tokens[opening].start, "!", "negate condition"))
    mutants, seen = [], {source}
    for start, end, replacement, kind in sorted(set(edits)):
        mutated = source[:start] + replacement + source[end:]
        if mutated in seen:
            continue
        seen.add(mutated)
        line, before, after = _changed_lines(source, mutated, start, end, replacement)
        mutants.append(Mutant(target.name, target.path, start, end, replacement, kind, line, before, after))
    return mutants


def mutants_of(target: Target, root: Path = ROOT) -> list[Mutant]:
    source = (root / target.path).read_text(encoding="utf-8")
    if target.path.endswith(".py"):
        return python_mutants(target, source)
    if target.path.endswith(".c"):
        return c_mutants(target, source)
    raise SystemExit(f"target {target.name}: cannot mutate {target.path} (neither .py nor .c)")


def sample(mutants: list[Mutant], size: int | None, seed: int, target: str) -> list[Mutant]:
    """At most ``size`` mutants, the same ones for the same seed, target and source."""
    if size is None or len(mutants) <= size:
        return mutants
    chosen = random.Random(f"{seed}:{target}").sample(range(len(mutants)), size)
    return [mutants[i] for i in sorted(chosen)]


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def _tree_files(root: Path) -> list[str]:
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    return [name for name in listed if name and (root / name).is_file()]


_FLAGS_LOCK = threading.Lock()
_FLAGS: dict[str, list[str]] = {}


def _library_flags(python: str) -> dict[str, list[str]]:
    """The flags and ``-D`` definitions of each C file of the library, as the build passes them."""
    with _FLAGS_LOCK:
        if not _FLAGS:
            code = (
                "import json; from losses.torch._kernels import _clib; "
                "print(json.dumps({s.file: s.compile_flags() for s in _clib._sources()}))"
            )
            result = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            _FLAGS.update(json.loads(result.stdout.strip().splitlines()[-1]))
        return _FLAGS


class Job:
    """A copy of the tree in a temporary directory, with its own cache for the C library."""

    def __init__(self, number: int, base: Path, files: list[str], python: str) -> None:
        self.number = number
        self.root = base / f"tree-{number}"
        self.cache = base / f"cache-{number}"
        for name in files:
            destination = self.root / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination)
        self.cache.mkdir()
        self.python = python
        self.process: subprocess.Popen | None = None

    def interrupt(self) -> None:
        """Kills the running test selection (its whole process group)."""
        process = self.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    def run_tests(self, target: Target, timeout: float | None) -> tuple[str, float, str]:
        """('passed' | 'failed' | 'timeout', seconds, the last lines of the output)."""
        env = {**os.environ, "CI": "true", "LOSSES_CACHE_DIR": str(self.cache), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("LOSSES_KERNELS", None)
        env.update(target.env)
        command = [self.python, "-m", "pytest", *PYTEST, *target.tests]
        begin = time.monotonic()
        process = subprocess.Popen(
            command, cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.process = process
        try:
            output, _ = process.communicate(timeout=timeout)
            status = "passed" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            status = "timeout"
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.process = None
        tail = "\n".join(output.decode(errors="replace").strip().splitlines()[-3:])
        return status, time.monotonic() - begin, tail

    def compiles(self, path: Path) -> tuple[bool, str]:
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
        flags = _library_flags(self.python).get(path.name, [])
        result = subprocess.run(
            [compiler, "-std=c99", "-fopenmp-simd", *flags, "-fsyntax-only", "-w", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        return result.returncode == 0, (errors or [""])[0].replace(str(self.root) + "/", "")

    def run_mutant(self, target: Target, mutant: Mutant, timeout: float) -> dict:
        path = self.root / mutant.path
        original = path.read_text(encoding="utf-8")
        libraries = set(self.cache.glob("*"))
        try:
            path.write_text(mutant.apply(original), encoding="utf-8")
            if mutant.path.endswith(".c"):
                ok, error = self.compiles(path)
                if not ok:
                    return {"status": "compile-failed", "seconds": 0.0, "tail": error}
            status, seconds, tail = self.run_tests(target, timeout)
            return {
                "status": {"passed": "survived", "failed": "killed"}.get(status, status),
                "seconds": seconds,
                "tail": tail,
            }
        finally:
            path.write_text(original, encoding="utf-8")
            for built in set(self.cache.glob("*")) - libraries:  # a mutant's library
                built.unlink(missing_ok=True)


def _check_imports_from_copy(job: Job) -> None:
    result = subprocess.run(
        [job.python, "-c", "import losses; print(losses.__file__)"],
        cwd=job.root,
        capture_output=True,
        text=True,
        check=False,
    )
    location = Path(result.stdout.strip()).resolve()
    if not str(location).startswith(str(job.root.resolve())):
        raise SystemExit(f"the copy of the tree imports losses from {location}, not from {job.root}")


def run(
    targets: list[Target],
    chosen: dict[str, list[Mutant]],
    jobs: int,
    python: str,
    timeout_factor: float,
    log: Path | None,
    done: dict[str, dict],
) -> tuple[dict, dict]:
    """Runs every chosen mutant; returns (baseline seconds per target, result per mutant key)."""
    results: dict[str, dict] = dict(done)
    baselines = {
        key.partition(":")[2]: entry["seconds"] for key, entry in done.items() if entry["status"] == "baseline"
    }
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="losses-mutation-") as base:
        files = _tree_files(ROOT)
        workers = [Job(k, Path(base), files, python) for k in range(jobs)]
        _check_imports_from_copy(workers[0])
        pending_targets = [t for t in targets if any(m.key not in results for m in chosen[t.name])]
        baseline_queue: queue.Queue = queue.Queue()
        for target in pending_targets:
            baseline_queue.put(target)
        failures = []

        def baseline_worker(job: Job) -> None:
            while True:
                try:
                    target = baseline_queue.get_nowait()
                except queue.Empty:
                    return
                status, seconds, tail = job.run_tests(target, None)
                with lock:
                    baselines[target.name] = seconds
                    print(f"baseline {target.name}: {status} in {seconds:.1f} s", flush=True)
                    if status != "passed":
                        failures.append(f"{target.name}: {tail}")
                    elif log is not None:
                        with log.open("a", encoding="utf-8") as stream:
                            entry = {"status": "baseline", "seconds": seconds, "key": f"baseline:{target.name}"}
                            stream.write(json.dumps(entry) + "\n")

        threads = [threading.Thread(target=baseline_worker, args=(job,)) for job in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise SystemExit("the selection fails on the unmutated tree:\n" + "\n".join(failures))

        work: queue.Queue = queue.Queue()
        by_name = {t.name: t for t in targets}
        pending = [m for t in pending_targets for m in chosen[t.name] if m.key not in results]
        for mutant in pending:
            work.put(mutant)
        total, started = len(pending), time.monotonic()
        stop = threading.Event()

        def mutant_worker(job: Job) -> None:
            while not stop.is_set():
                try:
                    mutant = work.get_nowait()
                except queue.Empty:
                    return
                target = by_name[mutant.target]
                result = job.run_mutant(target, mutant, timeout_factor * baselines[target.name] + 30.0)
                result["key"] = mutant.key
                if stop.is_set():
                    return  # interrupted: the result is not one
                with lock:
                    results[mutant.key] = result
                    count = sum(1 for m in pending if m.key in results)
                    elapsed = time.monotonic() - started
                    print(
                        f"[{count}/{total} {elapsed / 60:.1f} min] {result['status']:>14} "
                        f"{result['seconds']:5.1f} s  {mutant.describe()}",
                        flush=True,
                    )
                    if log is not None:
                        with log.open("a", encoding="utf-8") as stream:
                            stream.write(json.dumps(result) + "\n")

        threads = [threading.Thread(target=mutant_worker, args=(job,), daemon=True) for job in workers]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        except KeyboardInterrupt:
            stop.set()
            print("interrupted: stopping the running mutants; the tree was never modified", flush=True)
            for job in workers:
                job.interrupt()
            for thread in threads:
                thread.join()
            raise
    return baselines, results


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------

STATUSES = ("killed", "survived", "timeout", "compile-failed")


def score(counts: dict[str, int]) -> float | None:
    detected = counts["killed"] + counts["timeout"]
    total = detected + counts["survived"]
    return detected / total if total else None


def report(
    targets: list[Target],
    all_mutants: dict[str, list[Mutant]],
    chosen: dict[str, list[Mutant]],
    results: dict[str, dict],
    baselines: dict[str, float],
    header: str,
) -> str:
    lines = [
        header,
        "",
        "| target | file | mutants | run | killed | survived | timeout | compile-failed | score | baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    overall = dict.fromkeys(STATUSES, 0)
    survivors = []
    for target in targets:
        counts = dict.fromkeys(STATUSES, 0)
        for mutant in chosen[target.name]:
            result = results.get(mutant.key)
            if result is None:
                continue
            counts[result["status"]] += 1
            if result["status"] == "survived":
                survivors.append(mutant)
        for status in STATUSES:
            overall[status] += counts[status]
        value = score(counts)
        baseline = baselines.get(target.name)
        lines.append(
            f"| {target.name} | `{target.path}` | {len(all_mutants[target.name])} | "
            f"{sum(counts.values())} | {counts['killed']} | {counts['survived']} | {counts['timeout']} | "
            f"{counts['compile-failed']} | {'-' if value is None else f'{100 * value:.1f}%'} | "
            f"{'-' if baseline is None else f'{baseline:.0f} s'} |"
        )
    value = score(overall)
    lines.append(
        f"| **all** | | {sum(len(m) for m in all_mutants.values())} | {sum(overall.values())} | "
        f"{overall['killed']} | {overall['survived']} | {overall['timeout']} | {overall['compile-failed']} | "
        f"{'-' if value is None else f'**{100 * value:.1f}%**'} | |"
    )
    lines += [
        "",
        "Score: (killed + timeout) / (killed + survived + timeout); compile-failed mutants are left out.",
        "",
        f"## Survivors ({len(survivors)})",
        "",
    ]
    for mutant in survivors:
        lines.append(f"- `{mutant.describe()}` ({mutant.target}, {mutant.kind})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", action="append", help="a target name (repeatable; default: all)")
    parser.add_argument("--list", action="store_true", help="list the targets and their mutant counts, run nothing")
    parser.add_argument("--show-mutants", action="store_true", help="print every (sampled) mutant, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own copy of the tree")
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="[TARGET=]N",
        help="at most N mutants per target (or for TARGET only; repeatable), chosen with --seed",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="TEXT",
        help="only the (sampled) mutants whose description (file:line: original -> mutated) "
        "contains TEXT (repeatable: any of them)",
    )
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=3.0,
        help="a mutant times out after this times the baseline duration plus 30 s (default 3)",
    )
    parser.add_argument("--report", type=Path, help="write the Markdown report here")
    parser.add_argument("--log", type=Path, help="append one JSON line per mutant here; with --resume, skip those")
    parser.add_argument("--resume", action="store_true", help="skip the mutants already in --log")
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="with --resume, run again the mutants that survived in --log (after new tests: "
        "a mutant the tests killed stays killed when tests are only added)",
    )
    parser.add_argument(
        "--only-logged",
        action="store_true",
        help="with --resume, keep only the (sampled) mutants that --log already holds: re-measure "
        "the part of a sample an earlier run got through",
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs pytest")
    args = parser.parse_args(argv)

    by_name = {t.name: t for t in TARGETS}
    unknown = sorted(set(args.target or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown target(s) {unknown}; the targets are {sorted(by_name)}")
    targets = [by_name[name] for name in args.target] if args.target else list(TARGETS)
    all_mutants = {t.name: mutants_of(t) for t in targets}
    sizes: dict[str | None, int] = {}
    for value in args.sample:
        name, _, size = value.rpartition("=")
        if name and name not in by_name:
            parser.error(f"--sample {value}: unknown target {name!r}")
        if not size.isdigit():
            parser.error(f"--sample {value}: expected N or TARGET=N")
        sizes[name or None] = int(size)
    chosen = {
        t.name: sample(all_mutants[t.name], sizes.get(t.name, sizes.get(None)), args.seed, t.name) for t in targets
    }
    if args.match:
        chosen = {
            name: [m for m in mutants if any(text in m.describe() for text in args.match)]
            for name, mutants in chosen.items()
        }
    if args.list:
        for target in targets:
            count, run_count = len(all_mutants[target.name]), len(chosen[target.name])
            regions = ", ".join(target.regions) or "whole file"
            print(
                f"{target.name:22} {count:4} mutants{'' if run_count == count else f' ({run_count} sampled)'}  "
                f"{target.path} [{regions}]\n{'':22} tests: {' '.join(target.tests)}"
            )
        return 0
    if args.show_mutants:
        for target in targets:
            for mutant in chosen[target.name]:
                print(f"{mutant.describe()}  ({mutant.kind})")
        return 0

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C, also when started in the background (where SIGINT is ignored), and kill: the copies
    # and the running test selections are cleaned up.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    done: dict[str, dict] = {}
    if args.resume and args.log and args.log.exists():
        for line in args.log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if args.rerun_survivors and entry["status"] == "survived":
                done.pop(entry["key"], None)
                continue
            done[entry["key"]] = entry
    elif args.log and args.log.exists():
        args.log.unlink()
    if args.only_logged:
        if not (args.resume and args.log and args.log.exists()):
            parser.error("--only-logged needs --resume and an existing --log")
        logged = {json.loads(line)["key"] for line in args.log.read_text(encoding="utf-8").splitlines()}
        chosen = {name: [m for m in mutants if m.key in logged] for name, mutants in chosen.items()}
        targets = [t for t in targets if chosen[t.name]]
    begin = time.monotonic()
    try:
        baselines, results = run(targets, chosen, max(1, args.jobs), args.python, args.timeout_factor, args.log, done)
    except KeyboardInterrupt:
        print("interrupted" + (f"; continue with --resume --log {args.log}" if args.log else ""), file=sys.stderr)
        return 130
    minutes = (time.monotonic() - begin) / 60
    chosen_keys = {m.key for ms in chosen.values() for m in ms}
    resumed = sum(1 for key in done if key in chosen_keys)
    test_minutes = sum(r["seconds"] for key, r in results.items() if key in chosen_keys) / 60
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "losses", "tests"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    command = "python tools/mutation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (
        f"# Mutation testing at {commit}{' (with uncommitted changes)' if dirty else ''}\n\n"
        f"Command: `{command}`  \nDate: {datetime.date.today().isoformat()}, this run: {minutes:.0f} min "
        f"with {args.jobs} job(s)"
        + (f" ({resumed} mutants taken from the log of an earlier run)" if resumed else "")
        + f"; the mutants' test selections ran {test_minutes:.0f} min in all"
    )
    if sizes:
        limits = ", ".join(f"{name}: {size}" for name, size in sizes.items() if name)
        default = f"at most {sizes[None]} mutants per target" if None in sizes else "all mutants of the other targets"
        header += (
            f"; sampled: {default}{f' ({limits})' if limits else ''}, chosen uniformly without replacement "
            f'by `random.Random("{args.seed}:<target>")` from the mutants in source order'
        )
    text = report(targets, all_mutants, chosen, results, baselines, header)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
