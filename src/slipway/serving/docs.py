"""``/docs`` (Swagger UI) and ``/redoc`` served from the installed package, never a CDN.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google Fonts from the internet, so
they stay blank on a machine without it (an air-gapped cluster, a laptop on a train). These
pages load the same assets from ``/docs/static/``, files shipped by the ``fastapi-offline``
package (Swagger UI: Apache-2.0; ReDoc: MIT; the package: MIT).

Like ``/openapi.json``, the pages need an API key unless ``SLIPWAY_SERVE_PUBLIC_DOCS=true``
(a browser cannot send one), so ``slipway serve`` says at start where the docs are and how to
open them (:func:`docs_hint`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# Every path the docs pages use: open to browsers with SLIPWAY_SERVE_PUBLIC_DOCS=true.
PAGES = ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")
PATHS = frozenset({*PAGES, *(f"{STATIC}/{a}" for a in ASSETS)})


def asset_dir() -> Path:
    """Where the installed package keeps the Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Add ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and the assets to ``app`` (built
    with ``docs_url=None, redoc_url=None``)."""
    title = f"{app.title} {app.version}: API"
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{STATIC}/favicon.png"
    api = APIRouter(include_in_schema=False)

    @api.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=favicon,
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @api.get("/docs/oauth2-redirect")
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @api.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )

    app.include_router(api)
    app.mount(STATIC, StaticFiles(directory=asset_dir()), name="docs-static")


def docs_hint(url: str, *, auth: bool, public_docs: bool) -> str:
    """The line ``slipway serve`` prints at start: where the API docs are, how to open them."""
    if not auth or public_docs:
        return f"API docs on {url}/docs and {url}/redoc (work offline)"
    return (
        f"API docs on {url}/docs need an API key, which a browser cannot send: set "
        "SLIPWAY_SERVE_PUBLIC_DOCS=true to open /docs, /redoc and /openapi.json without one, or "
        f"fetch the document with a key (curl -H 'X-API-Key: KEY' {url}/openapi.json)"
    )
