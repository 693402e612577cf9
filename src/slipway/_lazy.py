"""Public names a package re-exports, imported on first use (PEP 562 module ``__getattr__``).

A serving worker imports ``slipway.monitoring.http`` or ``slipway.batch.runs``; Python runs the
package's ``__init__`` first, and an ``__init__`` that imported every re-exported name would load
scipy, scikit-learn's metrics and pyarrow into every worker. A package instead lists its names::

    __getattr__, __dir__ = lazy.exports(__name__, {"Monitor": "slipway.monitoring.runner"})

and imports them for the type checker under ``if TYPE_CHECKING:``. ``from slipway.monitoring
import Monitor`` and ``slipway.monitoring.Monitor`` work as before; the first use imports the
defining module and caches the value in the package. ``tests/test_lazy_imports.py`` checks that
a worker's app is built without the packages it does not need.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each of ``names`` (public name -> the module
    defining it) is imported on first use."""

    def __getattr__(name: str) -> Any:
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later uses skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__


class Module:
    """A module imported on its first attribute access (``Module("scipy.stats").norm``).

    For a dependency a module needs in a few functions, not at import: the experiments'
    statistics (scipy) load into a serving worker, which routes requests by experiment, but
    scipy only when an experiment is analysed.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazily imported module {self._name!r}>"
