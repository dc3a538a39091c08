"""The composition root: the only module that wires api and frontend together.

The JSON error handlers live here too (not in ``api/errors.py``): each one answers
both surfaces, JSON under ``/api`` and the frontend's error page elsewhere, and only
this module may import both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import app.jobs  # noqa: F401  (registers every task with app.tasks)
from app.config import get_settings
from app.errors import MarketplaceError, RowsRejected, ServiceUnavailable, field_name
from app.metrics import POOL_SATURATED, mark_process_dead
from app.middleware import (
    RETRY_AFTER_S,
    AdmissionMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    TimeoutMiddleware,
    UnhandledErrorMiddleware,
)

log = logging.getLogger("capshare")

# Paths not admitted against the connections: liveness and metrics never use the database
# and must answer while the pool is exhausted; /ready reports the exhaustion itself.
UNGATED_PATHS = ("/api/v1/health", "/api/v1/ready", "/metrics", "/static/")
# Threads beyond one per database connection: static files, /ready, the odd sync hop.
THREADPOOL_HEADROOM = 8


def create_app() -> FastAPI:
    import api
    import frontend

    settings = get_settings()

    app = FastAPI(
        lifespan=_lifespan,
        title="capshare",
        version="0.1.0",
        description="Cloud-manufacturing capacity-sharing marketplace: machines, offered time, "
        "orders, leases and matching. Money is integer fen; times are UTC.",
    )
    app.include_router(api.router)
    frontend.mount(app)
    app.add_exception_handler(MarketplaceError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _integrity_error)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(OperationalError, _operational_error)  # type: ignore[arg-type]
    app.add_route("/metrics", _metrics, include_in_schema=False)
    # Listed innermost first (each add_middleware wraps the ones before); app/middleware.py
    # says what each does and why in this order.
    app.add_middleware(UnhandledErrorMiddleware, render=_internal_error)
    app.add_middleware(
        AdmissionMiddleware,
        limit=connections_per_process(),
        wait_s=settings.db_pool_timeout_s,
        exempt=UNGATED_PATHS,
    )
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app


def _measure_queues() -> None:
    """The queue-depth gauge, read at each scrape (a failed read leaves the last value)."""
    from app import tasks
    from app.db import get_engine
    from app.metrics import QUEUE_DEPTH

    try:
        depths = tasks.queue_depths(get_engine())
    except Exception as exc:  # the database is down or saturated: /ready says so
        log.info("queue depth not read: %s", exc)
        return
    for queue, depth in depths.items():
        QUEUE_DEPTH.labels(queue=queue).set(depth)


def connections_per_process() -> int:
    settings = get_settings()
    return settings.db_pool_size + settings.db_pool_overflow


def _size_threadpool() -> None:
    """One thread per connection a request can hold, and a few more (app/db.py says why:
    with 40 threads, anyio's default, and a pool of 5, 35 threads would sit in checkout)."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = connections_per_process() + THREADPOOL_HEADROOM


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    from app import tasks
    from app.jobs import InProcessWorker

    settings = get_settings()
    runner = tasks.runner(settings)
    # with jobs_in_process this process also runs the periodic tasks (threads runner) or a
    # procrastinate worker (PostgreSQL); a fleet's API replicas turn it off
    background: tasks.Scheduler | InProcessWorker | None = None
    _size_threadpool()
    if settings.jobs_in_process and settings.environment != "test":
        if runner == "threads":
            background = tasks.Scheduler()
        elif runner == "procrastinate":
            background = InProcessWorker(settings)
    if background is not None:
        background.start()
    try:
        yield
    finally:
        if background is not None:
            background.stop()
        if runner == "threads":
            tasks.shutdown_threads(wait=False)
        mark_process_dead(os.getpid())


def _body(
    status: int, error: str, detail: object, field: str | None, **extra: object
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        status_code=status,
        content=jsonable_encoder({"error": error, "detail": detail, "field": field, **extra}),
        headers=headers,
    )


def _domain_error(request: Request, exc: MarketplaceError) -> Response:
    if not request.url.path.startswith("/api/"):
        import frontend

        return frontend.render_error(request, exc)
    if isinstance(exc, RowsRejected):  # every refused row, not only the first
        problems = [{"row": i, "field": f, "message": m} for i, f, m, _ in exc.problems]
        return _body(exc.status_code, type(exc).__name__, exc.message, exc.field, problems=problems)
    return _body(exc.status_code, type(exc).__name__, exc.message, exc.field)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    field = None
    if errors:
        field = field_name(errors[0].get("loc", ()))
    cleaned = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors]
    return _body(422, "InvalidInput", cleaned, field)


def _integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
    log.warning("integrity error on %s: %s", request.url.path, exc.orig)
    return _body(409, "Conflict", "the change conflicts with existing data", None)


def _out_of_range(request: Request, exc: Exception) -> Response:
    """A number the database cannot hold (an id or amount beyond its integer range)."""
    log.info("out-of-range value on %s: %s", request.url.path, exc)
    return _body(422, "InvalidInput", "a number in the request is out of range", None)


def _pool_timeout(request: Request, exc: Exception) -> Response:
    """No connection came free within db_pool_timeout_s."""
    log.warning("no database connection within the pool timeout on %s", request.url.path)
    return _unavailable(request, "pool_timeout")


def _operational_error(request: Request, exc: OperationalError) -> Response:
    """A connection could not be opened (the server refuses: too many clients, starting
    up, down) or died under the request: 503. Any other operational error is a 500."""
    if exc.statement is None or exc.connection_invalidated:
        log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
        return _unavailable(request, "connect")
    log.error("database error on %s", request.url.path, exc_info=exc)
    return _internal_error(request, exc)


def _unavailable(request: Request, reason: str) -> Response:
    POOL_SATURATED.labels(reason).inc()
    response = _domain_error(
        request, ServiceUnavailable("the database is busy; try again in a moment")
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _internal_error(request: Request, _exc: Exception) -> Response:
    """The 500 for an exception no handler took (logged by whoever caught it): JSON under
    /api, the error page elsewhere; rendered, not re-raised, so the connection stays open."""
    if not request.url.path.startswith("/api/"):
        import frontend

        page_error = MarketplaceError("something went wrong on our side")
        page_error.status_code = 500
        return frontend.render_error(request, page_error)
    return _body(500, "InternalError", "an unexpected error occurred", None)


async def _metrics(_request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    from app.metrics import render

    await run_in_threadpool(_measure_queues)
    body, content_type = render()
    return Response(body, media_type=content_type)
