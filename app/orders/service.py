"""Orders with ordered operations: draft → open → matched → in_progress →
completed, or cancelled."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, or_
from sqlmodel import Session, col, func, select

from app.accounts.service import is_admin
from app.catalog.service import check_process_materials
from app.db import begin_write
from app.errors import InvalidInput, InvalidTransition, OrderNotFound, PermissionDenied
from app.orders import timeline
from models import (
    HELD_STATES,
    Booking,
    BookingState,
    Machine,
    Operation,
    Order,
    OrderEvent,
    OrderStatus,
    Organization,
    Role,
    User,
    utcnow,
)
from models.base import as_utc
from models.order import (
    DueKind,
    OperationCreate,
    OperationPublic,
    OrderCreate,
    OrderEventPublic,
    OrderPublic,
    OrderUpdate,
)

MAX_LEAD = dt.timedelta(days=366)
CANCELLABLE = {OrderStatus.draft.value, OrderStatus.open.value, OrderStatus.matched.value}
# Statuses that bookings no longer move.
SETTLED = {OrderStatus.draft.value, OrderStatus.cancelled.value, OrderStatus.completed.value}
STARTED = {BookingState.in_progress.value, BookingState.done.value}
# Orders the matcher looks at: those with a step that may still need a machine.
POOL_STATES = (OrderStatus.open.value, OrderStatus.matched.value, OrderStatus.in_progress.value)


def _visible_order_ids(user: User):  # type: ignore[no-untyped-def]
    """Orders an owner may see: those with work assigned to its machines."""
    return (
        select(Booking.order_id)
        .join(Machine, col(Machine.id) == Booking.machine_id)
        .where(
            Machine.owner_org_id == user.org_id,
            col(Booking.order_id).is_not(None),
            col(Booking.state).in_(
                (
                    BookingState.confirmed.value,
                    BookingState.in_progress.value,
                    BookingState.done.value,
                )
            ),
        )
    )


def get_order_or_raise(*, session: Session, user: User, order_id: int) -> Order:
    """The buyer's own order, or one assigned to the caller's machines; else 404."""
    order = session.get(Order, order_id)
    if order is None:
        raise OrderNotFound("order not found", field="order_id")
    if is_admin(user) or order.buyer_org_id == user.org_id:
        return order
    if user.has_role(Role.owner):
        assigned = session.exec(
            _visible_order_ids(user).where(Booking.order_id == order_id)
        ).first()
        if assigned is not None:
            return order
    raise OrderNotFound("order not found", field="order_id")


def get_own_order_or_raise(*, session: Session, user: User, order_id: int) -> Order:
    order = get_order_or_raise(session=session, user=user, order_id=order_id)
    if not is_admin(user) and order.buyer_org_id != user.org_id:
        raise OrderNotFound("order not found", field="order_id")
    return order


def list_operations(*, session: Session, order_id: int) -> list[Operation]:
    return list(
        session.exec(
            select(Operation).where(Operation.order_id == order_id).order_by(col(Operation.seq))
        ).all()
    )


def order_public(*, session: Session, order: Order) -> OrderPublic:
    return orders_public(session=session, orders=[order])[0]


def orders_public(*, session: Session, orders: list[Order]) -> list[OrderPublic]:
    """The orders with their operations, read in one query for the whole list."""
    ids = [o.id for o in orders]
    ops: dict[int, list[OperationPublic]] = {i: [] for i in ids if i is not None}
    if ops:
        rows = session.exec(
            select(Operation)
            .where(col(Operation.order_id).in_(ops))
            .order_by(col(Operation.order_id), col(Operation.seq))
        ).all()
        for o in rows:
            ops[o.order_id].append(OperationPublic.model_validate(o))
    return [
        OrderPublic.model_validate(o, update={"operations": ops.get(o.id or 0, [])}) for o in orders
    ]


def list_orders(
    *,
    session: Session,
    user: User,
    status: OrderStatus | None,
    limit: int,
    offset: int,
    sort: str = "-created",
) -> tuple[list[Order], int]:
    query = select(Order)
    if not is_admin(user):
        clauses = [col(Order.buyer_org_id) == user.org_id]
        if user.has_role(Role.owner):
            clauses.append(col(Order.id).in_(_visible_order_ids(user)))

        query = query.where(or_(*clauses))
    if status is not None:
        query = query.where(Order.status == status.value)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    order_by = {
        "-created": (col(Order.created_at).desc(), col(Order.id).desc()),
        "created": (col(Order.created_at), col(Order.id)),
        "due": (col(Order.due_at), col(Order.id)),
        "-due": (col(Order.due_at).desc(), col(Order.id).desc()),
    }.get(sort)
    if order_by is None:
        raise InvalidInput("sort is one of -created, created, due, -due", field="sort")
    rows = session.exec(query.order_by(*order_by).offset(offset).limit(limit)).all()
    return list(rows), count


def _check_times(release: dt.datetime, due: dt.datetime, now: dt.datetime) -> None:
    if due <= release:
        raise InvalidInput("due_at must be after release_at", field="due_at")
    if due <= now:
        raise InvalidInput("due_at is in the past", field="due_at")
    if due - now > MAX_LEAD:
        raise InvalidInput("due_at is more than a year ahead", field="due_at")


def _check_operations(session: Session, operations: list[OperationCreate]) -> None:
    for i, op in enumerate(operations):
        check_process_materials(
            session=session,
            process_key=op.process_key,
            materials=[op.material_key],
            process_field=f"operations[{i}].process_key",
            material_field=f"operations[{i}].material_key",
        )


def _add_operations(session: Session, order_id: int, operations: list[OperationCreate]) -> None:
    for seq, op in enumerate(operations, start=1):
        session.add(Operation.model_validate(op, update={"order_id": order_id, "seq": seq}))


def check_draft(*, session: Session, data: OrderCreate, now: dt.datetime) -> None:
    """Every rule a new order must meet (times, soft-due price, each operation's process
    and material); a 422 naming the field. Used by orders and by instant quotes."""
    _check_times(as_utc(data.release_at), as_utc(data.due_at), now)
    if data.due_kind == DueKind.soft and data.tardiness_fen_per_hour <= 0:
        raise InvalidInput(
            "a soft due time needs a tardiness price", field="tardiness_fen_per_hour"
        )
    _check_operations(session, data.operations)


def create_order(*, session: Session, user: User, data: OrderCreate, commit: bool = True) -> Order:
    begin_write(session)
    if not user.has_role(Role.buyer):
        raise PermissionDenied("only buyer organizations post orders")
    check_draft(session=session, data=data, now=utcnow())
    release, due = as_utc(data.release_at), as_utc(data.due_at)
    org = session.get(Organization, user.org_id)
    assert org is not None
    order = Order.model_validate(
        data.model_dump(exclude={"operations"}),
        update={
            "buyer_org_id": user.org_id,
            "created_by_user_id": user.id,
            "release_at": release,
            "due_at": due,
            "delivery_lat": data.delivery_lat if data.delivery_lat is not None else org.lat,
            "delivery_lon": data.delivery_lon if data.delivery_lon is not None else org.lon,
        },
    )
    session.add(order)
    session.flush()
    assert order.id is not None
    _add_operations(session, order.id, data.operations)
    timeline.record_event(
        session, order_id=order.id, state=OrderStatus.draft.value, user_id=user.id
    )
    if commit:
        session.commit()
        session.refresh(order)
    else:
        session.flush()
    return order


def update_order(*, session: Session, user: User, order_id: int, data: OrderUpdate) -> Order:
    begin_write(session)
    order = get_own_order_or_raise(session=session, user=user, order_id=order_id)
    if order.status != OrderStatus.draft.value:
        raise InvalidTransition("only a draft order can be changed", field="status")
    changes = data.model_dump(exclude_unset=True, exclude={"operations"})
    for name in ("title", "release_at", "due_at", "due_kind", "tardiness_fen_per_hour"):
        if name in changes and changes[name] is None:
            raise InvalidInput(f"{name} cannot be cleared", field=name)
    release = as_utc(changes.get("release_at", order.release_at))
    due = as_utc(changes.get("due_at", order.due_at))
    _check_times(release, due, utcnow())
    changes["release_at"], changes["due_at"] = release, due
    due_kind = changes.get("due_kind", order.due_kind)
    if (
        due_kind == DueKind.soft
        and changes.get("tardiness_fen_per_hour", order.tardiness_fen_per_hour) <= 0
    ):
        raise InvalidInput(
            "a soft due time needs a tardiness price", field="tardiness_fen_per_hour"
        )
    if data.operations is not None:
        _check_operations(session, data.operations)
        session.execute(delete(Operation).where(col(Operation.order_id) == order_id))
        _add_operations(session, order_id, data.operations)
    order.sqlmodel_update(changes)
    order.updated_at = utcnow()
    session.add(order)
    session.commit()
    session.refresh(order)
    return order


def open_order(*, session: Session, user: User, order_id: int, note: str = "") -> Order:
    """Put a draft on the market: from now on the matcher and quotes see it. The
    note (e.g. which quote option the buyer took) goes on the timeline."""
    begin_write(session)
    order = get_own_order_or_raise(session=session, user=user, order_id=order_id)
    if order.status != OrderStatus.draft.value:
        raise InvalidTransition(
            f"an order in state {order.status} cannot be opened", field="status"
        )
    if as_utc(order.due_at) <= utcnow():
        raise InvalidInput("due_at is in the past", field="due_at")
    set_status(session, order, OrderStatus.open, user_id=user.id, note=note)
    session.commit()
    session.refresh(order)
    return order


def set_status(
    session: Session,
    order: Order,
    status: OrderStatus,
    *,
    user_id: int | None = None,
    note: str = "",
) -> None:
    """The only writer of ``Order.status``: the new status and its timeline line
    (flush left to the command)."""
    assert order.id is not None
    order.status = status
    order.updated_at = utcnow()
    session.add(order)
    timeline.record_event(
        session, order_id=order.id, state=status.value, note=note, user_id=user_id
    )


def sync_status(
    session: Session, *, order_id: int, user_id: int | None = None, note: str = ""
) -> OrderStatus | None:
    """Derive an open order's status from its bookings, in the transaction of the
    booking change that moved it: completed once every step is done, in progress once
    any step started, matched while every step has a proposal or a booking, otherwise
    open (a step is back in the pool). Drafts, cancelled and completed orders stay."""
    return sync_statuses(session, order_ids=[order_id], user_id=user_id, note=note).get(order_id)


def sync_statuses(
    session: Session, *, order_ids: Sequence[int | None], user_id: int | None = None,
    note: str = "",
) -> dict[int, OrderStatus]:  # fmt: skip
    """:func:`sync_status` for many orders in three queries (a match run's batch)."""
    ids = sorted({i for i in order_ids if i is not None})
    if not ids:
        return {}
    session.flush()
    rows = session.exec(select(Order).where(col(Order.id).in_(ids))).all()
    steps: dict[int, set[int]] = defaultdict(set)
    for order_id, step_id in session.exec(
        select(Operation.order_id, Operation.id).where(col(Operation.order_id).in_(ids))
    ).all():
        if step_id is not None:
            steps[order_id].add(step_id)
    live: dict[int, dict[int | None, str]] = defaultdict(dict)
    for oid, sid, state in session.exec(
        select(Booking.order_id, Booking.operation_id, Booking.state).where(
            col(Booking.order_id).in_(ids),
            col(Booking.state).in_((BookingState.proposed.value, *HELD_STATES)),
        )
    ).all():
        if oid is not None:
            live[oid][sid] = state
    out: dict[int, OrderStatus] = {}
    events = []
    now = utcnow()
    for order in rows:
        assert order.id is not None
        if order.status in SETTLED:
            continue
        status = _derived_status(steps[order.id], live[order.id])
        if status != order.status:
            why = note
            if status == OrderStatus.open and not why:
                why = "a step is back in the pool for matching"
            # set_status for many: the timeline lines go in bulk
            order.status, order.updated_at = status, now
            session.add(order)
            events.append(
                {"order_id": order.id, "state": status.value, "note": why, "user_id": user_id}
            )
        out[order.id] = status
    session.flush()
    timeline.record_events(session, events)
    return out


def _derived_status(steps: set[int], live: dict[int | None, str]) -> OrderStatus:
    if steps and all(live.get(s) == BookingState.done for s in steps):
        return OrderStatus.completed
    if any(state in STARTED for state in live.values()):
        return OrderStatus.in_progress
    if steps and all(s in live for s in steps):
        return OrderStatus.matched
    return OrderStatus.open


def order_timeline(*, session: Session, user: User, order_id: int) -> list[OrderEventPublic]:
    """The order's states with their times. The buyer sees everything; an owner the
    order's own states and the events of the bookings on its machines, never other
    owners' bookings, their reasons or the buyer's dispute notes on them."""
    order = get_order_or_raise(session=session, user=user, order_id=order_id)
    query = select(OrderEvent).where(OrderEvent.order_id == order_id)
    if not is_admin(user) and order.buyer_org_id != user.org_id:
        own_bookings = (
            select(Booking.id)
            .join(Machine, col(Machine.id) == Booking.machine_id)
            .where(Booking.order_id == order_id, Machine.owner_org_id == user.org_id)
        )
        query = query.where(
            or_(col(OrderEvent.booking_id).is_(None), col(OrderEvent.booking_id).in_(own_bookings))
        )
    events = session.exec(query.order_by(col(OrderEvent.at), col(OrderEvent.id))).all()
    return [OrderEventPublic.model_validate(e) for e in events]
