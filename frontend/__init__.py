"""Server-rendered pages."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from app.errors import MarketplaceError
from frontend.routes import router, templates


def mount(app: FastAPI) -> None:
    app.include_router(router)


def render_error(request: Request, exc: MarketplaceError) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"message": exc.message, "status": exc.status_code},
        status_code=exc.status_code,
    )
