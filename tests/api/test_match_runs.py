from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from models import Role
from tests.factories import auth, make_user
from tests.factories_matching import Market, make_market, make_order


@pytest.fixture
def market(session: Session) -> Market:
    return make_market(session)


class TestMatchRunsApi:
    def test_operator_runs_and_reads_its_cluster(
        self,
        client: TestClient,
        session: Session,
        settings: Settings,
        market: Market,
        run_tasks: Callable[[], int],
    ) -> None:
        make_order(session, buyer=market.buyer)
        make_order(
            session,
            buyer=market.buyer,
            operations=[{"process_key": "turning", "material_key": "steel"}],
        )
        h = auth(settings, market.operator)
        r = client.post(
            "/api/v1/match-runs",
            json={"cluster_id": market.cluster.id, "time_limit_s": 2},
            headers=h,
        )
        assert (r.status_code, r.json()["status"]) == (202, "queued"), r.text
        assert client.get(f"/api/v1/match-runs/{r.json()['id']}", headers=h).json()["status"] == (
            "queued"
        )
        assert run_tasks() == 1
        run = client.get(f"/api/v1/match-runs/{r.json()['id']}", headers=h).json()
        assert (run["status"], run["proposals"], run["unmatched"]) == ("succeeded", 1, 1)
        assert run["unmatched_operations"][0]["reason"] == "no_eligible_machine"
        listed = client.get("/api/v1/match-runs", headers=h).json()
        assert listed["count"] == 1 and listed["data"][0]["id"] == run["id"]
        detail = client.get(f"/api/v1/match-runs/{run['id']}", headers=h).json()
        assert detail["unmatched_operations"] == run["unmatched_operations"]
        inbox = client.get("/api/v1/proposals", headers=auth(settings, market.owner)).json()
        assert inbox["count"] == 1 and inbox["data"][0]["state"] == "proposed"

    def test_scoping(
        self, client: TestClient, session: Session, settings: Settings, market: Market
    ) -> None:
        other = make_market(session)
        h = auth(settings, market.operator)
        r = client.post("/api/v1/match-runs", json={"cluster_id": other.cluster.id}, headers=h)
        assert (r.status_code, r.json()["field"]) == (403, "cluster_id")
        # no cluster named: an operator of one cluster gets its own, never the market
        own = client.post("/api/v1/match-runs", json={"cluster_id": None}, headers=h)
        assert own.status_code == 202 and own.json()["cluster_id"] == market.cluster.id
        assert own.json()["scope"] == "cluster"
        client.post(f"/api/v1/match-runs/{own.json()['id']}/cancel", headers=h)
        r = client.post(
            "/api/v1/match-runs",
            json={"cluster_id": market.cluster.id},
            headers=auth(settings, market.buyer),
        )
        assert r.status_code == 403
        assert (
            client.get("/api/v1/match-runs", headers=auth(settings, market.buyer)).status_code
            == 403
        )
        assert (
            client.post(
                "/api/v1/match-runs",
                json={"cluster_id": 987654},
                headers=auth(settings, make_user(session, roles=(Role.admin,))),
            ).status_code
            == 404
        )
        theirs = client.post(
            "/api/v1/match-runs", json={"cluster_id": other.cluster.id, "time_limit_s": 1},
            headers=auth(settings, other.operator),
        ).json()  # fmt: skip
        assert client.get(f"/api/v1/match-runs/{theirs['id']}", headers=h).status_code == 404
        assert client.get("/api/v1/match-runs", headers=h).json()["count"] == 1  # its own only
        admin_h = auth(settings, make_user(session, roles=(Role.admin,)))
        assert client.get(f"/api/v1/match-runs/{theirs['id']}", headers=admin_h).status_code == 200

    @pytest.mark.parametrize("limit", [0, 0.5, 121, "soon"])
    def test_time_limit_is_bounded(
        self, client: TestClient, settings: Settings, market: Market, limit: object
    ) -> None:
        r = client.post(
            "/api/v1/match-runs", json={"cluster_id": market.cluster.id, "time_limit_s": limit},
            headers=auth(settings, market.operator),
        )  # fmt: skip
        assert (r.status_code, r.json()["field"]) == (422, "time_limit_s")
