"""Match runs: the matcher over a cluster or the whole market, written back as
proposals.

A run is queued (:func:`request_run`: the row and its ``match_runs.execute`` task in one
commit, one run per scope in flight; an operator's run is its cluster's by default) and
executed by a worker (:func:`execute_run`): it reads the pool
(:func:`app.matching_runs.adapter.build_match_input`), ends its read transaction and
solves holding no connection while :class:`app.matching_runs.liveness.Heartbeat`
publishes its progress (a province-sized market cluster by cluster, then across
clusters: :mod:`app.matching_runs.partition`), re-checks the answer without the solver
(``matching.check_result``) and then writes it in batches of whole orders
(:mod:`app.matching_runs.writeback`): the old proposals of the re-planned orders
superseded, the new ones written, order statuses moved, the operations left out recorded
with why; an order whose inputs changed during the solve is requeued, not written. A
rejected or cancelled run writes nothing but its own row (in a small transaction of its
own, after the rollback); a run that fails while writing keeps the batches it committed
(each a consistent set of whole orders) and reports them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app import tasks
from app.accounts.service import is_admin, operated_cluster_ids
from app.catalog.service import get_cluster_or_raise
from app.config import Settings, get_settings
from app.db import begin_write, end_reads
from app.errors import Conflict, InvalidTransition, NotFound, PermissionDenied
from app.matching_runs.adapter import MatchInput, build_match_input
from app.matching_runs.expiry import expire_proposals
from app.matching_runs.liveness import Heartbeat, RunCancelled
from app.matching_runs.partition import solve_split
from app.matching_runs.writeback import WriteReport, write_result
from app.metrics import MATCH_RUN_SECONDS, MATCH_RUNS
from matching import MatchProblem, MatchResult, check_result, solve
from models import (
    Booking,
    BookingState,
    Machine,
    MatchRun,
    MatchRunStatus,
    MatchRunUnmatched,
    MatchScope,
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


class RunInProgress(Conflict):
    """A scope has one run in flight at a time."""


EXECUTE_TASK = "match_runs.execute"


# ------------------------------------------------------------------ who may run


def _default_scope(session: Session, user: User | None, cluster_id: int | None) -> int | None:
    """Runs are per cluster by default: an operator who names no cluster runs the one
    it operates (the market is an admin's scope; one who runs several must choose)."""
    if cluster_id is not None or user is None or is_admin(user):
        return cluster_id
    if not user.has_role(Role.operator):
        return cluster_id
    clusters = operated_cluster_ids(session=session, user=user)
    return clusters[0] if len(clusters) == 1 else cluster_id


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


def _scope_key(cluster_id: int | None) -> str:
    return f"cluster:{cluster_id}" if cluster_id is not None else MatchScope.market.value


def request_run(
    *,
    session: Session,
    user: User | None,
    cluster_id: int | None,
    time_limit_s: float | None = None,
    seed: int = 0,
    settings: Settings | None = None,
    enqueue: bool = True,
) -> MatchRun:
    """Queue a run over a cluster (or, for an admin or the platform, the market when
    ``cluster_id`` is None; an operator of one cluster gets that cluster): the row is
    ``queued`` and the ``match_runs.execute`` task is deferred in the same transaction.
    A scope has one run in flight at a time: a second is refused naming the first."""
    settings = settings or get_settings()
    cluster_id = _default_scope(session, user, cluster_id)
    _check_may_run(session, user, cluster_id)
    limit = min(MAX_TIME_LIMIT_S, max(0.1, time_limit_s or settings.solver_time_limit_s))
    begin_write(session)
    scope = _scope_key(cluster_id)
    _refuse_if_busy(session, scope)
    now = utcnow()
    run = MatchRun(
        scope=(MatchScope.cluster if cluster_id is not None else MatchScope.market).value,
        cluster_id=cluster_id, status=MatchRunStatus.queued, active_scope=scope,
        queued_at=now, started_at=now, horizon_start=now,
        horizon_end=now + dt.timedelta(days=settings.match_horizon_days), seed=seed,
        time_limit_s=limit, triggered_by_user_id=user.id if user else None,
    )  # fmt: skip
    session.add(run)
    try:
        session.flush()
    except IntegrityError:  # another request queued this scope's run a moment ago
        session.rollback()
        begin_write(session)
        _refuse_if_busy(session, scope)
        raise
    if enqueue:
        tasks.defer(
            session, EXECUTE_TASK, run_id=run.id, lock=f"match-run:{scope}", settings=settings
        )
    session.commit()
    session.refresh(run)
    return run


def _refuse_if_busy(session: Session, scope: str) -> None:
    busy = session.exec(select(MatchRun).where(MatchRun.active_scope == scope)).first()
    if busy is not None:
        raise RunInProgress(
            f"match run {busy.id} for this scope is {busy.status}; wait for it or cancel it",
            field="cluster_id",
        )


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
    """Queue a run and execute it at once in this session (the CLI, the tests): no task."""
    run = request_run(
        session=session, user=user, cluster_id=cluster_id, time_limit_s=time_limit_s,
        seed=seed, settings=settings, enqueue=False,
    )  # fmt: skip
    assert run.id is not None
    return execute_run(session, run_id=run.id, now=now, settings=settings, progress=progress)


@tasks.task(EXECUTE_TASK, queue="match_runs")
def execute_task(session: Session, run_id: int) -> None:
    execute_run(session, run_id=run_id)


def execute_run(
    session: Session,
    *,
    run_id: int,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
    progress: Callable[[dict[str, object]], None] | None = None,
) -> MatchRun:
    """Execute a queued run: read the pool, solve outside any write transaction, check the
    answer, write it in ONE transaction. A run that is no longer queued (cancelled, or
    this is a second delivery of its job) is left as it is. Returns the run row."""
    settings = settings or get_settings()
    begin_write(session)
    run = session.exec(select(MatchRun).where(MatchRun.id == run_id).with_for_update()).first()
    if run is None or run.status != MatchRunStatus.queued:
        session.rollback()
        if run is None:
            raise NotFound("match run not found", field="run_id")
        return run
    run.status, run.started_at = MatchRunStatus.running, utcnow()
    run.heartbeat_at, run.phase = run.started_at, "reading"
    session.add(run)
    session.commit()
    user = session.get(User, run.triggered_by_user_id) if run.triggered_by_user_id else None
    started = time.monotonic()
    with Heartbeat(session, run_id, settings) as beat:
        try:
            done = _execute(session, run, user, now or utcnow(), settings, beat, progress)
        except Exception as exc:  # the run fails as a whole; record why
            session.rollback()
            if not isinstance(exc, ResultRejected | RunCancelled):
                log.exception("match run failed")
            if isinstance(exc, RunCancelled):
                done = _finish(session, run_id, MatchRunStatus.cancelled, str(exc), {})
            else:
                done = _finish(session, run_id, MatchRunStatus.failed,
                               f"{type(exc).__name__}: {exc}", beat.fields)  # fmt: skip
    outcome = str(done.status)
    MATCH_RUNS.labels(outcome=outcome).inc()
    MATCH_RUN_SECONDS.labels(outcome=outcome).observe(time.monotonic() - started)
    return done


def _execute(
    session: Session,
    run: MatchRun,
    user: User | None,
    now: dt.datetime,
    settings: Settings,
    beat: Heartbeat,
    progress: Callable[[dict[str, object]], None] | None,
) -> MatchRun:
    assert run.id is not None
    expire_proposals(session=session, now=now, settings=settings)
    data = build_match_input(
        session, cluster_id=run.cluster_id, now=now, horizon_days=settings.match_horizon_days
    )
    beat.fields.update(
        horizon_start=data.horizon.start, horizon_end=data.horizon.end,
        orders_in=len(data.problem.orders), operations_in=data.operation_count,
        machines_in=len(data.problem.machines), free_intervals_in=data.free_intervals,
    )  # fmt: skip
    _end_reads(session)
    beat.phase("solving")
    relay = beat.relay(progress)

    def solve_part(problem: MatchProblem, limit: float, label: str) -> MatchResult:
        beat.check_cancelled()
        beat.phase(f"solving {label}"[:40])
        return solve(problem, time_limit_s=limit, seed=run.seed,
                     workers=settings.solver_workers, progress=relay)  # fmt: skip

    split = run.cluster_id is None and len(data.problem.machines) > settings.match_split_machines
    if split:  # a province: cluster by cluster, then across clusters (partition.py)
        result = solve_split(
            data.problem, run.time_limit_s, solve_part, cross_share=settings.match_cross_share
        )
    else:
        result = solve_part(data.problem, run.time_limit_s, "")
    beat.fields.update(
        solver_status=str(result.status), objective_fen=result.objective_fen,
        bound_fen=None if split else result.bound_fen, gap=None if split else result.gap,
        solve_seconds=round(result.seconds, 3), greedy_placed=_greedy_placed(result),
    )  # fmt: skip
    beat.check_cancelled()
    violations = check_result(data.problem, result)
    if violations:
        shown = "; ".join(f"{v.rule}: {v.detail}" for v in violations[:5])
        raise ResultRejected(f"the solver's answer broke {len(violations)} hard rule(s): {shown}")
    beat.phase("whole orders")
    whole = _rematch_whole(
        session, data, result, cluster_id=run.cluster_id, now=now, settings=settings,
        limit=run.time_limit_s, seed=run.seed,
    )  # fmt: skip
    beat.phase("writing")
    begin_write(session)
    row = session.exec(select(MatchRun).where(MatchRun.id == run.id).with_for_update()).one()
    if row.cancel_requested:
        raise RunCancelled("cancelled while running; nothing was written")
    _end_reads(session)  # from here on the run writes; batch by batch, each committed
    written = time.monotonic()

    def on_batch(report: WriteReport) -> None:  # a run that fails later reports what it wrote
        beat.fields.update(
            proposals=report.proposals, superseded=report.superseded,
            unmatched=report.unmatched, requeued=len(report.requeued),
            write_seconds=round(time.monotonic() - written, 3),
        )  # fmt: skip

    report = write_result(
        session, run.id, data, result, user, whole,
        batch_orders=settings.match_write_batch_orders, on_batch=on_batch,
    )  # fmt: skip
    on_batch(report)
    if report.requeued:
        log.info("match run %s requeued %d order(s)", run.id, len(report.requeued))
    begin_write(session)
    row = session.exec(select(MatchRun).where(MatchRun.id == run.id).with_for_update()).one()
    for key, value in beat.fields.items():
        setattr(row, key, value)
    row.status, row.finished_at, row.active_scope = MatchRunStatus.succeeded, utcnow(), None
    row.phase = "done"
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def _end_reads(session: Session) -> None:
    """No connection held across the solve: the read transaction ends, what it read stays
    loaded (the write-back re-reads what it checks, locked)."""
    if not end_reads(session):
        raise RuntimeError("a match run's read transaction holds an unwritten change")


def _greedy_placed(result: MatchResult) -> int | None:
    placed = result.stats.get("greedy_placed")
    return placed if isinstance(placed, int) else None


def _finish(
    session: Session,
    run_id: int,
    status: MatchRunStatus,
    error: str,
    fields: dict[str, object],
) -> MatchRun:
    """End a run that wrote no proposals (failed or cancelled), in a small transaction."""
    begin_write(session)
    run = session.exec(select(MatchRun).where(MatchRun.id == run_id).with_for_update()).one()
    for key, value in fields.items():
        setattr(run, key, value)
    run.status, run.finished_at, run.active_scope = status, utcnow(), None
    run.error = error[:2000]
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def cancel_run(*, session: Session, user: User, run_id: int) -> MatchRun:
    """Cancel a queued run at once; a running one stops at its next phase (at the latest
    when its solve ends) and writes nothing. A finished run cannot be cancelled (409)."""
    run = get_match_run_or_raise(session=session, user=user, run_id=run_id)
    _check_may_run(session, user, run.cluster_id)
    begin_write(session)
    run = session.exec(select(MatchRun).where(MatchRun.id == run_id).with_for_update()).one()
    if run.status == MatchRunStatus.queued:
        run.status, run.finished_at, run.active_scope = MatchRunStatus.cancelled, utcnow(), None
        run.error = f"cancelled by user {user.id} before it started"
    elif run.status == MatchRunStatus.running:
        run.cancel_requested = True
    else:
        raise InvalidTransition(f"match run {run.id} is {run.status}", field="status")
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
    _end_reads(session)
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
