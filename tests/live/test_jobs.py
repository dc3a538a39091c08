"""Periodic jobs on a database of their own (they commit)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine
from app.jobs import LOCK_KEY, run_round
from app.migrations import upgrade
from models import Booking, BookingState, Role
from tests.factories import hours_from_now, make_machine, make_user


def _stale_proposal(url: str) -> int:
    engine = make_engine(url)
    with Session(engine) as session:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        assert machine.id is not None
        booking = Booking(
            machine_id=machine.id, kind="service", state=BookingState.proposed, start_at=hours_from_now(30),
            end_at=hours_from_now(32), org_id=buyer.org_id, price_fen=100,
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
        )  # fmt: skip
        session.add(booking)
        session.commit()
        assert booking.id is not None
        booking_id = booking.id
    engine.dispose()
    return booking_id


def _state(url: str, booking_id: int) -> str:
    engine = make_engine(url)
    with Session(engine) as session:
        booking = session.get(Booking, booking_id)
        assert booking is not None
        state = booking.state
    engine.dispose()
    return state


def test_round_expires_unanswered_proposals(live_database_url: str) -> None:
    upgrade(url=live_database_url)
    booking_id = _stale_proposal(live_database_url)
    engine = make_engine(live_database_url)
    settings = Settings(
        environment="development", database_url=live_database_url, payments_inline=False
    )
    if engine.dialect.name == "postgresql":  # another runner holds the lock: this one skips
        with engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            assert run_round(engine=engine, settings=settings).skipped
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        assert _state(live_database_url, booking_id) == "proposed"
    result = run_round(engine=engine, settings=settings)
    engine.dispose()
    assert (result.skipped, result.expired) == (False, 1)
    assert _state(live_database_url, booking_id) == "expired"


def test_worker_command_runs_a_round(live_database_url: str, tmp_path: Path) -> None:
    upgrade(url=live_database_url)
    booking_id = _stale_proposal(live_database_url)
    exe = shutil.which("capshare", path=str(Path(sys.executable).parent))
    assert exe
    out = subprocess.run(
        [exe, "worker", "--once"], capture_output=True, text=True, timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "DATABASE_URL": live_database_url,
             "CAPSHARE_PAYMENTS_INLINE": "false", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "expired 1 proposal(s)" in out.stdout
    assert _state(live_database_url, booking_id) == "expired"
