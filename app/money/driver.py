"""Driving pending payments against the provider and recording each result (status,
ledger transaction, follow-ups) in one commit."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.config import Settings, get_settings
from app.db import begin_write, end_reads
from app.errors import InvalidInput
from app.metrics import PAYMENT_FAILURES
from app.money.ledger import (
    ESCROW,
    REVENUE,
    LedgerImbalance,
    buyer_account,
    fee_fen,
    paid_out_account,
    payable_account,
    post_transaction,
)
from app.money.planning import DEAD, FAILED, PENDING, PROVIDER, SKIPPED, SUCCEEDED, K, plan_payout
from app.money.provider import (
    PaymentConflict,
    PaymentDeclined,
    PaymentError,
    PaymentIntent,
    PaymentInvalidRequest,
    PaymentNotFound,
    PaymentsClient,
)
from models import utcnow
from models.payment import (
    Payment,
    PaymentStatus,
    ProviderAccount,
)

log = logging.getLogger("capshare.money")

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
        plan_payout(session, p, p.payee_org_id, owner_share)
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
                plan_payout(session, p, p.payee_org_id, kept)
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


def mark(session: Session, p: Payment, outcome: Outcome, settings: Settings) -> bool:
    """Apply an outcome to a locked, pending payment (flush only). States never go back."""
    if p.status != PENDING or outcome.status == PENDING:
        return False
    p.provider_intent_id = outcome.intent_id or p.provider_intent_id
    p.provider_object_id = outcome.object_id or p.provider_object_id
    p.failure_code = outcome.failure_code[:60]
    p.status = PaymentStatus(outcome.status)
    p.updated_at = utcnow()
    session.add(p)
    session.flush()
    if outcome.status == SUCCEEDED:
        _post_ledger(session, p, settings)
    elif outcome.status == FAILED:
        for child in session.exec(
            select(Payment).where(Payment.parent_id == p.id, Payment.status == PENDING)
        ).all():
            child.status = PaymentStatus.skipped
            child.updated_at = utcnow()
            session.add(child)
    return True


def locked(session: Session, payment_id: int) -> Payment:
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
    p = locked(session, payment_id)
    changed = mark(session, p, outcome, settings or get_settings())
    session.commit()
    return changed


# --------------------------------------------------------------------------------------------
# Driving pending payments against the provider
# --------------------------------------------------------------------------------------------


def outside_transaction(session: Session, payments: PaymentsClient) -> PaymentsClient:
    """``payments`` ending ``session``'s reads before each call (a commit that keeps what
    was loaded), so that no connection waits in a transaction while the provider answers.
    A caller's uncommitted writes are left alone (and the call runs inside them)."""

    def end_session_reads() -> None:
        if not end_reads(session):
            log.warning("payments call inside a transaction that wrote and did not commit")

    return payments.before_each_call(end_session_reads)


def _metadata(p: Payment) -> dict[str, str]:
    return {"capshare_payment_id": str(p.id), "booking_id": str(p.booking_id), "kind": p.kind}


def intent_outcome(p: Payment, intent: PaymentIntent) -> Outcome:
    if p.kind == K.authorize.value and intent.status in ("requires_capture", "succeeded"):
        return Outcome(SUCCEEDED, intent_id=intent.id)
    if p.kind in (K.deposit.value, K.charge.value) and intent.status == "succeeded":
        return Outcome(SUCCEEDED, intent_id=intent.id)
    if intent.status == "requires_payment_method" and intent.last_error_code:
        return Outcome(FAILED, intent_id=intent.id, failure_code=intent.last_error_code)
    if intent.status == "canceled" and p.kind != K.authorize.value:
        return Outcome(FAILED, intent_id=intent.id, failure_code="canceled")
    return Outcome(PENDING, intent_id=intent.id)


def settle_outcome(p: Payment, intent: PaymentIntent) -> Outcome:
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


def connected_account(session: Session, payments: PaymentsClient, org_id: int) -> str:
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


def call_provider(
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
        return intent_outcome(p, intent)
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
        return settle_outcome(p, intent)
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
        destination = connected_account(session, payments, p.payee_org_id)
        payout = payments.create_payout(
            destination=destination, amount_fen=p.amount_fen, idempotency_key=key, metadata=meta
        )
        return Outcome(SUCCEEDED, object_id=payout.id)
    raise InvalidInput(f"unknown payment kind {p.kind}", field="kind")


def drive_payment(*, session: Session, payments: PaymentsClient, payment_id: int) -> str:
    """Call the provider for one pending payment (same key on every attempt) and record
    the answer. Returns the payment's status afterwards."""
    settings = get_settings()
    payments = outside_transaction(session, payments)
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
    try:
        outcome = call_provider(session, payments, p, parent)
    except (PaymentNotFound, PaymentInvalidRequest) as exc:
        log.warning("payment %s refused by the provider: %s", p.id, exc)
        if exc.code == "balance_insufficient":
            return PENDING
        outcome = Outcome(FAILED, failure_code=exc.code or "invalid_request")
        PAYMENT_FAILURES.labels(kind=p.kind).inc()
    except PaymentError as exc:  # provider down after retries, key still in use...
        log.warning("payment %s left pending: %s", p.id, exc)
        PAYMENT_FAILURES.labels(kind=p.kind).inc()
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
