"""Plumbing of the pages: the signed-in user from the session cookie, CSRF
tokens, the language, paging, rendering, and running a service off the event loop."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.config import Settings, get_settings
from app.db import end_reads, end_request_reads, request_session
from frontend.i18n import DEFAULT, LOCALES, Translator
from models import User

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE = 25  # rows on a page of a list

SessionDep = Annotated[Session, Depends(request_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class LoginRequired(Exception):
    """Raised by page dependencies; rendered as a redirect to /login."""


class CsrfFailed(Exception):
    pass


def language(request: Request) -> str:
    lang = request.query_params.get("lang") or request.session.get("lang") or DEFAULT
    lang = lang if lang in LOCALES else DEFAULT
    request.session["lang"] = lang
    return lang


def translator(request: Request, settings: SettingsDep) -> Translator:
    return Translator(lang=language(request), tz=ZoneInfo(settings.display_timezone))


T = Annotated[Translator, Depends(translator)]


def optional_user(request: Request, session: SessionDep) -> User | None:
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, int(user_id))
    end_reads(session)  # the handler is another hop through the threadpool: none waits for it
    return user if user is not None and user.is_active else None


def web_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise LoginRequired
    return user


WebUser = Annotated[User, Depends(web_user)]


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, csrf_token: Annotated[str, Form()] = "") -> None:
    expected = request.session.get("csrf")
    if not expected or not secrets.compare_digest(str(expected), csrf_token):
        raise CsrfFailed


Csrf = Depends(check_csrf)


def render(
    request: Request, t: Translator, name: str, context: dict[str, Any] | None = None,
    *, user: User | None = None, status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    ctx = {"t": t, "_": t.gettext, "user": user, "csrf": csrf_token(request),
           "flash": request.session.pop("flash", None), **(context or {})}  # fmt: skip
    end_request_reads()  # the page renders what was loaded: no connection held meanwhile
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def redirect(
    url: str, request: Request | None = None, flash: str | None = None
) -> RedirectResponse:
    if request is not None and flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


async def threaded(fn: Any, **kwargs: Any) -> Any:
    """``fn(**kwargs)`` in the threadpool: an async handler (one that reads the form
    itself) calls a sync service so."""
    return await run_in_threadpool(lambda: fn(**kwargs))
