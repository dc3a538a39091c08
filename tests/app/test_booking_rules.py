"""Rules found in review: who sees bookings, who pays for a late cancellation, and an
order's progress with its bookings."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.bookings import flows as booking_flows
from app.config import Settings
from app.errors import InvalidTransition
from app.money.provider import PaymentsClient
from app.orders import flows as order_flows
from models import Operation, Order, OrderStatus, Organization, Payment, Role
from tests.factories import (
    auth,
    hours_from_now,
    make_booking,
    make_cluster,
    make_machine,
    make_user,
)
from tests.money_fixtures import Market, make_service_booking, market, money_stub_url, provider  # noqa: F401


def test_operator_sees_no_booking_of_another_org(
    client: TestClient, session: Session, settings: Settings
) -> None:
    operator = make_user(session, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session, roles=(Role.buyer,))
    machine = make_machine(session, owner=owner, cluster_id=cluster.id)
    booking = make_booking(session, machine=machine, org_id=buyer.org_id, start=hours_from_now(5),
                           end=hours_from_now(7), price_fen=12345)  # fmt: skip
    h = auth(settings, operator)
    assert client.get(f"/api/v1/bookings/{booking.id}", headers=h).status_code == 404
    assert client.get(f"/api/v1/bookings/{booking.id}/payments", headers=h).status_code == 404
    assert client.get("/api/v1/bookings", headers=h).json()["count"] == 0


def test_owner_cancelling_late_refunds_the_whole_deposit(
    session: Session, market: Market, provider: PaymentsClient
) -> None:
    from models.booking import LeaseCreate

    assert market.machine.id is not None
    lease = booking_flows.create_lease(session=session, user=market.buyer, payments=provider,
                                  data=LeaseCreate(machine_id=market.machine.id, start_at=hours_from_now(2),
                                                   end_at=hours_from_now(5)))  # fmt: skip
    assert lease.id is not None
    booking_flows.transition_booking(
        session=session, user=market.owner, booking_id=lease.id, action="cancel", payments=provider
    )
    rows = session.exec(
        select(Payment).where(Payment.booking_id == lease.id).order_by(col(Payment.id))
    ).all()
    deposit, refund = rows[0], rows[-1]
    assert (deposit.kind, refund.kind) == ("deposit", "refund")
    assert refund.amount_fen == deposit.amount_fen and refund.purpose == "cancel"


def test_order_progresses_with_its_bookings_and_cannot_be_cancelled_once_started(
    session: Session, market: Market, provider: PaymentsClient
) -> None:
    booking = make_service_booking(session, market, price_fen=50_000)
    order = Order(buyer_org_id=market.buyer.org_id, title="one step", release_at=hours_from_now(1),
                  due_at=hours_from_now(200), status=OrderStatus.matched)  # fmt: skip
    session.add(order)
    session.flush()
    assert order.id is not None
    operation = Operation(order_id=order.id, seq=1, process_key="milling_3axis", material_key="aluminium",
                          std_duration_min=60)  # fmt: skip
    session.add(operation)
    session.flush()
    booking.order_id, booking.operation_id = order.id, operation.id
    session.add(booking)
    session.flush()
    assert booking.id is not None and booking.order_id is not None
    for action in ("accept", "start"):
        booking_flows.transition_booking(
            session=session,
            user=market.owner,
            booking_id=booking.id,
            action=action,
            payments=provider,
        )
    session.refresh(order)
    assert order.status == "in_progress"
    try:
        order_flows.cancel_order(session=session, user=market.buyer, order_id=booking.order_id)
        raise AssertionError("an order at work must not be cancellable")
    except InvalidTransition:
        pass
    booking_flows.transition_booking(
        session=session,
        user=market.owner,
        booking_id=booking.id,
        action="complete",
        payments=provider,
    )
    session.refresh(order)
    assert order.status == "completed"
