"""`capshare payments reconcile` as an operator runs it: a lease whose deposit was
never sent to the provider (payments not driven inline) is found and repaired."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from sqlmodel import Session, select

from app.db import make_engine
from models import Role
from models.payment import Payment
from payments_stub import create_stub_app, serve_in_thread
from tests.factories import PASSWORD, hours_from_now, make_machine, make_user, make_window
from tests.live.conftest import STUB_KEY, STUB_WEBHOOK_SECRET, LiveServer


def test_reconcile_repairs_a_deposit_never_sent(live_server: LiveServer, tmp_path: Path) -> None:
    engine = make_engine(live_server.database_url)
    with Session(engine) as session:
        owner, buyer = (
            make_user(session, roles=(Role.owner,)),
            make_user(session, roles=(Role.buyer,)),
        )
        machine = make_machine(session, owner=owner, hourly_rate_fen=10000)
        make_window(session, machine=machine, start=hours_from_now(10), end=hours_from_now(20))
        session.commit()
        machine_id, email = machine.id, buyer.email
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        token = http.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        ).json()["access_token"]
        lease = http.post("/api/v1/leases", headers={"Authorization": f"Bearer {token}"}, json={
            "machine_id": machine_id, "start_at": hours_from_now(11).isoformat(), "end_at": hours_from_now(13).isoformat(),
        })  # fmt: skip
        assert lease.status_code == 201, lease.text
    with Session(engine) as session:  # the server does not drive payments inline here
        statuses = [p.status for p in session.exec(select(Payment)).all()]
    assert statuses == ["pending"]

    exe = shutil.which("capshare", path=str(Path(sys.executable).parent))
    assert exe
    stub = create_stub_app(api_key=STUB_KEY, webhook_secret=STUB_WEBHOOK_SECRET)
    with serve_in_thread(stub) as stub_url:
        env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "DATABASE_URL": live_server.database_url,
               "CAPSHARE_PAYMENTS_BASE_URL": stub_url, "CAPSHARE_PAYMENTS_API_KEY": STUB_KEY,
               "CAPSHARE_PAYMENTS_WEBHOOK_SECRET": STUB_WEBHOOK_SECRET}  # fmt: skip
        first = subprocess.run(
            [exe, "payments", "reconcile"], env=env, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert "[repaired]" in first.stdout and "open 0" in first.stdout
        # this stub sends no webhooks: the events of the repair itself are replayed next time,
        # after which there is nothing left to find
        again = subprocess.run(
            [exe, "payments", "reconcile"], env=env, capture_output=True, text=True, timeout=120
        )
        assert (
            again.returncode == 0 and "open 0" in again.stdout and "not_applied" not in again.stdout
        ), again.stdout
        third = subprocess.run(
            [exe, "payments", "reconcile"], env=env, capture_output=True, text=True, timeout=120
        )
        assert third.returncode == 0 and "differences 0" in third.stdout, third.stdout
        intents = httpx.get(
            f"{stub_url}/v1/payment_intents", headers={"Authorization": f"Bearer {STUB_KEY}"}
        ).json()
    with Session(engine) as session:
        payment = session.exec(select(Payment)).one()
    engine.dispose()
    assert payment.status == "succeeded"
    assert [i["amount"] for i in intents["data"]] == [payment.amount_fen]  # charged exactly once
