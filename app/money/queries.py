"""What the UI reads about money: a booking's payment status, owner earnings and the
buyer's statement."""

from __future__ import annotations

import logging

from sqlalchemy import func as sa_func
from sqlmodel import Session, col, select

from app.errors import PermissionDenied
from app.money.ledger import (
    REVENUE,
    account_balance,
    buyer_account,
    paid_out_account,
    payable_account,
)
from app.money.planning import FAILED, PENDING, SUCCEEDED, K, live, payments_of, settlement
from models import Booking, Role, User
from models.payment import (
    BookingMoney,
    Earnings,
    LedgerEntry,
    LedgerLine,
    LedgerTransaction,
    Payment,
    PaymentPublic,
    Statement,
)

log = logging.getLogger("capshare.money")

# --------------------------------------------------------------------------------------------
# Reads for the UI
# --------------------------------------------------------------------------------------------


def _money_status(booking: Booking, payments: list[Payment]) -> str:
    if not payments:
        return "none"
    hold = live(payments, K.authorize)
    if hold is not None:
        settle = settlement(payments, hold)
        if settle is not None:
            if settle.status == PENDING:
                return "settling"
            return "voided" if settle.kind == K.void.value else "captured"
        if hold.disputed_at is not None:
            return "disputed"
        return "authorized" if hold.status == SUCCEEDED else "authorizing"
    if any(p.kind == K.authorize.value and p.status == FAILED for p in payments):
        return "payment_failed"
    deposit = live(payments, K.deposit)
    if deposit is not None:
        if live(payments, K.refund) is not None:
            return "settled" if all(p.status != PENDING for p in payments) else "settling"
        return "deposit_held" if deposit.status == SUCCEEDED else "deposit_pending"
    if any(p.kind == K.deposit.value and p.status == FAILED for p in payments):
        return "deposit_failed"
    return "pending" if any(p.status == PENDING for p in payments) else "settled"


def booking_money(session: Session, booking: Booking) -> BookingMoney:
    assert booking.id is not None
    payments = payments_of(session, booking.id)
    captured = sum(p.amount_fen for p in payments
                   if p.kind in (K.capture.value, K.charge.value) and p.status == SUCCEEDED)  # fmt: skip
    refunded = sum(
        p.amount_fen for p in payments if p.kind == K.refund.value and p.status == SUCCEEDED
    )
    return BookingMoney(
        booking_id=booking.id,
        kind=booking.kind,
        money_status=_money_status(booking, payments),
        price_fen=booking.price_fen,
        captured_fen=captured,
        refunded_fen=refunded,
        payments=[PaymentPublic.model_validate(p) for p in payments],
    )


def owner_earnings(*, session: Session, user: User, limit: int = 50, offset: int = 0) -> Earnings:
    if not user.has_role(Role.owner):
        raise PermissionDenied("earnings are for owner organizations")
    org = user.org_id
    payable = account_balance(session, payable_account(org))
    paid = account_balance(session, paid_out_account(org))
    credited = select(LedgerEntry.transaction_id).where(
        LedgerEntry.account == payable_account(org), col(LedgerEntry.amount_fen) > 0
    )
    fee = int(
        session.exec(
            select(sa_func.coalesce(sa_func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.account == REVENUE, col(LedgerEntry.transaction_id).in_(credited)
            )
        ).one()
    )  # the platform's share of the charges that paid this owner
    payouts = session.exec(
        select(Payment)
        .where(Payment.kind == K.payout.value, Payment.payee_org_id == org)
        .order_by(col(Payment.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return Earnings(
        org_id=org, earned_fen=payable + paid, payable_fen=payable, paid_out_fen=paid,
        gross_fen=payable + paid + fee, fee_fen=fee,
        payouts=[PaymentPublic.model_validate(p) for p in payouts],
    )  # fmt: skip


def buyer_statement(
    *, session: Session, user: User, limit: int = 100, offset: int = 0
) -> Statement:
    org = user.org_id
    account = buyer_account(org)
    rows = session.exec(
        select(LedgerEntry, LedgerTransaction)
        .join(LedgerTransaction, col(LedgerTransaction.id) == LedgerEntry.transaction_id)
        .where(LedgerEntry.account == account)
        .order_by(col(LedgerEntry.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    holds = session.exec(
        select(Payment).where(
            Payment.payer_org_id == org,
            Payment.kind == K.authorize.value,
            Payment.status == SUCCEEDED,
        )
    ).all()
    held = 0
    for hold in holds:
        if settlement(payments_of(session, hold.booking_id), hold) is None:
            held += hold.amount_fen
    lines = [
        LedgerLine(
            transaction_id=t.id,  # type: ignore[arg-type]
            kind=t.kind,
            booking_id=t.booking_id,
            account=e.account,
            amount_fen=e.amount_fen,
            currency=e.currency,
            at=t.created_at,
        )  # fmt: skip
        for e, t in rows
    ]
    return Statement(
        org_id=org, paid_fen=-account_balance(session, account), held_fen=held, lines=lines
    )
