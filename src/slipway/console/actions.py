"""The console's actions: promote, roll back, archive, reload, create and revoke keys, log out.

Each action is two routes on one path: GET shows what will happen and asks to confirm; POST
(with the session's CSRF token, checked by the router's dependency) does it through the
library call the CLI makes, recording the key that is logged in and ``via="ui"`` in the audit
trail, then redirects to the page that shows the result.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from slipway.console.sessions import COOKIE, PREFIX, Sessions
from slipway.console.web import ConsoleRoute, Me, form, render, session
from slipway.exceptions import InvalidRequest, KeyNotFound
from slipway.keys import KeyStore
from slipway.serving.service import Service
from slipway.store.console import delete_sessions_of
from slipway.versions import DEFAULT_ALIAS, check_alias

VIA = "ui"


def router(service: Service, sessions: Sessions) -> APIRouter:
    """The action routes; every one needs a session, and POSTs a CSRF token."""
    api = APIRouter(
        prefix=PREFIX,
        route_class=ConsoleRoute,
        include_in_schema=False,
        dependencies=[Depends(session)],
    )
    registry = service.registry

    @api.get("/models/{name}/promote")
    def promote_confirm(
        request: Request, name: str, version: int, alias: str = DEFAULT_ALIAS
    ) -> Response:
        """Ask before pointing an alias at a version."""
        check_alias(alias)
        mv = registry.get(f"{name}:{version}")
        current = registry.aliases(name).get(alias)
        now = "has no version yet" if current is None else f"points at version {current}"
        return confirm(
            request,
            title=f"Promote {mv.ref}",
            question=f"Point alias {alias!r} of {name!r} at version {version}? It {now}.",
            detail=_serving_note(alias),
            action=f"{PREFIX}/models/{name}/promote",
            hidden={"version": str(version)},
            editable={"alias": alias},
            button="Promote",
            back=f"{PREFIX}/models/{name}",
        )

    @api.post("/models/{name}/promote")
    async def promote(request: Request, name: str, me: Me) -> Response:
        """Point an alias at a version (Registry.promote, as `slipway models promote`)."""
        fields = await form(request)
        version, alias = _version(fields), fields.get("alias") or DEFAULT_ALIAS
        mv = await _threaded(
            registry.promote, name, version, alias=alias, actor=me.key_name, via=VIA
        )
        return _back(name, "promoted", alias=alias, version=mv.version)

    @api.get("/models/{name}/rollback")
    def rollback_confirm(request: Request, name: str, alias: str = DEFAULT_ALIAS) -> Response:
        """Ask before moving an alias back."""
        check_alias(alias)
        current = registry.aliases(name).get(alias)
        where = "has no version" if current is None else f"points at version {current}"
        return confirm(
            request,
            title=f"Roll back {name}@{alias}",
            question=f"Move alias {alias!r} of {name!r} back to the version it held before? "
            f"It {where} now.",
            detail=_serving_note(alias),
            action=f"{PREFIX}/models/{name}/rollback",
            hidden={"alias": alias},
            button="Roll back",
            back=f"{PREFIX}/models/{name}",
        )

    @api.post("/models/{name}/rollback")
    async def rollback(request: Request, name: str, me: Me) -> Response:
        """Move an alias back (Registry.rollback, as `slipway models rollback`)."""
        alias = (await form(request)).get("alias") or DEFAULT_ALIAS
        mv = await _threaded(registry.rollback, name, alias=alias, actor=me.key_name, via=VIA)
        return _back(name, "rolled_back", alias=alias, version=mv.version)

    @api.get("/models/{name}/versions/{version}/archive")
    def archive_confirm(request: Request, name: str, version: int = Path(ge=1)) -> Response:
        """Ask before archiving a version."""
        mv = registry.get(f"{name}:{version}")
        return confirm(
            request,
            title=f"Archive {mv.ref}",
            question=f"Archive version {version} of {name!r}? It stays loadable as {mv.ref} "
            "but can never be promoted again or picked as the latest.",
            detail="",
            action=f"{PREFIX}/models/{name}/versions/{version}/archive",
            hidden={},
            button="Archive",
            back=f"{PREFIX}/models/{name}/versions/{version}",
        )

    @api.post("/models/{name}/versions/{version}/archive")
    async def archive(name: str, me: Me, version: int = Path(ge=1)) -> Response:
        """Archive a version (Registry.archive, as `slipway models archive`)."""
        mv = await _threaded(registry.archive, name, version, actor=me.key_name, via=VIA)
        return _back(name, "archived", version=mv.version)

    @api.get("/models/{name}/reload")
    def reload_confirm(request: Request, name: str) -> Response:
        """Ask before reloading a model on this server."""
        target = registry.aliases(name).get(DEFAULT_ALIAS)
        served = service.runtime.served.get(name)
        now = "nothing" if served is None else f"version {served.version}"
        return confirm(
            request,
            title=f"Reload {name}",
            question=f"Load the version {DEFAULT_ALIAS!r} points at now "
            f"({'none' if target is None else target}) on this server? It serves {now}.",
            detail="Other workers and replicas follow the alias on their own within "
            f"{service.settings.serve_poll_seconds:g} s; a version that fails to load or "
            "verify never replaces the one serving.",
            action=f"{PREFIX}/models/{name}/reload",
            hidden={},
            button="Reload",
            back=f"{PREFIX}/models/{name}",
        )

    @api.post("/models/{name}/reload")
    async def reload(name: str, me: Me) -> Response:
        """Load the production version now (Runtime.reload, as POST /v1/models/{name}/reload)."""
        result = await _threaded(service.runtime.reload, name)
        await _threaded(
            registry.record_event,
            "reload",
            name,
            version=result.version,
            from_version=result.previous,
            to_version=result.version,
            actor=me.key_name,
            via=VIA,
            detail={"changed": result.changed},
        )
        return _back(name, "reloaded", alias=DEFAULT_ALIAS, version=result.version)

    @api.post("/keys")
    async def create_key(request: Request, me: Me) -> Response:
        """Create a key (KeyStore.create, as `slipway keys create`) and show it once."""
        fields = await form(request)
        name, role = fields.get("name", "").strip(), fields.get("role", "predict")
        keys = KeyStore(registry.store)
        key, token = await _threaded(keys.create, name, role, actor=me.key_name, via=VIA)
        return render(request, "key_created.html", key=key, token=token)

    @api.get("/keys/{name}/revoke")
    def revoke_confirm(request: Request, name: str) -> Response:
        """Ask before revoking a key."""
        known = {k.name: k for k in KeyStore(registry.store).list()}
        key = known.get(name)
        if key is None:
            listed = ", ".join(sorted(known)) or "none"
            raise KeyNotFound(f"No API key named {name!r} (keys: {listed}).")
        return confirm(
            request,
            title=f"Revoke key {name}",
            question=f"Revoke the {key.role} key {name!r}? Every server refuses it within "
            f"{service.settings.serve_poll_seconds:g} s and its console sessions end; key "
            "names are never reused.",
            detail="",
            action=f"{PREFIX}/keys/{name}/revoke",
            hidden={},
            button="Revoke",
            back=f"{PREFIX}/keys",
        )

    @api.post("/keys/{name}/revoke")
    async def revoke(name: str, me: Me) -> Response:
        """Revoke a key (KeyStore.revoke, as `slipway keys revoke`) and end its sessions."""
        await _threaded(KeyStore(registry.store).revoke, name, actor=me.key_name, via=VIA)
        await _threaded(delete_sessions_of, registry.store, name)
        return RedirectResponse(f"{PREFIX}/keys?done=revoked", 303)

    @api.post("/logout")
    async def logout(me: Me) -> Response:
        """End the session everywhere and forget the cookie."""
        await _threaded(sessions.logout, me)
        response = RedirectResponse(f"{PREFIX}/login?out=1", 303)
        response.delete_cookie(COOKIE, path=PREFIX, secure=True, httponly=True, samesite="strict")
        return response

    return api


def confirm(
    request: Request,
    *,
    title: str,
    question: str,
    detail: str,
    action: str,
    hidden: dict[str, str],
    button: str,
    back: str,
    editable: dict[str, str] | None = None,
) -> Response:
    """The confirmation page of an action: what will happen, Confirm (POST) or Cancel."""
    return render(
        request,
        "confirm.html",
        title=title,
        question=question,
        detail=detail,
        action=action,
        hidden=hidden,
        editable=editable or {},
        button=button,
        back=back,
    )


def _serving_note(alias: str) -> str:
    if alias != DEFAULT_ALIAS:
        return ""
    return (
        "Every worker serving the model loads, verifies and swaps to the new version within "
        "a second or two."
    )


def _version(fields: dict[str, str]) -> int:
    text = fields.get("version", "")
    if not text.isdigit() or int(text) < 1:
        raise InvalidRequest(f"version {text!r} is not a version number; use a whole number ≥ 1.")
    return int(text)


def _back(name: str, done: str, **values: Any) -> Response:
    query = urlencode({"done": done, **values})
    return RedirectResponse(f"{PREFIX}/models/{name}?{query}", 303)


async def _threaded(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking library call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)
