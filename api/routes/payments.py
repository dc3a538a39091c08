"""Money for the UI: a booking's or order's payments, an owner's earnings, a buyer's
statement, delivery acceptance and disputes. Scoped server-side by the services."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, Id, Limit, Offset, SessionDep, SessionRoute
from app.bookings import delivery as booking_delivery
from app.money import queries as money_queries
from models.payment import BookingMoney, DisputeCreate, DisputeResolve, Earnings, Statement

router = APIRouter(tags=["payments"], route_class=SessionRoute)


@router.get("/bookings/{booking_id}/payments", response_model=BookingMoney)
def booking_payments(session: SessionDep, user: CurrentUser, booking_id: Id) -> BookingMoney:
    """A booking's (service or lease) payments and money status."""
    return booking_delivery.booking_money(session=session, user=user, booking_id=booking_id)


@router.get("/orders/{order_id}/payments", response_model=list[BookingMoney])
def order_payments(session: SessionDep, user: CurrentUser, order_id: Id) -> list[BookingMoney]:
    """The money of each of an order's bookings the caller may see."""
    return booking_delivery.order_money(session=session, user=user, order_id=order_id)


@router.post(
    "/bookings/{booking_id}/delivery/accept",
    response_model=BookingMoney,
    responses={409: {"description": "not delivered, or already settled"}},
)
def accept_delivery(session: SessionDep, user: CurrentUser, booking_id: Id) -> BookingMoney:
    """The buyer accepts a delivered service booking: the price is captured and the owner paid."""
    return booking_delivery.accept_delivery(session=session, user=user, booking_id=booking_id)


@router.post(
    "/bookings/{booking_id}/delivery/dispute",
    response_model=BookingMoney,
    responses={409: {"description": "not delivered, settled, or the claim window closed"}},
)
def open_dispute(
    session: SessionDep, user: CurrentUser, booking_id: Id, data: DisputeCreate
) -> BookingMoney:
    """The buyer disputes a delivery within the claim window; the money stays held."""
    return booking_delivery.open_dispute(
        session=session, user=user, booking_id=booking_id, note=data.note
    )


@router.post(
    "/bookings/{booking_id}/delivery/resolve",
    response_model=BookingMoney,
    responses={403: {"description": "only the platform resolves disputes"}},
)
def resolve_dispute(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Id,
    data: DisputeResolve,
) -> BookingMoney:
    """Admin: refund all, part, or nothing of a disputed delivery."""
    return booking_delivery.resolve_dispute(
        session=session, user=user, booking_id=booking_id, refund_fen=data.refund_fen,
        note=data.note,
    )  # fmt: skip


@router.get("/payments/earnings", response_model=Earnings)
def earnings(
    session: SessionDep, user: CurrentUser, limit: Limit = 50, offset: Offset = 0
) -> Earnings:
    """The caller's owner org: earned, payable, paid out, and its payouts."""
    return money_queries.owner_earnings(session=session, user=user, limit=limit, offset=offset)


@router.get("/payments/statement", response_model=Statement)
def statement(
    session: SessionDep, user: CurrentUser, limit: Limit = 100, offset: Offset = 0
) -> Statement:
    """The caller's org as a buyer: net paid, held, and its ledger lines."""
    return money_queries.buyer_statement(session=session, user=user, limit=limit, offset=offset)
