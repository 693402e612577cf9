"""The console's open routes: the login form, the login itself, and the static files."""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from slipway.console.assets import ASSETS
from slipway.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    SCOPE_KEY,
    Sessions,
    cookie,
    same_token,
)
from slipway.console.web import ConsoleRoute, form, render
from slipway.exceptions import AccessDenied, Forbidden
from slipway.serving.service import Service

_LOGIN_MINUTES = 30


def router(service: Service, sessions: Sessions) -> APIRouter:
    """Routes that answer without a session."""
    api = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

    @api.get("/login")
    def login_form(request: Request, next: str = "", out: str = "") -> Response:
        """The login form (with a fresh double-submit token against login CSRF)."""
        if request.scope.get(SCOPE_KEY) is not None:  # logged in already
            return RedirectResponse(safe_next(next) or PREFIX, 303)
        return _form(request, sessions, safe_next(next), out=bool(out))

    @api.post("/login")
    async def login(request: Request) -> Response:
        """Trade an admin key for a session cookie, then go where the user was headed."""
        fields = await form(request)
        target = safe_next(fields.get("next", ""))
        if not same_token(fields.get("login_csrf"), cookie(request.scope, LOGIN_COOKIE) or "-"):
            raise Forbidden(
                "The login form has expired or came from elsewhere: reload the login page and "
                "try again (your browser must accept cookies from this server)."
            )
        try:
            _, token, _ = await run_in_threadpool(sessions.login, fields.get("key", ""))
        except AccessDenied as exc:
            return _form(request, sessions, target, error=str(exc), status=_status(exc))
        response = RedirectResponse(target or PREFIX, 303)
        max_age = int(sessions.lifetime.total_seconds())
        response.set_cookie(
            COOKIE, token, max_age=max_age, path=PREFIX, secure=True, httponly=True,
            samesite="strict",
        )  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX, secure=True, httponly=True,
                               samesite="strict")  # fmt: skip
        return response

    @api.get("/static/{name:path}")
    def static(request: Request, name: str) -> Response:
        """A file of the console's static assets (scripts, styles, the chart library)."""
        asset = ASSETS.get(name)
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(None, 304, headers)
        return Response(asset.content, 200, headers, asset.media_type)

    return api


def safe_next(target: str) -> str:
    """Where to go after login: a path of the console, never another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(PREFIX) or target.startswith("//"):
        return ""
    if target.startswith(f"{PREFIX}/login") or "\\" in target:
        return ""
    return target


def _form(
    request: Request,
    sessions: Sessions,
    target: str,
    *,
    error: str = "",
    out: bool = False,
    status: int = 200,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status,
        login_csrf=token,
        next=target,
        error=error,
        out=out,
        open=sessions.open,
        insecure=_insecure(request),
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=_LOGIN_MINUTES * 60, path=PREFIX, secure=True,
        httponly=True, samesite="strict",
    )  # fmt: skip
    return response


def _status(exc: AccessDenied) -> int:
    return 403 if isinstance(exc, Forbidden) else 401


def _insecure(request: Request) -> bool:
    """True when a browser would drop the Secure cookie: plain HTTP to a host not loopback."""
    if request.url.scheme == "https":
        return False
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
