from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlmodel import Session, func, select

from app.config import Settings
from models import Attachment, BookingKind, Role
from tests.api.test_orders import new_order
from tests.factories import auth, hours_from_now, make_booking, make_machine, make_user

STEP = b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('housing'),'2;1');\nENDSEC;\n" * 10


def count_attachments(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Attachment)).one()


def make_order(client: TestClient, settings: Settings, buyer: Any) -> dict[str, Any]:
    r = client.post("/api/v1/orders", json=new_order(), headers=auth(settings, buyer))
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()
    return order


def test_upload_link_download_and_audit(
    client: TestClient, session: Session, settings: Settings
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    order = make_order(client, settings, buyer)
    h = auth(settings, buyer)
    r = client.post(
        f"/api/v1/orders/{order['id']}/attachments",
        files={"file": ("housing.step", STEP, "application/octet-stream")},
        headers=h,
    )
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["sha256"] == hashlib.sha256(STEP).hexdigest()
    assert (meta["size_bytes"], meta["content_type"]) == (len(STEP), "model/step")
    link = client.post(f"/api/v1/attachments/{meta['id']}/link", headers=h).json()
    got = client.get(link["url"])
    assert got.status_code == 200 and got.content == STEP
    log = client.get(f"/api/v1/orders/{order['id']}/attachments/access-log", headers=h).json()
    assert [e["action"] for e in log] == ["upload", "link", "download"]


def test_too_big_and_forbidden_types_write_nothing(
    client: TestClient, session: Session, settings: Settings
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    order = make_order(client, settings, buyer)
    url, h = f"/api/v1/orders/{order['id']}/attachments", auth(settings, buyer)
    before = count_attachments(session)
    big = b"x" * (settings.attachment_max_bytes + 1)
    r = client.post(url, files={"file": ("big.pdf", big, "application/pdf")}, headers=h)
    assert (r.status_code, r.json()["field"]) == (413, "file")
    r = client.post(url, files={"file": ("run.exe", b"MZ", "application/x-msdownload")}, headers=h)
    assert (r.status_code, r.json()["field"]) == (415, "file")
    r = client.post(
        url, files={"file": ("fake.pdf", b"%PDF", "application/x-msdownload")}, headers=h
    )
    assert r.status_code == 415
    assert count_attachments(session) == before
    stored = (
        [p for p in settings.attachment_dir.rglob("*") if p.is_file()]
        if settings.attachment_dir.exists()
        else []
    )
    assert stored == []


def test_owner_reads_files_only_once_the_work_is_assigned(
    client: TestClient, session: Session, settings: Settings
) -> None:
    buyer, owner = make_user(session, roles=(Role.buyer,)), make_user(session, roles=(Role.owner,))
    order = make_order(client, settings, buyer)
    meta = client.post(
        f"/api/v1/orders/{order['id']}/attachments",
        files={"file": ("drawing.pdf", b"%PDF-1.7 drawing", "application/pdf")},
        headers=auth(settings, buyer),
    ).json()
    link_url = f"/api/v1/attachments/{meta['id']}/link"
    assert client.post(link_url, headers=auth(settings, owner)).status_code == 404
    machine = make_machine(session, owner=owner)
    make_booking(
        session, machine=machine, org_id=buyer.org_id, kind=BookingKind.service,
        start=hours_from_now(30), end=hours_from_now(38), order_id=order["id"],
    )  # fmt: skip
    link = client.post(link_url, headers=auth(settings, owner)).json()
    assert client.get(link["url"]).content == b"%PDF-1.7 drawing"
    log = client.get(
        f"/api/v1/orders/{order['id']}/attachments/access-log", headers=auth(settings, buyer)
    ).json()
    assert log[-1]["org_id"] == owner.org_id and log[-1]["action"] == "download"
    # the owner reads the file but not the buyer's audit log
    assert (
        client.get(
            f"/api/v1/orders/{order['id']}/attachments/access-log", headers=auth(settings, owner)
        ).status_code
        == 404
    )


def test_expired_or_forged_links_are_refused(
    client: TestClient, session: Session, settings: Settings
) -> None:
    buyer = make_user(session, roles=(Role.buyer,))
    order = make_order(client, settings, buyer)
    meta = client.post(
        f"/api/v1/orders/{order['id']}/attachments",
        files={"file": ("a.txt", b"hello", "text/plain")}, headers=auth(settings, buyer),
    ).json()  # fmt: skip
    forged = URLSafeTimedSerializer("wrong-key", salt="attachment-link").dumps(
        {"a": meta["id"], "u": buyer.id}
    )
    assert client.get(f"/api/v1/attachments/download/{forged}").status_code == 404

    class Yesterday(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - 24 * 3600

    old = URLSafeTimedSerializer(
        settings.secret_key.get_secret_value(), salt="attachment-link", signer=Yesterday
    ).dumps({"a": meta["id"], "u": buyer.id})
    r = client.get(f"/api/v1/attachments/download/{old}")
    assert r.status_code == 404 and "expired" in r.json()["detail"]
    fresh = client.post(
        f"/api/v1/attachments/{meta['id']}/link", headers=auth(settings, buyer)
    ).json()
    assert client.get(fresh["url"]).status_code == 200
