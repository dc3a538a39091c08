"""Engine and sessions.

SQLite: reads run in deferred transactions (WAL: they never block); a write
service calls :func:`begin_write` first, which takes the database's write lock
with ``BEGIN IMMEDIATE``, so write transactions are serialized by the database
(this is how double-booking is prevented there) and the lock is held only for
the one service call. PostgreSQL: plain READ COMMITTED; the exclusion constraint
on bookings does the rest.

A connection is held only while it is used. A request's session ends its reads before
the response is rendered (:func:`end_request_reads`: from ``frontend.web.render`` and,
for the JSON API, when the handler returns, before FastAPI serializes what it returned),
and is closed before the response is sent (``get_session`` has the ``function`` scope).
A provider call ends the caller's reads first (``PaymentsClient.outside_transaction``).
Ending reads is a commit that keeps what was loaded as it was (:func:`end_reads`), so a
template or a serializer reads the objects without going back to the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import Engine, event
from sqlalchemy.orm import ORMExecuteState, SessionTransaction
from sqlmodel import Session, create_engine

from app.config import get_settings

# Pool sizes come from the settings (db_pool_size, db_pool_overflow, db_pool_timeout_s).
#
# A request holds its connection from authentication to the end, across several hops
# through the threadpool (a dependency, the handler, the session's teardown: each is a
# separate hop). With a long pool timeout that can deadlock under load: every thread
# blocked waiting for a connection, every connection held by a request waiting for a
# thread. Two things keep that from happening (app/middleware.py, app/main.py):
#   - the pool timeout is short (2 s by default): a thread blocked in checkout gives up,
#     the request answers 503 with Retry-After and its thread goes back to the others;
#   - requests that may use the database are admitted at most pool_size + pool_overflow
#     at a time per process (AdmissionMiddleware, waiting on the event loop, not in a
#     thread, for at most db_pool_timeout_s), and the threadpool is capped just above
#     that, so an admitted request finds a connection and a thread for each hop.
PG_CONNECT_TIMEOUT_S = 5  # libpq's connect_timeout: a black-holed host fails, not hangs

_take_write_lock: ContextVar[bool] = ContextVar("capshare_sqlite_write_lock", default=False)
_request_session: ContextVar[Session | None] = ContextVar("capshare_request_session", default=None)
_WROTE = "capshare_wrote"  # session.info: the open transaction wrote (a flush, DML, a savepoint)


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url``; the pool's sizes default to the settings'."""
    settings = get_settings()
    pool: dict[str, Any] = {
        "pool_size": settings.db_pool_size if pool_size is None else pool_size,
        "max_overflow": settings.db_pool_overflow if max_overflow is None else max_overflow,
        "pool_timeout": settings.db_pool_timeout_s if pool_timeout is None else pool_timeout,
    }
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, **pool, **kwargs
        )
        _serialize_sqlite_transactions(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
        **pool,
        **kwargs,
    )


def _serialize_sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite workaround: pysqlite's own transaction
    handling is off so that SAVEPOINTs work and so that we choose the BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _take_write_lock.get() else "BEGIN")


def begin_write(session: Session) -> None:
    """Open the write transaction of a service command.

    On SQLite this ends any read snapshot the request holds (authentication read
    the user) and starts ``BEGIN IMMEDIATE``: two requests can never both read
    "the slot is free" and then both write, and a write never fails on upgrading
    a stale snapshot. Elsewhere it does nothing.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    current = session.get_transaction()
    if current is not None and session.info.get("write_transaction") is current:
        return  # already inside a write transaction: a command composed of others
    if session.in_transaction():
        session.commit()
    token = _take_write_lock.set(True)
    try:
        session.connection()
    finally:
        _take_write_lock.reset(token)
    session.info["write_transaction"] = session.get_transaction()


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


def get_session() -> Iterator[Session]:
    """One session per request. Services commit; this only closes (and rolls back
    whatever a failed request left open)."""
    with Session(get_engine()) as session:
        try:
            yield session
        except Exception:
            session.rollback()
            raise


async def request_session(
    session: Annotated[Session, Depends(get_session, scope="function")],
) -> Session:
    """The request's session (``SessionDep``): closed when the handler's response is
    built, before it is sent (the ``function`` scope), and known to
    :func:`end_request_reads`. Async so that it runs in the request's own context, which
    every later hop through the threadpool copies."""
    _request_session.set(session)
    return session


# ----------------------------------------------------------------- ending reads


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush_context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_create")
def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:  # a savepoint is there to write (a job deferred in the database)
        session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def end_reads(session: Session) -> bool:
    """End ``session``'s transaction if all it did was read: a commit that keeps every
    loaded object as loaded (no reload later, outside any transaction), and gives the
    connection back to the pool. Returns False, leaving the transaction alone, if it
    wrote something no one committed (or holds changes not yet flushed). A write
    transaction that wrote nothing yet (:func:`begin_write`, then a refusal) counts as
    read: its commit only gives SQLite's write lock back."""
    if not session.in_transaction():
        return True
    if session.info.get(_WROTE) or session.new or session.dirty or session.deleted:
        return False
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire
    return True


def current_request_session() -> Session | None:
    """The session of the request being handled (None outside one, or before it is made)."""
    return _request_session.get()


def end_request_reads() -> None:
    """End the current request's reads before its response is rendered or serialized.
    A command that failed halfway (the page shows its errors) is rolled back here, as
    the session's close would have done after the response."""
    session = _request_session.get()
    if session is not None and not end_reads(session):
        session.rollback()
