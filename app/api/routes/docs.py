"""Interactive API documentation served entirely by the app: Swagger UI at /docs, its script and style from the
pinned ``fastapi-offline`` package (Swagger UI is Apache-2.0; the licence notices ship in that package). No
request leaves the host, and the page's Content-Security-Policy confines it to the host.

ReDoc is not kept: its bundle always loads its logo from a CDN. /redoc leads to /docs."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/static-docs"
FAVICON = "/favicon.ico"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
SAME_HOST_ONLY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; font-src 'self' data:; "
                  "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
                  "connect-src 'self'; frame-ancestors 'none'"}

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{root}{FAVICON}",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
        swagger_ui_parameters={"validatorUrl": None, **(request.app.swagger_ui_parameters or {})})
    page.headers.update(SAME_HOST_ONLY)
    return page


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}/docs")


def install(app: FastAPI) -> None:
    """Serve the documentation pages and their assets (create the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.include_router(router)
