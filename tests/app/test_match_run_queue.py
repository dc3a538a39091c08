"""Match runs as queued work: one run per scope in flight, cancel, the sweep of runs whose
worker died, and deferral that follows the transaction (the tests' manual runner)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

import matching
from app import tasks
from app.config import Settings
from app.matching_runs import service
from app.matching_runs.liveness import sweep_stale_runs
from app.matching_runs.service import RunInProgress, cancel_run, request_run
from models import Booking, MatchRun, MatchRunStatus, utcnow
from tests.factories import auth
from tests.factories_matching import Market, make_market, make_order


@pytest.fixture
def market(session: Session) -> Market:
    market = make_market(session)
    make_order(session, buyer=market.buyer)
    return market


def _queue(session: Session, market: Market, settings: Settings) -> MatchRun:
    return request_run(
        session=session, user=market.operator, cluster_id=market.cluster.id, time_limit_s=1,
        settings=settings,
    )  # fmt: skip


def _proposals(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Booking)).one()


def test_one_run_per_scope_is_in_flight(
    session: Session, settings: Settings, market: Market, run_tasks: Callable[[], int]
) -> None:
    first = _queue(session, market, settings)
    with pytest.raises(RunInProgress) as refused:
        _queue(session, market, settings)
    assert f"match run {first.id}" in refused.value.message and refused.value.status_code == 409
    other = make_market(session)  # another cluster is another scope
    assert request_run(
        session=session, user=other.operator, cluster_id=other.cluster.id, time_limit_s=1,
        settings=settings,
    ).status == MatchRunStatus.queued  # fmt: skip
    assert run_tasks() >= 2
    session.refresh(first)
    assert (first.status, first.active_scope, first.proposals) == (
        MatchRunStatus.succeeded,
        None,
        1,
    )
    assert _queue(session, market, settings).status == MatchRunStatus.queued  # free again


def test_a_second_run_over_http_is_a_409_naming_the_first(
    client: TestClient, settings: Settings, market: Market
) -> None:
    h = auth(settings, market.operator)
    body = {"cluster_id": market.cluster.id, "time_limit_s": 1}
    first = client.post("/api/v1/match-runs", json=body, headers=h)
    assert first.status_code == 202
    again = client.post("/api/v1/match-runs", json=body, headers=h)
    assert again.status_code == 409
    assert (again.json()["error"], again.json()["field"]) == ("RunInProgress", "cluster_id")
    assert f"match run {first.json()['id']}" in again.json()["detail"]


def test_a_queued_run_cancelled_never_runs(
    client: TestClient, session: Session, settings: Settings, market: Market,
    run_tasks: Callable[[], int],
) -> None:  # fmt: skip
    h = auth(settings, market.operator)
    run = client.post(
        "/api/v1/match-runs", json={"cluster_id": market.cluster.id, "time_limit_s": 1}, headers=h
    ).json()
    cancelled = client.post(f"/api/v1/match-runs/{run['id']}/cancel", headers=h)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    run_tasks()  # its job still comes: it finds the run cancelled and does nothing
    after = client.get(f"/api/v1/match-runs/{run['id']}", headers=h).json()
    assert (after["status"], after["proposals"], _proposals(session)) == ("cancelled", 0, 0)
    again = client.post(f"/api/v1/match-runs/{run['id']}/cancel", headers=h)
    assert (again.status_code, again.json()["field"]) == (409, "status")
    buyer = client.post(
        f"/api/v1/match-runs/{run['id']}/cancel", headers=auth(settings, market.buyer)
    )
    assert buyer.status_code in (403, 404)


def test_a_run_cancelled_while_solving_writes_nothing(
    session: Session, settings: Settings, market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _queue(session, market, settings)
    real_solve = matching.solve

    def solve_then_cancel(*args: Any, **kwargs: Any) -> Any:
        assert run.id is not None
        answer = real_solve(*args, **kwargs)
        cancel_run(session=session, user=market.operator, run_id=run.id)  # while it runs
        return answer

    monkeypatch.setattr(service, "solve", solve_then_cancel)
    assert run.id is not None
    done = service.execute_run(session, run_id=run.id, settings=settings)
    assert (done.status, done.proposals, done.active_scope) == (MatchRunStatus.cancelled, 0, None)
    assert "nothing was written" in done.error and _proposals(session) == 0


def test_the_sweep_fails_runs_whose_worker_died(
    session: Session, settings: Settings, market: Market
) -> None:
    now = utcnow()
    stale = now - dt.timedelta(seconds=settings.match_run_stale_s + 1)
    dead, alive = _queue(session, market, settings), make_market(session)
    living = request_run(session=session, user=alive.operator, cluster_id=alive.cluster.id,
                         time_limit_s=1, settings=settings)  # fmt: skip
    for run, beat in ((dead, stale), (living, now)):
        run.status, run.heartbeat_at = MatchRunStatus.running, beat
        session.add(run)
    session.commit()
    assert sweep_stale_runs(session, now=now, settings=settings) == [dead.id]
    session.refresh(dead)
    session.refresh(living)
    assert (dead.status, dead.active_scope) == (MatchRunStatus.failed, None)
    assert dead.error.startswith("WorkerLost: its worker stopped")
    assert living.status == MatchRunStatus.running


def test_the_sweep_fails_queued_runs_only_where_the_queue_dies_with_the_process(
    session: Session, settings: Settings, market: Market
) -> None:
    run = _queue(session, market, settings)
    later = utcnow() + dt.timedelta(seconds=settings.match_run_stale_s + 1)
    durable = settings.model_copy(update={"task_runner": "procrastinate"})
    assert sweep_stale_runs(session, now=later, settings=durable) == []  # it waits for a worker
    in_process = settings.model_copy(update={"task_runner": "threads"})
    assert sweep_stale_runs(session, now=later, settings=in_process) == [run.id]
    session.refresh(run)
    assert "stopped before it ran" in run.error


def test_deferred_tasks_follow_the_transaction(session: Session, settings: Settings) -> None:
    tasks.defer(session, "proposals.expire", settings=settings)
    session.rollback()
    assert tasks.ready == []  # a rolled-back command enqueues nothing
    for _ in range(2):  # a queueing lock keeps one waiting job
        tasks.defer(session, "payments.drive", booking_id=7, queueing_lock="b7", settings=settings)
    tasks.defer(session, "proposals.expire", settings=settings)
    assert tasks.ready == []  # nothing before the commit
    session.commit()
    assert [j.task for j in tasks.ready] == ["payments.drive", "proposals.expire"]
    with pytest.raises(LookupError):
        tasks.defer(session, "no.such.task", settings=settings)
