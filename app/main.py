"""The composition root: the only module that wires api and frontend together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError

import app.jobs  # noqa: F401  (registers every task with app.tasks)
from app.errors import MarketplaceError, RowsRejected, field_name

log = logging.getLogger("capshare")


def create_app() -> FastAPI:
    import api
    import frontend

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
    return app


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    from app import tasks
    from app.config import get_settings
    from app.jobs import InProcessWorker

    settings = get_settings()
    runner = tasks.runner(settings)
    # with jobs_in_process this process also runs the periodic tasks (threads runner) or a
    # procrastinate worker (PostgreSQL); a fleet's API replicas turn it off
    background: tasks.Scheduler | InProcessWorker | None = None
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
