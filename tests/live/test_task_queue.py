"""The task queue on a database of its own (it commits): periodic tasks as tasks, and on
PostgreSQL procrastinate itself, with ``capshare worker`` processes, one of them killed."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from app import db, tasks
from app.config import get_settings
from app.demo.seed import seed_demo
from app.jobs import recover_stalled_jobs
from app.matching_runs.service import request_run
from app.migrations import upgrade
from models import Booking, BookingKind, BookingState, MatchRun, Role
from tests.factories import hours_from_now, make_machine, make_user
from tests.factories_matching import make_market, make_order
from tests.live.conftest import wait_until


@pytest.fixture
def live_db(live_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The process's settings and engine point at the live database."""
    upgrade(url=live_database_url)
    monkeypatch.setenv("DATABASE_URL", live_database_url)
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    yield live_database_url
    db.get_engine().dispose()
    get_settings.cache_clear()
    db.get_engine.cache_clear()


def _stale_proposal() -> int:
    with Session(db.get_engine()) as session:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        assert machine.id is not None
        booking = Booking(
            machine_id=machine.id, kind=BookingKind.service, state=BookingState.proposed, start_at=hours_from_now(30),
            end_at=hours_from_now(32), org_id=buyer.org_id, price_fen=100,
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
        )  # fmt: skip
        session.add(booking)
        session.commit()
        assert booking.id is not None
        return booking.id


def _state(booking_id: int) -> str:
    with Session(db.get_engine()) as session:
        booking = session.get(Booking, booking_id)
        assert booking is not None
        return booking.state


def test_a_periodic_task_runs_in_a_session_of_its_own(live_db: str) -> None:
    booking_id = _stale_proposal()
    assert tasks.run_job(tasks.Job(task="proposals.expire"))
    assert _state(booking_id) == "expired"


def test_the_in_process_scheduler_runs_what_is_due(live_db: str) -> None:
    booking_id = _stale_proposal()
    scheduler, last = tasks.Scheduler(), dict[str, float]()
    due = [t.name for t in scheduler.due(0.0, last)]
    assert "proposals.expire" in due and "payments.reconcile" in due
    assert [t.name for t in scheduler.due(30.0, last)] == []  # nothing due again yet
    assert "proposals.expire" in [t.name for t in scheduler.due(61.0, last)]
    assert "payments.reconcile" not in [t.name for t in scheduler.due(61.0, last)]
    scheduler.start()
    try:
        wait_until(lambda: _state(booking_id) == "expired", "the scheduler expired the proposal")
    finally:
        scheduler.stop()


# ------------------------------------------------------------------ procrastinate

needs_postgres = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="procrastinate keeps its jobs in PostgreSQL"
)


def _jobs(status: str | None = None) -> list[tuple[int, str, str]]:
    with db.get_engine().connect() as conn:
        rows = conn.execute(
            text("SELECT id, task_name, status FROM procrastinate_jobs ORDER BY id")
        ).all()
    return [(r[0], r[1], r[2]) for r in rows if status is None or r[2] == status]


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("capshare", path=str(Path(sys.executable).parent))
    assert exe
    env = {**os.environ, "DATABASE_URL": url, "CAPSHARE_TASK_RUNNER": "procrastinate",
           "CAPSHARE_PAYMENTS_INLINE": "false", "CAPSHARE_WORKER_HEARTBEAT_S": "0.5"}  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen([exe, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)


def _run(run_id: int) -> MatchRun:
    with Session(db.get_engine()) as session:
        run = session.get(MatchRun, run_id)
        assert run is not None
        return run


@needs_postgres
def test_a_job_is_deferred_in_the_transaction_of_its_cause(
    live_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSHARE_TASK_RUNNER", "procrastinate")
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        tasks.defer(session, "proposals.expire")
        assert _jobs() == []  # not visible before the commit
        session.rollback()
    assert _jobs() == []  # a rolled-back command enqueues nothing
    with Session(db.get_engine()) as session:
        for _ in range(2):
            tasks.defer(session, "payments.drive", booking_id=1, queueing_lock="payments:1")
        tasks.defer(session, "proposals.expire")
        session.commit()
    assert [(name, status) for _, name, status in _jobs()] == [
        ("payments.drive", "todo"), ("proposals.expire", "todo"),
    ]  # fmt: skip
    depths = tasks.queue_depths(db.get_engine())  # what /metrics and /ready read
    assert (depths.get("payments"), depths.get("default")) == (1, 1)


@needs_postgres
def test_workers_run_match_runs_and_a_killed_workers_run_fails_with_the_reason(
    live_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSHARE_TASK_RUNNER", "procrastinate")
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        market = make_market(session)
        for _ in range(3):
            make_order(session, buyer=market.buyer)
        session.commit()
        operator_id, cluster_id = market.operator.id, market.cluster.id
        user_type = type(market.operator)

    def queue(limit: float, *, market_wide: bool = False) -> int:
        with Session(db.get_engine()) as session:
            operator = None if market_wide else session.get(user_type, operator_id)
            run = request_run(session=session, user=operator, time_limit_s=limit,
                              cluster_id=None if market_wide else cluster_id)  # fmt: skip
            assert run.id is not None
            return run.id

    first = _worker(live_db, tmp_path / "worker-a.log")
    try:
        quick = queue(1)
        wait_until(lambda: _run(quick).status == "succeeded", "a worker ran the queued run")
        assert _run(quick).proposals == 3
        with Session(db.get_engine()) as session:  # a market whose solve takes its whole limit
            seed_demo(session)
        slow = queue(90, market_wide=True)
        wait_until(lambda: _run(slow).phase.startswith("solving"), "the market run is solving")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        second = _worker(live_db, tmp_path / "worker-b.log")
        try:
            time.sleep(3)  # the dead worker's heartbeat ages; the live one's stays fresh
            with Session(db.get_engine()) as session:
                recovered = recover_stalled_jobs(session, seconds=2.5)
            assert len(recovered) == 1
            run = _run(slow)
            assert (run.status, run.active_scope) == ("failed", None)
            assert run.error.startswith("WorkerLost") and run.proposals == 0
            assert [s for i, _, s in _jobs() if i == recovered[0]] == ["failed"]
            again = queue(1)  # the scope is free, and the living worker takes the next run
            wait_until(
                lambda: _run(again).status == "succeeded", "the other worker ran the next run"
            )
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
