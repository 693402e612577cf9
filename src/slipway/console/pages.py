"""The console's pages (GET only): models, a model, a version, live traffic, monitoring, batch
runs and keys, and the JSON the live-traffic page polls."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from slipway.console import charts, traffic, views
from slipway.console.sections import MODEL_COLUMNS, model_sections, version_sections
from slipway.console.web import ConsoleRoute, render, session
from slipway.exceptions import NotFound
from slipway.serving.service import Service, json_response
from slipway.versions import DEFAULT_ALIAS

# Flash messages after an action, by code; the values come from the redirect's query.
DONE = {
    "promoted": "{alias} now points at version {version}.",
    "rolled_back": "{alias} rolled back to version {version}.",
    "archived": "Version {version} archived.",
    "reloaded": "This server reloaded the {alias} alias: it serves version {version}.",
    "revoked": "Key revoked; its requests and console sessions stop within seconds.",
}


def router(service: Service) -> APIRouter:
    """The pages; every one needs a session (the router's dependency)."""
    api = APIRouter(
        prefix="/ui",
        route_class=ConsoleRoute,
        include_in_schema=False,
        dependencies=[Depends(session)],
    )

    @api.get("")
    def models(request: Request) -> Response:
        """Every model at a glance."""
        rows = views.model_rows(service)
        columns = [title for title, _ in MODEL_COLUMNS]
        return render(request, "models.html", rows=rows, columns=columns)

    @api.get("/models/{name}")
    def model(request: Request, name: str) -> Response:
        """A model: its versions, aliases, actions, recent audit events."""
        versions = service.registry.versions(name)
        events = views.audit_of(service, name, limit=50)
        monitoring = views.monitoring_of(service, name)[1][:1]
        return render(
            request,
            "model.html",
            name=name,
            versions=versions[::-1],
            aliases=service.registry.aliases(name),
            served=views.served_backend(service, name),
            events=events,
            monitoring=monitoring[0] if monitoring else None,
            backend_of=views.backend_of,
            sections=model_sections(service, name),
            done=_done(request),
            production=DEFAULT_ALIAS,
        )

    @api.get("/models/{name}/versions/{version}")
    def version(request: Request, name: str, version: int = Path(ge=1)) -> Response:
        """A version's model card, alias history and audit trail."""
        mv = service.registry.get(f"{name}:{version}")
        events = views.audit_of(service, name)
        return render(
            request,
            "version.html",
            mv=mv,
            card=views.card(mv),
            moves=views.touching(views.alias_moves(events), version),
            events=views.touching(events, version),
            sections=version_sections(service, mv),
        )

    @api.get("/traffic")
    def live_traffic(request: Request, window: str = Query("1h")) -> Response:
        """Requests, latency and refusals per version, updated in place."""
        traffic.history(service, window)  # refuses an unknown window before drawing the page
        return render(request, "traffic.html", window=window, windows=list(traffic.WINDOWS))

    @api.get("/api/traffic")
    async def traffic_json(window: str = Query("1h")) -> Response:
        """What the live-traffic page polls (JSON)."""
        data = await run_in_threadpool(traffic.history, service, window)
        data["server"] = traffic.server_now(service)
        return json_response(data)

    @api.get("/monitoring")
    def monitoring(request: Request) -> Response:
        """The latest monitoring verdict of every model."""
        return render(request, "monitoring.html", rows=views.monitoring_rows(service))

    @api.get("/monitoring/{name}")
    def monitoring_model(request: Request, name: str) -> Response:
        """A model's latest report (distributions, performance over time) and run history."""
        report, runs = views.monitoring_of(service, name)
        return render(
            request,
            "monitoring_model.html",
            name=name,
            report=report,
            runs=runs,
            distributions=charts.distributions(report) if report else [],
            performance=charts.performance(report) if report else [],
        )

    @api.get("/batch")
    def batch(request: Request, model: str | None = Query(None)) -> Response:
        """Recent batch runs with their status, counts and rejects."""
        return render(request, "batch.html", runs=views.batch_runs(service, model), model=model)

    @api.get("/batch/{run_id}")
    def batch_run(request: Request, run_id: str) -> Response:
        """One batch run in full."""
        return render(request, "batch_run.html", run=views.batch_run(service, run_id))

    @api.get("/keys")
    def keys(request: Request) -> Response:
        """API keys (never the keys themselves), and the form to create one."""
        return render(
            request,
            "keys.html",
            keys=views.api_keys(service),
            events=views.key_events(service),
            done=_done(request),
        )

    return api


def fallback(service: Service) -> APIRouter:
    """A page for any other path under /ui (included last, after every other route)."""
    api = APIRouter(
        prefix="/ui",
        route_class=ConsoleRoute,
        include_in_schema=False,
        dependencies=[Depends(session)],
    )

    @api.get("/{rest:path}")
    def unknown(rest: str) -> Response:
        """Anything else under /ui."""
        raise NotFound(f"The console has no page /ui/{rest}; start from the models page, /ui.")

    return api


def _done(request: Request) -> str | None:
    """The confirmation message a redirect after an action asked for, if any."""
    q = request.query_params
    template = DONE.get(q.get("done", ""))
    if template is None:
        return None
    values = {k: q.get(k, "") for k in ("alias", "version")}
    if not all(v.isdigit() for v in (values["version"],) if v) or not _safe(values["alias"]):
        return None
    return template.format(**values)


def _safe(alias: str) -> bool:
    return alias == "" or (alias.replace("-", "").replace("_", "").isalnum() and len(alias) <= 50)
