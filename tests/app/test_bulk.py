"""Rows written in bulk (app/bulk.py): defaults filled, ids in order, collisions refused."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.bookings.service import ProposalRow, insert_proposals
from app.bulk import insert_rows
from models import Booking, Operation, Role
from tests.factories import hours_from_now, make_machine, make_user
from tests.factories_matching import make_order


def _row(
    machine_id: int, order_id: int, operation_id: int, org_id: int, start: float
) -> ProposalRow:
    return ProposalRow(
        machine_id=machine_id, order_id=order_id, operation_id=operation_id, org_id=org_id,
        start_at=hours_from_now(start), end_at=hours_from_now(start + 2), price_fen=100,
        currency="CNY", reason="bulk", created_by_user_id=None,
    )  # fmt: skip


def _steps(session: Session, order_id: int | None) -> list[int]:
    rows = session.exec(
        select(Operation.id).where(Operation.order_id == order_id).order_by(col(Operation.seq))
    ).all()
    return [i for i in rows if i is not None]


def test_ids_come_back_in_order_with_the_defaults_filled(session: Session) -> None:
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session)
    machine = make_machine(session, owner=owner)
    order = make_order(session, buyer=buyer, operations=[{}, {}, {}])
    ops = _steps(session, order.id)
    assert machine.id and order.id
    rows = [_row(machine.id, order.id, op, buyer.org_id, 2 + 3 * k) for k, op in enumerate(ops)]
    ids = insert_proposals(session, rows)
    got = {b.id: b for b in session.exec(select(Booking).where(col(Booking.id).in_(ids))).all()}
    assert [got[i].operation_id for i in ids] == ops  # the ids are the rows', in order
    assert all(got[i].state == "proposed" and got[i].kind == "service" for i in ids)
    assert len(set(ids)) == 3
    assert got[ids[0]].created_at is not None and got[ids[0]].started_at is None
    assert insert_rows(session, Booking, [], ids=True) == []  # nothing: no statement


def test_overlapping_proposals_are_refused_by_postgresql(session: Session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite serializes writers instead of an exclusion constraint")
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session)
    machine = make_machine(session, owner=owner)
    order = make_order(session, buyer=buyer, operations=[{}, {}])
    a, b = _steps(session, order.id)
    assert machine.id and order.id
    with pytest.raises(IntegrityError):  # the COPY's violation, said as SQLAlchemy says it
        insert_proposals(
            session,
            [
                _row(machine.id, order.id, a, buyer.org_id, 2),
                _row(machine.id, order.id, b, buyer.org_id, 3),
            ],
        )
    session.rollback()
