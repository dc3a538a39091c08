"""The operator's match runs in the browser: a run is queued at once, its page follows it
while it is in flight (status polled as JSON) and can cancel it; reasons read as reasons."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlmodel import Session

from models import MatchRun, MatchRunStatus, MatchRunUnmatched, utcnow
from tests.factories_matching import make_market, make_order
from tests.frontend.test_pages import csrf, sign_in


def test_a_run_is_queued_followed_and_then_shows_its_results(
    client: TestClient, session: Session, run_tasks: Callable[[], int]
) -> None:
    market = make_market(session)
    make_order(session, buyer=market.buyer)
    sign_in(client, market.operator.email)
    token = csrf(client.get("/operator/match-runs?lang=en").text)
    r = client.post("/operator/match-runs", data={"csrf_token": token, "cluster_id": str(market.cluster.id),
                    "time_limit_s": "1"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    page = client.get(r.headers["location"] + "?lang=en")
    assert "Match run" in page.text and "queued" in page.text
    assert 'id="run-progress"' in page.text and "/static/match_run.js" in page.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    status = client.get(f"/operator/match-runs/{run_id}/status?lang=zh").json()
    assert (status["status"], status["active"], status["label"]) == ("queued", True, "排队中")
    listing = client.get("/operator/match-runs?lang=en").text
    assert "is queued; a second run of its scope waits until it ends." in listing
    again = client.post("/operator/match-runs", data={"csrf_token": token, "cluster_id": str(market.cluster.id),
                        "time_limit_s": "1"}, follow_redirects=True)  # fmt: skip
    assert f"match run {run_id} for this scope is queued" in again.text  # refused, named
    run_tasks()
    done = client.get(f"/operator/match-runs/{run_id}?lang=en").text
    assert 'id="run-progress"' not in done and "succeeded" in done
    assert client.get(f"/operator/match-runs/{run_id}/status").json()["active"] is False
    assert client.get("/static/match_run.js").status_code == 200


def test_a_running_run_can_be_cancelled_from_its_page(client: TestClient, session: Session) -> None:
    market = make_market(session)
    now = utcnow()
    run = MatchRun(scope="cluster", cluster_id=market.cluster.id, status=MatchRunStatus.running,
                   active_scope=f"cluster:{market.cluster.id}", phase="solving: cp-sat",
                   progress_seconds=3.2, horizon_start=now, horizon_end=now, time_limit_s=30)  # fmt: skip
    session.add(run)
    session.commit()
    sign_in(client, market.operator.email)
    page = client.get(f"/operator/match-runs/{run.id}?lang=zh").text
    assert "运行中 · 求解：CP-SAT 搜索" in page
    r = client.post(f"/operator/match-runs/{run.id}/cancel", data={"csrf_token": csrf(page)},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    session.refresh(run)
    assert run.cancel_requested and run.status == MatchRunStatus.running
    assert "正在取消" in client.get(f"/operator/match-runs/{run.id}/status?lang=zh").json()["label"]


def test_a_declined_step_reads_as_a_reason_not_a_booking_state(
    client: TestClient, session: Session
) -> None:
    market = make_market(session)
    order = make_order(session, buyer=market.buyer)
    now = utcnow()
    run = MatchRun(scope="cluster", cluster_id=market.cluster.id, status=MatchRunStatus.succeeded,
                   horizon_start=now, horizon_end=now, time_limit_s=1, unmatched=1)  # fmt: skip
    session.add(run)
    session.flush()
    assert run.id is not None and order.id is not None
    session.add(MatchRunUnmatched(run_id=run.id, order_id=order.id, reason="declined"))
    session.commit()
    sign_in(client, market.operator.email)
    zh = client.get(f"/operator/match-runs/{run.id}?lang=zh").text
    assert "接单方已拒绝或超时未答" in zh
    en = client.get(f"/operator/match-runs/{run.id}?lang=en").text
    assert "declined or left unanswered by the owner" in en
