"""The webhook inbox: signed provider events, stored once by the request and applied by
the ``payments.webhook`` task."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from app import tasks
from app.config import Settings, get_settings
from app.db import begin_write
from app.errors import MarketplaceError
from app.money.driver import Outcome, intent_outcome, mark, settle_outcome
from app.money.planning import PENDING, PROVIDER, SUCCEEDED, K
from app.money.provider import (
    SIGNATURE_HEADER,
    Event,
    InvalidWebhookSignature,
    PaymentIntent,
    parse_webhook_event,
)
from models import utcnow
from models.payment import (
    Payment,
    PaymentEvent,
)

log = logging.getLogger("capshare.money")
WEBHOOK_TASK = "payments.webhook"  # a stored event, applied (app.jobs)


class InvalidWebhook(MarketplaceError):
    """A webhook whose signature is missing, stale or wrong, or whose body is no event."""

    status_code = 400


# --------------------------------------------------------------------------------------------
# Webhook inbox
# --------------------------------------------------------------------------------------------


def _insert_event(session: Session, event: Event) -> bool:
    """Insert the event unless it is there already; True when it was new."""
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
    # RETURNING gives a row only when the insert happened (rowcount is not reliable here:
    # on PostgreSQL it counted the conflicting row too)
    return session.execute(stmt.returning(PaymentEvent.id)).first() is not None


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
            changed += mark(session, own, intent_outcome(own, intent), settings)
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
                changed += mark(session, child, settle_outcome(child, intent), settings)
    elif event.type.startswith("refund.") and own.kind == K.refund.value:
        if obj.get("amount") == own.amount_fen:
            changed += mark(session, own, Outcome(SUCCEEDED, intent_id=obj.get("payment_intent"),
                                                   object_id=obj.get("id")), settings)  # fmt: skip
    elif event.type.startswith("payout.") and own.kind == K.payout.value:
        if obj.get("amount") == own.amount_fen:
            changed += mark(session, own, Outcome(SUCCEEDED, object_id=obj.get("id")), settings)
    return changed


def store_event(*, session: Session, event: Event) -> bool:
    """The webhook's request: insert the event into the inbox once and defer
    ``payments.webhook`` to apply it, in one commit. Returns False for a duplicate."""
    begin_write(session)
    new = _insert_event(session, event)
    row = _inbox_row(session, event.id)
    if row.handled_at is None:  # new, or stored but not applied yet: (again) to the queue
        tasks.defer(session, WEBHOOK_TASK, event_id=event.id, queueing_lock=f"webhook:{event.id}")
    session.commit()
    return new


def handle_event(*, session: Session, event_id: str, settings: Settings | None = None) -> bool:
    """The ``payments.webhook`` task: apply a stored event once (a second delivery of the
    task, or of the webhook, finds it handled). Returns whether it was applied now."""
    settings = settings or get_settings()
    begin_write(session)
    row = _inbox_row(session, event_id)
    if row.handled_at is not None:
        session.commit()
        return False
    payload = row.payload
    event = Event(row.external_id, row.type, int(payload.get("created") or 0),
                  payload.get("object") or {})  # fmt: skip
    _apply_event(session, event, settings)
    row.handled_at = utcnow()
    session.add(row)
    session.commit()
    return True


def record_event(*, session: Session, event: Event, settings: Settings | None = None) -> bool:
    """Put a provider event into the inbox if it is not there, and apply it now if it is
    not applied yet (reconciliation, which already runs as a task). Returns True when the
    event was not in the inbox: its webhook never arrived. An event stored but still
    waiting for its task is applied here too (once: the task then finds it handled)."""
    begin_write(session)
    new = _insert_event(session, event)
    session.flush()
    handle_event(session=session, event_id=event.id, settings=settings)
    return new


def _inbox_row(session: Session, event_id: str) -> PaymentEvent:
    return session.exec(
        select(PaymentEvent)
        .where(PaymentEvent.provider == PROVIDER, PaymentEvent.external_id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def receive_webhook(
    *, session: Session, settings: Settings, payload: bytes, signature: str | None
) -> bool:
    """Verify a webhook's signature (400 if bad) and put its event into the inbox; the
    ``payments.webhook`` task applies it after the commit."""
    try:
        event = parse_webhook_event(
            payload, signature, settings.payments_webhook_secret.get_secret_value()
        )
    except InvalidWebhookSignature as exc:
        raise InvalidWebhook(exc.message, field=SIGNATURE_HEADER) from exc
    return store_event(session=session, event=event)
