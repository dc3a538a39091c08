"""Payment rows written with the state change that makes them due (flush only).

The money a booking transition makes due is planned here, inside the command's
write transaction, which also defers the ``payments.drive`` task; the task
(``app.money.driver``) sends it to the provider after the commit."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlmodel import Session, col, select

from app import tasks
from app.config import get_settings
from app.money.ledger import fee_fen
from models import Booking, BookingKind, Machine, utcnow
from models.base import as_utc
from models.payment import (
    Payment,
    PaymentKind,
    PaymentStatus,
)

log = logging.getLogger("capshare.money")

PROVIDER = "capshare-pay"
K = PaymentKind
PENDING = PaymentStatus.pending.value
SUCCEEDED = PaymentStatus.succeeded.value
FAILED = PaymentStatus.failed.value
SKIPPED = PaymentStatus.skipped.value
DEAD = (FAILED, SKIPPED)
DRIVE_TASK = "payments.drive"  # a booking's pending payments, to the provider (app.jobs)


# --------------------------------------------------------------------------------------------
# Planning: Payment rows written with the state change that makes them due (flush only)
# --------------------------------------------------------------------------------------------


def new_payment(
    session: Session,
    booking: Booking,
    kind: PaymentKind,
    amount_fen: int,
    *,
    purpose: str = "",
    parent: Payment | None = None,
    payee_org_id: int | None = None,
) -> Payment:
    assert booking.id is not None
    payment = Payment(
        booking_id=booking.id,
        order_id=booking.order_id,
        parent_id=parent.id if parent is not None else None,
        kind=kind.value,
        purpose=purpose,
        idempotency_key=f"capshare-{kind.value}-b{booking.id}-{uuid.uuid4().hex}",
        amount_fen=amount_fen,
        currency=booking.currency,
        payer_org_id=booking.org_id,
        payee_org_id=payee_org_id,
    )
    session.add(payment)
    session.flush()
    # the provider is called by a task after the commit, never inside the command
    tasks.defer(
        session, DRIVE_TASK, booking_id=booking.id, lock=f"payments:booking:{booking.id}",
        queueing_lock=f"payments.drive:booking:{booking.id}",
    )  # fmt: skip
    return payment


def _owner_org_id(session: Session, booking: Booking) -> int:
    machine = session.get(Machine, booking.machine_id)
    assert machine is not None
    return machine.owner_org_id


def payments_of(session: Session, booking_id: int) -> list[Payment]:
    return list(
        session.exec(
            select(Payment).where(Payment.booking_id == booking_id).order_by(col(Payment.id))
        ).all()
    )


def live(payments: list[Payment], kind: PaymentKind) -> Payment | None:
    """The latest payment of a kind that has not failed."""
    for p in reversed(payments):
        if p.kind == kind.value and p.status not in DEAD:
            return p
    return None


def settlement(payments: list[Payment], hold: Payment) -> Payment | None:
    """The capture or void that settles a hold, if one is pending or done."""
    for p in payments:
        if (
            p.parent_id == hold.id
            and p.kind in (K.capture.value, K.void.value)
            and p.status not in DEAD
        ):
            return p
    return None


def plan_booking_payments(
    session: Session,
    *,
    booking: Booking,
    action: str,
    now: dt.datetime | None = None,
    by_customer: bool = True,
) -> list[Payment]:
    """Write the payments a booking transition makes due (``create`` for a new lease).

    Called by ``app.bookings.service`` inside its write transaction, before its commit. A late
    cancellation costs the customer a fee only when the customer cancels; when the
    owner cancels, the customer gets everything back."""
    settings = get_settings()
    now = now or utcnow()
    assert booking.id is not None
    payments = payments_of(session, booking.id)
    owner = _owner_org_id(session, booking)
    price = booking.price_fen
    planned: list[Payment] = []
    late = by_customer and now > as_utc(booking.start_at) - dt.timedelta(
        hours=settings.free_cancel_hours
    )
    late_fee = fee_fen(price, settings.late_cancel_fee_bps)
    if booking.kind == BookingKind.service.value:
        hold = live(payments, K.authorize)
        if action == "accept" and hold is None and price > 0:
            planned.append(
                new_payment(
                    session, booking, K.authorize, price, purpose="price", payee_org_id=owner
                )
            )
        elif action == "cancel" and hold is not None and settlement(payments, hold) is None:
            if late and late_fee > 0:
                planned.append(
                    new_payment(
                        session,
                        booking,
                        K.capture,
                        late_fee,
                        purpose="cancel_fee",
                        parent=hold,
                        payee_org_id=owner,
                    )  # fmt: skip
                )
            else:
                planned.append(
                    new_payment(session, booking, K.void, price, purpose="cancel", parent=hold)
                )
    else:
        deposit = live(payments, K.deposit)
        if action == "create":
            amount = -(-price * settings.lease_deposit_bps // 10_000)
            if amount > 0:
                planned.append(new_payment(session, booking, K.deposit, amount, purpose="deposit"))
        elif action == "complete":
            if price > 0 and live(payments, K.charge) is None:
                planned.append(
                    new_payment(
                        session, booking, K.charge, price, purpose="hours", payee_org_id=owner
                    )
                )
            if deposit is not None and live(payments, K.refund) is None:
                planned.append(
                    new_payment(
                        session,
                        booking,
                        K.refund,
                        deposit.amount_fen,
                        purpose="deposit_release",
                        parent=deposit,
                    )  # fmt: skip
                )
        elif action == "cancel" and deposit is not None and live(payments, K.refund) is None:
            kept = min(late_fee, deposit.amount_fen) if late else 0
            planned.append(
                new_payment(
                    session,
                    booking,
                    K.refund,
                    deposit.amount_fen - kept,
                    purpose="cancel_fee" if kept else "cancel",
                    parent=deposit,
                    payee_org_id=owner,
                )  # fmt: skip
            )
    return planned


def plan_payout(session: Session, source: Payment, org_id: int, amount: int) -> None:
    if amount <= 0:
        return
    session.add(
        Payment(
            booking_id=source.booking_id,
            order_id=source.order_id,
            kind=K.payout.value,
            purpose=f"payout:{source.kind}",
            idempotency_key=f"capshare-payout-b{source.booking_id}-{uuid.uuid4().hex}",
            amount_fen=amount,
            currency=source.currency,
            payee_org_id=org_id,
        )
    )
    session.flush()
