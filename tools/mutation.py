"""Mutation testing of the modules that carry Slipway's core promises (``make mutation``).

Each mutant is one plausible one-line bug (a comparison flipped, ``and`` for ``or``, a constant
nudged, a call or a ``raise`` dropped, a condition negated, a value returned as None). A mutant
is *killed* when the module's tests fail (or time out) with it, and *survives* when they pass.

How it runs, and why it is not mutmut or cosmic-ray: a parent process imports the libraries,
Slipway and the module's test files once; each mutant then runs in a forked child that swaps
the mutated function's code object (``__code__``, defaults) or module constant into the
already-imported module and runs ``pytest -x`` on the tests of that module's selection that
execute the mutated line. So a mutant costs those tests, not a fresh interpreter importing
scikit-learn, pandas and FastAPI (cosmic-ray starts one per mutant), nor tests that cannot see
it; and the worktree is never modified (cosmic-ray rewrites files in place; mutmut 3 copies the
tree into ``mutants/`` and has to make a src-layout editable install import from there).

Which tests execute which line: during the unmutated baseline run a line tracer filtered to the
module's file (``sys.settrace`` and ``threading.settrace``: threads the tests start are traced)
records the lines per test (``PerTestLines``). Lines a broader-than-function fixture runs count
for every test using it, lines a thread runs for the test that started it too, lines run outside
every test for all of them. A mutant in a function's definition (a default, a decorator) runs
the tests that execute any line of the function; one at module or class level (a constant, a
dataclass default) runs the whole selection. Mutants no test executes are ``uncovered``, not run.

Limits: tests that start other processes (``slipway serve``, kill -9 resumes, Dask clusters)
run the unmutated code there, so they are left out (``-m "not slow"``); a constant another
module imported by name keeps its old value there; a value a function caches (``lru_cache``,
module state) in one test and another test reads is seen only through the first. Strings
(messages) and logging calls are never mutated.

Usage::

    python tools/mutation.py                 # every module, one after the other
    python tools/mutation.py predict contract  # some modules (names as in MODULES)
    python tools/mutation.py --list            # the modules and their tests
    python tools/mutation.py keys -v --only 3  # a line per mutant: status, tests run, seconds

Results go to ``.mutation/<module>.json`` and a summary of survivors is printed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib
import json
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# KeyStore and its table: the unit tests, then keys working and revoked over HTTP.
_KEY_TESTS = [
    "tests/test_keys.py",
    "tests/serving/test_auth_limits.py::test_both_key_headers_work",
    "tests/serving/test_auth_limits.py::test_predict_keys_get_403_on_admin_routes",
    "tests/serving/test_auth_limits.py::test_revoked_key_stops_working_without_a_restart",
    "tests/serving/test_auth_limits.py::test_key_cache_keeps_the_last_copy_when_the_database_fails",
]

# module -> the tests that speak for it (files or node ids, fastest and sharpest first, then
# any extra pytest options such as -k): a mutant runs only these.
MODULES: dict[str, list[str]] = {
    "slipway.artifacts": [
        "tests/test_artifacts.py",
        "tests/test_registry.py::test_verify_rehashes_every_artifact",
        "tests/test_registry.py::test_corrupted_model_artifact_is_refused_before_loading",
    ],
    "slipway.contract": ["tests/test_contract.py", "tests/test_validation.py"],
    "slipway.validation": [
        "tests/test_validation.py",
        "tests/test_contract.py",
        "tests/test_predict.py",
    ],
    # The core's own tests, then one model served through ONNX (the `engine` a Model is
    # given) and batch scoring's columns; the ONNX backend's accuracy tests check backends.py,
    # not these lines (the reference GBC alone took 3 s of 7).
    "slipway.predict": [
        "tests/test_predict.py",
        "tests/test_backends.py::test_exact_ties_are_decided_by_scikit_learn",
        "tests/batch/test_scoring.py::test_batch_equals_online_row_by_row[multiclass]",
    ],
    "slipway.monitoring.stats": [
        "tests/monitoring/test_stats.py",
        "tests/monitoring/test_drift.py",
        "tests/monitoring/test_performance.py",
        "-k",
        "not cover_the_truth",
    ],
    "slipway.monitoring.drift": [
        "tests/monitoring/test_drift.py",
        "tests/monitoring/test_checks.py",
        "tests/monitoring/test_reports.py",
        "tests/monitoring/test_honesty.py",
        "-k",
        "not 200_windows and not in_one_of_20 and not html_over_time",
    ],
    "slipway.monitoring.performance": [
        "tests/monitoring/test_performance.py",
        "tests/monitoring/test_runner.py::test_performance_drop_alerts_per_version",
        "tests/monitoring/test_runner.py::test_multiclass_and_regression_models",
        "tests/monitoring/test_runner.py::test_few_labels_are_insufficient_not_a_verdict",
        "-k",
        "not cover_the_truth",  # 9 s of 60 bootstraps; the 95% width test checks the level
    ],
    "slipway.monitoring.checks": [
        "tests/monitoring/test_checks.py",
        "tests/monitoring/test_drift.py",
    ],
    "slipway.monitoring.policy": [
        "tests/monitoring/test_policy.py",
        "tests/monitoring/test_checks.py",
        "tests/monitoring/test_drift.py",
        "tests/monitoring/test_cli.py::test_config_file_sets_floors_per_feature",
        "tests/monitoring/test_performance.py",
        "-k",
        "not cover_the_truth",
    ],
    "slipway.batch.outputs": [
        "tests/batch/test_outputs.py",
        "tests/batch/test_score_file.py",
        "tests/batch/test_resume.py",
    ],
    "slipway.batch.runs": [
        "tests/batch/test_runs.py",
        "tests/store/test_batch.py",
        "tests/batch/test_resume.py",
        "tests/batch/test_score_file.py",
        "tests/batch/test_cli.py",
    ],
    "slipway.store.batch": [
        "tests/store/test_batch.py",
        "tests/batch/test_outputs.py",
        "tests/batch/test_resume.py",
        "tests/batch/test_score_file.py",
        "tests/monitoring/test_batch_source.py",  # the kept inputs, read back for monitoring
    ],
    "slipway.batch.runner": [
        "tests/batch/test_resume.py",
        "tests/batch/test_outputs.py",
        "tests/batch/test_score_file.py",
    ],
    "slipway.serving.auth": ["tests/serving/test_auth_limits.py"],
    "slipway.serving.limits": [  # the unit tests of each limit, then each limit over HTTP
        *(
            f"tests/serving/test_auth_limits.py::{t}"
            for t in (
                "test_token_bucket_refills_at_the_rate",
                "test_rate_zero_never_limits_and_a_full_bucket_holds_only_a_burst",
                "test_idle_buckets_are_forgotten_after_five_minutes",
                "test_concurrency_cap_counts_and_releases",
                "test_a_lent_slot_is_given_back_while_waiting_and_taken_back_after",
                "test_declared_body_sizes_are_checked_by_the_header_alone",
                "test_a_streamed_body_is_stopped_just_past_the_limit",
                "test_the_body_is_read_first_then_replayed_once",
                "test_rows_and_nesting_are_refused_just_past_their_limits",
                "test_concurrency_cap_sheds_excess_with_503",
                "test_rate_limit_answers_429_with_retry_after",
                "test_declared_body_over_the_limit_is_413_before_reading",
                "test_streamed_body_over_the_limit_is_413",
            )
        ),
        "tests/serving/test_predict.py::test_rows_per_request_are_limited",
        "tests/serving/test_predict.py::test_nesting_limit_counts_levels_exactly",
        "tests/serving/test_predict.py::test_malformed_bodies_are_refused_with_json_naming_the_problem",
    ],
    "slipway.keys": _KEY_TESTS,
    "slipway.store.keys": _KEY_TESTS,
}
PYTEST_ARGS = ["-x", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", "not slow"]
OUT = ROOT / ".mutation"


# -- mutants ---------------------------------------------------------------------------------


@dataclass
class Mutant:
    """One mutation site of a module, and what happened to it."""

    index: int
    line: int
    col: int
    description: str
    status: str = "pending"  # killed, timeout, survived, uncovered, not_applied, error
    seconds: float = 0.0
    detail: str = ""
    tests: int = 0  # how many tests it ran against (0: not run)


_COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}


def _is_logging(node: ast.AST) -> bool:
    call = node.value if isinstance(node, ast.Expr) else node
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
        return False
    owner = call.func.value
    return isinstance(owner, ast.Name) and owner.id in ("logger", "logging", "log")


class Mutator(ast.NodeTransformer):
    """Numbers every mutation site in a fixed walk order; with ``target`` applies that one."""

    def __init__(self, target: int | None = None) -> None:
        self.target = target
        self.count = 0
        self.sites: list[Mutant] = []

    def _offer(self, node: ast.AST, description: str, make: Callable[[], Any]) -> Any:
        index = self.count
        self.count += 1
        if self.target is None:
            line, col = getattr(node, "lineno", 0), getattr(node, "col_offset", 0)
            self.sites.append(Mutant(index, line, col, description))
            return None
        return make() if index == self.target else None

    # Regions never mutated: docstrings and messages, logging, asserts, annotations,
    # TYPE_CHECKING imports, __repr__.
    def visit_JoinedStr(self, node: ast.JoinedStr) -> Any:
        return node

    def visit_Assert(self, node: ast.Assert) -> Any:
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        if node.name == "__repr__":
            return node
        node.body = self._body(node.body)
        node.args = self.visit(node.args)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_arg(self, node: ast.arg) -> Any:
        return node  # annotations

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        node.body = self._body(node.body)
        return node

    def visit_Module(self, node: ast.Module) -> Any:
        node.body = self._body(node.body)
        return node

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            return [body[0], *self._stmts(body[1:])]  # the docstring
        return self._stmts(body)

    def _stmts(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for stmt in body:
            new = self.visit(stmt)
            out.extend(new if isinstance(new, list) else [new])
        return out

    def visit_If(self, node: ast.If) -> Any:
        test = node.test
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return node
        node.test = self.visit(node.test)
        node.body = self._stmts(node.body)
        node.orelse = self._stmts(node.orelse)
        if not isinstance(test, ast.Compare | ast.BoolOp | ast.UnaryOp):
            negated = self._offer(
                test, f"if {ast.unparse(test)} -> if not ...", lambda: ast.UnaryOp(ast.Not(), test)
            )
            if negated is not None:
                node.test = negated
        return node

    def visit_Expr(self, node: ast.Expr) -> Any:
        if _is_logging(node) or isinstance(node.value, ast.Constant):
            return node
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.value, ast.Call | ast.Await):
            gone = self._offer(node, f"drop `{_short(node)}`", lambda: ast.Pass())
            if gone is not None:
                return gone
        return node

    def visit_Raise(self, node: ast.Raise) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        gone = self._offer(node, f"drop `{_short(node)}`", lambda: ast.Pass())
        return gone if gone is not None else node

    def visit_Return(self, node: ast.Return) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        value = node.value
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            return node
        new = self._offer(
            node, f"`{_short(node)}` -> return None", lambda: ast.Return(ast.Constant(None))
        )
        return new if new is not None else node

    def visit_Compare(self, node: ast.Compare) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAP.get(type(op))
            if swap is None:
                continue

            def make(i: int = i, swap: type = swap) -> ast.Compare:
                ops = list(node.ops)
                ops[i] = swap()
                return ast.Compare(node.left, ops, node.comparators)

            desc = f"{_SYMBOL[type(op)]} -> {_SYMBOL[swap]} in `{_short(node)}`"
            new = self._offer(node, desc, make)
            if new is not None:
                return new
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        names = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        new = self._offer(
            node,
            f"{names[0]} -> {names[1]} in `{_short(node)}`",
            lambda: ast.BoolOp(other, node.values),
        )
        return new if new is not None else node

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is None:
            return node
        desc = f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[swap]} in `{_short(node)}`"
        new = self._offer(node, desc, lambda: ast.BinOp(node.left, swap(), node.right))
        return new if new is not None else node

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is None:
            return node
        desc = f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[swap]}= in `{_short(node)}`"
        new = self._offer(node, desc, lambda: ast.AugAssign(node.target, swap(), node.value))
        return new if new is not None else node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.op, ast.Not | ast.USub | ast.Invert):
            new = self._offer(node, f"drop the operator of `{_short(node)}`", lambda: node.operand)
            return new if new is not None else node
        return node

    def visit_Constant(self, node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, bool):
            new = self._offer(node, f"{value} -> {not value}", lambda: ast.Constant(not value))
        elif isinstance(value, int):
            bumped = 1 if value == 0 else (0 if value == 1 else value + 1)
            new = self._offer(node, f"{value} -> {bumped}", lambda: ast.Constant(bumped))
        elif isinstance(value, float):
            changed = value * 2 if value else 1.0
            new = self._offer(node, f"{value!r} -> {changed!r}", lambda: ast.Constant(changed))
        else:
            return node
        return new if new is not None else node


def _short(node: ast.AST, limit: int = 70) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mutants_of(source: str) -> list[Mutant]:
    """Every mutation site of a module's source, numbered."""
    mutator = Mutator()
    mutator.visit(ast.parse(source))
    return mutator.sites


def import_time_lines(source: str) -> set[int]:
    """Lines outside every function body: run at import (in the parent), so never traced."""
    tree = ast.parse(source)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            body = node.body if isinstance(node.body, list) else [node.body]
            inside.update(range(body[0].lineno, (node.end_lineno or body[0].lineno) + 1))
    return set(range(1, len(source.splitlines()) + 1)) - inside


def lines_that_select(source: str, line: int) -> set[int] | None:
    """The lines whose tests a mutant on ``line`` runs; None: every test of the selection.

    The mutated statement's lines (for a compound statement, its header: the condition of an
    ``if``, the items of a ``with``). A mutant in a function's definition (a default, a
    decorator) runs the tests that execute any line of that function. Anything else outside a
    function body (module constants, class attributes, dataclass defaults) is evaluated at
    import, before any test: every test runs.
    """
    best: tuple[int, set[int] | None] | None = None  # (size, lines) of the innermost statement
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        last = node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        header_end = body[0].lineno - 1 if isinstance(body, list) and body else last
        if not first <= line <= header_end or (best is not None and last - first >= best[0]):
            continue  # not on this statement's own lines, or not the innermost
        lines: set[int] | None
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = set(range(first, last + 1))  # its definition: any line of it
        elif isinstance(node, ast.ClassDef) or line in import_time_lines(source):
            lines = None
        else:
            lines = set(range(first, header_end + 1))
        best = (last - first, lines)
    return None if best is None else best[1]


def tests_for(line_sets: set[int] | None, coverage: dict[str, Any]) -> list[str]:
    """The baseline's tests executing any of ``line_sets`` (all of them for None, or for a line
    also run outside every test), fastest first: ``-x`` stops at the first failure, so a killed
    mutant costs the least."""
    tests = coverage["tests"]
    chosen = list(tests)
    if line_sets is not None and not line_sets & set(coverage["all"]):
        chosen = [t for t in chosen if line_sets & set(tests[t]["lines"])]
    return sorted(chosen, key=lambda t: tests[t]["seconds"])  # stable: ties keep their order


def mutated_code(source: str, filename: str, index: int) -> types.CodeType:
    """The module's code with mutant ``index`` applied (line numbers kept)."""
    tree = Mutator(index).visit(ast.parse(source))
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec")


# -- applying a mutant to an imported module -------------------------------------------------


def _functions(namespace: dict[str, Any], module: str) -> Iterator[tuple[str, Any]]:
    """(qualified name, function object) for the module's functions and methods."""
    seen: set[int] = set()

    def unwrap(name: str, obj: Any) -> Iterator[tuple[str, Any]]:
        while obj is not None and id(obj) not in seen:
            seen.add(id(obj))
            if isinstance(obj, staticmethod | classmethod):
                obj = obj.__func__
            elif isinstance(obj, property):
                for part in ("fget", "fset", "fdel"):
                    yield from unwrap(f"{name}.{part}", getattr(obj, part))
                return
            elif hasattr(obj, "func") and not isinstance(obj, types.FunctionType):
                obj = obj.func  # functools.cached_property, partial
            elif isinstance(obj, types.FunctionType):
                yield name, obj
                obj = getattr(obj, "__wrapped__", None)  # contextmanager and friends
            else:
                return

    for name, obj in list(namespace.items()):
        if isinstance(obj, type) and obj.__module__ == module:
            for attr, value in list(vars(obj).items()):
                yield from unwrap(f"{name}.{attr}", value)
        elif getattr(obj, "__module__", None) == module:
            yield from unwrap(name, obj)


# Values compared by value, so a fresh copy that differs is the mutant's (a nudged timedelta).
_SIMPLE = (int, float, bool, str, bytes, tuple, frozenset, type(None), timedelta, date, Decimal)


def apply(module: types.ModuleType, code: types.CodeType) -> list[str]:
    """Patch ``module`` in place with what differs in ``code``; the names changed."""
    fresh: dict[str, Any] = {"__name__": module.__name__, "__file__": module.__file__}
    exec(code, fresh)  # our own module's source, mutated
    old = dict(_functions(vars(module), module.__name__))
    new = dict(_functions(fresh, module.__name__))
    changed = []
    for name, fn in old.items():
        other = new.get(name)
        if other is None:
            continue
        if fn.__code__ != other.__code__ or fn.__defaults__ != other.__defaults__:
            fn.__code__ = other.__code__
            fn.__defaults__ = other.__defaults__
            changed.append(name)
        if fn.__kwdefaults__ != other.__kwdefaults__:
            fn.__kwdefaults__ = other.__kwdefaults__
            changed.append(name)
    for name, value in fresh.items():
        mine = vars(module).get(name)
        if isinstance(value, _SIMPLE) and isinstance(mine, _SIMPLE) and mine != value:
            setattr(module, name, value)
            changed.append(name)
        if (
            isinstance(value, type)
            and isinstance(mine, type)
            and value.__module__ == module.__name__
        ):
            for attr, v in vars(value).items():
                m = vars(mine).get(attr)
                if isinstance(v, _SIMPLE) and isinstance(m, _SIMPLE) and m != v:
                    setattr(mine, attr, v)
                    changed.append(f"{name}.{attr}")
    return changed


# -- running ---------------------------------------------------------------------------------


class PerTestLines:
    """A pytest plugin for the unmutated run: which lines of the module each test executes.

    A line tracer (``sys.settrace`` and ``threading.settrace``, so the threads tests start are
    traced too) filtered to the module's file puts each line in the current bucket: the running
    test's, or while a fixture broader than a function is set up, that fixture's (its lines then
    count for every test that uses it, since the first such test in a smaller selection sets it
    up). A line a thread runs counts for the test that started the thread as well as the one
    running; a line run outside every test (collection, session teardown) counts for all.
    """

    ALL = ""  # the bucket of lines that select every test

    def __init__(self, target: str) -> None:
        self.target = target
        self.buckets: dict[str, set[int]] = {self.ALL: set()}
        self.current = self.buckets[self.ALL]
        self.fixtures: list[set[int]] = []  # the broader fixtures being set up, innermost last
        self.origin: dict[int, set[int]] = {}  # thread id -> the bucket current at its start
        self.order: list[str] = []
        self.seconds: dict[str, float] = {}
        self.setup_seconds: dict[str, float] = {}
        self.uses: dict[str, list[str]] = {}  # test -> its fixture names
        self.main = threading.get_ident()

    def _bucket(self) -> set[int]:
        return self.fixtures[-1] if self.fixtures else self.current

    def _line(self, line: int) -> None:
        self._bucket().add(line)
        ident = threading.get_ident()
        if ident != self.main:
            self.origin.setdefault(ident, self._bucket()).add(line)

    def local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self._line(frame.f_lineno)
        return self.local

    def tracer(self, frame: Any, event: str, arg: Any) -> Any:
        if threading.get_ident() != self.main:
            self.origin.setdefault(threading.get_ident(), self._bucket())
        if frame.f_code.co_filename == self.target:
            self._line(frame.f_lineno)
            return self.local
        return None

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.order.append(nodeid)
        self.current = self.buckets.setdefault(nodeid, set())

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        self.current = self.buckets[self.ALL]

    def pytest_runtest_logreport(self, report: Any) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration
        if report.when == "setup":
            self.setup_seconds[report.nodeid] = report.duration

    def pytest_runtest_setup(self, item: Any) -> None:
        self.uses[item.nodeid] = list(getattr(item, "fixturenames", ()))

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Any:
        broad = fixturedef.scope != "function"
        if broad:
            self.fixtures.append(self.buckets.setdefault(f"fixture:{fixturedef.argname}", set()))
        try:
            return (yield)
        finally:
            if broad:
                self.fixtures.pop()

    def result(self) -> dict[str, Any]:
        """Per test: its lines (with those of its broader fixtures), its seconds; and the rest."""
        tests = {}
        for nodeid in self.order:
            lines = set(self.buckets.get(nodeid, ()))
            for name in self.uses.get(nodeid, ()):
                lines |= self.buckets.get(f"fixture:{name}", set())
            tests[nodeid] = {
                "lines": sorted(lines),
                "seconds": round(self.seconds.get(nodeid, 0.0), 3),
                "setup_seconds": round(self.setup_seconds.get(nodeid, 0.0), 3),
            }
        return {"all": sorted(self.buckets[self.ALL]), "tests": tests}


def _run_child(
    module: str,
    tests: list[str],
    code: types.CodeType | None,
    trace: Path | None,
    quiet: bool = True,
) -> int:
    """In a forked child: apply the mutant, run the tests, report through the exit code."""
    mod = importlib.import_module(module)
    if code is not None and not apply(mod, code):
        return 99  # nothing changed: the mutant could not be applied
    plugins: list[PerTestLines] = []
    if trace is not None:
        plugins.append(PerTestLines(mod.__file__ or ""))
        sys.settrace(plugins[0].tracer)
        threading.settrace(plugins[0].tracer)
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    status = pytest.main([*PYTEST_ARGS, *tests], plugins=list(plugins))
    if trace is not None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        trace.write_text(json.dumps(plugins[0].result()))
    return int(status)


def run(
    module: str,
    tests: list[str],
    code: types.CodeType | None,
    timeout: float,
    trace: Path | None = None,
) -> tuple[str, float]:
    """Fork, run the tests against the mutant; (killed|survived|timeout|not_applied|error, s)."""
    started = time.monotonic()
    # The child's pytest runs gc.collect() five times at its end (for unraisable exceptions):
    # over the parent's heap of scikit-learn, pandas and FastAPI that took 1.5 s a mutant, and
    # touched every page. Frozen objects are not collected, so the child checks only its own.
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # child
        os.setpgid(0, 0)
        try:
            code_ = _run_child(module, tests, code, trace)
        except BaseException:  # any crash of the child is reported as an error
            code_ = 98
        os._exit(code_)
    deadline = started + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started
        time.sleep(0.05)
    seconds = time.monotonic() - started
    code_ = os.waitstatus_to_exitcode(status)
    if code_ == 0:
        return "survived", seconds
    if code_ == 1:
        return "killed", seconds
    if code_ == 99:
        return "not_applied", seconds
    return "error", seconds


def warm(modules: list[str]) -> None:
    """Import what every child needs once, in the parent (children fork from it)."""
    files = sorted(
        {t.split("::")[0] for m in modules for t in MODULES[m] if t.endswith(".py") or "::" in t}
    )
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:  # first: pytest's own plugins must be imported by pytest, to be rewritten
        pytest.main([*PYTEST_ARGS, "--collect-only", *files])
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    for module in modules:
        importlib.import_module(module)


def mutate_module(module: str, only: set[int] | None = None, verbose: bool = False) -> list[Mutant]:
    """Run every mutant of one module against the tests that execute its line; write results."""
    tests = MODULES[module]
    path = Path(importlib.import_module(module).__file__ or "")
    source = path.read_text()
    sites = mutants_of(source)
    OUT.mkdir(exist_ok=True)
    trace = OUT / f"{module}.lines.json"
    status, baseline = run(module, tests, None, 1800, trace)
    if status != "survived":
        raise SystemExit(f"{module}: its tests do not pass unmutated ({status}); fix that first")
    coverage = json.loads(trace.read_text())
    timeout = 3 * baseline + 20
    print(
        f"{module}: {len(sites)} mutants, {len(coverage['tests'])} tests {baseline:.1f} s,"
        f" timeout {timeout:.0f} s at most",
        flush=True,
    )
    previous = _previous(module, len(sites)) if only is not None else {}
    for m in sites:
        if only is not None and m.index not in only:
            m.status, m.seconds, m.tests = previous.get(m.index, ("skipped", 0.0, 0))
            continue
        chosen = tests_for(lines_that_select(source, m.line), coverage)
        if not chosen:
            m.status = "uncovered"
        else:
            m.tests = len(chosen)
            m.status, m.seconds = run(
                module,
                chosen,
                mutated_code(source, str(path), m.index),
                _timeout(chosen, coverage, timeout),
            )
            if m.status == "error":  # e.g. a node id pytest cannot take: the selection as given
                m.tests = len(coverage["tests"])
                m.status, m.seconds = run(
                    module, tests, mutated_code(source, str(path), m.index), timeout
                )
        if verbose:
            print(f"#{m.index} line {m.line}: {m.status}, {m.tests} tests, {m.seconds:.1f} s")
        elif m.status != "uncovered":
            print({"killed": ".", "timeout": "t", "survived": "S"}.get(m.status, "?"), end="")
        sys.stdout.flush()
    print(flush=True)
    result = {
        "module": module,
        "file": str(path.relative_to(ROOT)),
        "tests": tests,
        "baseline_seconds": round(baseline, 1),
        "mutants": [asdict(m) for m in sites],
    }
    (OUT / f"{module}.json").write_text(json.dumps(result, indent=1))
    return sites


def _timeout(chosen: list[str], coverage: dict[str, Any], whole: float) -> float:
    """Three times the chosen tests' baseline time, plus the slowest set-ups (a broad fixture
    the first test of the baseline paid for is paid by the first chosen test), at most the
    whole selection's timeout."""
    tests = coverage["tests"]
    setups = sorted((t["setup_seconds"] for t in tests.values()), reverse=True)[:3]
    return min(whole, 3 * (sum(tests[t]["seconds"] for t in chosen) + sum(setups)) + 20)


def _previous(module: str, count: int) -> dict[int, tuple[str, float, int]]:
    """Statuses of the last run of a module (kept for the mutants ``--only`` leaves out)."""
    try:
        data = json.loads((OUT / f"{module}.json").read_text())
    except (OSError, ValueError):
        return {}
    if len(data["mutants"]) != count:  # the source changed since: the numbers mean other sites
        return {}
    return {m["index"]: (m["status"], m["seconds"], m.get("tests", 0)) for m in data["mutants"]}


def summary(module: str, sites: list[Mutant], source: list[str]) -> str:
    """Counts and one line per survivor (and uncovered mutant)."""
    counts: dict[str, int] = {}
    for m in sites:
        counts[m.status] = counts.get(m.status, 0) + 1
    lines = [f"## {module}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    for m in sites:
        if m.status in ("survived", "uncovered", "not_applied", "error"):
            code = source[m.line - 1].strip() if 0 < m.line <= len(source) else ""
            lines.append(f"- [{m.status}] #{m.index} line {m.line}: {m.description}   | {code}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: module names (short or full), --list, --only INDEXES."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="e.g. predict, monitoring.drift (default: all)")
    parser.add_argument("--list", action="store_true", help="show modules, tests and mutant counts")
    parser.add_argument("--only", help="comma-separated mutant numbers (one module)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="a line per mutant: status, tests run, time"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    chosen = [_full(m) for m in args.modules] or list(MODULES)
    if args.list:
        for m in chosen:
            path = Path(importlib.import_module(m).__file__ or "")
            print(f"{m} ({len(mutants_of(path.read_text()))} mutants): {' '.join(MODULES[m])}")
        return 0
    only = {int(i) for i in args.only.split(",")} if args.only else None
    started = time.monotonic()
    warm(chosen)
    survivors = 0
    for m in chosen:
        sites = mutate_module(m, only, args.verbose)
        source = Path(importlib.import_module(m).__file__ or "").read_text().splitlines()
        print(summary(m, sites, source), flush=True)
        survivors += sum(s.status == "survived" for s in sites)
    print(f"\n{survivors} surviving mutant(s); {time.monotonic() - started:.0f} s in all")
    return 0


def _full(name: str) -> str:
    full = name if name.startswith("slipway.") else f"slipway.{name}"
    if full not in MODULES:
        raise SystemExit(f"{name!r} is not a mutated module; choose from {', '.join(MODULES)}")
    return full


if __name__ == "__main__":
    sys.exit(main())
