"""Payments, the double-entry ledger and the provider's webhook inbox.

A ``Payment`` is one provider operation (authorize, capture, void, deposit, charge,
refund, payout) for one booking. Its ``idempotency_key`` is written (committed) before
the provider is called, so a retry after a crash reuses it and can never move money
twice. A ``LedgerTransaction`` records one money movement as ``LedgerEntry`` rows whose
amounts sum to zero (positive = money arriving in the account, negative = leaving).

Ledger accounts::

    buyer_funds:<org>        money a buyer paid in (negative) or got back (positive)
    escrow                   lease deposits the platform holds
    platform_revenue         the platform fee
    owner_payable:<org>      owed to an owner, not yet paid out
    owner_paid_out:<org>     paid out to the owner's connected account
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import CURRENCY, StrEnumType, UTCDateTime, utcnow


class PaymentKind(StrEnum):
    authorize = "authorize"  # hold the agreed price of a service booking
    capture = "capture"  # take (part of) a hold
    void = "void"  # release a hold
    deposit = "deposit"  # a lease deposit, charged into escrow
    charge = "charge"  # a lease's booked hours
    refund = "refund"  # give captured money back
    payout = "payout"  # owner_payable → the owner's connected account


class PaymentStatus(StrEnum):
    pending = "pending"  # key persisted; the provider may or may not have applied it
    succeeded = "succeeded"
    failed = "failed"  # the provider refused it (declined, wrong state)
    skipped = "skipped"  # no longer needed (its parent failed)


FINAL_STATUSES = (
    PaymentStatus.succeeded.value,
    PaymentStatus.failed.value,
    PaymentStatus.skipped.value,
)


class Payment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    booking_id: int = Field(foreign_key="booking.id", index=True)
    order_id: int | None = Field(default=None, foreign_key="order.id", index=True)
    parent_id: int | None = Field(default=None, foreign_key="payment.id", index=True)
    kind: str = Field(max_length=12)
    purpose: str = Field(default="", max_length=30)
    status: PaymentStatus = Field(
        default=PaymentStatus.pending, sa_type=StrEnumType(PaymentStatus, 12), index=True
    )
    idempotency_key: str = Field(max_length=100)
    amount_fen: int = Field(ge=0, sa_type=BigInteger)
    currency: str = Field(default=CURRENCY, max_length=3)
    payer_org_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    payee_org_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    payment_method: str = Field(default="pm_card_visa", max_length=60)
    provider_intent_id: str | None = Field(default=None, max_length=64, index=True)
    provider_object_id: str | None = Field(default=None, max_length=64)
    failure_code: str = Field(default="", max_length=60)
    disputed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    dispute_note: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LedgerTransaction(SQLModel, table=True):
    """One money movement. At most one per payment (the unique key makes applying a
    provider result twice impossible)."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (UniqueConstraint("payment_id"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    payment_id: int | None = Field(default=None, foreign_key="payment.id")
    booking_id: int | None = Field(default=None, foreign_key="booking.id", index=True)
    memo: str = Field(default="", max_length=200)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="ledger_transaction.id", index=True)
    account: str = Field(max_length=80, index=True)
    amount_fen: int = Field(sa_type=BigInteger)
    currency: str = Field(default=CURRENCY, max_length=3)


class PaymentEvent(SQLModel, table=True):
    """The webhook inbox: each provider event once, then ``handled_at``."""

    __tablename__ = "payment_event"
    __table_args__ = (UniqueConstraint("provider", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=30)
    external_id: str = Field(max_length=80)
    type: str = Field(max_length=60)
    object_id: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    handled_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProviderAccount(SQLModel, table=True):
    """An owner org's connected account at the provider (where payouts go)."""

    __tablename__ = "provider_account"
    __table_args__ = (UniqueConstraint("org_id"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id")
    provider: str = Field(max_length=30)
    account_id: str = Field(max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# -- API schemas ------------------------------------------------------------------------------


class PaymentPublic(SQLModel):
    id: int
    booking_id: int
    order_id: int | None
    parent_id: int | None
    kind: str
    purpose: str
    status: str
    amount_fen: int
    currency: str
    payer_org_id: int | None
    payee_org_id: int | None
    failure_code: str
    disputed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class LedgerLine(SQLModel):
    transaction_id: int
    kind: str
    booking_id: int | None
    account: str
    amount_fen: int
    currency: str
    at: dt.datetime


class BookingMoney(SQLModel):
    """A booking's money at a glance."""

    booking_id: int
    kind: str
    money_status: str
    price_fen: int
    captured_fen: int
    refunded_fen: int
    payments: list[PaymentPublic]


class Earnings(SQLModel):
    org_id: int
    earned_fen: int  # credited to owner_payable, ever
    payable_fen: int  # not yet paid out
    paid_out_fen: int
    gross_fen: int = 0  # charged to buyers for this owner's work: earned + platform fee
    fee_fen: int = 0  # the platform fee kept from those charges
    currency: str = CURRENCY
    payouts: list[PaymentPublic]


class Statement(SQLModel):
    org_id: int
    paid_fen: int  # net: charged minus refunded
    held_fen: int  # authorized, not yet captured or voided
    currency: str = CURRENCY
    lines: list[LedgerLine]


class DisputeCreate(SQLModel):
    note: str = Field(min_length=1, max_length=500)


class DisputeResolve(SQLModel):
    refund_fen: int = Field(ge=0, le=10**13)
    note: str = Field(default="", max_length=500)
