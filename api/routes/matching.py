from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, Id, IdFilter, Limit, Offset, SessionDep, SettingsDep
from app.matching_runs import service as matching_runs
from models.base import Page
from models.booking import BookingPublic
from models.match_run import MatchRunCreate, MatchRunDetail, MatchRunPublic, MatchRunUnmatchedPublic

router = APIRouter(tags=["matching"])
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"description": "not an operator of this cluster, nor an admin"}
}


def _detail(run: MatchRunPublic, unmatched: list[MatchRunUnmatchedPublic]) -> MatchRunDetail:
    return MatchRunDetail(**run.model_dump(), unmatched_operations=unmatched)


@router.post(
    "/match-runs",
    response_model=MatchRunDetail,
    status_code=201,
    responses={**FORBIDDEN, 404: {"description": "no such cluster"}},
)
def create_match_run(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, data: MatchRunCreate
) -> MatchRunDetail:
    """Run the matcher over a cluster (operators, admins) or the whole market
    (cluster_id null: admins). Runs in the threadpool for up to time_limit_s. The
    run is returned whether it succeeded or failed (see status and error)."""
    run = matching_runs.run_matching(
        session=session, user=user, cluster_id=data.cluster_id, time_limit_s=data.time_limit_s,
        settings=settings,
    )  # fmt: skip
    assert run.id is not None
    unmatched = matching_runs.list_unmatched(session=session, run_id=run.id)
    return _detail(
        MatchRunPublic.model_validate(run),
        [MatchRunUnmatchedPublic.model_validate(u) for u in unmatched],
    )


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
