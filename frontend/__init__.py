"""Server-rendered pages: session cookies with CSRF tokens, zh-CN and en."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from app.config import get_settings
from frontend import feeds
from frontend.pages import buyer, operator, owner, owner_calendar, owner_csv, public
from frontend.pages.public import csrf_failed, login_required, render_error
from frontend.web import CsrfFailed, LoginRequired, templates

__all__ = ["mount", "render_error", "templates"]

# Routers in the order their paths are tried: the owner's CSV pages first, since
# /owner/machines/import and /owner/machines/export.csv would match
# /owner/machines/{machine_id}.
ROUTERS = (
    owner_csv.router,
    owner.router,
    owner_calendar.router,
    buyer.router,
    operator.router,
    public.router,
    feeds.router,
)


def mount(app: FastAPI) -> None:
    settings = get_settings()
    for router in ROUTERS:
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
    app.add_exception_handler(LoginRequired, login_required)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfFailed, csrf_failed)  # type: ignore[arg-type]
