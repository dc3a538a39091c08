"""The double-entry ledger: accounts, balanced transactions, balances and fees."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import func as sa_func
from sqlmodel import Session, col, select

from app.errors import MarketplaceError
from models.payment import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
)

log = logging.getLogger("capshare.money")


class LedgerImbalance(MarketplaceError):
    """A ledger transaction whose entries do not sum to zero (a bug, never input)."""

    status_code = 500


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
