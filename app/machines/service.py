"""Machines: listing, editing, retiring, and the marketplace search."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Float, exists, literal, not_, or_
from sqlmodel import Session, col, func, select

from app.accounts.service import is_admin, operated_cluster_ids
from app.catalog.service import check_process_materials, get_cluster_or_raise, nearest_cluster_id
from app.db import begin_write
from app.errors import Conflict, InvalidInput, MachineNotFound, PermissionDenied
from app.machines.sql import distance_km, json_list_has, lowered, rounded_km
from app.security import new_machine_token
from matching.rules import KM_PER_DEGREE_LAT, haversine_km, km_per_degree_lon
from models import (
    AvailabilityWindow,
    Booking,
    Machine,
    MachineStatus,
    Organization,
    Process,
    Role,
    User,
    utcnow,
)
from models.base import as_utc
from models.booking import holding
from models.machine import MachineCreate, MachinePublic, MachineUpdate


class MachineSort(StrEnum):
    rate = "rate"
    rate_desc = "-rate"
    distance = "distance"
    newest = "-created"
    name = "name"
    tolerance = "tolerance"


@dataclass(frozen=True, kw_only=True)
class MachineQuery:
    process_key: str | None = None
    family: str | None = None
    material: str | None = None
    part_x_mm: int = 0
    part_y_mm: int = 0
    part_z_mm: int = 0
    tolerance_mm: float | None = None
    certification: str | None = None
    cluster_id: int | None = None
    owner_org_id: int | None = None
    leasable: bool | None = None
    status: MachineStatus | None = None
    near_lat: float | None = None
    near_lon: float | None = None
    within_km: float | None = None
    free_from: dt.datetime | None = None
    free_to: dt.datetime | None = None
    q: str | None = None
    sort: MachineSort = MachineSort.rate
    limit: int = 50
    offset: int = 0


def _visible(*, session: Session, user: User) -> ColumnElement[bool]:
    """Machines the caller may see: admins all; an owner its own; a buyer every
    listed (not retired) machine; an operator those of the clusters it runs."""
    if is_admin(user):
        return col(Machine.id).is_not(None)
    clauses: list[ColumnElement[bool]] = [col(Machine.owner_org_id) == user.org_id]
    if user.has_role(Role.buyer):
        clauses.append(col(Machine.status) != MachineStatus.retired.value)
    clusters = operated_cluster_ids(session=session, user=user)
    if clusters:
        clauses.append(col(Machine.cluster_id).in_(clusters))
    return or_(*clauses)


def get_machine_or_raise(*, session: Session, user: User, machine_id: int) -> Machine:
    machine = session.exec(
        select(Machine).where(Machine.id == machine_id, _visible(session=session, user=user))
    ).first()
    if machine is None:
        raise MachineNotFound("machine not found", field="machine_id")
    return machine


def get_own_machine_or_raise(*, session: Session, user: User, machine_id: int) -> Machine:
    """A machine the caller may change: its org owns it (or the caller is an admin)."""
    machine = get_machine_or_raise(session=session, user=user, machine_id=machine_id)
    if not is_admin(user) and machine.owner_org_id != user.org_id:
        raise MachineNotFound("machine not found", field="machine_id")
    if not is_admin(user) and not user.has_role(Role.owner):
        raise PermissionDenied("only owners change machines")
    return machine


def lock_machine(session: Session, machine_id: int) -> None:
    """Serialize the commands that change one machine's offered time or bookings
    (PostgreSQL row lock until commit; SQLite's write lock already does this), so a
    window cannot be withdrawn while a lease inside it is being written."""
    session.exec(select(Machine.id).where(Machine.id == machine_id).with_for_update()).first()


def create_machine(
    *, session: Session, user: User, data: MachineCreate, commit: bool = True
) -> tuple[Machine, str]:
    """List a machine. Returns it with its telemetry token (shown only once)."""
    begin_write(session)
    if not user.has_role(Role.owner):
        raise PermissionDenied("only owner organizations list machines")
    org = session.get(Organization, user.org_id)
    assert org is not None
    check_process_materials(session=session, process_key=data.process_key, materials=data.materials)
    lat = data.lat if data.lat is not None else org.lat
    lon = data.lon if data.lon is not None else org.lon
    if lat is None or lon is None:
        raise InvalidInput("location required: the organization has none on file", field="lat")
    if data.cluster_id is not None:
        get_cluster_or_raise(session=session, cluster_id=data.cluster_id)
        cluster_id: int | None = data.cluster_id
    else:
        cluster_id = nearest_cluster_id(session=session, lat=lat, lon=lon)
    token, token_hash = new_machine_token()
    machine = Machine.model_validate(
        data,
        update={
            "owner_org_id": user.org_id,
            "lat": lat,
            "lon": lon,
            "cluster_id": cluster_id,
            "telemetry_token_hash": token_hash,
        },
    )
    session.add(machine)
    if commit:
        session.commit()
        session.refresh(machine)
    else:
        session.flush()
    return machine, token


def import_machines(*, session: Session, user: User, rows: list[MachineCreate]) -> list[Machine]:
    """List many machines in one transaction: all of them, or (on any error) none."""
    begin_write(session)
    created: list[Machine] = []
    try:
        for data in rows:
            machine, _ = create_machine(session=session, user=user, data=data, commit=False)
            created.append(machine)
        session.commit()
    except Exception:
        session.rollback()
        raise
    for machine in created:
        session.refresh(machine)
    return created


def update_machine(
    *, session: Session, user: User, machine_id: int, data: MachineUpdate
) -> Machine:
    begin_write(session)
    machine = get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    if machine.status == MachineStatus.retired.value:
        raise InvalidInput("a retired machine cannot be changed", field="machine_id")
    changes = data.model_dump(exclude_unset=True)
    for name in ("lat", "lon", "status"):
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be cleared", field=name)
    if changes.get("status") == MachineStatus.retired:
        raise InvalidInput("use the retire action to retire a machine", field="status")
    if "materials" in changes:
        changes["materials"] = sorted(set(changes["materials"]))
        check_process_materials(
            session=session, process_key=machine.process_key, materials=changes["materials"]
        )
    machine.sqlmodel_update(changes)
    if "lat" in changes or "lon" in changes:
        machine.cluster_id = nearest_cluster_id(session=session, lat=machine.lat, lon=machine.lon)
    machine.updated_at = utcnow()
    session.add(machine)
    session.commit()
    session.refresh(machine)
    return machine


def retire_machine(*, session: Session, user: User, machine_id: int) -> Machine:
    """Take a machine off the market. Work already confirmed stays; it gets no more."""
    begin_write(session)

    machine = get_own_machine_or_raise(session=session, user=user, machine_id=machine_id)
    pending = session.exec(
        select(func.count())
        .select_from(Booking)
        .where(
            Booking.machine_id == machine.id,
            holding(utcnow(), dt.datetime.max.replace(tzinfo=dt.UTC)),
        )
    ).one()
    if pending:
        raise Conflict(
            f"the machine has {pending} active booking(s); finish or cancel them first",
            field="machine_id",
        )
    machine.status = MachineStatus.retired
    machine.updated_at = utcnow()
    session.add(machine)
    session.commit()
    session.refresh(machine)
    return machine


def _filters(session: Session, user: User, q: MachineQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [_visible(session=session, user=user)]
    if q.status is not None:
        where.append(col(Machine.status) == q.status.value)
    else:
        where.append(col(Machine.status) != MachineStatus.retired.value)
    if q.process_key:
        where.append(col(Machine.process_key) == q.process_key)
    if q.family:
        where.append(
            col(Machine.process_key).in_(select(Process.key).where(Process.family == q.family))
        )
    for axis, size in (("x", q.part_x_mm), ("y", q.part_y_mm), ("z", q.part_z_mm)):
        if size:
            column = getattr(Machine, f"envelope_{axis}_mm")
            # 0 means "not applicable" (a lathe has no y, a sewing line no envelope)
            where.append(or_(column == 0, column >= size))
    if q.tolerance_mm is not None:
        where.append(col(Machine.tolerance_mm) <= q.tolerance_mm)
    if q.cluster_id is not None:
        where.append(col(Machine.cluster_id) == q.cluster_id)
    if q.owner_org_id is not None:
        where.append(col(Machine.owner_org_id) == q.owner_org_id)
    if q.leasable is not None:
        where.append(col(Machine.leasable) == q.leasable)
    if q.q:
        pattern = f"%{q.q.lower()}%"
        where.append(
            or_(
                func.lower(Machine.name).like(pattern), func.lower(Machine.make_model).like(pattern)
            )
        )
    if q.near_lat is not None and q.near_lon is not None and q.within_km is not None:
        dlat = q.within_km / KM_PER_DEGREE_LAT
        dlon = q.within_km / max(km_per_degree_lon(q.near_lat), 1e-6)
        where.append(col(Machine.lat).between(q.near_lat - dlat, q.near_lat + dlat))
        where.append(col(Machine.lon).between(q.near_lon - dlon, q.near_lon + dlon))
    if q.free_from is not None and q.free_to is not None:
        start, end = as_utc(q.free_from), as_utc(q.free_to)
        where.append(
            exists().where(
                col(AvailabilityWindow.machine_id) == Machine.id,
                col(AvailabilityWindow.start_at) <= start,
                col(AvailabilityWindow.end_at) >= end,
            )
        )
        where.append(
            not_(
                exists().where(
                    col(Booking.machine_id) == Machine.id,
                    holding(start, end),
                )
            )
        )
    return where


def search_machines(
    *, session: Session, user: User, query: MachineQuery
) -> tuple[list[MachinePublic], int]:
    """Search the machines the caller may see: filtering, distance, sorting, paging and
    counting in the database; response objects only for the page returned."""
    if (query.free_from is None) != (query.free_to is None):
        raise InvalidInput("free_from and free_to go together", field="free_to")
    if query.free_from and query.free_to and as_utc(query.free_to) <= as_utc(query.free_from):
        raise InvalidInput("free_to must be after free_from", field="free_to")
    near = query.near_lat is not None and query.near_lon is not None
    if query.sort == MachineSort.distance and not near:
        raise InvalidInput("sorting by distance needs near_lat and near_lon", field="sort")
    if (query.near_lat is None) != (query.near_lon is None):
        raise InvalidInput("near_lat and near_lon go together", field="near_lon")
    dialect = session.get_bind().dialect.name
    where = _filters(session, user, query)
    if query.material:
        where.append(json_list_has(Machine.materials, query.material))
    if query.certification:
        where.append(json_list_has(Machine.certifications, query.certification))
    distance = None
    if query.near_lat is not None and query.near_lon is not None:
        distance = distance_km(
            dialect, Machine.lat, Machine.lon, near_lat=query.near_lat, near_lon=query.near_lon
        )
        if query.within_km is not None:
            # after the bounding box of _filters
            where.append(distance <= literal(float(query.within_km), Float()))
    total = session.exec(select(func.count()).select_from(Machine).where(*where)).one()
    rows = session.exec(
        select(Machine, Organization.name)
        .join(Organization, col(Organization.id) == Machine.owner_org_id)
        .where(*where)
        .order_by(*_order_by(dialect, query.sort, distance))
        .offset(query.offset)
        .limit(query.limit)
    ).all()
    page = []
    for machine, owner_name in rows:
        km = None
        if query.near_lat is not None and query.near_lon is not None:
            km = haversine_km(query.near_lat, query.near_lon, machine.lat, machine.lon)
        page.append(machine_public(machine, viewer=user, owner_name=owner_name, distance_km=km))
    return page, total


def _order_by(
    dialect: str, sort: MachineSort, distance: ColumnElement[float] | None
) -> tuple[Any, ...]:
    """The sort, ended by the id so that pages never overlap."""
    machine_id = col(Machine.id)
    rate, tolerance = col(Machine.hourly_rate_fen), col(Machine.tolerance_mm)
    if sort == MachineSort.distance:
        assert distance is not None
        return rounded_km(dialect, distance), machine_id  # as shown: km to two decimals
    orders: dict[MachineSort, tuple[Any, ...]] = {
        MachineSort.rate: (rate, machine_id),
        MachineSort.rate_desc: (rate.desc(), machine_id),
        MachineSort.newest: (col(Machine.created_at).desc(), machine_id.desc()),
        MachineSort.name: (lowered(dialect, Machine.name), machine_id),
        MachineSort.tolerance: (tolerance, rate, machine_id),
    }
    return orders[sort]


def machine_public(
    machine: Machine,
    *,
    viewer: User,
    owner_name: str | None = None,
    distance_km: float | None = None,
) -> MachinePublic:
    """The machine as ``viewer`` may see it: its reported state only for its own
    organization and admins (whether a competitor's machine runs is the owner's business)."""
    own = is_admin(viewer) or machine.owner_org_id == viewer.org_id
    return MachinePublic.model_validate(
        machine,
        update={
            "owner_name": owner_name,
            "distance_km": round(distance_km, 2) if distance_km is not None else None,
            "reported_state": machine.reported_state if own else None,
            "last_reported_at": machine.last_reported_at if own else None,
        },
    )


def machine_names(*, session: Session, machine_ids: set[int]) -> dict[int, str]:
    """Display names of machines whose bookings the caller already sees."""
    if not machine_ids:
        return {}
    rows = session.exec(
        select(Machine.id, Machine.name).where(col(Machine.id).in_(machine_ids))
    ).all()
    return {i: n for i, n in rows if i is not None}
