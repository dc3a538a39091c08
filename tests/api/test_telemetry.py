"""Machine telemetry over HTTP: reports with the machine's token, spans of state,
idempotent resends, refusals, and token rotation."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.config import Settings
from models import Machine, MachineStateSpan, Role, utcnow
from tests.factories import auth, make_user

URL = "/api/v1/telemetry"
MACHINE = {"name": "Haas VF-2", "process_key": "milling_3axis", "materials": ["aluminium"], "hourly_rate_fen": 9000,
           "lat": 29.9, "lon": 121.8}  # fmt: skip


def listed(
    client: TestClient, settings: Settings, session: Session
) -> tuple[int, str, dict[str, str]]:
    owner = make_user(session, roles=(Role.owner,))
    r = client.post("/api/v1/machines", json=MACHINE, headers=auth(settings, owner))
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["telemetry_token"], auth(settings, owner)


def spans(session: Session, machine_id: int) -> list[tuple[str, dt.datetime, dt.datetime, int]]:
    session.expire_all()
    rows = session.exec(select(MachineStateSpan).where(MachineStateSpan.machine_id == machine_id)
                        .order_by(col(MachineStateSpan.start_at))).all()  # fmt: skip
    return [(s.state, s.start_at, s.end_at, s.reports) for s in rows]


def test_a_report_sets_the_state_the_machine_shows(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, owner = listed(client, settings, session)
    r = client.post(URL, json={"state": "running"}, headers={"X-Machine-Token": token})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["machine_id"], body["state"], body["accepted"], body["ignored"]) == (
        machine_id,
        "running",
        1,
        0,
    )
    shown = client.get(f"/api/v1/machines/{machine_id}", headers=owner).json()
    assert (
        shown["reported_state"] == "running"
        and shown["last_reported_at"] == body["last_reported_at"]
    )
    buyer = auth(
        settings, make_user(session, roles=(Role.buyer,))
    )  # another company's machine state is not theirs to see
    seen = client.get(f"/api/v1/machines/{machine_id}", headers=buyer).json()
    assert (
        seen["id"] == machine_id
        and seen["reported_state"] is None
        and seen["last_reported_at"] is None
    )
    listed_ = client.get("/api/v1/machines", headers=buyer).json()["data"]
    assert [m["reported_state"] for m in listed_ if m["id"] == machine_id] == [None]


def test_reports_become_spans_and_a_resend_changes_nothing(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, _ = listed(client, settings, session)
    t0 = (utcnow() - dt.timedelta(hours=6)).replace(second=0, microsecond=0)

    def at(minutes: int, state: str) -> dict[str, str]:
        return {"state": state, "at": (t0 + dt.timedelta(minutes=minutes)).isoformat()}

    batch = {
        "reports": [
            at(20, "idle"),
            at(0, "running"),
            at(10, "running"),
            at(200, "running"),
            at(230, "alarm"),
        ]
    }
    r = client.post(URL + "/batch", json=batch, headers={"X-Machine-Token": token})
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["ignored"], r.json()["state"]) == (5, 0, "alarm")

    def m(minutes: int) -> dt.datetime:
        return t0 + dt.timedelta(minutes=minutes)

    expected = [
        ("running", m(0), m(20), 2),  # 0 and 10 running; it ran until the idle report at 20
        (
            "idle",
            m(20),
            m(20),
            1,
        ),  # then three silent hours (more than the 60-minute hold): unknown
        ("running", m(200), m(230), 1),
        ("alarm", m(230), m(230), 1),
    ]
    assert spans(session, machine_id) == expected
    again = client.post(URL + "/batch", json=batch, headers={"X-Machine-Token": token})
    assert (again.json()["accepted"], again.json()["ignored"]) == (0, 5)
    older = client.post(URL, json=at(100, "running"), headers={"X-Machine-Token": token})
    assert (
        older.status_code == 200
        and older.json()["ignored"] == 1
        and older.json()["state"] == "alarm"
    )
    assert spans(session, machine_id) == expected


def test_refusals_name_the_field_and_write_nothing(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, owner = listed(client, settings, session)
    assert client.post(URL, json={"state": "running"}).status_code == 401
    assert (
        client.post(
            URL, json={"state": "running"}, headers={"X-Machine-Token": "mt_forged"}
        ).status_code
        == 401
    )
    future = (utcnow() + dt.timedelta(hours=2)).isoformat()
    r = client.post(
        URL, json={"state": "running", "at": future}, headers={"X-Machine-Token": token}
    )
    assert r.status_code == 422 and r.json()["field"] == "at"
    old = (utcnow() - dt.timedelta(days=30)).isoformat()
    batch = {"reports": [{"state": "idle"}, {"state": "running", "at": old}]}
    r = client.post(URL + "/batch", json=batch, headers={"X-Machine-Token": token})
    assert r.status_code == 422 and r.json()["field"] == "reports[1].at"
    r = client.post(URL, json={"state": "exploded"}, headers={"X-Machine-Token": token})
    assert r.status_code == 422 and r.json()["field"] == "state"
    r = client.post(URL + "/batch", json={"reports": []}, headers={"X-Machine-Token": token})
    assert r.status_code == 422 and r.json()["field"] == "reports"
    assert spans(session, machine_id) == []
    assert client.post(f"/api/v1/machines/{machine_id}/retire", headers=owner).status_code == 200
    assert (
        client.post(URL, json={"state": "idle"}, headers={"X-Machine-Token": token}).status_code
        == 403
    )
    assert spans(session, machine_id) == []


def test_rotation_revokes_the_old_token_and_only_the_owner_rotates(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, owner = listed(client, settings, session)
    stranger = auth(settings, make_user(session, roles=(Role.owner,)))
    assert (
        client.post(f"/api/v1/machines/{machine_id}/telemetry-token", headers=stranger).status_code
        == 404
    )
    r = client.post(f"/api/v1/machines/{machine_id}/telemetry-token", headers=owner)
    assert r.status_code == 200 and r.json()["machine_id"] == machine_id
    new = r.json()["telemetry_token"]
    assert new != token and new.startswith("mt_")
    assert (
        client.post(URL, json={"state": "idle"}, headers={"X-Machine-Token": token}).status_code
        == 401
    )
    assert (
        client.post(URL, json={"state": "idle"}, headers={"X-Machine-Token": new}).status_code
        == 200
    )
    session.expire_all()
    machine = session.get(Machine, machine_id)
    assert machine is not None and machine.reported_state == "idle"


def test_spans_count_their_seconds_inside_offered_time(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, owner = listed(client, settings, session)
    now = utcnow().replace(second=0, microsecond=0)
    window = client.post(f"/api/v1/machines/{machine_id}/windows", headers=owner, json={
        "start_at": now.isoformat(), "end_at": (now + dt.timedelta(hours=2)).isoformat()}).json()  # fmt: skip
    # the machine runs from 30 minutes before the window opens; reports every 20 minutes
    reports = [
        {"state": "running", "at": (now + dt.timedelta(minutes=m)).isoformat()}
        for m in (-30, -10, 3)
    ]
    r = client.post(URL + "/batch", json={"reports": reports}, headers={"X-Machine-Token": token})
    assert r.status_code == 200, r.text
    session.expire_all()
    (span,) = session.exec(
        select(MachineStateSpan).where(MachineStateSpan.machine_id == machine_id)
    ).all()
    assert (span.end_at - span.start_at, span.offered_s) == (dt.timedelta(minutes=33), 3 * 60)
    gone = client.delete(f"/api/v1/machines/{machine_id}/windows/{window['id']}", headers=owner)
    assert gone.status_code == 204
    session.expire_all()
    reread = session.get(MachineStateSpan, span.id)
    assert reread is not None and reread.offered_s == 0


def test_one_request_per_change_counts_each_closed_span(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, owner = listed(client, settings, session)
    now = utcnow().replace(second=0, microsecond=0)
    client.post(f"/api/v1/machines/{machine_id}/windows", headers=owner, json={
        "start_at": now.isoformat(), "end_at": (now + dt.timedelta(hours=2)).isoformat()})  # fmt: skip
    for minutes, state in ((-50, "running"), (-30, "idle"), (-20, "running"), (2, "idle")):
        at = (now + dt.timedelta(minutes=minutes)).isoformat()
        assert (
            client.post(
                URL, json={"state": state, "at": at}, headers={"X-Machine-Token": token}
            ).status_code
            == 200
        )
    got = [
        (state, end - begin, reports) for state, begin, end, reports in spans(session, machine_id)
    ]
    assert got == [("running", dt.timedelta(minutes=20), 1), ("idle", dt.timedelta(minutes=10), 1),
                   ("running", dt.timedelta(minutes=22), 1), ("idle", dt.timedelta(0), 1)]  # fmt: skip
    session.expire_all()
    offered = [s.offered_s for s in session.exec(select(MachineStateSpan).where(MachineStateSpan.machine_id == machine_id)
                                                 .order_by(col(MachineStateSpan.start_at))).all()]  # fmt: skip
    assert offered == [
        0,
        0,
        2 * 60,
        0,
    ]  # the window opened at `now`: 2 of the last running minutes are inside


def test_two_states_at_one_moment_keep_the_last_and_a_resend_is_ignored(
    client: TestClient, session: Session, settings: Settings
) -> None:
    machine_id, token, _ = listed(client, settings, session)
    at = (utcnow() - dt.timedelta(minutes=5)).isoformat()
    batch = {"reports": [{"state": "running", "at": at}, {"state": "idle", "at": at}]}
    first = client.post(URL + "/batch", json=batch, headers={"X-Machine-Token": token}).json()
    assert (first["accepted"], first["ignored"], first["state"]) == (1, 1, "idle")
    for _ in range(2):
        again = client.post(URL + "/batch", json=batch, headers={"X-Machine-Token": token}).json()
        assert (again["accepted"], again["ignored"]) == (0, 2)
    assert [s[0] for s in spans(session, machine_id)] == ["idle"]
