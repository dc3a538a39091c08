"""Every task capshare runs, and the worker that runs them.

Importing this module registers all tasks with :mod:`app.tasks` (the composition root and
``capshare worker`` do). Commands defer three of them in their transactions:
``payments.drive`` (a booking's pending payments, deferred where a payment row is planned),
``payments.webhook`` (a provider event the webhook stored in the inbox) and
``match_runs.execute`` (:mod:`app.matching_runs.service`). The rest are periodic:
proposal expiry, claim-window captures, pending payments left behind, the match-run sweep,
the daily reconciliation, the dashboard's history rollup and retention and, with
procrastinate, the recovery of stalled jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from procrastinate.jobs import Status
from sqlmodel import Session

from app import tasks
from app.bookings.delivery import release_due_captures
from app.config import Settings, get_settings
from app.dashboard import history
from app.matching_runs import liveness
from app.matching_runs import service as match_runs
from app.matching_runs.expiry import expire_proposals
from app.money.driver import drive_payments, outside_transaction
from app.money.planning import DRIVE_TASK
from app.money.provider import PaymentsClient, get_payments_client
from app.money.reconcile import reconcile_payments
from app.money.webhooks import WEBHOOK_TASK, handle_event
from models import utcnow

log = logging.getLogger("capshare.jobs")


def _payments(session: Session) -> PaymentsClient | None:
    """The provider client of a payment task: each call ends the task's reads first."""
    payments = get_payments_client(get_settings())
    return None if payments is None else outside_transaction(session, payments)


@tasks.task(DRIVE_TASK, queue="payments", retries=5)
def drive_booking_payments(session: Session, booking_id: int) -> None:
    payments = _payments(session)
    if payments is not None:
        drive_payments(session=session, payments=payments, booking_id=booking_id)


@tasks.task(WEBHOOK_TASK, queue="payments", retries=5)
def apply_webhook(session: Session, event_id: str) -> None:
    handle_event(session=session, event_id=event_id)


@tasks.periodic("proposals.expire", every_s=60, cron="* * * * *")
def expire_task(session: Session) -> None:
    expire_proposals(session=session)


@tasks.periodic("deliveries.release", every_s=60, cron="* * * * *")
def release_task(session: Session) -> None:
    # the captures it plans defer their own payments.drive
    release_due_captures(session=session, payments=None)


@tasks.periodic("payments.drive_pending", every_s=60, cron="* * * * *", queue="payments")
def drive_pending_task(session: Session) -> None:
    """Payments a failed drive left pending (provider down, a key still in use)."""
    payments = _payments(session)
    if payments is not None:
        drive_payments(session=session, payments=payments)


@tasks.periodic("payments.reconcile", every_s=24 * 3600, cron="30 3 * * *", queue="payments")
def reconcile_task(session: Session) -> None:
    payments = _payments(session)
    if payments is not None:
        report = reconcile_payments(session=session, payments=payments)
        log.info("reconciliation: %d difference(s), %d open", len(report.differences),
                 len(report.unrepaired))  # fmt: skip


@tasks.periodic("history.rollup", every_s=15 * 60, cron="*/15 * * * *")
def history_rollup_task(session: Session) -> None:
    s = get_settings()
    history.roll_up(session=session, tz=s.display_timezone, settle_days=s.history_settle_days)


@tasks.periodic("history.prune", every_s=24 * 3600, cron="45 3 * * *")
def history_prune_task(session: Session) -> None:
    s = get_settings()
    report = history.prune(session=session, tz=s.display_timezone,
                           span_retention_days=s.span_retention_days,
                           window_retention_days=s.window_retention_days)  # fmt: skip
    log.info("history: %d spans, %d windows pruned", report.spans, report.windows)


@tasks.periodic("jobs.recover_stalled", every_s=60, cron="* * * * *")
def recover_stalled_task(session: Session) -> None:
    if tasks.runner() == "procrastinate":
        recover_stalled_jobs(session)


def recover_stalled_jobs(session: Session, *, seconds: float | None = None) -> list[int]:
    """Jobs whose worker stopped heartbeating: a match run's job is failed and its run
    marked failed with the reason (a solve is not worth repeating blindly); every other
    job is retried on a live worker (tasks are safe to run twice). Returns the job ids."""
    app = tasks.worker_app()
    seconds = seconds if seconds is not None else get_settings().worker_stalled_s

    async def recover() -> list[int]:
        async with app.open_async():
            manager = app.job_manager
            stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=seconds))
            for job in stalled:
                assert job.id is not None
                if job.task_name == match_runs.EXECUTE_TASK:
                    await manager.finish_job_by_id_async(
                        job_id=job.id, status=Status.FAILED, delete_job=False
                    )
                    run_id = job.task_kwargs.get("run_id")
                    if isinstance(run_id, int):
                        liveness.fail_run_of_lost_job(session, run_id=run_id)
                else:
                    await manager.retry_job_by_id_async(job_id=job.id, retry_at=utcnow())
                log.warning("job %s (%s) of a dead worker recovered", job.id, job.task_name)
            return [job.id for job in stalled if job.id is not None]

    return asyncio.run(recover())


def run_worker(settings: Settings | None = None) -> None:
    """``capshare worker``: procrastinate's worker on PostgreSQL; on SQLite the in-process
    scheduler of the periodic tasks (deferred tasks run in the process that deferred them)."""
    settings = settings or get_settings()
    if tasks.runner(settings) != "procrastinate":
        scheduler = tasks.Scheduler()
        log.info("worker: in-process periodic tasks (%s)", settings.database_url.split(":")[0])
        scheduler.run_forever()
        return
    app = tasks.worker_app(settings)
    app.run_worker(concurrency=settings.worker_concurrency, wait=True, install_signal_handlers=True)


class InProcessWorker:
    """procrastinate's worker on a thread of the web process, so that one ``capshare
    serve`` on PostgreSQL is a whole capshare (``jobs_in_process``, the default). A fleet
    turns it off in its API replicas and runs ``capshare worker`` processes instead."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="capshare-worker", daemon=True
        )
        self._thread.start()
        self._ready.wait(timeout=30)

    async def _main(self) -> None:
        app = tasks.worker_app(self._settings)
        async with app.open_async():
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(
                app.run_worker_async(
                    concurrency=self._settings.worker_concurrency,
                    install_signal_handlers=False,
                    update_heartbeat_interval=self._settings.worker_heartbeat_s,
                )
            )
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=60)
