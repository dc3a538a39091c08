from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.config import Settings
from app.machines.availability import expand_rule
from models import AvailabilityRule, AvailabilityWindow, Machine, Role
from tests.factories import auth, hours_from_now, make_machine, make_user

SHANGHAI = ZoneInfo("Asia/Shanghai")


def count_windows(session: Session, machine: Machine) -> int:
    assert machine.id is not None
    return session.exec(
        select(func.count())
        .select_from(AvailabilityWindow)
        .where(AvailabilityWindow.machine_id == machine.id)
    ).one()


class TestExpandRule:
    def test_overnight_range_runs_into_the_next_day(self) -> None:
        spans = expand_rule(
            weekdays=[0, 1, 2, 3, 4], start_time="20:00", end_time="08:00",
            valid_from=dt.date(2030, 1, 7), valid_until=dt.date(2030, 1, 13), tz=SHANGHAI,
            not_before=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        )  # fmt: skip
        assert len(spans) == 5  # Monday 7th to Friday 11th; the weekend is not offered
        first_start, first_end = spans[0]
        assert first_start == dt.datetime(2030, 1, 7, 12, 0, tzinfo=dt.UTC)  # 20:00 in Shanghai
        assert first_end == dt.datetime(2030, 1, 8, 0, 0, tzinfo=dt.UTC)  # 08:00 next morning
        assert spans[-1][1] == dt.datetime(2030, 1, 12, 0, 0, tzinfo=dt.UTC)  # Saturday 08:00

    def test_started_window_is_cut_to_now_and_ended_ones_dropped(self) -> None:
        now = dt.datetime(2030, 1, 7, 14, 0, tzinfo=dt.UTC)  # Monday 22:00 in Shanghai
        spans = expand_rule(
            weekdays=[0], start_time="08:00", end_time="18:00", valid_from=dt.date(2030, 1, 7),
            valid_until=dt.date(2030, 1, 14), tz=SHANGHAI, not_before=now,
        )  # fmt: skip
        assert spans == [
            (
                dt.datetime(2030, 1, 14, 0, 0, tzinfo=dt.UTC),
                dt.datetime(2030, 1, 14, 10, 0, tzinfo=dt.UTC),
            )
        ]

    def test_same_start_and_end_is_a_full_day(self) -> None:
        spans = expand_rule(
            weekdays=[5], start_time="08:00", end_time="08:00", valid_from=dt.date(2030, 1, 12),
            valid_until=dt.date(2030, 1, 12), tz=SHANGHAI, not_before=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        )  # fmt: skip
        assert spans[0][1] - spans[0][0] == dt.timedelta(hours=24)


class TestWindows:
    def test_create_list_delete(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        url = f"/api/v1/machines/{machine.id}/windows"
        body = {"start_at": hours_from_now(2).isoformat(), "end_at": hours_from_now(10).isoformat()}
        r = client.post(url, json=body, headers=auth(settings, owner))
        assert r.status_code == 201, r.text
        assert client.get(url, headers=auth(settings, owner)).json()[0]["id"] == r.json()["id"]
        assert (
            client.delete(f"{url}/{r.json()['id']}", headers=auth(settings, owner)).status_code
            == 204
        )
        assert count_windows(session, machine) == 0

    def test_overlap_past_and_reversed_are_refused(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        url, headers = f"/api/v1/machines/{machine.id}/windows", auth(settings, owner)
        ok = {"start_at": hours_from_now(2).isoformat(), "end_at": hours_from_now(10).isoformat()}
        assert client.post(url, json=ok, headers=headers).status_code == 201
        cases = [
            (
                {
                    "start_at": hours_from_now(9).isoformat(),
                    "end_at": hours_from_now(12).isoformat(),
                },
                409,
                "start_at",
            ),
            (
                {
                    "start_at": hours_from_now(-30).isoformat(),
                    "end_at": hours_from_now(-20).isoformat(),
                },
                422,
                "start_at",
            ),
            (
                {
                    "start_at": hours_from_now(30).isoformat(),
                    "end_at": hours_from_now(20).isoformat(),
                },
                422,
                "end_at",
            ),
            ({"start_at": "not a time", "end_at": hours_from_now(20).isoformat()}, 422, "start_at"),
        ]
        for body, status, field in cases:
            r = client.post(url, json=body, headers=headers)
            assert (r.status_code, r.json()["field"]) == (status, field), body
        assert count_windows(session, machine) == 1

    def test_touching_windows_are_fine(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        url, headers = f"/api/v1/machines/{machine.id}/windows", auth(settings, owner)
        a = {"start_at": hours_from_now(2).isoformat(), "end_at": hours_from_now(10).isoformat()}
        b = {"start_at": hours_from_now(10).isoformat(), "end_at": hours_from_now(12).isoformat()}
        assert client.post(url, json=a, headers=headers).status_code == 201
        assert client.post(url, json=b, headers=headers).status_code == 201

    def test_only_the_owner_edits(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner)
        body = {"start_at": hours_from_now(2).isoformat(), "end_at": hours_from_now(10).isoformat()}
        r = client.post(
            f"/api/v1/machines/{machine.id}/windows", json=body, headers=auth(settings, buyer)
        )
        assert r.status_code == 404


class TestRules:
    def test_night_shift_rule_expands_into_windows(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        today = dt.datetime.now(SHANGHAI).date()
        body = {
            "weekdays": [0, 1, 2, 3, 4], "start_time": "20:00", "end_time": "08:00",
            "valid_from": (today + dt.timedelta(days=1)).isoformat(),
            "valid_until": (today + dt.timedelta(days=14)).isoformat(),
        }  # fmt: skip
        r = client.post(
            f"/api/v1/machines/{machine.id}/rules", json=body, headers=auth(settings, owner)
        )
        assert r.status_code == 201, r.text
        assert r.json()["windows_created"] == 10
        windows = client.get(
            f"/api/v1/machines/{machine.id}/windows", headers=auth(settings, owner)
        ).json()
        assert len(windows) == 10
        for w in windows:
            start = dt.datetime.fromisoformat(w["start_at"]).astimezone(SHANGHAI)
            end = dt.datetime.fromisoformat(w["end_at"]).astimezone(SHANGHAI)
            assert (start.hour, end.hour, (end - start).total_seconds()) == (20, 8, 12 * 3600)
            assert start.weekday() < 5
        # deleting the rule removes its windows
        rule_id = r.json()["id"]
        assert (
            client.delete(
                f"/api/v1/machines/{machine.id}/rules/{rule_id}", headers=auth(settings, owner)
            ).status_code
            == 204
        )
        assert count_windows(session, machine) == 0

    def test_rule_overlapping_a_window_writes_nothing(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        today = dt.datetime.now(SHANGHAI).date()
        day = today + dt.timedelta(days=3)
        single = dt.datetime.combine(day, dt.time(22, 0), SHANGHAI)
        headers = auth(settings, owner)
        w = {"start_at": single.isoformat(), "end_at": (single + dt.timedelta(hours=1)).isoformat()}
        assert (
            client.post(
                f"/api/v1/machines/{machine.id}/windows", json=w, headers=headers
            ).status_code
            == 201
        )
        body = {"weekdays": list(range(7)), "start_time": "20:00", "end_time": "08:00",
                "valid_from": today.isoformat(), "valid_until": (today + dt.timedelta(days=7)).isoformat()}  # fmt: skip
        r = client.post(f"/api/v1/machines/{machine.id}/rules", json=body, headers=headers)
        assert r.status_code == 409 and r.json()["field"] == "start_time"
        assert count_windows(session, machine) == 1
        assert session.exec(select(func.count()).select_from(AvailabilityRule)).one() == 0

    def test_bad_rules(self, client: TestClient, session: Session, settings: Settings) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        today = dt.datetime.now(SHANGHAI).date()
        base: dict[str, Any] = {"weekdays": [1], "start_time": "20:00", "end_time": "08:00",
                "valid_from": today.isoformat(), "valid_until": (today + dt.timedelta(days=7)).isoformat()}  # fmt: skip
        cases: list[tuple[dict[str, Any], str]] = [
            ({"weekdays": [7]}, "weekdays"),
            ({"weekdays": []}, "weekdays"),
            ({"start_time": "25:00"}, "start_time"),
            ({"valid_until": (today - dt.timedelta(days=1)).isoformat()}, "valid_until"),
            ({"valid_until": (today + dt.timedelta(days=400)).isoformat()}, "valid_until"),
        ]
        for change, field in cases:
            r = client.post(
                f"/api/v1/machines/{machine.id}/rules",
                json={**base, **change},
                headers=auth(settings, owner),
            )
            assert (r.status_code, r.json()["field"]) == (422, field), change
        assert count_windows(session, machine) == 0


class TestWindowImport:
    URL = "/api/v1/windows/import"

    @staticmethod
    def row(machine_id: int, start_h: float, end_h: float) -> dict[str, object]:
        return {"machine_id": machine_id, "start_at": hours_from_now(start_h).isoformat(),
                "end_at": hours_from_now(end_h).isoformat()}  # fmt: skip

    def test_imports_over_several_machines_and_a_repeat_only_skips(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        a, b = make_machine(session, owner=owner), make_machine(session, owner=owner)
        assert a.id is not None and b.id is not None
        body = {"windows": [self.row(a.id, 2, 10), self.row(a.id, 10, 20), self.row(b.id, 2, 10)]}
        r = client.post(self.URL, json=body, headers=auth(settings, owner))
        assert r.status_code == 201, r.text
        assert r.json() == {"created": 3, "already_offered": 0}
        assert (count_windows(session, a), count_windows(session, b)) == (2, 1)
        again = client.post(self.URL, json=body, headers=auth(settings, owner))
        assert again.status_code == 201 and again.json() == {"created": 0, "already_offered": 3}
        assert (count_windows(session, a), count_windows(session, b)) == (2, 1)
        # the touching windows stay two rows, and the machine's listing shows them
        listed = client.get(
            f"/api/v1/machines/{a.id}/windows", headers=auth(settings, owner)
        ).json()
        assert [w["end_at"] for w in listed][0] == listed[1]["start_at"]

    def test_every_bad_row_is_reported_and_nothing_is_written(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        mine = make_machine(session, owner=owner)
        theirs = make_machine(session, owner=make_user(session, roles=(Role.owner,)))
        assert mine.id is not None and theirs.id is not None
        single = {
            "start_at": hours_from_now(50).isoformat(),
            "end_at": hours_from_now(60).isoformat(),
        }
        assert (
            client.post(
                f"/api/v1/machines/{mine.id}/windows", json=single, headers=auth(settings, owner)
            ).status_code
            == 201
        )
        assert count_windows(session, mine) == 1
        body = {"windows": [
            self.row(mine.id, 2, 10),      # 0: good
            self.row(theirs.id, 2, 10),    # 1: another owner's machine
            self.row(mine.id, 12, 11),     # 2: ends before it starts
            self.row(mine.id, -48, -40),   # 3: in the past
            self.row(mine.id, 55, 58),     # 4: inside the offered 50-60
            self.row(mine.id, 5, 12),      # 5: overlaps row 0
            self.row(mine.id, 100, 900),   # 6: longer than 31 days
        ]}  # fmt: skip
        r = client.post(self.URL, json=body, headers=auth(settings, owner))
        assert r.status_code == 422, r.text
        detail = r.json()
        assert detail["field"] == "windows[1].machine_id" and detail["detail"].startswith(
            "6 rows refused"
        )
        assert [(p["row"], p["field"]) for p in detail["problems"]] == [
            (1, "machine_id"), (2, "end_at"), (3, "start_at"), (4, "start_at"), (5, "start_at"), (6, "end_at")]  # fmt: skip
        assert "overlaps row 0" in detail["problems"][4]["message"]
        assert count_windows(session, mine) == 1 and count_windows(session, theirs) == 0

    def test_only_overlaps_is_a_conflict(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        assert machine.id is not None
        first = client.post(
            self.URL, json={"windows": [self.row(machine.id, 2, 10)]}, headers=auth(settings, owner)
        )
        assert first.status_code == 201
        r = client.post(self.URL, json={"windows": [self.row(machine.id, 3, 12), self.row(machine.id, 20, 30)]},
                        headers=auth(settings, owner))  # fmt: skip
        assert r.status_code == 409 and r.json()["field"] == "windows[0].start_at"
        assert count_windows(session, machine) == 1

    def test_refused_to_buyers_strangers_and_empty_lists(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        owner = make_user(session, roles=(Role.owner,))
        machine = make_machine(session, owner=owner)
        assert machine.id is not None
        body = {"windows": [self.row(machine.id, 2, 10)]}
        buyer = make_user(session, roles=(Role.buyer,))
        assert client.post(self.URL, json=body, headers=auth(settings, buyer)).status_code == 403
        assert client.post(self.URL, json=body).status_code == 401
        empty = client.post(self.URL, json={"windows": []}, headers=auth(settings, owner))
        assert empty.status_code == 422 and empty.json()["field"] == "windows"
        bad = client.post(self.URL, json={"windows": [{"machine_id": machine.id, "start_at": "soon"}]},
                          headers=auth(settings, owner))  # fmt: skip
        assert bad.status_code == 422 and bad.json()["field"].startswith("windows[0].")
        assert count_windows(session, machine) == 0
