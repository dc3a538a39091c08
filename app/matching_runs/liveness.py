"""A match run while it runs: its heartbeat (phase, progress, proof of life, a cancel
noticed) and the sweep that fails the runs whose worker died."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app import tasks
from app.config import Settings, get_settings
from app.db import begin_write
from models import MatchRun, MatchRunStatus, utcnow
from models.match_run import ACTIVE_RUN_STATES

log = logging.getLogger("capshare.matching")


class RunCancelled(Exception):
    """Someone cancelled the run while it ran; it writes nothing."""


HEARTBEAT_S = 2.0  # a running run publishes its phase and proves it is alive this often
WHOLE_PHASES = ("greedy", "done")  # progress events whose objective is the whole run's


class Heartbeat:
    """While a run executes: every few seconds, through a connection of its own, it
    publishes the run's phase, progress and a heartbeat, and notices a cancel request.
    Only when the session is bound to an engine (a worker, the CLI); a session on a
    connection of the caller's (the tests' rolled-back one) gets no thread."""

    def __init__(self, session: Session, run_id: int, settings: Settings) -> None:
        bind = session.get_bind()
        self._engine = bind if isinstance(bind, Engine) else None
        self._run_id = run_id
        self.fields: dict[str, object] = {}  # the run's figures, written at its end
        self._live: dict[str, object] = {"phase": "reading"}
        self._lock = threading.Lock()
        self._cancel, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self._engine is not None:
            self._thread = threading.Thread(
                target=self._loop, name=f"match-run-{self._run_id}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def phase(self, name: str) -> None:
        with self._lock:
            self._live["phase"] = name
        self.check_cancelled()

    def relay(
        self, progress: Callable[[dict[str, object]], None] | None
    ) -> Callable[[dict[str, object]], None]:
        def on_progress(event: dict[str, object]) -> None:
            with self._lock:
                phase = str(event.get("phase", ""))
                self._live["phase"] = f"solving: {phase}" if phase else "solving"
                self._live["progress_seconds"] = event.get("seconds")
                if phase in WHOLE_PHASES:
                    for key, name in (("objective", "objective_fen"), ("bound", "bound_fen")):
                        value = event.get(key)
                        if isinstance(value, int | float):
                            self._live[name] = int(value)
            if progress is not None:
                progress(event)

        return on_progress

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise RunCancelled("cancelled while running; nothing was written")

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # a missed beat is logged; the next one retries
                log.exception("match run %s: heartbeat failed", self._run_id)

    def _beat(self) -> None:
        assert self._engine is not None
        with self._lock:
            live = dict(self._live)
        with Session(self._engine) as session:
            begin_write(session)
            run = session.get(MatchRun, self._run_id)
            if run is None or run.status != MatchRunStatus.running:
                return
            for key, value in live.items():
                setattr(run, key, value)
            run.heartbeat_at = utcnow()
            if run.cancel_requested:
                self._cancel.set()
            session.add(run)
            session.commit()


@tasks.periodic("match_runs.sweep", every_s=60, cron="* * * * *")
def sweep_task(session: Session) -> None:
    sweep_stale_runs(session)


def sweep_stale_runs(
    session: Session, *, now: dt.datetime | None = None, settings: Settings | None = None
) -> list[int]:
    """Fail the runs whose executor died: running with no heartbeat for
    ``match_run_stale_s``, or (in-process runners, whose queue does not survive the
    process) queued for that long. Returns their ids."""
    settings = settings or get_settings()
    now = now or utcnow()
    cutoff = now - dt.timedelta(seconds=settings.match_run_stale_s)
    begin_write(session)
    dead_running = select(MatchRun).where(
        MatchRun.status == MatchRunStatus.running,
        col(MatchRun.heartbeat_at).is_(None) | (col(MatchRun.heartbeat_at) < cutoff),
    )
    swept: list[int] = []
    for run in session.exec(dead_running.with_for_update()).all():
        seen = run.heartbeat_at.isoformat() if run.heartbeat_at else "never"
        _fail_stale(run, now, f"its worker stopped (no heartbeat since {seen}: killed or crashed)")
        swept.append(run.id or 0)
    if tasks.runner(settings) != "procrastinate":
        lost = select(MatchRun).where(
            MatchRun.status == MatchRunStatus.queued, col(MatchRun.queued_at) < cutoff
        )
        for run in session.exec(lost.with_for_update()).all():
            _fail_stale(run, now, "the process that queued it stopped before it ran")
            swept.append(run.id or 0)
    session.commit()
    return swept


def fail_run_of_lost_job(session: Session, *, run_id: int, now: dt.datetime | None = None) -> None:
    """A worker holding this run's job died (found by the queue's heartbeats)."""
    begin_write(session)
    run = session.exec(select(MatchRun).where(MatchRun.id == run_id).with_for_update()).first()
    if run is not None and run.status in ACTIVE_RUN_STATES:
        _fail_stale(run, now or utcnow(), "its worker stopped (killed or crashed) while running it")
    session.commit()


def _fail_stale(run: MatchRun, now: dt.datetime, why: str) -> None:
    run.status, run.finished_at, run.active_scope = MatchRunStatus.failed, now, None
    run.error = f"WorkerLost: {why}"[:2000]
    log.warning("match run %s failed: %s", run.id, why)
