"""What every console route shares: templates, security headers, sessions, CSRF, errors.

Routes are :class:`ConsoleRoute`s. Each answer gets the security headers (a Content-Security-
Policy allowing only this server's own scripts and styles, no framing, no sniffing, no
caching of pages with data); a Slipway error becomes an HTML page naming the problem (JSON
under ``/ui/api``); a request without a session is sent to the login page. Every route of the
protected router depends on :func:`session`, which also checks the CSRF token of any request
that is not a GET or HEAD, so a new route cannot forget either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
import markupsafe
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from slipway.console.sessions import PREFIX, SCOPE_KEY, Session, same_token
from slipway.exceptions import (
    ConfigError,
    Forbidden,
    InvalidRequest,
    SlipwayError,
    Unauthorized,
)
from slipway.serving import errors

API_PREFIX = PREFIX + "/api/"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
_MAX_FORM_FIELDS = 20
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_STORE = "no-store"

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("slipway.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class LoginRequired(Unauthorized):
    """A console route was asked for without a live session."""


def when(value: datetime | str | None) -> markupsafe.Markup:
    """A ``<time>`` element: UTC as text and title; the page script shows the browser's zone."""
    if value is None:
        return markupsafe.Markup("-")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    iso = value.isoformat()
    text = f"{value:%Y-%m-%d %H:%M:%S} UTC"
    return markupsafe.Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


def number(value: Any, digits: int = 4) -> str:
    """A metric for people: 4 significant digits, '-' for nothing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


templates.filters["when"] = when
templates.filters["num"] = number


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the console, with what every page needs (session, CSRF token, navigation)."""
    from slipway.console.sections import NAV

    session: Session | None = request.scope.get(SCOPE_KEY)
    page = templates.get_template(template).render(
        me=session,
        csrf=session.csrf if session else "",
        nav=NAV,
        path=request.url.path,
        assets=asset_version(),
        **context,
    )
    return HTMLResponse(page, status)


def asset_version() -> str:
    """A short hash of the static assets, appended to their URLs so browsers fetch new ones."""
    from slipway.console.assets import ASSETS

    return ASSETS.version


async def session(request: Request) -> Session:
    """The request's session (else LoginRequired); for state changes, a valid CSRF token too."""
    found: Session | None = request.scope.get(SCOPE_KEY)
    if found is None:
        raise LoginRequired("Your console session has ended (or never began): log in again.")
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, found.csrf)
    return found


Me = Annotated[Session, Depends(session)]


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse (403) a state change from another site or without the expected token."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(
            f"This request comes from another site ({origin}); the console only accepts "
            "changes made from its own pages."
        )
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        given = (await form(request)).get(CSRF_FIELD)
    if not same_token(given, expected):
        raise Forbidden(
            "This request has no valid CSRF token, so it was refused: reload the page and try "
            "again (a token belongs to one login session)."
        )


async def form(request: Request) -> dict[str, str]:
    """The URL-encoded form fields of a request (parsed once, within the body limit)."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    fields: dict[str, str] = {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        raw = (await request.body()).decode("utf-8", "replace")
        try:
            pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
        except ValueError:
            raise InvalidRequest(
                f"The form has more than {_MAX_FORM_FIELDS} fields; no console form has."
            ) from None
        fields = dict(pairs)
    request.state.form = fields
    return fields


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error on a console route."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError | ConfigError):
        return 422  # a bad value in a form or a path is the user's to fix
    return errors.status_of(exc)[0]


def error_page(request: Request, exc: BaseException) -> Response:
    """The answer to an error: an HTML page naming it, or JSON under ``/ui/api``."""
    status = status_of(exc)
    if status >= 500 and not isinstance(exc, SlipwayError):
        return errors.internal_error(request.scope, exc)
    if request.url.path.startswith(API_PREFIX):
        if isinstance(exc, SlipwayError):
            return errors.render(request.scope, exc)
        return (
            errors.internal_error(request.scope, exc)
            if status >= 500
            else Response(
                errors.body(request.scope, message_of(exc), "invalid_request"),
                status,
                None,
                "application/json",
            )
        )
    if status >= 500:
        return errors.internal_error(request.scope, exc)
    return render(request, "error.html", status, code=status, message=message_of(exc))


def message_of(exc: BaseException) -> str:
    """One sentence for people."""
    if isinstance(exc, RequestValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return "Invalid request: " + "; ".join(parts)
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    return str(exc)


def to_login(request: Request) -> Response:
    """Send a browser to the login page (pages), or answer 401 (API calls and state changes)."""
    if request.method in ("GET", "HEAD") and not request.url.path.startswith(API_PREFIX):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", 303)
    return error_page(request, LoginRequired("Your console session has ended: log in again."))


def secure(response: Response, headers: Mapping[str, str] = SECURITY_HEADERS) -> Response:
    """Add the security headers (and no-store unless the route chose its caching)."""
    for name, value in headers.items():
        response.headers[name] = value
    if "cache-control" not in response.headers:
        response.headers["Cache-Control"] = NO_STORE
    return response


class ConsoleRoute(APIRoute):
    """An APIRoute whose answers carry the security headers and whose errors are pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = to_login(request)
            except (SlipwayError, RequestValidationError, HTTPException) as exc:
                response = error_page(request, exc)
            return secure(response)

        return route
