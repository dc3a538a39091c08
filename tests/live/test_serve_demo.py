"""The README's run command, end to end: `capshare serve --demo` on a fresh
database, then the API as a demo user sees it."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.demo.seed import DEMO_DOMAIN, DEMO_PASSWORD
from tests.conftest import TEST_SECRET
from tests.live.conftest import free_port, start_server, stop_server


@pytest.mark.slow
def test_serve_demo(live_database_url: str, tmp_path: Path) -> None:
    port, stub_port = free_port(), free_port()
    exe = shutil.which("capshare", path=str(Path(sys.executable).parent))
    assert exe, "capshare is installed as a console script"
    proc = start_server(
        [exe, "serve", "--demo", "--port", str(port)],
        {"DATABASE_URL": live_database_url, "CAPSHARE_SECRET_KEY": TEST_SECRET,
         "CAPSHARE_PAYMENTS_BASE_URL": f"http://127.0.0.1:{stub_port}", "CAPSHARE_PAYMENTS_INLINE": "true",
         "CAPSHARE_TASK_RUNNER": "auto", "CAPSHARE_JOBS_IN_PROCESS": "true"},  # PostgreSQL: a worker in-process
        port, tmp_path / "serve.log", timeout_s=90,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/api/v1/health").json()["status"] == "ok"
            assert http.get("/docs").status_code == 200
            assert "capshare" in http.get("/").text

            def login(email: str) -> dict[str, str]:
                r = http.post(
                    "/api/v1/auth/token", data={"username": email, "password": DEMO_PASSWORD}
                )
                assert r.status_code == 200, r.text
                return {"Authorization": f"Bearer {r.json()['access_token']}"}

            buyer = login(f"buyer1@{DEMO_DOMAIN}")
            machines = http.get("/api/v1/machines", params={"limit": 5}, headers=buyer).json()
            assert machines["count"] >= 400 and len(machines["data"]) == 5
            orders = http.get("/api/v1/orders", headers=buyer).json()
            assert orders["count"] > 0
            admin = login(f"admin@{DEMO_DOMAIN}")
            assert http.get("/api/v1/orders", headers=admin).json()["count"] >= 600

            # money works out of the box: a lease takes its deposit at the bundled stub, by a
            # task after the request (which answered with the deposit pending)
            lease = _lease_a_free_slot(http, buyer)
            deadline, deposit = time.monotonic() + 60, []
            while time.monotonic() < deadline:
                money = http.get(f"/api/v1/bookings/{lease['id']}/payments", headers=buyer).json()
                deposit = [p for p in money["payments"] if p["kind"] == "deposit"]
                if deposit and deposit[0]["status"] != "pending":
                    break
                time.sleep(0.2)
            assert deposit and deposit[0]["status"] == "succeeded", money
            stub = httpx.get(f"http://127.0.0.1:{stub_port}/_control/stats").json()
            assert stub, "the stub answered"
    finally:
        stop_server(proc)
    log = (tmp_path / "serve.log").read_text()
    assert "demo logins" in log and f"buyer1@{DEMO_DOMAIN}" in log


def _lease_a_free_slot(http: httpx.Client, headers: dict[str, str]) -> dict[str, object]:
    """Lease two hours at the start of the first offered window that has room."""
    import datetime as dt

    machines = http.get(
        "/api/v1/machines", params={"leasable": True, "limit": 100}, headers=headers
    ).json()["data"]
    for m in machines:
        for w in http.get(f"/api/v1/machines/{m['id']}/windows", headers=headers).json():
            start = dt.datetime.fromisoformat(w["start_at"]) + dt.timedelta(hours=30)
            end = start + dt.timedelta(minutes=max(120, m["min_booking_minutes"]))
            if end > dt.datetime.fromisoformat(w["end_at"]):
                continue
            r = http.post("/api/v1/leases", json={"machine_id": m["id"], "start_at": start.isoformat(),
                                                   "end_at": end.isoformat()}, headers=headers)  # fmt: skip
            if r.status_code == 201:
                return r.json()  # type: ignore[no-any-return]
    raise AssertionError("no free leasable slot in the demo market")
