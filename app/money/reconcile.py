"""Reconciliation: compare every payment with the provider and finish what a crash left."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from app.config import get_settings
from app.money.driver import (
    Outcome,
    drive_payment,
    intent_outcome,
    pending_payment_ids,
    record_outcome,
    settle_outcome,
)
from app.money.ledger import (
    ESCROW,
    REVENUE,
    account_balances,
    paid_out_account,
    unbalanced_transactions,
)
from app.money.planning import PENDING, SUCCEEDED, K
from app.money.provider import (
    PaymentError,
    PaymentsClient,
)
from app.money.webhooks import record_event
from models.payment import (
    Payment,
    ProviderAccount,
)

log = logging.getLogger("capshare.money")

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
        return intent_outcome(p, intent) if intent is not None else Outcome(PENDING)
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
    return settle_outcome(p, payments.get_payment_intent(parent.provider_intent_id))


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
