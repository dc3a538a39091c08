"""The task queue: named tasks, deferred in the transaction of the change that causes them.

A command never calls a slow thing (the payment provider, the matcher) itself: it writes its
rows and defers a named task with :func:`defer` in the same transaction. What runs the task
depends on ``Settings.task_runner``:

``procrastinate`` (the default on PostgreSQL)
    Jobs are rows of procrastinate's tables in the same database (migration 0006 installs its
    schema). :func:`defer` inserts the job on the session's own connection, so a rolled-back
    command enqueues nothing and a committed one cannot lose its job. ``capshare worker``
    runs procrastinate's worker (any number, on any hosts), with retries, queueing locks and
    the periodic tasks; a stalled worker's jobs are found by its heartbeat (see app.jobs).
``threads`` (the default on SQLite)
    The same task functions run in-process: :func:`defer` keeps the job on the session and
    after the commit a small thread pool of the process runs it (after a rollback it is
    dropped); the periodic tasks run from a scheduler thread (:class:`Scheduler`).
``manual`` (the tests)
    After the commit the job waits in :data:`ready` until :func:`run_ready` runs it with a
    session the caller gives (the test's own), so tests decide when side effects happen.

A task is ``fn(session, **kwargs)`` with JSON-able keyword arguments; it must be safe to run
twice (delivery is at least once): each task re-reads its rows and does nothing when there
is nothing left to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import procrastinate
from procrastinate import exceptions as queue_errors
from sqlalchemy import Engine, event, text
from sqlmodel import Session

from app.config import Settings, get_settings
from app.db import get_engine
from app.metrics import JOB_FAILURES

log = logging.getLogger("capshare.tasks")

TaskFn = Callable[..., None]  # fn(session, **kwargs)


@dataclass(frozen=True)
class TaskDef:
    name: str
    fn: TaskFn
    queue: str = "default"
    retries: int = 0  # procrastinate retries (exponential backoff) after a failure
    every_s: float | None = None  # periodic: in-process cadence
    cron: str | None = None  # periodic: procrastinate's schedule (6 fields: with seconds)


@dataclass(frozen=True)
class Job:
    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    lock: str | None = None
    queueing_lock: str | None = None


_TASKS: dict[str, TaskDef] = {}
_SESSION_KEY = "capshare_deferred_jobs"
ready: list[Job] = []  # manual runner: committed jobs waiting for run_ready()
_ready_lock = threading.Lock()
_waiting_locks: set[str] = set()  # in-process runners: queueing locks of jobs not started


def task(name: str, *, queue: str = "default", retries: int = 0) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn`` as the task ``name``."""

    def register(fn: TaskFn) -> TaskFn:
        _TASKS[name] = TaskDef(name=name, fn=fn, queue=queue, retries=retries)
        return fn

    return register


def periodic(
    name: str, *, every_s: float, cron: str, queue: str = "default"
) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn`` as the periodic task ``name``: every ``every_s`` seconds in-process,
    on ``cron`` in procrastinate (one worker defers each tick, whatever the number)."""

    def register(fn: TaskFn) -> TaskFn:
        _TASKS[name] = TaskDef(name=name, fn=fn, queue=queue, every_s=every_s, cron=cron)
        return fn

    return register


def registered() -> dict[str, TaskDef]:
    return dict(_TASKS)


def runner(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.task_runner != "auto":
        return settings.task_runner
    return "threads" if settings.is_sqlite else "procrastinate"


# ------------------------------------------------------------------ deferring


def defer(
    session: Session,
    name: str,
    *,
    lock: str | None = None,
    queueing_lock: str | None = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> None:
    """Defer the task ``name`` in the session's transaction. ``lock``: jobs with the same
    lock never run at the same time; ``queueing_lock``: at most one such job waits (a
    second defer is a no-op, since the waiting one will do the work)."""
    if name not in _TASKS:
        raise LookupError(f"no task named {name!r}")
    job = Job(task=name, kwargs=kwargs, lock=lock, queueing_lock=queueing_lock)
    if runner(settings) == "procrastinate":
        _defer_in_database(session, job)
        return
    session.connection()  # the job belongs to a transaction: its commit or its rollback
    jobs: list[Job] = session.info.setdefault(_SESSION_KEY, [])
    if job.queueing_lock is not None and any(j.queueing_lock == job.queueing_lock for j in jobs):
        return
    jobs.append(job)


def _defer_in_database(session: Session, job: Job) -> None:
    try:
        with session.begin_nested():  # a refused queueing lock must not abort the command
            connection = session.connection().connection.driver_connection  # the savepoint's
            _defer_app(libpq_url(get_settings().database_url)).configure_task(
                job.task,
                lock=job.lock,
                queueing_lock=job.queueing_lock,
                queue=_TASKS[job.task].queue,
                connection=connection,
            ).defer(**job.kwargs)
    except queue_errors.AlreadyEnqueued:
        log.debug("%s already waits under %s", job.task, job.queueing_lock)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    jobs: list[Job] = session.info.pop(_SESSION_KEY, [])
    if not jobs:
        return
    with _ready_lock:  # a queueing lock: at most one such job waits, as in procrastinate
        jobs = [j for j in jobs if j.queueing_lock is None or j.queueing_lock not in _waiting_locks]
        _waiting_locks.update(j.queueing_lock for j in jobs if j.queueing_lock is not None)
        if runner() == "manual":
            ready.extend(jobs)
            return
    for job in jobs:
        _executor(_TASKS[job.task].queue).submit(run_job, job)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the command's own transaction, not a savepoint
        session.info.pop(_SESSION_KEY, None)


# ------------------------------------------------------------------ running


def run_job(job: Job, session: Session | None = None) -> bool:
    """Run one job (in a session of its own unless given). Returns False when it failed;
    the failure is logged, never raised: a queue does not crash on one bad job."""
    definition = _TASKS[job.task]
    if job.queueing_lock is not None:
        with _ready_lock:
            _waiting_locks.discard(job.queueing_lock)
    try:
        if session is not None:
            definition.fn(session, **job.kwargs)
        else:
            with Session(get_engine()) as own:
                definition.fn(own, **job.kwargs)
        return True
    except Exception:
        log.exception("task %s failed", job.task)
        JOB_FAILURES.labels(task=job.task).inc()
        return False


def run_ready(session: Session) -> int:
    """Manual runner: run the committed jobs (and those they defer) with ``session``.
    Returns how many ran."""
    count = 0
    while True:
        with _ready_lock:
            if not ready:
                return count
            job = ready.pop(0)
        if not run_job(job, session):
            raise RuntimeError(f"task {job.task} failed (see the log)")
        count += 1


def queue_depths(engine: Engine) -> dict[str, int]:
    """Jobs waiting, by queue: procrastinate's ``todo`` rows, or this process's backlog."""
    if runner() == "procrastinate":
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT queue_name, count(*) FROM procrastinate_jobs "
                    "WHERE status = 'todo' GROUP BY queue_name"
                )
            ).all()
        return {str(queue): int(n) for queue, n in rows}
    depths = dict.fromkeys({t.queue for t in _TASKS.values()}, 0)
    with _executors_lock:
        for queue, pool in _executors.items():
            depths[queue] = pool._work_queue.qsize()
    with _ready_lock:
        for job in ready:
            depths[_TASKS[job.task].queue] += 1
    return depths


def forget_waiting() -> None:
    """Drop the jobs waiting in this process (the tests, between two tests)."""
    with _ready_lock:
        ready.clear()
        _waiting_locks.clear()


_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _executor(queue: str) -> ThreadPoolExecutor:
    with _executors_lock:
        if queue not in _executors:
            size = get_settings().task_threads
            _executors[queue] = ThreadPoolExecutor(size, thread_name_prefix=f"capshare-{queue}")
        return _executors[queue]


def shutdown_threads(wait: bool = True) -> None:
    with _executors_lock:
        for pool in _executors.values():
            pool.shutdown(wait=wait)
        _executors.clear()


class Scheduler:
    """In-process periodic tasks (the ``threads`` runner): each runs every ``every_s``."""

    def __init__(self, tick_s: float = 1.0) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_s = tick_s

    def due(self, now: float, last: dict[str, float]) -> Iterator[TaskDef]:
        for t in _TASKS.values():
            if t.every_s is not None and now - last.get(t.name, float("-inf")) >= t.every_s:
                last[t.name] = now
                yield t

    def run_forever(self) -> None:
        last: dict[str, float] = {}
        while not self._stop.is_set():
            for t in self.due(time.monotonic(), last):
                run_job(Job(task=t.name))
            self._stop.wait(self._tick_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="capshare-periodic")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# ------------------------------------------------------------------ procrastinate


def libpq_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@lru_cache
def _defer_app(conninfo: str) -> procrastinate.App:
    """Defers only, on the caller's connection (its pool is never opened)."""
    return procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=conninfo))


def worker_app(settings: Settings | None = None) -> procrastinate.App:
    """The app ``capshare worker`` runs: every registered task bound, a small pool."""
    settings = settings or get_settings()
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=libpq_url(settings.database_url),
            min_size=1,
            max_size=settings.worker_queue_connections,
            kwargs={"application_name": "capshare-worker"},
        )
    )
    for definition in _TASKS.values():
        _bind(app, definition)
    return app


def _bind(app: procrastinate.App, definition: TaskDef) -> None:
    def body(timestamp: int | None = None, **kwargs: Any) -> None:
        try:
            with Session(get_engine()) as session:
                definition.fn(session, **kwargs)
        except Exception:
            JOB_FAILURES.labels(task=definition.name).inc()
            raise  # procrastinate records it, and retries if the task says so

    body.__name__ = definition.name.replace(".", "_")
    retry: int | bool = definition.retries or False
    bound = app.task(name=definition.name, queue=definition.queue, retry=retry)(body)
    if definition.cron is not None:
        app.periodic(cron=definition.cron, periodic_id=definition.name)(bound)


def schema_sql() -> str:
    """procrastinate's schema, installed by migration 0006 on PostgreSQL."""
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()
