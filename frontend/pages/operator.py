"""The operator's pages: the dashboard of a cluster (or of the market, for an admin)
and its tables as CSV, match runs (queue one, the list, one run's progress while it runs,
cancel it, and the steps it left out)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.catalog import service as catalog
from app.dashboard import service as dashboard
from app.errors import InvalidInput, MarketplaceError
from app.matching_runs import service as matching_runs
from frontend import csvfiles, forms
from frontend.web import PAGE, Csrf, SessionDep, T, WebUser, redirect, render
from models import MatchRun, Role, User, utcnow
from models.match_run import ACTIVE_RUN_STATES

router = APIRouter(include_in_schema=False)


def _period(t: T) -> tuple[dt.datetime, dt.datetime]:
    today = utcnow().astimezone(t.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return today.astimezone(dt.UTC), (today + dt.timedelta(days=15)).astimezone(dt.UTC)


@router.get("/operator", response_class=HTMLResponse)
def operator(
    request: Request, session: SessionDep, user: WebUser, t: T, cluster_id: int | None = None
) -> HTMLResponse:
    start, end = _period(t)
    d = dashboard.operator_dashboard(
        session=session, user=user, start=start, end=end, cluster_id=cluster_id, tz=t.tz.key
    )
    days = sorted({day for row in d.by_day.values() for day in row})
    cluster_names = sorted({c for row in d.heatmap.values() for c in row})
    runs, _ = matching_runs.list_match_runs(session=session, user=user, limit=1, offset=0)
    reasons: dict[str, int] = {}
    if runs:
        assert runs[0].id is not None
        for u in matching_runs.list_unmatched(session=session, run_id=runs[0].id):
            reasons[u.reason] = reasons.get(u.reason, 0) + 1
    return render(request, t, "operator/dashboard.html", {"d": d, "days": days, "cluster_names": cluster_names, "last_run": runs[0] if runs else None,
                  "reasons": reasons}, user=user)  # fmt: skip


@router.get("/operator/export/{table}.csv")
def operator_csv(
    request: Request, session: SessionDep, user: WebUser, t: T, table: str
) -> Response:
    start, end = _period(t)
    d = dashboard.operator_dashboard(session=session, user=user, start=start, end=end, tz=t.tz.key)
    text = csvfiles.dashboard_csv(d, table)
    if text is None:
        return Response(status_code=404)
    return csvfiles.attachment(text, f"{table}.csv", media_type="text/csv")


@router.get("/operator/match-runs", response_class=HTMLResponse)
def match_runs(
    request: Request, session: SessionDep, user: WebUser, t: T, page: int = 1
) -> HTMLResponse:
    return _match_runs_page(request, session, user, t, page)


def _match_runs_page(request: Request, session: SessionDep, user: User, t: T, page: int,
                     errors: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:  # fmt: skip
    runs, count = matching_runs.list_match_runs(
        session=session, user=user, limit=PAGE, offset=(max(page, 1) - 1) * PAGE
    )
    clusters = [c for c in catalog.list_clusters(session=session)
                if user.has_role(Role.admin) or c.operator_org_id == user.org_id]  # fmt: skip
    in_flight = [r for r in runs if r.status in ACTIVE_RUN_STATES]
    return render(request, t, "operator/match_runs.html", {"runs": runs, "count": count, "page": page, "pages": max(1, -(-count // PAGE)),
                  "clusters": clusters, "errors": errors or {}, "in_flight": in_flight},
                  user=user, status_code=status_code)  # fmt: skip


@router.post("/operator/match-runs", response_class=HTMLResponse, dependencies=[Csrf])
def run_match(request: Request, session: SessionDep, user: WebUser, t: T,
              cluster_id: Annotated[str, Form()] = "", time_limit_s: Annotated[str, Form()] = "") -> Response:  # fmt: skip
    try:
        scope, limit = forms.match_run_input(t, cluster_id, time_limit_s)
    except InvalidInput as exc:  # the page again, the error beside its field
        return _match_runs_page(request, session, user, t, 1, forms.errors_of(exc), exc.status_code)
    try:
        run = matching_runs.request_run(
            session=session, user=user, cluster_id=scope, time_limit_s=limit
        )
    except MarketplaceError as exc:
        return redirect("/operator/match-runs", request, "⚠ " + exc.message)
    return redirect(f"/operator/match-runs/{run.id}", request,
                    t.gettext("Match run {id} is queued.", id=run.id))  # fmt: skip


# What a run is doing (MatchRun.phase: a step of the run, then the solver's own phase).
PHASES = {
    "reading": "reading the market",
    "solving": "solving",
    "whole orders": "re-matching whole orders",
    "writing": "writing proposals",
    "done": "done",
    "greedy": "greedy start",
    "component": "a part of the market",
    "cp-sat": "CP-SAT search",
    "lns": "neighbourhood search",
}


def phase_label(t: T, run: MatchRun) -> str:
    """The run's state and phase in the reader's language, e.g. 运行中 · 求解：CP-SAT 搜索."""
    parts = [t.gettext(run.status)]
    if run.status in ACTIVE_RUN_STATES and run.phase:
        step, _, solver = run.phase.partition(": ")
        parts.append(t.gettext(PHASES.get(step, step)))
        if solver:
            parts[-1] += "：" if t.lang == "zh" else ": "
            parts[-1] += t.gettext(PHASES.get(solver, solver))
    if run.cancel_requested and run.status in ACTIVE_RUN_STATES:
        parts.append(t.gettext("cancelling"))
    return " · ".join(parts)


@router.get("/operator/match-runs/{run_id}/status")
def match_run_status(session: SessionDep, user: WebUser, t: T, run_id: int) -> JSONResponse:
    """What the run page polls while a run is in flight."""
    run = matching_runs.get_match_run_or_raise(session=session, user=user, run_id=run_id)
    return JSONResponse({
        "status": run.status, "active": run.status in ACTIVE_RUN_STATES,
        "label": phase_label(t, run),
        "seconds": t.number(run.progress_seconds or 0, 1), "objective": t.money(run.objective_fen),
    })  # fmt: skip


@router.post("/operator/match-runs/{run_id}/cancel", dependencies=[Csrf])
def cancel_match_run(request: Request, session: SessionDep, user: WebUser, t: T,
                     run_id: int) -> Response:  # fmt: skip
    try:
        matching_runs.cancel_run(session=session, user=user, run_id=run_id)
    except MarketplaceError as exc:
        return redirect(f"/operator/match-runs/{run_id}", request, "⚠ " + exc.message)
    return redirect(f"/operator/match-runs/{run_id}", request, t.gettext("Cancel requested."))


@router.get("/operator/match-runs/{run_id}", response_class=HTMLResponse)
def match_run(
    request: Request, session: SessionDep, user: WebUser, t: T, run_id: int
) -> HTMLResponse:
    run = matching_runs.get_match_run_or_raise(session=session, user=user, run_id=run_id)
    unmatched = matching_runs.list_unmatched(session=session, run_id=run_id)
    reasons: dict[str, int] = {}
    for u in unmatched:
        reasons[u.reason] = reasons.get(u.reason, 0) + 1
    return render(
        request,
        t,
        "operator/match_run.html",
        {
            "run": run,
            "unmatched": unmatched[:200],
            "reasons": reasons,
            "active": run.status in ACTIVE_RUN_STATES,
            "phase": phase_label(t, run),
        },
        user=user,
    )
