"""Engine and sessions.

SQLite: every transaction starts with ``BEGIN IMMEDIATE`` so write transactions are
serialized by the database (this is how double-booking is prevented there), foreign
keys are on and the journal is WAL. PostgreSQL: plain READ COMMITTED; the exclusion
constraint on bookings does the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from app.config import get_settings


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, **kwargs
        )
        _serialize_sqlite_transactions(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def _serialize_sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite workaround, with BEGIN IMMEDIATE.

    pysqlite's own transaction handling is turned off so that SAVEPOINTs work and
    so that each transaction takes the write lock up front: two requests can never
    both read "the slot is free" and then both write.
    """

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
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
