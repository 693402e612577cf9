"""tools/mutation.py: which tests a mutant runs (the statement's lines, a definition's
function, everything for module-level code), fastest first."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SOURCE = '''"""A module."""
LIMIT = 10


class Box:
    size: int = 3

    def grow(self, by=2):
        if by > LIMIT:
            raise ValueError(by)
        return self.size + by


@decorated
def helper(x,
           y=1):
    total = x + y
    return total
'''


def load_tool() -> ModuleType:
    """tools/mutation.py, imported from its file."""
    path = Path(__file__).resolve().parents[1] / "tools" / "mutation.py"
    spec = importlib.util.spec_from_file_location("mutation_tool", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutation_tool", module)
    spec.loader.exec_module(module)
    return module


def test_a_mutant_selects_its_statement_its_function_or_everything():
    """A body statement: its own lines (a compound one: its header); a definition: the whole
    function; module constants and class attributes: None (every test)."""
    tool = load_tool()
    assert tool.lines_that_select(SOURCE, 9) == {9}  # `if by > LIMIT:`
    assert tool.lines_that_select(SOURCE, 10) == {10}  # the raise
    assert tool.lines_that_select(SOURCE, 8) == set(range(8, 12))  # the default of `by`
    assert tool.lines_that_select(SOURCE, 16) == set(range(14, 19))  # a default, decorated
    assert tool.lines_that_select(SOURCE, 2) is None  # LIMIT
    assert tool.lines_that_select(SOURCE, 6) is None  # a class attribute


def test_the_tests_that_run_a_line_are_chosen_fastest_first():
    """Tests covering any selected line, by baseline seconds; all for None or a line that ran
    outside every test; none for a line no test ran."""
    tool = load_tool()
    coverage = {
        "all": [2],
        "tests": {
            "slow": {"lines": [9, 10], "seconds": 3.0},
            "fast": {"lines": [9], "seconds": 0.5},
            "other": {"lines": [17], "seconds": 1.0},
        },
    }
    assert tool.tests_for({9}, coverage) == ["fast", "slow"]
    assert tool.tests_for({10, 17}, coverage) == ["other", "slow"]
    assert tool.tests_for(None, coverage) == ["fast", "other", "slow"]
    assert tool.tests_for({2, 9}, coverage) == ["fast", "other", "slow"]
    assert tool.tests_for({11}, coverage) == []
