"""Match runs: the matcher over a cluster or the whole market, written back as
proposals; and the expiry of proposals nobody answered.

A run reads the pool (:func:`app.matching_runs.adapter.build_match_input`), solves
outside any write transaction, re-checks the answer without the solver
(``matching.check_result``) and then, in ONE write transaction, supersedes the old
proposals of the re-planned orders, writes the new ones, moves order statuses, and
records the :class:`MatchRun` with the operations left out and why. A rejected or
failed run writes nothing but its own ``failed`` row (in a small transaction of its
own, after the rollback).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable

from sqlmodel import Session, col, func, select

from app.accounts.service import is_admin, operated_cluster_ids
from app.bookings import flows as booking_flows
from app.bookings.service import collision
from app.catalog.service import get_cluster_or_raise
from app.config import Settings, get_settings
from app.db import begin_write
from app.errors import NotFound, PermissionDenied
from app.machines.availability import offered_spans
from app.matching_runs.adapter import MatchInput, build_match_input
from app.matching_runs.expiry import expire_proposals
from app.orders import service as orders
from matching import Assignment, MatchResult, check_result, solve
from models import (
    Booking,
    BookingState,
    Machine,
    MatchRun,
    MatchRunStatus,
    MatchRunUnmatched,
    MatchScope,
    Order,
    Role,
    User,
    utcnow,
)
from models.match_run import MAX_TIME_LIMIT_S

log = logging.getLogger("capshare.matching")
# The whole-order pass gets this share of the run's time limit (it is a small problem).
WHOLE_ORDER_SHARE = 0.2


class ResultRejected(Exception):
    """The solver's answer broke a hard rule; it is not written."""


class InputsChanged(Exception):
    """The market moved while the solver ran; run again."""


# ------------------------------------------------------------------ who may run


def _check_may_run(session: Session, user: User | None, cluster_id: int | None) -> None:
    if cluster_id is not None:
        get_cluster_or_raise(session=session, cluster_id=cluster_id)
    if user is None or is_admin(user):  # the platform itself (CLI), or an admin
        return
    if not user.has_role(Role.operator):
        raise PermissionDenied("only cluster operators and admins run the matcher")
    if cluster_id is None:
        raise PermissionDenied(
            "operators run the matcher for one of their clusters", field="cluster_id"
        )
    if cluster_id not in operated_cluster_ids(session=session, user=user):
        raise PermissionDenied("you do not operate this cluster", field="cluster_id")


# ------------------------------------------------------------------ runs


def run_matching(
    *,
    session: Session,
    user: User | None,
    cluster_id: int | None,
    time_limit_s: float | None = None,
    seed: int = 0,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> MatchRun:
    """Run the matcher over a cluster (or the market when ``cluster_id`` is None)
    and write its proposals. Returns the run row: ``succeeded`` or ``failed``.
    ``progress`` receives the solver's progress events (phase, objective, bound,
    seconds; see :func:`matching.solve`) while it runs."""
    settings = settings or get_settings()
    _check_may_run(session, user, cluster_id)
    limit = min(MAX_TIME_LIMIT_S, max(0.1, time_limit_s or settings.solver_time_limit_s))
    now = now or utcnow()
    expire_proposals(session=session, now=now, settings=settings)
    started = utcnow()
    data = build_match_input(
        session, cluster_id=cluster_id, now=now, horizon_days=settings.match_horizon_days
    )
    fields: dict[str, object] = dict(
        scope=(MatchScope.cluster if cluster_id is not None else MatchScope.market).value,
        cluster_id=cluster_id, started_at=started, horizon_start=data.horizon.start,
        horizon_end=data.horizon.end, orders_in=len(data.problem.orders),
        operations_in=data.operation_count, machines_in=len(data.problem.machines),
        free_intervals_in=data.free_intervals, seed=seed, time_limit_s=limit,
        triggered_by_user_id=user.id if user else None,
    )  # fmt: skip
    try:
        result = solve(
            data.problem,
            time_limit_s=limit,
            seed=seed,
            workers=settings.solver_workers,
            progress=progress,
        )
        fields.update(
            solver_status=str(result.status), objective_fen=result.objective_fen,
            bound_fen=result.bound_fen, gap=result.gap, solve_seconds=round(result.seconds, 3),
        )  # fmt: skip
        violations = check_result(data.problem, result)
        if violations:
            shown = "; ".join(f"{v.rule}: {v.detail}" for v in violations[:5])
            raise ResultRejected(
                f"the solver's answer broke {len(violations)} hard rule(s): {shown}"
            )
        whole = _rematch_whole(
            session, data, result, cluster_id=cluster_id, now=now, settings=settings,
            limit=limit, seed=seed,
        )  # fmt: skip
        begin_write(session)
        run = MatchRun(**fields, status=MatchRunStatus.running)  # type: ignore[arg-type]
        session.add(run)
        session.flush()
        _write_result(session, run, data, result, user, whole)
        run.status = MatchRunStatus.succeeded
        run.finished_at = utcnow()
        session.add(run)
        session.commit()
        session.refresh(run)
        return run
    except Exception as exc:  # the run fails as a whole; record why
        session.rollback()
        if not isinstance(exc, ResultRejected | InputsChanged):
            log.exception("match run failed")
        return _record_failure(session, fields, f"{type(exc).__name__}: {exc}")


def _record_failure(session: Session, fields: dict[str, object], error: str) -> MatchRun:
    begin_write(session)
    run = MatchRun(
        **fields,  # type: ignore[arg-type]
        status=MatchRunStatus.failed, finished_at=utcnow(), error=error[:2000],
    )  # fmt: skip
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def _rematch_whole(
    session: Session,
    data: MatchInput,
    result: MatchResult,
    *,
    cluster_id: int | None,
    now: dt.datetime,
    settings: Settings,
    limit: float,
    seed: int,
) -> tuple[MatchInput, MatchResult] | None:
    """The second pass of a run: orders whose missing steps found no place around their
    confirmed steps are matched again as a whole, in the capacity the first pass left.
    Returns the input and answer, or None when no order needed it."""
    retry = {key for key in data.kept if any(u.order_id == key for u in result.unassigned)}
    if not retry:
        return None
    taken: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    for a in result.assignments:
        span = (data.horizon.at(a.start_min), data.horizon.at(a.end_min))
        taken[int(a.machine_id)].append(span)
    ids = sorted(int(k) for k in retry)
    whole = build_match_input(
        session, cluster_id=cluster_id, now=now, horizon_days=settings.match_horizon_days,
        only_order_ids=ids, whole_order_ids=ids, extra_blocks=taken,
    )  # fmt: skip
    if not whole.problem.orders:
        return None
    answer = solve(
        whole.problem,
        time_limit_s=max(0.5, limit * WHOLE_ORDER_SHARE),
        seed=seed,
        workers=settings.solver_workers,
    )
    violations = check_result(whole.problem, answer)
    if violations:
        shown = "; ".join(f"{v.rule}: {v.detail}" for v in violations[:5])
        raise ResultRejected(f"the whole-order pass broke {len(violations)} rule(s): {shown}")
    return whole, answer


def _lock_pool_orders(session: Session, data: MatchInput) -> dict[int, Order]:
    """The run's orders, locked; each must still be in the pool."""
    order_ids = [o.id for o in data.orders.values()]
    if not order_ids:
        return {}
    current = {
        o.id: o
        for o in session.exec(
            select(Order).where(col(Order.id).in_(order_ids)).with_for_update()
        ).all()
        if o.id is not None
    }
    for key in data.orders:
        row = current.get(int(key))
        if row is None or row.status not in orders.POOL_STATES:
            raise InputsChanged(f"order {key} left the pool during the solve")
    return current


def _locked_bookings(session: Session, ids: list[int]) -> list[Booking]:
    if not ids:
        return []
    return list(
        session.exec(
            select(Booking)
            .where(col(Booking.id).in_(ids))
            .order_by(col(Booking.id))
            .with_for_update()
        ).all()
    )


def _propose(
    session: Session,
    data: MatchInput,
    current: dict[int, Order],
    assignments: list[Assignment],
    note: str,
    user: User | None,
) -> None:
    for a in assignments:
        machine = data.machines[a.machine_id]
        order = current[int(a.order_id)]
        start, end = data.horizon.at(a.start_min), data.horizon.at(a.end_min)
        assert machine.id is not None and order.id is not None
        if not any(
            s <= start and end <= e for s, e in offered_spans(session, machine.id, start, end)
        ):
            raise InputsChanged(f"machine {machine.id} no longer offers {start.isoformat()}")
        if collision(session, machine.id, start, end) is not None:
            raise InputsChanged(
                f"machine {machine.id} was booked at {start.isoformat()} during the solve"
            )
        booking_flows.propose(
            session, machine=machine, order_id=order.id, buyer_org_id=order.buyer_org_id,
            operation_id=int(a.operation_id), start_at=start, end_at=end,
            price_fen=a.price_fen, note=note, user=user,
        )  # fmt: skip


def _write_result(
    session: Session,
    run: MatchRun,
    data: MatchInput,
    result: MatchResult,
    user: User | None,
    whole: tuple[MatchInput, MatchResult] | None = None,
) -> None:
    """Supersede, propose, move order statuses, record what was left out (flush only).
    With ``whole``, the orders that pass placed anew release their confirmed steps and
    take its proposals instead of their unmatched lines."""
    assert run.id is not None
    note = f"match run {run.id}"
    current = _lock_pool_orders(session, data)
    old = _locked_bookings(session, data.movable_booking_ids)
    for booking in old:  # the old proposals must still be proposed
        if booking.state != BookingState.proposed.value:
            raise InputsChanged(f"proposal {booking.id} was answered during the solve")
    for booking in old:
        booking_flows.apply(
            session, booking=booking, action="supersede", reason=f"superseded by {note}",
            sync_order=False,
        )  # fmt: skip
    session.flush()  # free their slots before the new proposals take them
    run.superseded = len(old)
    _propose(session, data, current, list(result.assignments), note, user)
    run.proposals = len(result.assignments)

    renewed: set[str] = set()
    if whole is not None:
        w_data, w_result = whole
        renewed = {a.order_id for a in w_result.assignments}
        reason = f"{note}: the missing steps did not fit around it; the order was re-matched whole"
        for key in sorted(renewed):
            for booking in _locked_bookings(session, w_data.released.get(key, [])):
                if booking.state != BookingState.confirmed.value:
                    raise InputsChanged(f"booking {booking.id} changed during the solve")
                booking_flows.apply(
                    session, booking=booking, action="release", reason=reason, sync_order=False
                )
        session.flush()
        assignments = [a for a in w_result.assignments if a.order_id in renewed]
        _propose(session, w_data, current, assignments, f"{note} (whole order)", user)
        run.proposals += len(assignments)
    for key in data.orders:  # every re-planned order's status follows its bookings
        orders.sync_status(session, order_id=int(key), note=note)
    unmatched = [u for u in result.unassigned if u.order_id not in renewed]
    for u in unmatched:
        session.add(MatchRunUnmatched(
            run_id=run.id, order_id=int(u.order_id), operation_id=int(u.operation_id),
            reason=str(u.reason), detail=u.detail[:500],
        ))  # fmt: skip
    run.unmatched = len(unmatched)
    session.flush()


# ------------------------------------------------------------------ reading runs


def _visible_runs(session: Session, user: User):  # type: ignore[no-untyped-def]
    if is_admin(user):
        return col(MatchRun.id).is_not(None)
    clusters = operated_cluster_ids(session=session, user=user)
    if not clusters:
        raise PermissionDenied("only cluster operators and admins see match runs")
    return col(MatchRun.cluster_id).in_(clusters)


def list_match_runs(
    *, session: Session, user: User, cluster_id: int | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[MatchRun], int]:
    query = select(MatchRun).where(_visible_runs(session, user))
    if cluster_id is not None:
        query = query.where(MatchRun.cluster_id == cluster_id)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(MatchRun.started_at).desc(), col(MatchRun.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), count


def get_match_run_or_raise(*, session: Session, user: User, run_id: int) -> MatchRun:
    run = session.exec(
        select(MatchRun).where(MatchRun.id == run_id, _visible_runs(session, user))
    ).first()
    if run is None:
        raise NotFound("match run not found", field="run_id")
    return run


def list_unmatched(*, session: Session, run_id: int) -> list[MatchRunUnmatched]:
    return list(
        session.exec(
            select(MatchRunUnmatched)
            .where(MatchRunUnmatched.run_id == run_id)
            .order_by(col(MatchRunUnmatched.id))
        ).all()
    )


def list_proposals(
    *, session: Session, user: User, limit: int = 50, offset: int = 0
) -> tuple[list[Booking], int]:
    """Proposals waiting for an answer on the caller's machines (the owner's inbox)."""
    if not user.has_role(Role.owner):
        raise PermissionDenied("only owners receive proposals")
    query = select(Booking).where(
        Booking.state == BookingState.proposed.value,
        col(Booking.machine_id).in_(select(Machine.id).where(Machine.owner_org_id == user.org_id)),
    )
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(Booking.start_at), col(Booking.id)).offset(offset).limit(limit)
    ).all()
    return list(rows), count
