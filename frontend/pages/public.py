"""Pages for anyone: the home page with the demo logins, signing in and out, and the
error pages. The language is switched on any page with ``?lang=`` (see web.language)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.accounts import service as accounts
from app.config import get_settings
from app.demo.seed import DEMO_DOMAIN, DEMO_PASSWORD
from app.errors import MarketplaceError
from frontend.i18n import Translator
from frontend.web import (
    Csrf,
    CsrfFailed,
    LoginRequired,
    SessionDep,
    T,
    language,
    optional_user,
    redirect,
    render,
)
from models import Role, User

router = APIRouter(include_in_schema=False)


def home_for(user: User) -> str:
    if user.has_role(Role.admin) or user.has_role(Role.operator):
        return "/operator"
    if user.has_role(Role.owner):
        return "/owner/machines"
    return "/buyer/orders"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: SessionDep, t: T) -> HTMLResponse:
    user = optional_user(request, session)
    demo = [("owner", f"owner1@{DEMO_DOMAIN}"), ("buyer", f"buyer1@{DEMO_DOMAIN}"),
            ("operator", f"operator.ningbo-beilun@{DEMO_DOMAIN}"), ("admin", f"admin@{DEMO_DOMAIN}")]  # fmt: skip
    return render(
        request, t, "public/home.html", {"demo": demo, "demo_password": DEMO_PASSWORD}, user=user
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, t: T, email: str = "") -> HTMLResponse:
    return render(request, t, "public/login.html", {"email": email, "errors": {}})


@router.post("/login", response_class=HTMLResponse, dependencies=[Csrf])
def login(
    request: Request, session: SessionDep, t: T,
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
) -> Response:  # fmt: skip
    user = accounts.authenticate(session=session, email=email, password=password)
    if user is None:
        errors = {"password": t.gettext("Wrong email or password.")}
        return render(
            request, t, "public/login.html", {"email": email, "errors": errors}, status_code=401
        )
    request.session["user_id"] = user.id
    return redirect(home_for(user))


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request) -> Response:
    lang = request.session.get("lang")
    request.session.clear()
    request.session["lang"] = lang
    return redirect("/")


# ----------------------------------------------------------------- errors


def _translator(request: Request) -> Translator:
    return Translator(lang=language(request), tz=ZoneInfo(get_settings().display_timezone))


def login_required(request: Request, _exc: LoginRequired) -> Response:
    return redirect("/login")


def csrf_failed(request: Request, _exc: CsrfFailed) -> HTMLResponse:
    t = _translator(request)
    msg = t.gettext("The form expired. Reload the page and try again.")
    return render(request, t, "error.html", {"message": msg, "status": 403}, status_code=403)


def render_error(request: Request, exc: MarketplaceError) -> HTMLResponse:
    """A domain error raised by a page, as the error page with its status."""
    t = _translator(request)
    return render(
        request,
        t,
        "error.html",
        {"message": exc.message, "status": exc.status_code},
        status_code=exc.status_code,
    )
