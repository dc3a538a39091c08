"""Form fields that are not what the form offers (a tampered or scripted post) are a
form error beside the field, never a server error, and nothing is written."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from models import AvailabilityRule, MatchRun, Organization, Role
from tests.factories import make_cluster, make_machine, make_user
from tests.frontend.test_pages import csrf, sign_in


def count_runs(session: Session) -> int:
    return session.exec(select(func.count()).select_from(MatchRun)).one()


def test_a_match_run_form_with_a_value_that_is_not_one_names_the_field(
    client: TestClient, session: Session
) -> None:
    operator = make_user(session, roles=(Role.operator,))
    cluster = make_cluster(session, operator_org=session.get(Organization, operator.org_id))
    sign_in(client, operator.email)
    token = csrf(client.get("/operator/match-runs?lang=en").text)
    before = count_runs(session)
    for value in ("abc", "1.5", "-3", "99999999999"):
        r = client.post("/operator/match-runs", data={"csrf_token": token, "cluster_id": value,
                        "time_limit_s": "1"}, follow_redirects=False)  # fmt: skip
        assert r.status_code == 422, value
        assert 'id="cluster_id-error"' in r.text and "Choose a cluster in the list." in r.text
        assert 'aria-describedby="cluster_id-error"' in r.text
    for value in ("nan", "inf", "soon"):
        r = client.post("/operator/match-runs", data={"csrf_token": token, "cluster_id": str(cluster.id),
                        "time_limit_s": value}, follow_redirects=False)  # fmt: skip
        assert r.status_code == 422 and 'id="time_limit_s-error"' in r.text, value
    assert count_runs(session) == before
    ok = client.post("/operator/match-runs", data={"csrf_token": token, "cluster_id": str(cluster.id),
                     "time_limit_s": "1"}, follow_redirects=False)  # fmt: skip
    assert ok.status_code == 303 and ok.headers["location"].startswith("/operator/match-runs/")
    assert count_runs(session) == before + 1


def test_a_weekday_that_is_not_a_number_stands_beside_the_weekdays(
    client: TestClient, session: Session
) -> None:
    owner = make_user(session, roles=(Role.owner,))
    machine = make_machine(session, owner=owner)
    sign_in(client, owner.email)
    page = client.get(f"/owner/machines/{machine.id}?lang=en")
    body = {"csrf_token": csrf(page.text), "start_time": "20:00", "end_time": "08:00",
            "valid_from": "2031-01-06", "valid_until": "2031-01-31"}  # fmt: skip
    for ticked in (["1", "abc"], ["1.5"], ["-1"], ["²"]):  # "²" is a digit int() refuses
        r = client.post(f"/owner/machines/{machine.id}/rules", data={**body, "weekdays": ticked})
        assert r.status_code == 422 and 'id="weekdays-error"' in r.text, ticked
        assert 'value="2031-01-31"' in r.text  # the form as typed
    rules = session.exec(
        select(AvailabilityRule).where(AvailabilityRule.machine_id == machine.id)
    ).all()
    assert rules == []
