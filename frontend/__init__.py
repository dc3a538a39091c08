"""Server-rendered pages: session cookies with CSRF tokens, zh-CN and en."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from app.config import get_settings
from app.errors import MarketplaceError
from frontend.i18n import Translator
from frontend.owner_routes import router as owner_router
from frontend.routes import router
from frontend.web import CsrfFailed, LoginRequired, language, redirect, render, templates

__all__ = ["mount", "render_error", "templates"]


def mount(app: FastAPI) -> None:
    settings = get_settings()
    app.include_router(owner_router)  # first: /owner/machines/import before /owner/machines/{id}
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="capshare_session",
        same_site="lax",
        https_only=settings.environment == "production",
        max_age=14 * 24 * 3600,
    )
    app.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfFailed, _csrf_failed)  # type: ignore[arg-type]


def _translator(request: Request) -> Translator:
    return Translator(lang=language(request), tz=ZoneInfo(get_settings().display_timezone))


def _login_required(request: Request, _exc: LoginRequired) -> Response:
    return redirect("/login")


def _csrf_failed(request: Request, _exc: CsrfFailed) -> HTMLResponse:
    t = _translator(request)
    msg = t.gettext("The form expired. Reload the page and try again.")
    return render(request, t, "error.html", {"message": msg, "status": 403}, status_code=403)


def render_error(request: Request, exc: MarketplaceError) -> HTMLResponse:
    t = _translator(request)
    return render(
        request,
        t,
        "error.html",
        {"message": exc.message, "status": exc.status_code},
        status_code=exc.status_code,
    )
