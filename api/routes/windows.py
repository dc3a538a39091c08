"""Offered time in bulk: many single windows, over the caller's machines, at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SessionRoute
from app.machines import availability
from models.machine import WindowImport, WindowsImported

router = APIRouter(prefix="/windows", tags=["machines"], route_class=SessionRoute)
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "every refused row overlaps offered time; nothing written"},
    422: {
        "description": "a row is invalid; `field` names the first (`windows[i].start_at`); nothing written"
    },
}


@router.post("/import", response_model=WindowsImported, status_code=201, responses=REFUSED)
def import_windows(session: SessionDep, user: CurrentUser, data: WindowImport) -> WindowsImported:
    """Offer up to 20,000 windows in one transaction: all rows or none. A row identical
    to a window already offered is skipped, so retrying an import is safe."""
    created, already = availability.import_windows(session=session, user=user, rows=data.windows)
    return WindowsImported(created=created, already_offered=already)
