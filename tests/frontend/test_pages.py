from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from frontend.i18n import _messages
from models import AvailabilityRule, Machine, Order, Role
from tests.factories import (
    PASSWORD,
    hours_from_now,
    make_cluster,
    make_machine,
    make_user,
    make_window,
)


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has a CSRF token"
    return m.group(1)


def sign_in(client: TestClient, email: str) -> None:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_home_is_chinese_by_default_and_english_on_request(client: TestClient) -> None:
    r = client.get("/")
    assert '<html lang="zh-CN">' in r.text and "演示账号" in r.text
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text and "Demo logins" in en.text
    assert '<html lang="en">' in client.get("/login").text  # remembered in the session
    assert '<html lang="zh-CN">' in client.get("/login?lang=zh").text


def test_login_needs_csrf_and_right_password(client: TestClient, session: Session) -> None:
    user = make_user(session, roles=(Role.buyer,))
    r = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "forged"}
    )
    assert r.status_code == 403
    page = client.get("/login")
    bad = client.post(
        "/login", data={"email": user.email, "password": "nope", "csrf_token": csrf(page.text)}
    )
    assert bad.status_code == 401 and "邮箱或密码错误" in bad.text
    assert client.get("/buyer/orders", follow_redirects=False).headers["location"] == "/login"
    sign_in(client, user.email)
    assert client.get("/buyer/orders").status_code == 200


def test_owner_lists_a_machine_with_errors_beside_fields(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    sign_in(client, owner.email)
    form = client.get("/owner/machines/new?lang=en")
    token = csrf(form.text)
    before = session.exec(select(func.count()).select_from(Machine)).one()
    body = {"csrf_token": token, "name": "Haas VF-2 #9", "process_key": "milling_3axis", "materials": "aluminium, cheese",
            "hourly_rate_yuan": "abc", "min_booking_minutes": "60"}  # fmt: skip
    r = client.post("/owner/machines/new", data=body)
    assert r.status_code == 422
    assert 'id="hourly_rate_yuan-error"' in r.text
    body["hourly_rate_yuan"] = "95.5"
    r = client.post("/owner/machines/new", data=body)
    assert r.status_code == 422 and "cheese" in r.text
    assert session.exec(select(func.count()).select_from(Machine)).one() == before
    r = client.post("/owner/machines/new", data={**body, "process_key": "juggling"})
    assert r.status_code == 422 and 'aria-describedby="process_key-error"' in r.text
    assert 'id="process_key-error"' in r.text
    body["materials"] = "aluminium, steel"
    r = client.post("/owner/machines/new", data=body, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "Haas VF-2 #9" in page.text and "¥95.50" in page.text and "<svg" in page.text


def test_owner_adds_a_night_shift_rule(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}?lang=en")
    first = re.search(r'name="valid_from" type="date" value="([^"]+)"', page.text)
    last = re.search(r'name="valid_until" type="date" value="([^"]+)"', page.text)
    assert first and last
    r = client.post(f"/owner/machines/{machine.id}/rules", data={
        "csrf_token": csrf(page.text), "weekdays": ["0", "1", "2", "3", "4"], "start_time": "20:00",
        "end_time": "08:00", "valid_from": first.group(1), "valid_until": last.group(1),
    }, follow_redirects=True)  # fmt: skip
    assert r.status_code == 200
    assert re.search(r"\d+ windows offered", r.text), r.text
    rules = session.exec(
        select(AvailabilityRule).where(AvailabilityRule.machine_id == machine.id)
    ).all()
    assert [(x.start_time, x.end_time, x.weekdays) for x in rules] == [
        ("20:00", "08:00", [0, 1, 2, 3, 4])
    ]
    feed = re.search(
        r'id="ical-url" readonly value="([^"]+)"', client.get(f"/owner/machines/{machine.id}").text
    )
    assert feed
    client.cookies.clear()  # a calendar app has no session: the URL is the key
    ics = client.get(feed.group(1))
    assert ics.text.startswith("BEGIN:VCALENDAR") and ics.headers["content-type"].startswith(
        "text/calendar"
    )
    assert client.get(feed.group(1).replace(".ics", "x.ics")).status_code == 404


def order_form(client: TestClient) -> tuple[str, str, str]:
    """The new-order form: (CSRF token, its default release and due times)."""
    form = client.get("/buyer/orders/new?lang=en")
    release = re.search(r'name="release_at" type="datetime-local" value="([^"]+)"', form.text)
    due = re.search(r'name="due_at" type="datetime-local" value="([^"]+)"', form.text)
    assert release and due
    return csrf(form.text), release.group(1), due.group(1)


def test_buyer_posts_a_two_step_order_sees_quotes_and_confirms(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    for process, materials in (("milling_3axis", ["aluminium"]), ("anodizing", ["aluminium"])):
        machine = make_machine(session, owner=owner, process_key=process, materials=materials)
        make_window(session, machine=machine, start=hours_from_now(20), end=hours_from_now(24 * 6))
    buyer = make_user(session, roles=(Role.buyer,))
    sign_in(client, buyer.email)
    token, release_at, due_at = order_form(client)
    data = {"csrf_token": token, "title": "Brackets", "release_at": release_at, "due_at": due_at,
            "budget_yuan": "3000", "op0_process": "milling_3axis", "op0_material": "aluminium", "op0_quantity": "50",
            "op0_minutes": "240", "op1_process": "anodizing", "op1_material": "aluminium", "op1_quantity": "50", "op1_minutes": "120"}  # fmt: skip
    bad_file = {"attachment": ("virus.exe", b"MZ", "application/x-msdownload")}
    r = client.post("/buyer/orders/new", data=data, files=bad_file)
    assert r.status_code == 415 and 'id="attachment-error"' in r.text
    assert session.exec(select(func.count()).select_from(Order)).one() == 0  # nothing written
    files = {"attachment": ("drawing.pdf", b"%PDF-1.7 bracket", "application/pdf")}
    r = client.post("/buyer/orders/new", data=data, files=files, follow_redirects=False)
    assert r.status_code == 303, r.text
    order = session.exec(select(Order).where(Order.buyer_org_id == buyer.org_id)).one()
    assert (order.status, order.budget_fen) == ("draft", 300000)
    quote = client.get(r.headers["location"])
    options = quote.text.count('class="card quote-option"')
    assert 1 <= options <= 3 and "Confirm this option" in quote.text
    done = client.post(f"/buyer/orders/{order.id}/confirm",
                       data={"csrf_token": csrf(quote.text), "option": "cheapest", "total_fen": "12345"})  # fmt: skip
    assert done.status_code == 200 and "drawing.pdf" in done.text
    session.refresh(order)
    assert order.status == "open"
    assert "Quote accepted: cheapest" in done.text
    data["op1_material"] = "steel"  # anodizing takes aluminium only
    bad = client.post("/buyer/orders/new", data=data)
    assert bad.status_code == 422 and "steel" in bad.text


def test_operator_dashboard_is_scoped(client: TestClient, session: Session) -> None:
    from models import Organization

    operator = make_user(session, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    make_machine(session, owner=make_user(session, roles=(Role.owner,)), cluster_id=cluster.id)
    sign_in(client, operator.email)
    r = client.get("/operator")
    assert r.status_code == 200 and 'id="booked-hours"' in r.text
    assert (
        'id="networking-rate">0.0 %' in r.text and 'id="actual-utilization">—' in r.text
    )  # nothing reported yet
    header = client.get("/operator/export/processes.csv").text.splitlines()[0]
    assert header.startswith("process,family") and header.endswith(
        "running_h_7d,actual_utilization_7d"
    )
    buyer = make_user(session, roles=(Role.buyer,))
    client.cookies.clear()
    sign_in(client, buyer.email)
    assert client.get("/operator").status_code == 403


def test_every_ui_string_has_a_chinese_translation() -> None:
    root = Path(__file__).resolve().parents[2] / "frontend"
    ids: set[str] = set()
    for path in [*root.glob("templates/**/*.html"), *root.glob("**/*.py")]:
        ids |= {
            m.group(2)
            for m in re.finditer(r"""(?:\b_|gettext)\(\s*(["'])(.+?)\1""", path.read_text())
        }
    missing = sorted(i for i in ids if i not in _messages("zh_CN"))
    assert len(ids) > 100 and missing == []


def test_buyer_leases_a_slot_picked_from_free_time(client: TestClient, session: Session) -> None:
    from models import Booking, BookingKind, BookingState

    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner, min_booking_minutes=120, hourly_rate_fen=9000)
    assert machine.id is not None
    make_window(session, machine=machine, start=hours_from_now(10), end=hours_from_now(20))
    other = make_user(session, roles=(Role.buyer,))
    session.add(Booking(machine_id=machine.id, kind=BookingKind.lease, state=BookingState.confirmed, start_at=hours_from_now(12),
                        end_at=hours_from_now(14), org_id=other.org_id, price_fen=1))  # fmt: skip
    session.flush()
    buyer = make_user(session, roles=(Role.buyer,))
    sign_in(client, buyer.email)
    page = client.get(f"/buyer/machines/{machine.id}?lang=en")
    picks = re.findall(r'class="pick" href="\?start=([^&]+)&end=([^"]+)"', page.text)
    assert len(picks) == 2  # 10–12 and 14–20: the booking splits the window
    chosen = client.get(f"/buyer/machines/{machine.id}?start={picks[1][0]}&end={picks[1][1]}")
    assert f'value="{picks[1][0]}"' in chosen.text
    r = client.post(f"/buyer/machines/{machine.id}/lease", data={"csrf_token": csrf(chosen.text),
                    "start_at": picks[1][0], "end_at": picks[1][1]}, follow_redirects=True)  # fmt: skip
    assert r.status_code == 200 and "¥180.00" in r.text  # two hours at ¥90
    clash = client.post(f"/buyer/machines/{machine.id}/lease", data={"csrf_token": csrf(chosen.text),
                        "start_at": picks[1][0], "end_at": picks[1][1]})  # fmt: skip
    assert clash.status_code == 409 and 'id="start_at-error"' in clash.text


def test_rule_errors_stand_beside_their_fields(client: TestClient, session: Session) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}?lang=en")
    body = {"csrf_token": csrf(page.text), "start_time": "20:00", "end_time": "08:00",
            "valid_from": "2020-01-01", "valid_until": "2020-01-31", "weekdays": ["1"]}  # fmt: skip
    r = client.post(f"/owner/machines/{machine.id}/rules", data=body)
    assert (
        r.status_code == 422
        and 'id="valid_until-error"' in r.text
        and 'value="2020-01-31"' in r.text
    )
    r = client.post(f"/owner/machines/{machine.id}/rules", data={**body, "weekdays": []})
    assert r.status_code == 422 and 'id="weekdays-error"' in r.text
    rules = session.exec(
        select(AvailabilityRule).where(AvailabilityRule.machine_id == machine.id)
    ).all()
    assert rules == []


def test_an_order_and_its_file_are_written_together_or_not_at_all(
    client: TestClient, session: Session
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    sign_in(client, buyer.email)
    token, release_at, due_at = order_form(client)
    data = {"csrf_token": token, "title": "Pins", "release_at": release_at, "due_at": due_at,
            "op0_process": "turning", "op0_material": "brass", "op0_minutes": "60"}  # fmt: skip
    for budget in ("inf", "1e400", "12.345", "-5"):
        r = client.post("/buyer/orders/new", data={**data, "budget_yuan": budget})
        assert r.status_code == 422 and 'id="budget_yuan-error"' in r.text, budget
    r = client.post(
        "/buyer/orders/new", data=data, files={"attachment": ("empty.pdf", b"", "application/pdf")}
    )
    assert r.status_code == 422 and 'id="attachment-error"' in r.text
    assert session.exec(select(func.count()).select_from(Order)).one() == 0
