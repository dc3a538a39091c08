"""Money flows against the real provider stub (over loopback HTTP) and the test database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import Session, col, select

from app.bookings import delivery as booking_delivery
from app.bookings import flows as booking_flows
from app.errors import InvalidTransition, PermissionDenied
from app.money import driver, ledger, reconcile
from app.money.provider import PaymentsClient
from app.orders import flows as order_flows
from models import Booking, LedgerEntry, OrderStatus, Payment, Role, User, utcnow
from models.booking import LeaseCreate
from tests.factories import hours_from_now, make_user
from tests.money_fixtures import Market, make_service_booking, market, money_stub_url, provider  # noqa: F401

FEE_BPS = 500


def balances(session: Session) -> dict[str, int]:
    return ledger.account_balances(session)


def payments_of(session: Session, booking: Booking) -> list[Payment]:
    return list(
        session.exec(
            select(Payment).where(Payment.booking_id == booking.id).order_by(col(Payment.id))
        ).all()
    )


def run(
    session: Session, user: User, booking: Booking, action: str, provider: PaymentsClient | None
) -> Booking:
    assert booking.id is not None
    return booking_flows.transition_booking(
        session=session, user=user, booking_id=booking.id, action=action, payments=provider
    )


def deliver(session: Session, market: Market, booking: Booking, provider: PaymentsClient) -> None:
    for action in ("accept", "start", "complete"):
        run(session, market.owner, booking, action, provider)


class TestLedger:
    def test_balanced_transaction_is_written_and_sums_to_zero(self, session: Session) -> None:
        txn = ledger.post_transaction(
            session, kind="test", entries=[("a", -100), ("b", 95), ("c", 5), ("d", 0)]
        )
        assert txn is not None
        entries = session.exec(
            select(LedgerEntry).where(LedgerEntry.transaction_id == txn.id)
        ).all()
        assert sorted(e.amount_fen for e in entries) == [-100, 5, 95]  # the zero line is dropped
        assert ledger.unbalanced_transactions(session) == []

    def test_unbalanced_transaction_is_refused(self, session: Session) -> None:
        with pytest.raises(ledger.LedgerImbalance):
            ledger.post_transaction(session, kind="test", entries=[("a", -100), ("b", 99)])

    def test_fee_rounds_down_to_the_fen(self) -> None:
        assert ledger.fee_fen(100_000, 500) == 5_000
        assert ledger.fee_fen(99, 500) == 4


class TestServiceFlow:
    def test_authorize_on_accept_capture_and_payout_on_delivery(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market, price_fen=100_000)
        assert booking.id is not None
        run(session, market.owner, booking, "accept", provider)
        [hold] = payments_of(session, booking)
        assert (hold.kind, hold.status, hold.amount_fen) == ("authorize", "succeeded", 100_000)
        assert hold.provider_intent_id is not None
        assert provider.get_payment_intent(hold.provider_intent_id).status == "requires_capture"
        assert balances(session) == {}  # a hold moves no money
        run(session, market.owner, booking, "start", provider)
        run(session, market.owner, booking, "complete", provider)
        result = booking_delivery.accept_delivery(
            session=session, user=market.buyer, booking_id=booking.id, payments=provider
        )
        assert result.money_status == "captured" and result.captured_fen == 100_000
        b = balances(session)
        assert b[ledger.buyer_account(market.buyer.org_id)] == -100_000
        assert b[ledger.REVENUE] == 5_000
        assert b[ledger.paid_out_account(market.owner.org_id)] == 95_000
        assert b.get(ledger.payable_account(market.owner.org_id), 0) == 0
        assert sum(b.values()) == 0
        report = reconcile.reconcile_payments(session=session, payments=provider)
        assert report.ok, report.differences
        assert report.provider_platform_fen == report.ledger_platform_fen == 5_000

    def test_accept_twice_is_409_and_only_the_buyer_accepts(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        with pytest.raises(PermissionDenied):
            booking_delivery.accept_delivery(
                session=session, user=market.owner, booking_id=booking.id, payments=provider
            )
        booking_delivery.accept_delivery(
            session=session, user=market.buyer, booking_id=booking.id, payments=provider
        )
        with pytest.raises(InvalidTransition):
            booking_delivery.accept_delivery(
                session=session, user=market.buyer, booking_id=booking.id, payments=provider
            )

    def test_claim_window_release(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        assert (
            booking_delivery.release_due_captures(session=session, payments=provider) == 0
        )  # window still open
        later = utcnow() + dt.timedelta(days=8)
        assert (
            booking_delivery.release_due_captures(session=session, now=later, payments=provider)
            == 1
        )
        assert (
            booking_delivery.booking_money(
                session=session, user=market.buyer, booking_id=booking.id
            ).money_status
            == "captured"
        )
        assert (
            booking_delivery.release_due_captures(session=session, now=later, payments=provider)
            == 0
        )

    def test_the_claim_window_counts_from_the_finish_not_the_last_edit(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        session.refresh(booking)
        assert booking.finished_at is not None
        booking.updated_at = booking.finished_at + dt.timedelta(days=5)  # a later edit
        session.add(booking)
        session.commit()
        after_window = booking.finished_at + dt.timedelta(days=7, minutes=1)
        assert (
            booking_delivery.release_due_captures(
                session=session, now=after_window, payments=provider
            )
            == 1
        )

    def test_dispute_holds_then_partial_refund(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market, price_fen=100_000)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        view = booking_delivery.open_dispute(
            session=session, user=market.buyer, booking_id=booking.id, note="bad finish"
        )
        assert view.money_status == "disputed"
        later = utcnow() + dt.timedelta(days=30)
        assert (
            booking_delivery.release_due_captures(session=session, now=later, payments=provider)
            == 0
        )  # held
        admin = make_user(session, roles=(Role.admin,))
        view = booking_delivery.resolve_dispute(
            session=session, user=admin, booking_id=booking.id, refund_fen=30_000, payments=provider
        )
        assert view.captured_fen == 70_000
        b = balances(session)
        assert b[ledger.buyer_account(market.buyer.org_id)] == -70_000
        assert b[ledger.REVENUE] == 3_500
        assert b[ledger.paid_out_account(market.owner.org_id)] == 66_500
        assert reconcile.reconcile_payments(session=session, payments=provider).ok

    def test_dispute_full_refund_voids_the_hold(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        booking_delivery.open_dispute(
            session=session, user=market.buyer, booking_id=booking.id, note="never arrived"
        )
        admin = make_user(session, roles=(Role.admin,))
        view = booking_delivery.resolve_dispute(
            session=session,
            user=admin,
            booking_id=booking.id,
            refund_fen=booking.price_fen,
            payments=provider,
        )
        assert view.money_status == "voided"
        assert balances(session) == {}

    def test_dispute_after_the_window_is_409(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        with pytest.raises(InvalidTransition):
            booking_delivery.open_dispute(session=session, user=market.buyer, booking_id=booking.id, note="late",
                               now=utcnow() + dt.timedelta(days=8))  # fmt: skip

    def test_free_cancellation_voids(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market, start_h=72)
        run(session, market.owner, booking, "accept", provider)
        run(session, market.buyer, booking, "cancel", provider)
        kinds = [(p.kind, p.status) for p in payments_of(session, booking)]
        assert kinds == [("authorize", "succeeded"), ("void", "succeeded")]
        assert balances(session) == {}

    def test_late_cancellation_pays_the_owner_twenty_percent(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market, price_fen=100_000, start_h=5)
        run(session, market.owner, booking, "accept", provider)
        run(session, market.buyer, booking, "cancel", provider)
        b = balances(session)
        assert b[ledger.buyer_account(market.buyer.org_id)] == -20_000
        assert b[ledger.paid_out_account(market.owner.org_id)] == 20_000
        assert reconcile.reconcile_payments(session=session, payments=provider).ok

    def test_declined_card_fails_the_authorization(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = make_service_booking(session, market)
        assert booking.id is not None
        run(session, market.owner, booking, "accept", None)
        [hold] = payments_of(session, booking)
        assert hold.id is not None
        hold.payment_method = "pm_card_declined"
        session.add(hold)
        session.commit()
        assert (
            driver.drive_payment(session=session, payments=provider, payment_id=hold.id) == "failed"
        )
        session.refresh(hold)
        assert hold.failure_code == "generic_decline"
        view = booking_delivery.booking_money(
            session=session, user=market.buyer, booking_id=booking.id
        )
        assert view.money_status == "payment_failed"


class TestLeaseFlow:
    def lease(
        self,
        session: Session,
        market: Market,
        provider: PaymentsClient | None,
        start_h: float,
        hours: float,
    ) -> Booking:
        assert market.machine.id is not None
        return booking_flows.create_lease(
            session=session, user=market.buyer, payments=provider,
            data=LeaseCreate(machine_id=market.machine.id, start_at=hours_from_now(start_h),
                             end_at=hours_from_now(start_h + hours)),
        )  # fmt: skip

    def test_deposit_then_hours_charged_and_deposit_released(
        self,
        session: Session,
        market: Market,
        provider: PaymentsClient,
        clock: Callable[[dt.datetime], None],
    ) -> None:
        booking = self.lease(session, market, provider, 48, 4)
        clock(booking.start_at)
        assert booking.price_fen == 36_000
        [deposit] = payments_of(session, booking)
        assert (deposit.kind, deposit.status, deposit.amount_fen) == (
            "deposit",
            "succeeded",
            10_800,
        )
        assert balances(session)[ledger.ESCROW] == 10_800
        for action in ("start", "complete"):
            run(session, market.owner, booking, action, provider)
        b = balances(session)
        assert b[ledger.buyer_account(market.buyer.org_id)] == -36_000
        assert b.get(ledger.ESCROW, 0) == 0
        assert b[ledger.REVENUE] == 1_800
        assert b[ledger.paid_out_account(market.owner.org_id)] == 34_200
        report = reconcile.reconcile_payments(session=session, payments=provider)
        assert report.ok, report.differences

    def test_late_cancel_keeps_the_fee_from_the_deposit(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        booking = self.lease(session, market, provider, 3, 4)
        run(session, market.buyer, booking, "cancel", provider)
        b = balances(session)
        assert b[ledger.buyer_account(market.buyer.org_id)] == -7_200  # 20 % of 36,000
        assert b[ledger.paid_out_account(market.owner.org_id)] == 7_200
        assert b.get(ledger.ESCROW, 0) == 0
        assert reconcile.reconcile_payments(session=session, payments=provider).ok


class TestCrashSafety:
    def test_lost_commit_after_the_provider_call_is_repaired_once(
        self,
        session: Session,
        market: Market,
        provider: PaymentsClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        booking = make_service_booking(session, market, price_fen=50_000)
        assert booking.id is not None
        deliver(session, market, booking, provider)
        real = driver.record_outcome
        crashed: list[int] = []

        def crash_once(**kwargs: Any) -> bool:
            if not crashed:
                crashed.append(kwargs["payment_id"])
                raise RuntimeError("process died before the commit")
            return real(**kwargs)

        monkeypatch.setattr(driver, "record_outcome", crash_once)
        with pytest.raises(RuntimeError):
            booking_delivery.accept_delivery(
                session=session, user=market.buyer, booking_id=booking.id, payments=provider
            )
        monkeypatch.setattr(driver, "record_outcome", real)
        capture = session.get(Payment, crashed[0])
        assert capture is not None and capture.status == "pending" and capture.kind == "capture"
        report = reconcile.reconcile_payments(session=session, payments=provider)
        assert report.ok, report.differences
        session.refresh(capture)
        assert capture.status == "succeeded"  # from the replayed event log or the key lookup
        intent_id = payments_of(session, booking)[0].provider_intent_id
        assert intent_id is not None
        intent = provider.get_payment_intent(intent_id)
        assert intent.amount_received_fen == 50_000  # captured once
        assert balances(session)[ledger.paid_out_account(market.owner.org_id)] == 47_500

    def test_provider_down_leaves_payments_pending_for_the_reconciler(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        from tests.money_fixtures import fast_client

        booking = make_service_booking(session, market)
        down = fast_client("http://127.0.0.1:9", max_attempts=2, timeout_s=0.5)
        run(session, market.owner, booking, "accept", down)
        [hold] = payments_of(session, booking)
        assert hold.status == "pending"
        report = reconcile.reconcile_payments(session=session, payments=provider)
        assert report.ok and report.repaired == 1
        session.refresh(hold)
        assert hold.status == "succeeded"


class TestOrderCancellation:
    def test_cancelling_an_order_voids_its_held_payments(
        self, session: Session, market: Market, provider: PaymentsClient
    ) -> None:
        from models import Order

        order = Order(title="brackets", buyer_org_id=market.buyer.org_id, release_at=hours_from_now(1),
                      due_at=hours_from_now(200), status=OrderStatus.matched)  # fmt: skip
        session.add(order)
        session.flush()
        assert order.id is not None
        booking = make_service_booking(session, market, start_h=72)
        booking.order_id = order.id
        session.add(booking)
        session.flush()
        run(session, market.owner, booking, "accept", provider)
        order_flows.cancel_order(
            session=session, user=market.buyer, order_id=order.id, payments=provider
        )
        assert [(p.kind, p.status) for p in payments_of(session, booking)] == [
            ("authorize", "succeeded"),
            ("void", "succeeded"),
        ]
        view = booking_delivery.order_money(session=session, user=market.buyer, order_id=order.id)
        assert [v.money_status for v in view] == ["voided"]
        stranger = make_user(session, roles=(Role.buyer,))
        from app.errors import OrderNotFound

        with pytest.raises(OrderNotFound):
            booking_delivery.order_money(session=session, user=stranger, order_id=order.id)
