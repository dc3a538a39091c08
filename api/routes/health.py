"""Liveness (``/health``) and readiness (``/ready``).

``/health`` says the process answers and touches nothing else: no database, no
thread (it is ``async``), so it answers while the pool or the threadpool is
exhausted and an orchestrator does not restart a process that is merely busy.
``/ready`` says whether the process can do its work now: each of
:data:`ready_checks` must pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from app import tasks
from app.db import get_engine

log = logging.getLogger("capshare.health")
router = APIRouter(tags=["health"])

EngineDep = Annotated[Engine, Depends(get_engine)]
# A readiness check raises when what it checks does not answer.
ReadyCheck = Callable[[Engine], None]


def database_answers(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def queue_answers(engine: Engine) -> None:
    """The task queue can be read (procrastinate: its tables in this database)."""
    tasks.queue_depths(engine)


# The checks /ready runs, by name, in order. Another module may append its own at import
# time (a broker of its own, say).
ready_checks: list[tuple[str, ReadyCheck]] = [
    ("database", database_answers),
    ("queue", queue_answers),
]


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Never touches the database."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={503: {"description": "a dependency does not answer; `checks` names it"}},
)
def ready(engine: EngineDep) -> JSONResponse:
    """Readiness: every check in ``ready_checks`` passes (the database answers ``SELECT 1``)."""
    checks: dict[str, str] = {}
    for name, check in ready_checks:
        try:
            check(engine)
        except Exception as exc:
            log.warning("not ready: %s: %s", name, exc)
            checks[name] = type(exc).__name__
        else:
            checks[name] = "ok"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        return JSONResponse(
            {
                "error": "NotReady",
                "detail": f"not answering: {', '.join(failed)}",
                "field": None,
                "checks": checks,
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "checks": checks})
