"""Owner pages: edit and retire, CSV import/export, availability calendar, earnings."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
from fastapi.testclient import TestClient
from sqlmodel import Session, col, func, select

from app.money import ledger
from models import (
    AvailabilityWindow,
    Booking,
    BookingKind,
    BookingState,
    Machine,
    Payment,
    PaymentStatus,
    Role,
    User,
)
from tests.factories import hours_from_now, make_machine, make_user, make_window
from tests.frontend.test_pages import csrf, sign_in

HEADER = "name,make_model,process_key,materials,envelope_x_mm,envelope_y_mm,envelope_z_mm,tolerance_mm,speed_factor,hourly_rate_yuan,min_booking_minutes,leasable"


def report_rows(html: str) -> list[tuple[str, str]]:
    """(line, field) of each row of an import's problem report."""
    return re.findall(r'<tr><td class="num">(\d+)</td><td><code>([^<]+)</code></td>', html)


def count_machines(session: Session, owner: User) -> int:
    return session.exec(
        select(func.count()).select_from(Machine).where(Machine.owner_org_id == owner.org_id)
    ).one()


def edit_body(token: str, **changes: str) -> dict[str, str]:
    body = {"csrf_token": token, "name": "Haas VF-2 renamed", "make_model": "Haas VF-2", "materials": "aluminium, steel",
            "hourly_rate_yuan": "120.50", "min_booking_minutes": "90", "envelope_x_mm": "762", "envelope_y_mm": "406",
            "envelope_z_mm": "508", "tolerance_mm": "0.01", "speed_factor": "1.2", "status": "down", "leasable": "on"}  # fmt: skip
    body.update(changes)
    return body


def test_edit_with_a_bad_field_shows_the_error_beside_it_and_changes_nothing(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}/edit?lang=en")
    assert (
        page.status_code == 200
        and 'value="90.00"' in page.text
        and '<label for="hourly_rate_yuan">' in page.text
    )
    for field, bad in (("hourly_rate_yuan", "lots"), ("tolerance_mm", "-1"), ("materials", "aluminium, cheese"),
                       ("name", ""), ("speed_factor", "")):  # fmt: skip
        r = client.post(
            f"/owner/machines/{machine.id}/edit", data=edit_body(csrf(page.text), **{field: bad})
        )
        assert r.status_code == 422, (field, r.text)
        assert f'id="{field}-error"' in r.text and f'aria-describedby="{field}-error"' in r.text, (
            field
        )
        assert f'value="{bad}"' in r.text or field == "name"  # the input is kept
    session.refresh(machine)
    assert (machine.name, machine.hourly_rate_fen, machine.status) == (machine.name, 9000, "active")
    assert machine.materials == ["aluminium", "steel"]


def test_edit_saves_and_redirects(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner, leasable=False)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}/edit")
    r = client.post(
        f"/owner/machines/{machine.id}/edit",
        data=edit_body(csrf(page.text)),
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/owner/machines/{machine.id}"
    session.refresh(machine)
    assert (machine.name, machine.hourly_rate_fen, machine.min_booking_minutes, machine.status, machine.leasable) == (
        "Haas VF-2 renamed", 12050, 90, "down", True)  # fmt: skip
    assert (machine.tolerance_mm, machine.speed_factor) == (0.01, 1.2)


def test_another_owner_cannot_edit(client: TestClient, session: Session) -> None:
    machine = make_machine(session, owner=make_user(session, roles=(Role.owner,)))
    other = make_user(session, roles=(Role.owner,))
    sign_in(client, other.email)
    assert client.get(f"/owner/machines/{machine.id}/edit").status_code == 404
    token = csrf(client.get("/owner/machines").text)
    assert (
        client.post(f"/owner/machines/{machine.id}/edit", data=edit_body(token)).status_code == 404
    )
    assert (
        client.post(f"/owner/machines/{machine.id}/retire", data={"csrf_token": token}).status_code
        == 404
    )


def test_retire_asks_first_and_refuses_with_active_bookings(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    buyer = make_user(session, roles=(Role.buyer,))
    machine = make_machine(session, owner=owner)
    assert machine.id is not None
    booking = Booking(machine_id=machine.id, kind=BookingKind.lease.value, state=BookingState.confirmed,
                      start_at=hours_from_now(5), end_at=hours_from_now(8), org_id=buyer.org_id, price_fen=27000)  # fmt: skip
    session.add(booking)
    session.flush()
    sign_in(client, owner.email)
    confirm = client.get(f"/owner/machines/{machine.id}/retire?lang=en")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    r = client.post(f"/owner/machines/{machine.id}/retire", data={"csrf_token": csrf(confirm.text)})
    assert r.status_code == 409 and "active booking" in r.text
    session.refresh(machine)
    assert machine.status == "active"
    booking.state = BookingState.cancelled
    session.add(booking)
    session.flush()
    r = client.post(
        f"/owner/machines/{machine.id}/retire",
        data={"csrf_token": csrf(confirm.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/owner/machines"
    session.refresh(machine)
    assert machine.status == "retired"
    assert "Machine retired" in client.get("/owner/machines").text


def upload(client: TestClient, text: str, token: str) -> httpx2.Response:
    return client.post("/owner/machines/import", data={"csrf_token": token},
                       files={"file": ("machines.csv", text.encode("utf-8"), "text/csv")})  # fmt: skip


def test_import_with_a_bad_row_reports_row_and_field_and_writes_nothing(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    sign_in(client, owner.email)
    page = client.get("/owner/machines/import?lang=en")
    assert (
        page.status_code == 200
        and 'enctype="multipart/form-data"' in page.text
        and '<label for="file">' in page.text
    )
    text = "\n".join([
        HEADER,
        "Mill A,Haas VF-2,milling_3axis,aluminium;steel,762,406,508,0.02,1.0,95.50,60,true",
        "Mill B,Haas VF-3,milling_3axis,aluminium;cheese,762,406,508,0.02,1.0,95.50,60,false",
        "Mill C,DMG,milling_3axis,aluminium,762,406,508,0.02,1.0,free,60,false",
        "Lathe D,Mazak,turning,steel,300,0,500,0.02,1.0,80,sixty,maybe",
    ])  # fmt: skip
    r = upload(client, text, csrf(page.text))
    assert r.status_code == 422
    report = report_rows(r.text)
    assert ("3", "materials") in report and ("4", "hourly_rate_yuan") in report
    assert ("5", "leasable") in report
    assert not any(row == "2" for row, _ in report)
    assert "cheese" in r.text and "Nothing was imported" in r.text
    assert count_machines(session, owner) == 0
    missing = upload(client, "name,process_key\nX,milling_3axis\n", csrf(page.text))
    assert missing.status_code == 422 and "hourly_rate_yuan" in missing.text


def test_good_csv_creates_every_machine(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    sign_in(client, owner.email)
    page = client.get("/owner/machines/import")
    text = "\ufeff" + "\r\n".join([
        HEADER,
        "Mill A,Haas VF-2,milling_3axis,aluminium;steel,762,406,508,0.02,1.0,95.50,60,true",
        "",
        "Mill B,Haas VF-3,milling_3axis,aluminium,1016,508,635,0.01,1.1,120,120,false",
    ]) + "\r\n"  # fmt: skip
    r = upload(client, text, csrf(page.text))
    assert r.status_code == 200 and "2" in r.text
    rows = session.exec(
        select(Machine).where(Machine.owner_org_id == owner.org_id).order_by(col(Machine.name))
    ).all()
    assert [(m.name, m.materials, m.hourly_rate_fen, m.leasable, m.min_booking_minutes) for m in rows] == [
        ("Mill A", ["aluminium", "steel"], 9550, True, 60), ("Mill B", ["aluminium"], 12000, False, 120)]  # fmt: skip


def test_export_then_import_into_another_owner_gives_the_same_machines(
    client: TestClient, session: Session
) -> None:
    first = make_user(session, roles=(Role.owner,))
    make_machine(
        session,
        owner=first,
        name="Mill, with a comma",
        materials=["aluminium", "steel"],
        hourly_rate_fen=9055,
    )
    make_machine(session, owner=first, name="Lathe 2", process_key="turning", materials=["steel"], envelope_y_mm=0,
                 tolerance_mm=0.005, speed_factor=0.8, leasable=False, min_booking_minutes=240)  # fmt: skip
    make_machine(session, owner=make_user(session, roles=(Role.owner,)), name="Not mine")
    sign_in(client, first.email)
    exported = client.get("/owner/machines/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert exported.text.splitlines()[0] == HEADER and "Not mine" not in exported.text
    second = make_user(session, roles=(Role.owner,))
    client.cookies.clear()
    sign_in(client, second.email)
    r = upload(client, exported.text, csrf(client.get("/owner/machines/import").text))
    assert r.status_code == 200, r.text

    def shape(owner: User) -> list[tuple[object, ...]]:
        rows = session.exec(
            select(Machine).where(Machine.owner_org_id == owner.org_id).order_by(col(Machine.name))
        ).all()
        return [(m.name, m.make_model, m.process_key, m.materials, m.envelope_x_mm, m.envelope_y_mm, m.envelope_z_mm,
                 m.tolerance_mm, m.speed_factor, m.hourly_rate_fen, m.min_booking_minutes, m.leasable) for m in rows]  # fmt: skip

    assert shape(second) == shape(first) and len(shape(first)) == 2
    assert client.get("/owner/machines/export.csv").text == exported.text


def test_calendar_adds_a_window_refuses_overlap_and_past_and_withdraws(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    url = f"/owner/machines/{machine.id}/calendar"
    page = client.get(url + "?lang=en")
    assert (
        page.status_code == 200
        and 'class="calendar"' in page.text
        and page.text.count('<th scope="row">') == 14
    )
    assert '<label for="start_at">' in page.text
    start = re.search(r'name="start_at" type="datetime-local" value="([^"]+)"', page.text)
    end = re.search(r'name="end_at" type="datetime-local" value="([^"]+)"', page.text)
    assert start and end
    token = csrf(page.text)
    r = client.post(f"/owner/machines/{machine.id}/windows", data={"csrf_token": token, "start_at": start.group(1), "end_at": end.group(1)},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    windows = session.exec(
        select(AvailabilityWindow).where(AvailabilityWindow.machine_id == machine.id)
    ).all()
    assert len(windows) == 1
    # 09:00–17:00 Beijing time is 01:00–09:00 UTC
    assert (windows[0].start_at.hour, windows[0].end_at.hour) == (1, 9)
    shown = client.get(url)
    assert shown.text.count('<td class="cal offered"') == 8
    clash = client.post(
        f"/owner/machines/{machine.id}/windows",
        data={"csrf_token": token, "start_at": start.group(1), "end_at": end.group(1)},
    )
    assert clash.status_code == 409 and 'id="start_at-error"' in clash.text
    past = (dt.datetime.now() - dt.timedelta(days=3)).strftime("%Y-%m-%dT09:00")
    old = client.post(
        f"/owner/machines/{machine.id}/windows",
        data={"csrf_token": token, "start_at": past, "end_at": past[:-5] + "12:00"},
    )
    assert old.status_code == 422 and 'id="start_at-error"' in old.text
    garbage = client.post(
        f"/owner/machines/{machine.id}/windows",
        data={"csrf_token": token, "start_at": "soon", "end_at": ""},
    )
    assert garbage.status_code == 422 and 'id="end_at-error"' in garbage.text
    gone = client.post(
        f"/owner/machines/{machine.id}/windows/{windows[0].id}/delete",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert gone.status_code == 303
    assert (
        session.exec(
            select(func.count())
            .select_from(AvailabilityWindow)
            .where(AvailabilityWindow.machine_id == machine.id)
        ).one()
        == 0
    )


def test_calendar_shows_bookings(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    assert machine.id is not None
    make_window(session, machine=machine, start=hours_from_now(24), end=hours_from_now(48))
    session.add(Booking(machine_id=machine.id, kind=BookingKind.lease.value, state=BookingState.confirmed,
                        start_at=hours_from_now(30), end_at=hours_from_now(33), org_id=owner.org_id, price_fen=1))  # fmt: skip
    session.flush()
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}/calendar")
    assert (
        page.text.count('<td class="cal booked"') in (3, 4)
        and page.text.count('<td class="cal offered"') >= 20
    )


def test_earnings_page_shows_the_owner_totals(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    buyer = make_user(session, roles=(Role.buyer,))
    machine = make_machine(session, owner=owner)
    assert machine.id is not None and owner.org_id is not None and buyer.org_id is not None
    booking = Booking(machine_id=machine.id, kind=BookingKind.lease.value, state=BookingState.done,
                      start_at=hours_from_now(-5), end_at=hours_from_now(-2), org_id=buyer.org_id, price_fen=100_000)  # fmt: skip
    session.add(booking)
    session.flush()
    assert booking.id is not None
    # a captured ¥1,000.00 (5 % fee), of which ¥600.00 is already paid out
    ledger.post_transaction(session, kind="capture", booking_id=booking.id, entries=[
        (ledger.buyer_account(buyer.org_id), -100_000), (ledger.REVENUE, 5_000), (ledger.payable_account(owner.org_id), 95_000)])  # fmt: skip
    payout = Payment(booking_id=booking.id, kind="payout", purpose="payout:capture", status=PaymentStatus.succeeded,
                     idempotency_key="test-payout-1", amount_fen=60_000, payee_org_id=owner.org_id)  # fmt: skip
    session.add(payout)
    session.flush()
    ledger.post_transaction(session, kind="payout", payment=payout, entries=[
        (ledger.payable_account(owner.org_id), -60_000), (ledger.paid_out_account(owner.org_id), 60_000)])  # fmt: skip
    sign_in(client, owner.email)
    page = client.get("/owner/earnings?lang=en")
    assert page.status_code == 200
    earned = re.search(r'id="earned">.*?<b>([^<]+)</b>', page.text)
    paid = re.search(r'id="paid-out">.*?<b>([^<]+)</b>', page.text)
    payable = re.search(r'id="payable">.*?<b>([^<]+)</b>', page.text)
    gross = re.search(r'id="gross">.*?<b>([^<]+)</b>', page.text)
    fee = re.search(r'id="fee">.*?<b>([^<]+)</b>', page.text)
    assert earned and paid and payable and gross and fee
    assert [x.group(1) for x in (gross, fee, earned, paid, payable)] == [
        "¥1,000.00", "¥50.00", "¥950.00", "¥600.00", "¥350.00"]  # fmt: skip
    assert "payout:capture" in page.text
    assert "已打款" in client.get("/owner/earnings?lang=zh").text


def test_owner_pages_are_chinese_by_default(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    for url in (f"/owner/machines/{machine.id}/edit", "/owner/machines/import", f"/owner/machines/{machine.id}/calendar",
                "/owner/earnings", f"/owner/machines/{machine.id}/retire"):  # fmt: skip
        r = client.get(url)
        assert r.status_code == 200 and '<html lang="zh-CN">' in r.text, url
        en = client.get(url + "?lang=en")
        assert '<html lang="en">' in en.text, url
        client.get(url + "?lang=zh")


def upload_windows(client: TestClient, text: str) -> Any:
    token = csrf(client.get("/owner/windows/import").text)
    return client.post("/owner/windows/import", data={"csrf_token": token},
                       files={"file": ("windows.csv", text.encode("utf-8"), "text/csv")})  # fmt: skip


def test_windows_export_lists_only_mine_in_beijing_time_and_reimports_as_already_offered(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    mill = make_machine(session, owner=owner, name="Mill, north bay")
    start = hours_from_now(30).replace(minute=0)
    make_window(session, machine=mill, start=start, end=start + dt.timedelta(hours=8))
    make_window(
        session, machine=mill, start=hours_from_now(-30), end=hours_from_now(-20)
    )  # ended: not exported
    other = make_machine(session, owner=make_user(session, roles=(Role.owner,)), name="Not mine")
    make_window(session, machine=other, start=start, end=start + dt.timedelta(hours=8))
    sign_in(client, owner.email)
    exported = client.get("/owner/windows/export.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    local = start.astimezone(ZoneInfo("Asia/Shanghai"))
    assert lines[0] == "machine_id,machine_name,start,end,source" and len(lines) == 2
    assert lines[1] == (f'{mill.id},"Mill, north bay",{local:%Y-%m-%d %H:%M},'
                        f"{local + dt.timedelta(hours=8):%Y-%m-%d %H:%M},single")  # fmt: skip
    day = (local + dt.timedelta(days=2)).date()
    again = upload_windows(client, exported.text + f"{mill.id},,{day} 09:00,{day} 17:00,\n")
    assert again.status_code == 200, again.text
    assert "已开放 1 个时段（1 个此前已开放）" in again.text  # Chinese is the default language
    rows = session.exec(select(AvailabilityWindow).where(AvailabilityWindow.machine_id == mill.id)
                        .order_by(col(AvailabilityWindow.start_at))).all()  # fmt: skip
    assert len(rows) == 3 and (rows[-1].start_at.hour, rows[-1].end_at.hour) == (
        1,
        9,
    )  # 09:00-17:00 Beijing = 01-09 UTC


def test_windows_import_reports_every_bad_line_and_writes_nothing(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    mill = make_machine(session, owner=owner)
    other = make_machine(session, owner=make_user(session, roles=(Role.owner,)))
    make_window(session, machine=mill, start=hours_from_now(48), end=hours_from_now(56))
    sign_in(client, owner.email)
    page = client.get("/owner/windows/import?lang=en")
    assert (
        page.status_code == 200
        and 'action="/owner/windows/import"' in page.text
        and "machine_id,start,end" in page.text
    )
    ok = hours_from_now(100).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ok_end = hours_from_now(104).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    text = "\n".join([
        "machine_id,start,end",
        f"{mill.id},{ok},{ok_end}",                                             # line 2: fine (UTC with an offset)
        f"abc,{ok},{ok_end}",                                                    # 3: not a machine number
        f"{mill.id},tomorrow,{ok_end}",                                          # 4: not a time
        f"{other.id},{ok},{ok_end}",                                             # 5: another owner's machine
        f"{mill.id},{hours_from_now(50).isoformat()},{hours_from_now(52).isoformat()}",  # 6: overlaps offered time
    ])  # fmt: skip
    r = upload_windows(client, text)
    assert r.status_code == 422
    report = report_rows(r.text)
    assert report == [
        ("3", "machine_id"),
        ("4", "start"),
    ]  # the file's own errors come first, alone
    r = upload_windows(
        client, "\n".join(line for i, line in enumerate(text.split("\n")) if i not in (2, 3))
    )
    assert r.status_code == 422
    report = report_rows(r.text)
    assert report == [
        ("3", "machine_id"),
        ("4", "start"),
    ]  # lines 5 and 6 of the first file, renumbered
    assert (
        session.exec(
            select(func.count())
            .select_from(AvailabilityWindow)
            .where(AvailabilityWindow.machine_id == mill.id)
        ).one()
        == 1
    )
    missing = upload_windows(client, "machine,start\n1,2030-01-01 09:00\n")
    assert missing.status_code == 422 and "machine_id, end" in missing.text


def test_owner_issues_a_telemetry_token_and_the_machine_page_shows_what_it_reports(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}?lang=en")
    assert (
        f'action="/owner/machines/{machine.id}/telemetry-token"' in page.text
        and "not networked" in page.text
    )
    r = client.post(
        f"/owner/machines/{machine.id}/telemetry-token", data={"csrf_token": csrf(page.text)}
    )
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = re.search(r'id="token" readonly value="(mt_[^"]+)"', r.text)
    assert token and "/api/v1/telemetry" in r.text
    reported = client.post(
        "/api/v1/telemetry", json={"state": "alarm"}, headers={"X-Machine-Token": token.group(1)}
    )
    assert reported.status_code == 200, reported.text
    assert re.search(
        r'id="reported-state">alarm<', client.get(f"/owner/machines/{machine.id}").text
    )
    second = client.post(
        f"/owner/machines/{machine.id}/telemetry-token", data={"csrf_token": csrf(page.text)}
    )
    assert second.status_code == 200
    assert (
        client.post(
            "/api/v1/telemetry", json={"state": "idle"}, headers={"X-Machine-Token": token.group(1)}
        ).status_code
        == 401
    )
    other = make_user(session, roles=(Role.owner,))
    client.cookies.clear()
    sign_in(client, other.email)
    token_page = client.get("/login")
    assert (
        client.post(
            f"/owner/machines/{machine.id}/telemetry-token",
            data={"csrf_token": csrf(token_page.text)},
        ).status_code
        == 404
    )


def test_windows_import_names_the_real_line_after_blank_lines_and_refuses_odd_numbers(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    mill = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    text = (
        "machine_id,start,end\n\n\n²,2030-01-01 09:00,2030-01-01 10:00\n"
        f"{mill.id},0001-01-01 00:00,2030-01-01 10:00\n"
    )
    r = upload_windows(client, text)
    assert r.status_code == 422
    report = report_rows(r.text)
    assert report == [("4", "machine_id"), ("5", "start")]
