"""Periodic work: expire unanswered proposals, capture deliveries whose claim window
has passed, and drive payments still pending at the provider.

It runs in-process beside the web app (a daemon thread started by the app's
lifespan; the default with SQLite) or as its own process, `capshare worker`, on as
many hosts as wanted: on PostgreSQL a transaction-level advisory lock lets one
runner at a time do a round, so replicas never do the same work twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlmodel import Session

from app.bookings.delivery import release_due_captures
from app.config import Settings
from app.matching_runs.expiry import expire_proposals
from app.money.driver import drive_payments
from app.money.provider import get_payments_client
from models import utcnow

log = logging.getLogger("capshare.jobs")
LOCK_KEY = 0x63617073  # "caps"


@dataclass
class Round:
    expired: int = 0
    captured: int = 0
    payments: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # another runner holds the lock


def run_round(*, engine: Engine, settings: Settings) -> Round:
    """One round of every periodic job, each in its own transaction."""
    result = Round()
    with engine.connect() as lock_conn:
        if engine.dialect.name == "postgresql":
            got = lock_conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}
            ).scalar()
            if not got:
                result.skipped = True
                return result
        try:
            payments = get_payments_client(settings)
            now = utcnow()
            with Session(engine) as session:
                result.expired = expire_proposals(session=session, now=now, settings=settings)
            with Session(engine) as session:
                result.captured = release_due_captures(session=session, now=now, payments=payments)
            if payments is not None:
                with Session(engine) as session:
                    result.payments = drive_payments(session=session, payments=payments)
        finally:
            if engine.dialect.name == "postgresql":
                lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                lock_conn.commit()
    return result


class Worker:
    """Runs :func:`run_round` every ``interval_s`` seconds until stopped."""

    def __init__(
        self, *, engine: Engine, settings: Settings, interval_s: float,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.settings, self.interval_s = engine, settings, interval_s
        self.on_round = on_round
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                result = run_round(engine=self.engine, settings=self.settings)
                if self.on_round is not None:
                    self.on_round(result)
            except Exception:  # a failed round is logged; the next one retries
                log.exception("periodic jobs failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="capshare-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
