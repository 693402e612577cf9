"""Where the console grows: the navigation, extra model-table columns and page sections.

A capability that lands later (experiments, lifecycle checks) adds itself here, without
touching the pages that exist:

* a page of its own: a route in a router of its own (see ``slipway.console.pages``) and an
  entry in :data:`NAV`;
* a column of the models table: a :data:`ModelColumn` in :data:`MODEL_COLUMNS`, e.g. the
  latest check result of each model;
* a section of a model's page or of a version's page: a function in :data:`MODEL_SECTIONS` or
  :data:`VERSION_SECTIONS` returning a :class:`Section` (a template under ``templates/`` and
  its context), or None when it has nothing to show, so a page never shows an empty
  placeholder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slipway.serving.service import Service
from slipway.versions import ModelSummary, ModelVersion


@dataclass(frozen=True)
class Section:
    """A block of a page: a title, the template that draws it and what the template reads."""

    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One cell of the models table: text, an optional CSS class (``ok``, ``warn``, ``alert``)
    and an optional link."""

    text: str
    css: str = ""
    href: str = ""


# (title, path) of each top-level page, in menu order.
NAV: list[tuple[str, str]] = [
    ("Models", "/ui"),
    ("Live traffic", "/ui/traffic"),
    ("Monitoring", "/ui/monitoring"),
    ("Batch runs", "/ui/batch"),
    ("Keys", "/ui/keys"),
]

ModelColumn = tuple[str, Callable[[Service, ModelSummary], Cell]]
ModelSection = Callable[[Service, str], Section | None]
VersionSection = Callable[[Service, ModelVersion], Section | None]

MODEL_COLUMNS: list[ModelColumn] = []
MODEL_SECTIONS: list[ModelSection] = []
VERSION_SECTIONS: list[VersionSection] = []


def model_sections(service: Service, name: str) -> list[Section]:
    """The extra sections of a model's page that have something to show."""
    return [s for s in (f(service, name) for f in MODEL_SECTIONS) if s is not None]


def version_sections(service: Service, mv: ModelVersion) -> list[Section]:
    """The extra sections of a version's page that have something to show."""
    return [s for s in (f(service, mv) for f in VERSION_SECTIONS) if s is not None]
