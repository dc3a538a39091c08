"""Feeds other programs read: a machine's iCalendar feed, which a calendar app
subscribes to. No login: the signed URL is the key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.config import Settings
from app.machines import ical
from frontend.web import SessionDep, SettingsDep
from models import Machine, User

router = APIRouter(include_in_schema=False)


@router.get("/calendar/{token}.ics")
def machine_calendar(session: SessionDep, settings: SettingsDep, token: str) -> Response:
    """The iCalendar feed a calendar app subscribes to (no login: the URL is the key)."""
    machine = ical.machine_from_token(session=session, settings=settings, token=token)
    return Response(
        ical.machine_feed(session=session, machine=machine),
        media_type="text/calendar; charset=utf-8",
    )


def feed_url(request: Request, settings: Settings, user: User, machine: Machine) -> str | None:
    """The machine's iCalendar feed, shown to its owner only."""
    if machine.owner_org_id != user.org_id:
        return None
    return str(
        request.url_for(
            "machine_calendar", token=ical.feed_token(settings=settings, machine=machine)
        )
    )
