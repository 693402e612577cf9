"""An experiment's report: the numbers behind its verdict, as one value with three views.

``to_dict()`` is the JSON (``slipway experiment report --format json``, ``GET
/v1/experiments/{id}``); :func:`slipway.experiments.render.render_terminal` and
:func:`~slipway.experiments.render.render_html` draw the same dictionary for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slipway.experiments.analysis import NO_DIFFERENCE, Comparison, Verdict

if TYPE_CHECKING:
    from slipway.experiments.comparison import ShadowHealth
    from slipway.experiments.guardrails import Check
    from slipway.store.experiments import Experiment

_PENDING = Verdict(NO_DIFFERENCE, "no detectable difference at this sample size", None, "")


@dataclass
class ExperimentReport:
    """Everything known about one experiment at ``generated_at``, ending in its verdict."""

    experiment: Experiment
    generated_at: datetime
    metric: str
    verdict: Verdict = _PENDING
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    srm: dict[str, Any] | None = None
    comparison: Comparison | None = None
    agreement: dict[str, Any] | None = None
    disagreement_sample: dict[str, Any] | None = None
    triggered: Comparison | None = None
    shadow: ShadowHealth | None = None
    guardrails: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (non-finite numbers become null)."""
        return _clean(
            {
                "experiment": self.experiment.to_dict(),
                "generated_at": self.generated_at.isoformat(),
                "metric": self.metric,
                "verdict": self.verdict.to_dict(),
                "arms": self.arms,
                "srm": self.srm,
                "comparison": None if self.comparison is None else self.comparison.to_dict(),
                "agreement": self.agreement,
                "disagreement_sample": self.disagreement_sample,
                "triggered": None if self.triggered is None else self.triggered.to_dict(),
                "shadow": None if self.shadow is None else self.shadow.to_dict(),
                "guardrails": [c.to_dict() for c in self.guardrails],
                "warnings": self.warnings,
            }
        )

    def to_html(self) -> str:
        """The report as one self-contained HTML page."""
        from slipway.experiments.render import render_html

        return render_html(self.to_dict())


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return _clean(value.item())
    return value
