"""The lifecycle's gate results (`slipway check`) in the console: a column of the models table,
a section of a model's page (the newest check of each version) and of a version's page (the
newest check in full: each check with its verdict and numbers, then the earlier ones).

These are the console's extension points of :mod:`slipway.console.sections`, filled in by
``slipway.console`` itself: the console and the lifecycle are siblings in one layer, the
console the upper one, so the console reads the lifecycle (through the same library calls as
``slipway models show``) and the lifecycle knows nothing of pages. ``slipway check`` stores
nothing when it could not run (exit 3), so a version without a stored check reads "not
checked".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slipway.console.sections import Cell, Section
from slipway.console.web import number
from slipway.lifecycle import StoredCheck, checks_of, latest_checks
from slipway.serving.service import Service
from slipway.versions import ModelSummary, ModelVersion

COLUMN_TITLE = "latest check"
VERDICT_CSS = {"pass": "ok", "fail": "alert", "skip": ""}


@dataclass(frozen=True)
class Table:
    """Numbers of one check, as the template draws them (values already formatted)."""

    caption: str
    head: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class CheckView:
    """One check of a gate result: its name, verdict, sentence and tables of numbers."""

    name: str
    verdict: str
    summary: str
    tables: list[Table]


def verdict(check: StoredCheck) -> str:
    """``pass`` or ``fail``."""
    return "pass" if check.passed else "fail"


def against(check: StoredCheck) -> str:
    """The champion the check compared with, as a reference, or ``no champion``."""
    return f"{check.model}:{check.against}" if check.against is not None else "no champion"


def failed(check: StoredCheck) -> list[str]:
    """Names of the checks that failed."""
    checks = check.summary.get("checks", {})
    return [name for name, c in checks.items() if c.get("verdict") == "fail"]


def column(service: Service, model: ModelSummary) -> Cell:
    """The models table's cell: the model's newest check (of any version), or not checked."""
    latest = latest_checks(service.registry, model.name)
    if not latest:
        return Cell("not checked")
    c = max(latest.values(), key=lambda s: s.id)
    text = (
        f"version {c.version}: {verdict(c)} against {against(c)}, {c.created_at:%Y-%m-%d %H:%M} UTC"
    )
    return Cell(text, VERDICT_CSS[verdict(c)], f"/ui/models/{c.model}/versions/{c.version}")


def model_section(service: Service, name: str) -> Section | None:
    """A model's page: the newest check of each checked version (None before any check)."""
    latest = latest_checks(service.registry, name)
    if not latest:
        return None
    checks = list(latest.values())
    context = {"name": name, "checks": checks, "failed": {c.id: failed(c) for c in checks}}
    return Section("Gate checks", "checks_model.html", context)


def version_section(service: Service, mv: ModelVersion) -> Section:
    """A version's page: its newest check in full, then the earlier ones (or how to run one)."""
    stored = checks_of(service.registry, mv.ref, limit=20)
    latest = stored[0] if stored else None
    return Section(
        "Gate checks",
        "checks_version.html",
        {
            "mv": mv,
            "latest": latest,
            "checks": views_of(latest.result) if latest else [],
            "holdout": latest.result.get("holdout", {}) if latest else {},
            "earlier": stored[1:],
        },
    )


def views_of(result: dict[str, Any]) -> list[CheckView]:
    """Each check of a stored result with its numbers."""
    return [
        CheckView(c["name"], c["verdict"], c["summary"], tables(c["name"], c.get("details") or {}))
        for c in result.get("checks", [])
    ]


def tables(name: str, details: dict[str, Any]) -> list[Table]:
    """The numbers of one check, as tables (the same as ``slipway check --format html``)."""
    if name == "metrics" and details.get("metrics"):
        return [
            Table(
                "metrics on the same holdout rows (* gated)",
                ["metric", "candidate", "champion", "difference", "test", "verdict"],
                [
                    [
                        k + (" *" if m.get("gated") else ""),
                        number(m.get("candidate")),
                        number(m.get("champion")),
                        number(m.get("difference")),
                        _test(m),
                        str(m.get("verdict", "-")),
                    ]
                    for k, m in details["metrics"].items()
                ],
            )
        ]
    if name == "metrics" and details.get("candidate"):
        values = details["candidate"]
        return [
            Table(
                "the candidate's metrics (no champion)",
                ["metric", "candidate"],
                [[k, number(v)] for k, v in values.items()],
            )
        ]
    if name == "slices" and details.get("slices"):
        return [
            Table(
                f"slices ({details.get('metric', 'metric')})",
                ["feature", "slice", "rows", "candidate", "champion", "p (BH)", "status"],
                [
                    [
                        str(s["feature"]),
                        str(s["slice"]),
                        str(s["rows"]),
                        number(s.get("candidate")),
                        number(s.get("champion")),
                        number(s.get("p_adjusted")),
                        str(s.get("status", "-")),
                    ]
                    for s in details["slices"]
                ],
            )
        ]
    if name == "calibration":
        return [
            Table(
                f"{role}: Brier {number(d.get('brier'))}, ECE {number(d.get('ece'))}",
                ["bin", "rows", "mean predicted", "observed"],
                [
                    [
                        f"{r['low']:.1f}–{r['high']:.1f}",
                        str(r["rows"]),
                        number(r.get("predicted")),
                        number(r.get("observed")),
                    ]
                    for r in d.get("reliability", [])
                ],
            )
            for role in ("candidate", "champion")
            if isinstance(d := details.get(role), dict)
        ]
    if name == "contract" and (details.get("problems") or details.get("notes")):
        return [
            Table(caption, [caption], [[str(p)] for p in details.get(key) or []])
            for key, caption in (("problems", "how clients would break"), ("notes", "notes"))
            if details.get(key)
        ]
    if name == "invariance" and details.get("perturbations"):
        keys = sorted({k for p in details["perturbations"] for k in p})
        return [
            Table(
                "perturbations",
                keys,
                [[number(p.get(k)) for k in keys] for p in details["perturbations"]],
            )
        ]
    if name == "speed":
        rows = [
            [role, number(d.get("row_ms")), number(d.get("batch_1000_ms")), str(d.get("backend"))]
            for role, d in details.items()
            if role in ("candidate", "champion") and isinstance(d, dict)
        ]
        if rows:
            return [Table("speed", ["version", "ms per row", "ms per 1,000 rows", "backend"], rows)]
    return []


def _test(m: dict[str, Any]) -> str:
    if m.get("test") == "mcnemar":
        return f"McNemar p={number(m.get('p_value'), 3)}"
    low, high = m.get("low"), m.get("high")
    if low is None or high is None:
        return "paired bootstrap"
    return f"95% CI [{number(low)}, {number(high)}]"
