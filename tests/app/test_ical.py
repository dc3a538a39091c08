from __future__ import annotations

from sqlmodel import Session

from app.config import Settings
from app.machines.ical import feed_token, machine_feed, machine_from_token
from models import BookingState, Role
from tests.factories import hours_from_now, make_booking, make_machine, make_user


def test_feed_lists_live_bookings_and_folds_long_lines(
    session: Session, settings: Settings
) -> None:
    owner, buyer = make_user(session, roles=(Role.owner,)), make_user(session, roles=(Role.buyer,))
    machine = make_machine(session, owner=owner, name="五轴加工中心 DMG Mori DMU 50, bay 3; night shift " * 2,
                           telemetry_token_hash="a" * 64)  # fmt: skip
    for state, start in (
        (BookingState.confirmed, 10),
        (BookingState.proposed, 20),
        (BookingState.cancelled, 30),
    ):
        make_booking(session, machine=machine, org_id=buyer.org_id, state=state,
                     start=hours_from_now(start), end=hours_from_now(start + 2))  # fmt: skip
    feed = machine_feed(session=session, machine=machine)
    assert feed.count("BEGIN:VEVENT") == 2  # the cancelled booking is not on the calendar
    assert "STATUS:TENTATIVE" in feed and "STATUS:CONFIRMED" in feed
    assert all(len(line.encode()) <= 75 for line in feed.split("\r\n"))
    assert "\\;" in feed and "\\," in feed  # text escaped
    unfolded = feed.replace("\r\n ", "")
    assert "X-WR-CALNAME:五轴加工中心" in unfolded


def test_token_is_revoked_with_the_machine_token(session: Session, settings: Settings) -> None:
    import pytest

    from app.errors import MachineNotFound

    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner, telemetry_token_hash="b" * 64)
    token = feed_token(settings=settings, machine=machine)
    assert machine_from_token(session=session, settings=settings, token=token).id == machine.id
    machine.telemetry_token_hash = "c" * 64
    session.add(machine)
    session.flush()
    with pytest.raises(MachineNotFound):
        machine_from_token(session=session, settings=settings, token=token)
