from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, Id, IdFilter, Limit, Offset, SessionDep, SessionRoute, SettingsDep
from app.matching_runs import service as matching_runs
from models.base import Page
from models.booking import BookingPublic
from models.match_run import MatchRunCreate, MatchRunDetail, MatchRunPublic, MatchRunUnmatchedPublic

router = APIRouter(tags=["matching"], route_class=SessionRoute)
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"description": "not an operator of this cluster, nor an admin"}
}


def _detail(run: MatchRunPublic, unmatched: list[MatchRunUnmatchedPublic]) -> MatchRunDetail:
    return MatchRunDetail(**run.model_dump(), unmatched_operations=unmatched)


@router.post(
    "/match-runs",
    response_model=MatchRunDetail,
    status_code=202,
    responses={
        **FORBIDDEN,
        404: {"description": "no such cluster"},
        409: {"description": "a run of this scope is already queued or running (named)"},
    },
)
def create_match_run(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, data: MatchRunCreate
) -> MatchRunDetail:
    """Queue a run of the matcher over a cluster (operators, admins) or the whole market
    (cluster_id null: admins). Answers at once with the run ``queued``; poll
    ``GET /match-runs/{id}`` for its progress (phase, objective, bound, seconds) and
    outcome: queued → running → succeeded | failed | cancelled."""
    run = matching_runs.request_run(
        session=session, user=user, cluster_id=data.cluster_id, time_limit_s=data.time_limit_s,
        settings=settings,
    )  # fmt: skip
    return _detail(MatchRunPublic.model_validate(run), [])


@router.post(
    "/match-runs/{run_id}/cancel",
    response_model=MatchRunPublic,
    responses={
        **FORBIDDEN,
        404: {"description": "no such run, or not visible"},
        409: {"description": "the run has finished"},
    },
)
def cancel_match_run(session: SessionDep, user: CurrentUser, run_id: Id) -> MatchRunPublic:
    """Cancel a queued run at once; a running one stops at its next phase (at the latest
    when its solve ends) and writes nothing (``cancel_requested`` until then)."""
    run = matching_runs.cancel_run(session=session, user=user, run_id=run_id)
    return MatchRunPublic.model_validate(run)


@router.get("/match-runs", response_model=Page[MatchRunPublic], responses=FORBIDDEN)
def list_match_runs(
    session: SessionDep,
    user: CurrentUser,
    cluster_id: IdFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[MatchRunPublic]:
    """Run history, newest first: operators see their clusters' runs, admins all."""
    rows, count = matching_runs.list_match_runs(
        session=session, user=user, cluster_id=cluster_id, limit=limit, offset=offset
    )
    return Page(data=[MatchRunPublic.model_validate(r) for r in rows], count=count)


@router.get(
    "/match-runs/{run_id}",
    response_model=MatchRunDetail,
    responses={**FORBIDDEN, 404: {"description": "no such run, or not visible"}},
)
def get_match_run(session: SessionDep, user: CurrentUser, run_id: Id) -> MatchRunDetail:
    run = matching_runs.get_match_run_or_raise(session=session, user=user, run_id=run_id)
    assert run.id is not None
    unmatched = matching_runs.list_unmatched(session=session, run_id=run.id)
    return _detail(
        MatchRunPublic.model_validate(run),
        [MatchRunUnmatchedPublic.model_validate(u) for u in unmatched],
    )


@router.get(
    "/proposals", response_model=Page[BookingPublic], tags=["bookings"], responses=FORBIDDEN
)
def list_proposals(
    session: SessionDep, user: CurrentUser, limit: Limit = 50, offset: Offset = 0
) -> Page[BookingPublic]:
    """Proposed jobs on the caller's machines, to accept or decline
    (POST /bookings/{id}/accept | decline)."""
    rows, count = matching_runs.list_proposals(
        session=session, user=user, limit=limit, offset=offset
    )
    return Page(data=[BookingPublic.model_validate(b) for b in rows], count=count)
