"""The console's experiments: every A/B test and shadow deployment with its live verdict, and
the "stop experiment" action (promote the candidate or abandon it).

Pages read through :class:`~slipway.experiments.desk.ExperimentDesk`, as ``slipway experiment
list|status`` do: a running experiment's verdict is computed from the store when the page is
drawn (re-scoring as many logged rows as ``status`` does), a stopped one shows the report kept
at its stop. Stopping is the CLI's ``slipway experiment stop --promote|--abandon``: a
confirmation page (GET), then a POST carrying the session's CSRF token that calls
:meth:`ExperimentDesk.stop` with the logged-in key as actor and ``via="ui"``, so the stop and
any promotion land in the audit trail like every console action.

:func:`install` adds the page to the navigation, a column to the models table and a section to
each model's page (see :mod:`slipway.console.sections`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from slipway.console import sections
from slipway.console.actions import VIA, confirm
from slipway.console.sections import Cell, Section
from slipway.console.sessions import PREFIX
from slipway.console.web import ConsoleRoute, Me, form, render, session
from slipway.exceptions import ExperimentConflict, InvalidRequest
from slipway.experiments.analysis import WORSE
from slipway.experiments.desk import ExperimentDesk
from slipway.experiments.render import headline, lines
from slipway.serving.service import Service
from slipway.store.experiments import Experiment
from slipway.versions import ModelSummary

STATUS_RESCORE = 2000  # logged rows re-scored for a running A/B test's agreement (as `status`)
LISTED = 100  # experiments on the list page, newest first
VERDICT_CSS = {"better": "ok", "worse": "alert", "cannot_trust": "warn", "no_difference": "none"}
DECISIONS = ("promote", "abandon")
DONE = {
    "promoted": "Experiment stopped: production now points at the candidate.",
    "abandoned": "Experiment stopped: production is unchanged.",
}


@dataclass(frozen=True)
class Row:
    """One experiment in a table: what it tries and its verdict (live while it runs)."""

    experiment: Experiment
    verdict: dict[str, Any] | None

    @property
    def css(self) -> str:
        """The verdict's badge class."""
        return VERDICT_CSS.get((self.verdict or {}).get("code", ""), "none")


def desk(service: Service) -> ExperimentDesk:
    """The desk the CLI uses, over the service's registry."""
    return ExperimentDesk(service.registry)


def live_report(service: Service, ref: str) -> dict[str, Any]:
    """An experiment's report as JSON: computed now while it runs, as kept at its stop after."""
    d = desk(service)
    experiment = d.get(ref)
    if not experiment.running and experiment.report is not None:
        return {**experiment.report, "experiment": experiment.to_dict()}
    return d.report(experiment.id, rescore=STATUS_RESCORE).to_dict()


def rows(service: Service, model: str | None = None) -> list[Row]:
    """Experiments (of one model), newest first, each with its verdict."""
    found = desk(service).experiments(model)[:LISTED]
    out = []
    for e in found:
        if e.running:
            verdict = live_report(service, e.id)["verdict"]
        else:
            verdict = (e.report or {}).get("verdict")
        out.append(Row(e, verdict))
    return out


def model_column(service: Service, m: ModelSummary) -> Cell:
    """The models table's *experiment* cell: the running experiment, if any (no analysis)."""
    running = [e for e in desk(service).experiments(m.name) if e.running]
    if not running:
        return Cell("-")
    e = running[0]
    what = "shadow" if e.mode == "shadow" else f"A/B {e.split:.0%}"
    return Cell(f"{what} of v{e.candidate_version}", "", f"{PREFIX}/experiments/{e.id}")


def model_section(service: Service, name: str) -> Section | None:
    """A model page's *Experiments* section; None when the model never had one."""
    found = rows(service, name)
    if not found:
        return None
    return Section("Experiments", "experiments_section.html", {"rows": found[:10]})


def install() -> None:
    """Add the experiments page, column and section to the console (once)."""
    entry = ("Experiments", f"{PREFIX}/experiments")
    if entry not in sections.NAV:
        at = next((i for i, (t, _) in enumerate(sections.NAV) if t == "Keys"), len(sections.NAV))
        sections.NAV.insert(at, entry)
    if model_column not in [cell for _, cell in sections.MODEL_COLUMNS]:
        sections.MODEL_COLUMNS.append(("experiment", model_column))
    if model_section not in sections.MODEL_SECTIONS:
        sections.MODEL_SECTIONS.append(model_section)


def router(service: Service) -> APIRouter:
    """The experiments pages and the stop action; every route needs a session, POSTs a CSRF
    token (the router's dependency)."""
    api = APIRouter(
        prefix=PREFIX,
        route_class=ConsoleRoute,
        include_in_schema=False,
        dependencies=[Depends(session)],
    )

    @api.get("/experiments")
    def experiments(request: Request, model: str | None = Query(None)) -> Response:
        """Every experiment, newest first, with its verdict (live while it runs)."""
        return render(request, "experiments.html", rows=rows(service, model), model=model)

    @api.get("/experiments/{experiment_id}")
    def experiment(request: Request, experiment_id: str) -> Response:
        """One experiment's report: verdict, arms, tests, SRM, agreement, guardrails."""
        data = live_report(service, experiment_id)
        e = data["experiment"]
        return render(
            request,
            "experiment.html",
            data=data,
            e=e,
            title=headline(data),
            lines=lines(data),
            css=VERDICT_CSS.get(data["verdict"]["code"], "none"),
            done=DONE.get(request.query_params.get("done", "")),
        )

    @api.get("/experiments/{experiment_id}/stop")
    def stop_confirm(
        request: Request, experiment_id: str, decision: str = Query("abandon")
    ) -> Response:
        """Ask before stopping: what promoting or abandoning does, given the verdict now."""
        promote = _decision(decision)
        data = live_report(service, experiment_id)
        e, verdict = data["experiment"], data["verdict"]
        if e["status"] != "running":
            raise ExperimentConflict(
                f"Experiment {e['id']!r} is not running (it was {e['decision']}); there is "
                "nothing to stop."
            )
        model, candidate, control = e["model"], e["candidate_version"], e["control_version"]
        force = promote and verdict["code"] == WORSE
        if promote:
            question = (
                f"Stop experiment {e['id']!r} and point production of {model!r} at the "
                f"candidate, version {candidate} (now {control})?"
            )
        else:
            question = (
                f"Stop experiment {e['id']!r} and keep production of {model!r} at version "
                f"{control}? The candidate, version {candidate}, stays registered."
            )
        detail = f"Verdict now: {verdict['text']}. {verdict['why']}"
        if force:
            detail += (
                " The verdict says the candidate is worse: confirming promotes it anyway, and "
                "the audit trail records the stop as forced."
            )
        return confirm(
            request,
            title=f"{'Promote' if promote else 'Abandon'}: stop experiment {e['id']}",
            question=question,
            detail=detail,
            action=f"{PREFIX}/experiments/{quote(e['id'], safe='')}/stop",
            hidden={"decision": decision, **({"force": "1"} if force else {})},
            button=("Promote anyway" if force else "Promote") if promote else "Abandon",
            back=f"{PREFIX}/experiments/{quote(e['id'], safe='')}",
        )

    @api.post("/experiments/{experiment_id}/stop")
    async def stop(request: Request, experiment_id: str, me: Me) -> Response:
        """Stop the experiment (ExperimentDesk.stop, as `slipway experiment stop`)."""
        fields = await form(request)
        promote = _decision(fields.get("decision", ""))
        stopped, _ = await run_in_threadpool(
            desk(service).stop,
            experiment_id,
            promote=promote,
            force=fields.get("force") == "1",
            actor=me.key_name,
            via=VIA,
        )
        done = "promoted" if promote else "abandoned"
        target = f"{PREFIX}/experiments/{quote(stopped.id, safe='')}?done={done}"
        return RedirectResponse(target, 303)

    return api


def _decision(text: str) -> bool:
    """True to promote, False to abandon; anything else is refused naming the choices."""
    if text not in DECISIONS:
        raise InvalidRequest(
            f"decision {text!r} is not one of {', '.join(DECISIONS)}: promote the candidate or "
            "abandon it."
        )
    return text == "promote"
