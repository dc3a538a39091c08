"""SQL pieces of the machine search that differ by dialect.

- JSON-list membership (``"steel" in machine.materials``): on PostgreSQL
  ``CAST(col AS JSONB) @> jsonb_build_array(:v)`` (served by the GIN expression indexes of
  migration 0007), on SQLite ``EXISTS (SELECT 1 FROM json_each(col) WHERE value = :v)``.
- The great-circle distance, the same float as ``matching.rules.haversine_km``: on
  PostgreSQL the same operations in the same order on the same libm (sin, cos, pow, sqrt,
  asin), the constants computed in Python; on SQLite that Python function itself,
  registered on every connection (``capshare_distance_km``), as is Python's ``round``
  (``capshare_round2``) and ``str.lower`` (``capshare_lower``), so sorting by the rounded
  distance and by name orders rows exactly as Python would.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Engine, Float, Numeric, cast, event, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from matching.rules import EARTH_RADIUS_KM, haversine_km

_RAD_PER_DEG = math.pi / 180  # what math.radians multiplies by


class json_list_has(FunctionElement[bool]):
    """``json_list_has(column, value)``: the JSON list in ``column`` holds the string ``value``."""

    type = Boolean()
    inherit_cache = True
    name = "json_list_has"


@compiles(json_list_has)
def _json_list_has_sqlite(element: json_list_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {value})"


@compiles(json_list_has, "postgresql")
def _json_list_has_pg(element: json_list_has, compiler: SQLCompiler, **kw: Any) -> str:
    column, value = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST({column} AS JSONB) @> jsonb_build_array(CAST({value} AS TEXT))"


def _float(value: float) -> ColumnElement[float]:
    return literal(value, Float())


def distance_km(
    dialect: str, lat: Any, lon: Any, *, near_lat: float, near_lon: float
) -> ColumnElement[float]:
    """``haversine_km(near_lat, near_lon, lat, lon)`` as an SQL expression, bit for bit."""
    if dialect == "sqlite":
        return func.capshare_distance_km(_float(near_lat), _float(near_lon), lat, lon)
    p1 = math.radians(near_lat)
    p2 = lat * _float(_RAD_PER_DEG)
    dp = p2 - _float(p1)
    dl = (lon - _float(near_lon)) * _float(_RAD_PER_DEG)
    two = _float(2.0)
    a = func.power(func.sin(dp / two), two) + _float(math.cos(p1)) * func.cos(p2) * func.power(
        func.sin(dl / two), two
    )
    return _float(2 * EARTH_RADIUS_KM) * func.asin(func.least(_float(1.0), func.sqrt(a)))


def rounded_km(dialect: str, km: ColumnElement[float]) -> ColumnElement[Any]:
    """``round(km, 2)``, the distance a machine is shown (and sorted) with."""
    if dialect == "sqlite":
        return func.capshare_round2(km)
    return func.round(cast(km, Numeric), 2)


def lowered(dialect: str, text: Any) -> ColumnElement[str]:
    """``text.lower()``, compared code point by code point."""
    if dialect == "sqlite":
        return func.capshare_lower(text)
    return func.lower(text).collate("C")


def _round2(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


@event.listens_for(Engine, "connect")
def _register_sqlite_functions(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function(
            "capshare_distance_km", 4, haversine_km, deterministic=True
        )
        dbapi_connection.create_function("capshare_round2", 1, _round2, deterministic=True)
        dbapi_connection.create_function("capshare_lower", 1, _lower, deterministic=True)
