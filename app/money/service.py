"""Money flows bound to the booking lifecycle, the ledger, the webhook inbox and the
reconciler.

Service booking (an order's operation, the owner's staff run it)::

    owner accepts ──▶ authorize (hold the price)
    buyer accepts delivery, or the claim window passes ──▶ capture ──▶ payout
        fee (platform_fee_bps) → platform_revenue, the rest → owner_payable → paid out
    buyer disputes within the window ──▶ money stays held until an admin resolves:
        refund all (void), refund part (capture the rest), or release (capture all)
    cancelled ≥ free_cancel_hours before start ──▶ void; later ──▶ capture the
        late_cancel_fee_bps share of the price for the owner, the rest released

Lease (the renter's staff run the machine)::

    created ──▶ deposit (lease_deposit_bps of the price, charged into escrow)
    completed ──▶ charge the booked hours ──▶ payout; refund the deposit
    cancelled ──▶ refund the deposit (minus the late fee, which goes to the owner)

Crash safety: a state change that makes money due writes ``Payment`` rows with their
idempotency keys in the same commit (``plan_*``). ``drive_payments`` then calls the
provider outside any write transaction and records the result and its ledger transaction
in one commit. A crash between the call and that commit leaves the row ``pending``; the
next drive, a webhook, or ``reconcile_payments`` finishes it with the same key.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import func as sa_func
from sqlmodel import Session, col, select

from app.config import Settings, get_settings
from app.db import begin_write
from app.errors import InvalidInput, InvalidTransition, MarketplaceError, PermissionDenied
from app.money.provider import (
    SIGNATURE_HEADER,
    Event,
    InvalidWebhookSignature,
    PaymentConflict,
    PaymentDeclined,
    PaymentError,
    PaymentIntent,
    PaymentInvalidRequest,
    PaymentNotFound,
    PaymentsClient,
    build_payments_client,
    parse_webhook_event,
)
from models import Booking, BookingKind, BookingState, Machine, OrderEvent, Role, User, utcnow
from models.base import as_utc
from models.payment import (
    BookingMoney,
    Earnings,
    LedgerEntry,
    LedgerLine,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    PaymentKind,
    PaymentPublic,
    PaymentStatus,
    ProviderAccount,
    Statement,
)

log = logging.getLogger("capshare.money")

PROVIDER = "capshare-pay"
K = PaymentKind
PENDING = PaymentStatus.pending.value
SUCCEEDED = PaymentStatus.succeeded.value
FAILED = PaymentStatus.failed.value
SKIPPED = PaymentStatus.skipped.value
DEAD = (FAILED, SKIPPED)


class InvalidWebhook(MarketplaceError):
    """A webhook whose signature is missing, stale or wrong, or whose body is no event."""

    status_code = 400


class LedgerImbalance(MarketplaceError):
    """A ledger transaction whose entries do not sum to zero (a bug, never input)."""

    status_code = 500


# --------------------------------------------------------------------------------------------
# The provider client
# --------------------------------------------------------------------------------------------


@lru_cache
def _client_for(base_url: str, api_key: str, timeout_s: float) -> PaymentsClient:
    return build_payments_client(base_url, api_key, timeout_s)


def get_payments_client(settings: Settings) -> PaymentsClient | None:
    """The shared client, or None when payments are not driven inline."""
    if not settings.payments_inline:
        return None
    return _client_for(
        settings.payments_base_url,
        settings.payments_api_key.get_secret_value(),
        settings.payments_timeout_s,
    )


# --------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------


def buyer_account(org_id: int) -> str:
    return f"buyer_funds:{org_id}"


def payable_account(org_id: int) -> str:
    return f"owner_payable:{org_id}"


def paid_out_account(org_id: int) -> str:
    return f"owner_paid_out:{org_id}"


ESCROW = "escrow"
REVENUE = "platform_revenue"


def post_transaction(
    session: Session,
    *,
    kind: str,
    entries: Iterable[tuple[str, int]],
    payment: Payment | None = None,
    booking_id: int | None = None,
    memo: str = "",
) -> LedgerTransaction | None:
    """Write one balanced transaction (flush only). Zero entries are dropped; a
    transaction whose entries do not sum to zero raises ``LedgerImbalance``."""
    lines = [(account, int(amount)) for account, amount in entries if amount != 0]
    if sum(amount for _, amount in lines) != 0:
        raise LedgerImbalance(f"ledger transaction {kind!r} does not balance: {lines}")
    if not lines:
        return None
    txn = LedgerTransaction(
        kind=kind,
        payment_id=payment.id if payment is not None else None,
        booking_id=booking_id
        if booking_id is not None
        else (payment.booking_id if payment else None),
        memo=memo,
    )
    session.add(txn)
    session.flush()
    assert txn.id is not None
    for account, amount in lines:
        session.add(LedgerEntry(transaction_id=txn.id, account=account, amount_fen=amount))
    session.flush()
    return txn


def account_balance(session: Session, account: str) -> int:
    total = session.exec(
        select(sa_func.coalesce(sa_func.sum(LedgerEntry.amount_fen), 0)).where(
            LedgerEntry.account == account
        )
    ).one()
    return int(total)


def account_balances(session: Session, prefix: str = "") -> dict[str, int]:
    query = select(LedgerEntry.account, sa_func.sum(LedgerEntry.amount_fen)).group_by(
        col(LedgerEntry.account)
    )
    if prefix:
        query = query.where(col(LedgerEntry.account).startswith(prefix))
    return {account: int(total) for account, total in session.exec(query).all()}


def unbalanced_transactions(session: Session) -> list[int]:
    rows = session.exec(
        select(LedgerEntry.transaction_id)
        .group_by(col(LedgerEntry.transaction_id))
        .having(sa_func.sum(LedgerEntry.amount_fen) != 0)
    ).all()
    return [int(r) for r in rows]


def fee_fen(amount_fen: int, bps: int) -> int:
    """A share in basis points, rounded down to the fen."""
    return amount_fen * bps // 10_000


# --------------------------------------------------------------------------------------------
# Planning: Payment rows written with the state change that makes them due (flush only)
# --------------------------------------------------------------------------------------------


def _new_payment(
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
    return payment


def _owner_org_id(session: Session, booking: Booking) -> int:
    machine = session.get(Machine, booking.machine_id)
    assert machine is not None
    return machine.owner_org_id


def _payments_of(session: Session, booking_id: int) -> list[Payment]:
    return list(
        session.exec(
            select(Payment).where(Payment.booking_id == booking_id).order_by(col(Payment.id))
        ).all()
    )


def _live(payments: list[Payment], kind: PaymentKind) -> Payment | None:
    """The latest payment of a kind that has not failed."""
    for p in reversed(payments):
        if p.kind == kind.value and p.status not in DEAD:
            return p
    return None


def _settlement(payments: list[Payment], hold: Payment) -> Payment | None:
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
    payments = _payments_of(session, booking.id)
    owner = _owner_org_id(session, booking)
    price = booking.price_fen
    planned: list[Payment] = []
    late = by_customer and now > as_utc(booking.start_at) - dt.timedelta(
        hours=settings.free_cancel_hours
    )
    late_fee = fee_fen(price, settings.late_cancel_fee_bps)
    if booking.kind == BookingKind.service.value:
        hold = _live(payments, K.authorize)
        if action == "accept" and hold is None and price > 0:
            planned.append(
                _new_payment(
                    session, booking, K.authorize, price, purpose="price", payee_org_id=owner
                )
            )
        elif action == "cancel" and hold is not None and _settlement(payments, hold) is None:
            if late and late_fee > 0:
                planned.append(
                    _new_payment(
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
                    _new_payment(session, booking, K.void, price, purpose="cancel", parent=hold)
                )
    else:
        deposit = _live(payments, K.deposit)
        if action == "create":
            amount = -(-price * settings.lease_deposit_bps // 10_000)
            if amount > 0:
                planned.append(_new_payment(session, booking, K.deposit, amount, purpose="deposit"))
        elif action == "complete":
            if price > 0 and _live(payments, K.charge) is None:
                planned.append(
                    _new_payment(
                        session, booking, K.charge, price, purpose="hours", payee_org_id=owner
                    )
                )
            if deposit is not None and _live(payments, K.refund) is None:
                planned.append(
                    _new_payment(
                        session,
                        booking,
                        K.refund,
                        deposit.amount_fen,
                        purpose="deposit_release",
                        parent=deposit,
                    )  # fmt: skip
                )
        elif action == "cancel" and deposit is not None and _live(payments, K.refund) is None:
            kept = min(late_fee, deposit.amount_fen) if late else 0
            planned.append(
                _new_payment(
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


def _plan_payout(session: Session, source: Payment, org_id: int, amount: int) -> None:
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


# --------------------------------------------------------------------------------------------
# Recording a provider result: status, ledger, follow-ups — one commit
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | pending
    intent_id: str | None = None
    object_id: str | None = None
    failure_code: str = ""


def _post_ledger(session: Session, p: Payment, settings: Settings) -> None:
    """The ledger transaction of a payment that just succeeded, and its follow-ups."""
    amount = p.amount_fen
    buyer = buyer_account(p.payer_org_id) if p.payer_org_id is not None else None
    if p.kind in (K.authorize.value, K.void.value):
        return  # a hold moves no money
    if p.kind == K.deposit.value:
        assert buyer is not None
        post_transaction(
            session, kind="deposit", payment=p, entries=[(buyer, -amount), (ESCROW, amount)]
        )
        return
    if p.kind in (K.capture.value, K.charge.value):
        assert buyer is not None and p.payee_org_id is not None
        fee = 0 if p.purpose == "cancel_fee" else fee_fen(amount, settings.platform_fee_bps)
        owner_share = amount - fee
        post_transaction(
            session,
            kind=p.kind,
            memo=p.purpose,
            payment=p,
            entries=[
                (buyer, -amount),
                (REVENUE, fee),
                (payable_account(p.payee_org_id), owner_share),
            ],
        )
        _plan_payout(session, p, p.payee_org_id, owner_share)
        return
    if p.kind == K.refund.value:
        parent = session.get(Payment, p.parent_id) if p.parent_id else None
        assert parent is not None and buyer is not None
        if parent.kind == K.deposit.value:
            kept = parent.amount_fen - amount
            entries = [(ESCROW, -parent.amount_fen), (buyer, amount)]
            if kept:
                assert p.payee_org_id is not None
                entries.append((payable_account(p.payee_org_id), kept))
            post_transaction(session, kind="refund", memo=p.purpose, payment=p, entries=entries)
            if kept and p.payee_org_id is not None:
                _plan_payout(session, p, p.payee_org_id, kept)
        else:
            post_transaction(
                session, kind="refund", payment=p, entries=[(REVENUE, -amount), (buyer, amount)]
            )
        return
    if p.kind == K.payout.value:
        assert p.payee_org_id is not None
        post_transaction(
            session,
            kind="payout",
            payment=p,
            entries=[
                (payable_account(p.payee_org_id), -amount),
                (paid_out_account(p.payee_org_id), amount),
            ],
        )
        return
    raise LedgerImbalance(f"unknown payment kind {p.kind!r}")


def _mark(session: Session, p: Payment, outcome: Outcome, settings: Settings) -> bool:
    """Apply an outcome to a locked, pending payment (flush only). States never go back."""
    if p.status != PENDING or outcome.status == PENDING:
        return False
    p.provider_intent_id = outcome.intent_id or p.provider_intent_id
    p.provider_object_id = outcome.object_id or p.provider_object_id
    p.failure_code = outcome.failure_code[:60]
    p.status = outcome.status
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    if outcome.status == SUCCEEDED:
        _post_ledger(session, p, settings)
    elif outcome.status == FAILED:
        for child in session.exec(
            select(Payment).where(Payment.parent_id == p.id, Payment.status == PENDING)
        ).all():
            child.status = SKIPPED
            child.updated_at = utcnow()
            session.add(child)
    return True


def _locked(session: Session, payment_id: int) -> Payment:
    return session.exec(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def record_outcome(
    *, session: Session, payment_id: int, outcome: Outcome, settings: Settings | None = None
) -> bool:
    """Record what the provider said about a payment, with its ledger, in one commit.
    Returns False if the payment was already final (a webhook or another worker won)."""
    begin_write(session)
    p = _locked(session, payment_id)
    changed = _mark(session, p, outcome, settings or get_settings())
    session.commit()
    return changed


# --------------------------------------------------------------------------------------------
# Driving pending payments against the provider
# --------------------------------------------------------------------------------------------


def _metadata(p: Payment) -> dict[str, str]:
    return {"capshare_payment_id": str(p.id), "booking_id": str(p.booking_id), "kind": p.kind}


def _intent_outcome(p: Payment, intent: PaymentIntent) -> Outcome:
    if p.kind == K.authorize.value and intent.status in ("requires_capture", "succeeded"):
        return Outcome(SUCCEEDED, intent_id=intent.id)
    if p.kind in (K.deposit.value, K.charge.value) and intent.status == "succeeded":
        return Outcome(SUCCEEDED, intent_id=intent.id)
    if intent.status == "requires_payment_method" and intent.last_error_code:
        return Outcome(FAILED, intent_id=intent.id, failure_code=intent.last_error_code)
    if intent.status == "canceled" and p.kind != K.authorize.value:
        return Outcome(FAILED, intent_id=intent.id, failure_code="canceled")
    return Outcome(PENDING, intent_id=intent.id)


def _settle_outcome(p: Payment, intent: PaymentIntent) -> Outcome:
    """A capture or void judged from the hold's current state at the provider."""
    if p.kind == K.capture.value:
        if intent.status == "succeeded" and intent.amount_received_fen == p.amount_fen:
            return Outcome(SUCCEEDED, intent_id=intent.id)
        if intent.status in ("canceled", "succeeded"):
            return Outcome(FAILED, intent_id=intent.id, failure_code=f"intent_{intent.status}")
    if p.kind == K.void.value:
        if intent.status == "canceled":
            return Outcome(SUCCEEDED, intent_id=intent.id)
        if intent.status == "succeeded":
            return Outcome(FAILED, intent_id=intent.id, failure_code="intent_succeeded")
    return Outcome(PENDING, intent_id=intent.id)


def _connected_account(session: Session, payments: PaymentsClient, org_id: int) -> str:
    row = session.exec(select(ProviderAccount).where(ProviderAccount.org_id == org_id)).first()
    if row is not None:
        return row.account_id
    account = payments.create_connected_account(
        idempotency_key=f"capshare-account-org-{org_id}", metadata={"org_id": str(org_id)}
    )
    begin_write(session)
    row = session.exec(select(ProviderAccount).where(ProviderAccount.org_id == org_id)).first()
    if row is None:
        session.add(ProviderAccount(org_id=org_id, provider=PROVIDER, account_id=account.id))
    session.commit()
    return account.id


def _call_provider(
    session: Session, payments: PaymentsClient, p: Payment, parent: Payment | None
) -> Outcome:
    key = p.idempotency_key
    meta = _metadata(p)
    if p.kind in (K.authorize.value, K.deposit.value, K.charge.value):
        try:
            intent = payments.create_payment_intent(
                amount_fen=p.amount_fen,
                idempotency_key=key,
                capture_method="manual" if p.kind == K.authorize.value else "automatic",
                payment_method=p.payment_method,
                confirm=True,
                metadata=meta,
            )
        except PaymentDeclined as exc:
            raw = exc.body.get("payment_intent") or {}
            return Outcome(
                FAILED, intent_id=raw.get("id"), failure_code=exc.decline_code or "declined"
            )
        return _intent_outcome(p, intent)
    assert parent is not None or p.kind == K.payout.value
    if p.kind in (K.capture.value, K.void.value):
        assert parent is not None and parent.provider_intent_id is not None
        try:
            if p.kind == K.capture.value:
                intent = payments.capture_payment_intent(
                    parent.provider_intent_id, idempotency_key=key, amount_fen=p.amount_fen
                )
            else:
                intent = payments.cancel_payment_intent(
                    parent.provider_intent_id, idempotency_key=key, reason="requested_by_customer"
                )
        except PaymentConflict as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise
            intent = payments.get_payment_intent(parent.provider_intent_id)
        return _settle_outcome(p, intent)
    if p.kind == K.refund.value:
        assert parent is not None and parent.provider_intent_id is not None
        if p.amount_fen == 0:
            return Outcome(SUCCEEDED, intent_id=parent.provider_intent_id)
        refund = payments.create_refund(
            payment_intent=parent.provider_intent_id,
            idempotency_key=key,
            amount_fen=p.amount_fen,
            reason="requested_by_customer",
            metadata=meta,
        )
        return Outcome(SUCCEEDED, intent_id=parent.provider_intent_id, object_id=refund.id)
    if p.kind == K.payout.value:
        assert p.payee_org_id is not None
        destination = _connected_account(session, payments, p.payee_org_id)
        payout = payments.create_payout(
            destination=destination, amount_fen=p.amount_fen, idempotency_key=key, metadata=meta
        )
        return Outcome(SUCCEEDED, object_id=payout.id)
    raise InvalidInput(f"unknown payment kind {p.kind}", field="kind")


def drive_payment(*, session: Session, payments: PaymentsClient, payment_id: int) -> str:
    """Call the provider for one pending payment (same key on every attempt) and record
    the answer. Returns the payment's status afterwards."""
    settings = get_settings()
    p = session.exec(
        select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
    ).one()
    if p.status != PENDING:
        return p.status
    parent = session.get(Payment, p.parent_id) if p.parent_id else None
    if parent is not None and parent.status != SUCCEEDED:
        if parent.status in DEAD:
            assert p.id is not None
            record_outcome(
                session=session, payment_id=p.id, outcome=Outcome(SKIPPED), settings=settings
            )
            return SKIPPED
        return PENDING  # waits for its parent
    if session.in_transaction() and not session.new and not session.dirty:
        session.commit()  # end the read snapshot: no transaction stays open over the call
    try:
        outcome = _call_provider(session, payments, p, parent)
    except (PaymentNotFound, PaymentInvalidRequest) as exc:
        log.warning("payment %s refused by the provider: %s", p.id, exc)
        if exc.code == "balance_insufficient":
            return PENDING
        outcome = Outcome(FAILED, failure_code=exc.code or "invalid_request")
    except PaymentError as exc:  # provider down after retries, key still in use...
        log.warning("payment %s left pending: %s", p.id, exc)
        return PENDING
    assert p.id is not None
    record_outcome(session=session, payment_id=p.id, outcome=outcome, settings=settings)
    return outcome.status


def pending_payment_ids(session: Session, booking_id: int | None = None) -> list[int]:
    query = select(Payment.id).where(Payment.status == PENDING)
    if booking_id is not None:
        query = query.where(Payment.booking_id == booking_id)
    return [i for i in session.exec(query.order_by(col(Payment.id))).all() if i is not None]


def drive_payments(
    *, session: Session, payments: PaymentsClient, booking_id: int | None = None, passes: int = 3
) -> dict[str, int]:
    """Drive every pending payment (of one booking), oldest first; a few passes so that
    follow-ups (a payout after a capture, a refund after its deposit) go too."""
    counts: dict[str, int] = defaultdict(int)
    for _ in range(passes):
        ids = pending_payment_ids(session, booking_id)
        progressed = False
        for pid in ids:
            status = drive_payment(session=session, payments=payments, payment_id=pid)
            counts[status] += 1
            if status != PENDING:
                progressed = True
        if not progressed:
            break
    return dict(counts)


# --------------------------------------------------------------------------------------------
# Buyer / admin commands on a delivered service booking
# --------------------------------------------------------------------------------------------


def _service_hold(session: Session, booking: Booking) -> tuple[list[Payment], Payment]:
    assert booking.id is not None
    if booking.kind != BookingKind.service.value:
        raise InvalidInput("only a service booking has a delivery to accept", field="booking_id")
    if booking.state != BookingState.done.value:
        raise InvalidTransition(f"a {booking.state} booking has not been delivered", field="state")
    payments = _payments_of(session, booking.id)
    hold = _live(payments, K.authorize)
    if hold is None:
        raise InvalidTransition("this booking has no authorized payment", field="state")
    if _settlement(payments, hold) is not None:
        raise InvalidTransition("this booking's payment is already settled", field="state")
    return payments, hold


def _order_note(
    session: Session, booking: Booking, user: User | None, state: str, note: str = ""
) -> None:
    if booking.order_id is not None:
        session.add(
            OrderEvent(
                order_id=booking.order_id,
                booking_id=booking.id,
                state=state,
                note=note,
                user_id=user.id if user else None,
            )  # fmt: skip
        )


def _drive_after(session: Session, payments: PaymentsClient | None, booking_id: int) -> None:
    if payments is not None:
        drive_payments(session=session, payments=payments, booking_id=booking_id)


def accept_delivery(
    *, session: Session, user: User, booking_id: int, payments: PaymentsClient | None = None
) -> BookingMoney:
    """The buyer accepts a delivered service booking: capture, then pay the owner."""
    from app.bookings.service import get_booking_or_raise

    begin_write(session)
    booking = get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    if booking.org_id != user.org_id and not user.has_role(Role.admin):
        raise PermissionDenied("only the buyer accepts a delivery")
    _, hold = _service_hold(session, booking)
    _new_payment(session, booking, K.capture, hold.amount_fen, purpose="price", parent=hold,
                 payee_org_id=hold.payee_org_id)  # fmt: skip
    _order_note(session, booking, user, "delivery_accepted")
    session.commit()
    _drive_after(session, payments, booking_id)
    return booking_money(session=session, user=user, booking_id=booking_id)


def open_dispute(
    *, session: Session, user: User, booking_id: int, note: str, now: dt.datetime | None = None
) -> BookingMoney:
    """The buyer disputes a delivery within the claim window: the money stays held."""
    from app.bookings.service import get_booking_or_raise

    settings = get_settings()
    now = now or utcnow()
    begin_write(session)
    booking = get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    if booking.org_id != user.org_id:
        raise PermissionDenied("only the buyer disputes a delivery")
    _, hold = _service_hold(session, booking)
    if now > as_utc(booking.updated_at) + dt.timedelta(days=settings.claim_window_days):
        raise InvalidTransition("the claim window has closed", field="state")
    if hold.disputed_at is not None:
        raise InvalidTransition("this delivery is already disputed", field="state")
    hold.disputed_at = now
    hold.dispute_note = note
    hold.updated_at = now
    session.add(hold)
    _order_note(session, booking, user, "delivery_disputed", note)
    session.commit()
    return booking_money(session=session, user=user, booking_id=booking_id)


def resolve_dispute(
    *,
    session: Session,
    user: User,
    booking_id: int,
    refund_fen: int,
    note: str = "",
    payments: PaymentsClient | None = None,
) -> BookingMoney:
    """An admin settles a dispute: refund all (void the hold), part (capture the rest),
    or nothing (capture all)."""
    from app.bookings.service import get_booking_or_raise

    if not user.has_role(Role.admin):
        raise PermissionDenied("only the platform resolves disputes")
    begin_write(session)
    booking = get_booking_or_raise(
        session=session, user=user, booking_id=booking_id, for_update=True
    )
    _, hold = _service_hold(session, booking)
    if hold.disputed_at is None:
        raise InvalidTransition("this delivery is not disputed", field="state")
    if refund_fen > hold.amount_fen:
        raise InvalidInput("refund_fen is more than was paid", field="refund_fen")
    if refund_fen == hold.amount_fen:
        _new_payment(session, booking, K.void, hold.amount_fen, purpose="dispute", parent=hold)
    else:
        _new_payment(session, booking, K.capture, hold.amount_fen - refund_fen, purpose="dispute",
                     parent=hold, payee_org_id=hold.payee_org_id)  # fmt: skip
    _order_note(session, booking, user, "dispute_resolved", note or f"refund {refund_fen} fen")
    session.commit()
    _drive_after(session, payments, booking_id)
    return booking_money(session=session, user=user, booking_id=booking_id)


def release_due_captures(
    *, session: Session, now: dt.datetime | None = None, payments: PaymentsClient | None = None
) -> int:
    """Capture every undisputed delivery whose claim window has passed. Returns how many."""
    settings = get_settings()
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=settings.claim_window_days)
    begin_write(session)
    rows = session.exec(
        select(Booking, Payment)
        .join(Payment, col(Payment.booking_id) == Booking.id)
        .where(
            Booking.kind == BookingKind.service.value,
            Booking.state == BookingState.done.value,
            col(Booking.updated_at) <= cutoff,
            Payment.kind == K.authorize.value,
            col(Payment.status).in_((PENDING, SUCCEEDED)),
            col(Payment.disputed_at).is_(None),
        )
    ).all()
    released: list[int] = []
    for booking, hold in rows:
        assert booking.id is not None
        if _settlement(_payments_of(session, booking.id), hold) is not None:
            continue
        _new_payment(session, booking, K.capture, hold.amount_fen, purpose="price", parent=hold,
                     payee_org_id=hold.payee_org_id)  # fmt: skip
        _order_note(session, booking, None, "delivery_accepted", "claim window passed")
        released.append(booking.id)
    session.commit()
    if payments is not None:
        for booking_id in released:
            drive_payments(session=session, payments=payments, booking_id=booking_id)
    return len(released)


# --------------------------------------------------------------------------------------------
# Reads for the UI
# --------------------------------------------------------------------------------------------


def _money_status(booking: Booking, payments: list[Payment]) -> str:
    if not payments:
        return "none"
    hold = _live(payments, K.authorize)
    if hold is not None:
        settle = _settlement(payments, hold)
        if settle is not None:
            if settle.status == PENDING:
                return "settling"
            return "voided" if settle.kind == K.void.value else "captured"
        if hold.disputed_at is not None:
            return "disputed"
        return "authorized" if hold.status == SUCCEEDED else "authorizing"
    if any(p.kind == K.authorize.value and p.status == FAILED for p in payments):
        return "payment_failed"
    deposit = _live(payments, K.deposit)
    if deposit is not None:
        if _live(payments, K.refund) is not None:
            return "settled" if all(p.status != PENDING for p in payments) else "settling"
        return "deposit_held" if deposit.status == SUCCEEDED else "deposit_pending"
    if any(p.kind == K.deposit.value and p.status == FAILED for p in payments):
        return "deposit_failed"
    return "pending" if any(p.status == PENDING for p in payments) else "settled"


def _booking_money(session: Session, booking: Booking) -> BookingMoney:
    assert booking.id is not None
    payments = _payments_of(session, booking.id)
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


def booking_money(*, session: Session, user: User, booking_id: int) -> BookingMoney:
    from app.bookings.service import get_booking_or_raise

    return _booking_money(
        session, get_booking_or_raise(session=session, user=user, booking_id=booking_id)
    )


def order_money(*, session: Session, user: User, order_id: int) -> list[BookingMoney]:
    """The money of each of an order's bookings the caller may see."""
    from app.bookings.service import list_bookings
    from app.orders.service import get_order_or_raise

    get_order_or_raise(session=session, user=user, order_id=order_id)
    rows, _ = list_bookings(session=session, user=user, order_id=order_id, limit=500)
    return [_booking_money(session, b) for b in rows]


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
        if _settlement(_payments_of(session, hold.booking_id), hold) is None:
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


# --------------------------------------------------------------------------------------------
# Webhook inbox
# --------------------------------------------------------------------------------------------


def _insert_event(session: Session, event: Event) -> None:
    values = {
        "provider": PROVIDER,
        "external_id": event.id,
        "type": event.type,
        "object_id": event.object_id,
        "payload": {
            "type": event.type,
            "created": event.created,
            "object": dict(event.data_object),
        },
        "received_at": utcnow(),
    }
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = (
            pg_insert(PaymentEvent)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "external_id"])
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = (
            sqlite_insert(PaymentEvent)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider", "external_id"])
        )
    session.execute(stmt)


def _apply_event(session: Session, event: Event, settings: Settings) -> int:
    """Bring pending payments forward from a provider object; never backwards."""
    obj: Mapping[str, Any] = event.data_object
    meta = obj.get("metadata") or {}
    raw_id = meta.get("capshare_payment_id")
    if raw_id is None or not str(raw_id).isdigit():
        return 0
    own = session.exec(
        select(Payment).where(Payment.id == int(raw_id)).with_for_update()
        .execution_options(populate_existing=True)
    ).first()  # fmt: skip
    if own is None:
        return 0
    changed = 0
    if event.type.startswith("payment_intent."):
        intent = PaymentIntent.from_wire(obj)
        if own.status == PENDING:
            changed += _mark(session, own, _intent_outcome(own, intent), settings)
        if own.status == SUCCEEDED:
            children = session.exec(
                select(Payment)
                .where(
                    Payment.parent_id == own.id,
                    Payment.status == PENDING,
                    col(Payment.kind).in_((K.capture.value, K.void.value)),
                )  # fmt: skip
                .with_for_update()
            ).all()
            for child in children:
                changed += _mark(session, child, _settle_outcome(child, intent), settings)
    elif event.type.startswith("refund.") and own.kind == K.refund.value:
        if obj.get("amount") == own.amount_fen:
            changed += _mark(session, own, Outcome(SUCCEEDED, intent_id=obj.get("payment_intent"),
                                                   object_id=obj.get("id")), settings)  # fmt: skip
    elif event.type.startswith("payout.") and own.kind == K.payout.value:
        if obj.get("amount") == own.amount_fen:
            changed += _mark(session, own, Outcome(SUCCEEDED, object_id=obj.get("id")), settings)
    return changed


def record_event(*, session: Session, event: Event, settings: Settings | None = None) -> bool:
    """Insert a provider event into the inbox once and process it (one commit).
    Returns False for a duplicate that was already handled."""
    settings = settings or get_settings()
    begin_write(session)
    _insert_event(session, event)
    row = session.exec(
        select(PaymentEvent)
        .where(PaymentEvent.provider == PROVIDER, PaymentEvent.external_id == event.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if row.handled_at is not None:
        session.commit()
        return False
    _apply_event(session, event, settings)
    row.handled_at = utcnow()
    session.add(row)
    session.commit()
    return True


def receive_webhook(
    *, session: Session, settings: Settings, payload: bytes, signature: str | None
) -> bool:
    """Verify a webhook's signature (400 if bad) and put its event through the inbox."""
    try:
        event = parse_webhook_event(
            payload, signature, settings.payments_webhook_secret.get_secret_value()
        )
    except InvalidWebhookSignature as exc:
        raise InvalidWebhook(exc.message, field=SIGNATURE_HEADER) from exc
    return record_event(session=session, event=event, settings=settings)


# --------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------


@dataclass
class Difference:
    kind: str
    detail: str
    payment_id: int | None = None
    repaired: bool = False


@dataclass
class ReconcileReport:
    differences: list[Difference] = field(default_factory=list)
    events_seen: int = 0
    events_missed: int = 0
    pending_before: int = 0
    pending_after: int = 0
    ledger_total_fen: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    provider_platform_fen: int | None = None
    ledger_platform_fen: int = 0

    @property
    def repaired(self) -> int:
        return sum(1 for d in self.differences if d.repaired)

    @property
    def unrepaired(self) -> list[Difference]:
        return [d for d in self.differences if not d.repaired]

    @property
    def ok(self) -> bool:
        return not self.unrepaired


def _lookup(session: Session, payments: PaymentsClient, p: Payment) -> Outcome:
    """What the provider did with a pending payment's key, without calling it again."""
    key = p.idempotency_key
    if p.kind in (K.authorize.value, K.deposit.value, K.charge.value):
        intent = payments.find_payment_intent(idempotency_key=key)
        return _intent_outcome(p, intent) if intent is not None else Outcome(PENDING)
    if p.kind == K.refund.value:
        refund = payments.find_refund(idempotency_key=key)
        if refund is not None and refund.amount_fen == p.amount_fen:
            return Outcome(SUCCEEDED, intent_id=refund.payment_intent, object_id=refund.id)
        return Outcome(PENDING)
    if p.kind == K.payout.value:
        payout = payments.find_payout(idempotency_key=key)
        if payout is not None and payout.amount_fen == p.amount_fen:
            return Outcome(SUCCEEDED, object_id=payout.id)
        return Outcome(PENDING)
    parent = session.get(Payment, p.parent_id) if p.parent_id else None
    if parent is None or parent.provider_intent_id is None or parent.status != SUCCEEDED:
        return Outcome(PENDING)
    return _settle_outcome(p, payments.get_payment_intent(parent.provider_intent_id))


def _list_all(fetch: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(limit=100, starting_after=cursor)
        items.extend(page.data)
        if not page.has_more or page.next_cursor is None:
            return items
        cursor = page.next_cursor


def reconcile_payments(
    *, session: Session, payments: PaymentsClient, passes: int = 4
) -> ReconcileReport:
    """Compare the ledger with the provider, report every difference and repair what can
    be repaired: missed webhooks are replayed from the event log, results lost before our
    commit are recorded from the provider's objects (found by idempotency key), calls that
    never arrived are made again with the same key."""
    settings = get_settings()
    report = ReconcileReport()
    report.pending_before = len(pending_payment_ids(session))

    # 1. the event log: webhooks that never arrived
    for event in payments.iter_events():
        report.events_seen += 1
        if record_event(session=session, event=event, settings=settings):
            report.events_missed += 1
            report.differences.append(
                Difference(
                    "webhook_missed", f"event {event.id} ({event.type}) replayed", repaired=True
                )
            )

    # 2. pending payments: recorded from the provider, or driven again with the same key
    for _ in range(passes):
        progressed = False
        for pid in pending_payment_ids(session):
            p = session.get(Payment, pid)
            assert p is not None
            parent = session.get(Payment, p.parent_id) if p.parent_id else None
            if parent is not None and parent.status == PENDING:
                continue
            outcome = Outcome(PENDING)
            if parent is None or parent.status == SUCCEEDED:
                try:
                    outcome = _lookup(session, payments, p)
                except PaymentError as exc:
                    report.differences.append(Difference("provider_error", str(exc), pid))
                    continue
            if outcome.status != PENDING:
                record_outcome(session=session, payment_id=pid, outcome=outcome, settings=settings)
                report.differences.append(Difference(
                    "result_not_recorded",
                    f"{p.kind} {p.amount_fen} fen was {outcome.status} at the provider; recorded",
                    pid, repaired=True))  # fmt: skip
                progressed = True
                continue
            status = drive_payment(session=session, payments=payments, payment_id=pid)
            if status != PENDING:
                report.differences.append(Difference(
                    "not_applied", f"{p.kind} {p.amount_fen} fen not found done at the provider; "
                    f"sent again with its key: {status}", pid, repaired=True))  # fmt: skip
                progressed = True
        if not progressed:
            break
    still = pending_payment_ids(session)
    report.pending_after = len(still)
    for pid in still:
        report.differences.append(
            Difference("still_pending", "the provider did not complete it", pid)
        )

    # 3. every provider object against the ledger
    _compare_objects(session, payments, report)

    # 4. the ledger itself, and the platform's balance at the provider
    for txn_id in unbalanced_transactions(session):
        report.differences.append(
            Difference("unbalanced_transaction", f"ledger transaction {txn_id}")
        )
    report.balances = account_balances(session)
    report.ledger_total_fen = sum(report.balances.values())
    if report.ledger_total_fen != 0:
        report.differences.append(
            Difference("ledger_total", f"ledger sums to {report.ledger_total_fen}")
        )
    report.ledger_platform_fen = sum(
        v for k, v in report.balances.items()
        if k in (ESCROW, REVENUE) or k.startswith("owner_payable:")
    )  # fmt: skip
    try:
        balance = payments.get_balance()
        report.provider_platform_fen = balance.available_fen + balance.pending_fen
    except PaymentError as exc:
        report.differences.append(Difference("provider_error", f"balance: {exc}"))
    for row in session.exec(select(ProviderAccount)).all():
        try:
            at_provider = payments.get_balance(row.account_id).available_fen
        except PaymentError as exc:
            report.differences.append(
                Difference("provider_error", f"account {row.account_id}: {exc}")
            )
            continue
        ours = report.balances.get(paid_out_account(row.org_id), 0)
        if at_provider != ours:
            report.differences.append(Difference(
                "payout_mismatch", f"org {row.org_id}: provider {at_provider} fen, ledger {ours} fen"))  # fmt: skip
    return report


def _compare_objects(session: Session, payments: PaymentsClient, report: ReconcileReport) -> None:
    ours = {p.id: p for p in session.exec(select(Payment)).all()}
    children: dict[int, list[Payment]] = defaultdict(list)
    for child in ours.values():
        if child.parent_id is not None:
            children[child.parent_id].append(child)
    try:
        intents = _list_all(payments.list_payment_intents)
        refunds = _list_all(payments.list_refunds)
        payouts = _list_all(payments.list_payouts)
    except PaymentError as exc:
        report.differences.append(Difference("provider_error", f"listing objects: {exc}"))
        return

    def owner_of(obj: Any) -> Payment | None:
        raw = obj.metadata.get("capshare_payment_id")
        return ours.get(int(raw)) if raw and raw.isdigit() else None

    for intent in intents:
        p = owner_of(intent)
        received = intent.amount_received_fen
        if p is None:
            if received:
                report.differences.append(
                    Difference("unknown_charge", f"intent {intent.id}: {received} fen")
                )
            continue
        kids = children.get(p.id or 0, [])
        if p.kind == K.authorize.value:
            expected = sum(
                c.amount_fen for c in kids if c.kind == K.capture.value and c.status == SUCCEEDED
            )
        else:
            expected = p.amount_fen if p.status == SUCCEEDED else 0
        refunded = sum(
            c.amount_fen for c in kids if c.kind == K.refund.value and c.status == SUCCEEDED
        )
        if received != expected or intent.amount_refunded_fen != refunded:
            report.differences.append(Difference(
                "amount_mismatch", f"intent {intent.id}: provider received {received} refunded "
                f"{intent.amount_refunded_fen}, ledger {expected} / {refunded}", p.id))  # fmt: skip
    for obj, kind in [(r, "refund") for r in refunds] + [(o, "payout") for o in payouts]:
        p = owner_of(obj)
        if p is None or p.status != SUCCEEDED or p.amount_fen != obj.amount_fen:
            report.differences.append(Difference(
                f"unknown_{kind}", f"{kind} {obj.id}: {obj.amount_fen} fen not in the ledger",
                p.id if p else None))  # fmt: skip
