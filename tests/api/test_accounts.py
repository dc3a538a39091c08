from __future__ import annotations

import datetime as dt

import jwt
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.config import Settings
from models import Organization, Role, User
from tests.factories import PASSWORD, auth, login, make_user

REGISTER = {
    "org_name": "宁波测试精密机械有限公司",
    "roles": ["owner", "buyer"],
    "city": "Ningbo",
    "lat": 29.9,
    "lon": 121.84,
    "email": "Boss@Example.com",
    "full_name": "王老板",
    "password": "a-long-password",
}


class TestRegister:
    def test_register_creates_org_and_first_user_then_logs_in(self, client: TestClient) -> None:
        r = client.post("/api/v1/auth/register", json=REGISTER)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["organization"]["is_owner"] and body["organization"]["is_buyer"]
        assert body["user"]["email"] == "boss@example.com"
        assert sorted(body["user"]["roles"]) == ["buyer", "owner"]
        headers = login(client, "boss@example.com", "a-long-password")
        me = client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["organization"]["name"] == REGISTER["org_name"]

    def test_password_is_stored_as_argon2(self, client: TestClient, session: Session) -> None:
        client.post("/api/v1/auth/register", json=REGISTER)
        user = session.exec(select(User).where(User.email == "boss@example.com")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert "a-long-password" not in user.password_hash

    def test_duplicate_email_is_409_naming_email(
        self, client: TestClient, session: Session
    ) -> None:
        assert client.post("/api/v1/auth/register", json=REGISTER).status_code == 201
        again = dict(REGISTER, org_name="Another org")
        r = client.post("/api/v1/auth/register", json=again)
        assert r.status_code == 409
        assert r.json()["field"] == "email"
        assert (
            session.exec(select(Organization).where(Organization.name == "Another org")).first()
            is None
        )

    def test_operator_cannot_self_register(self, client: TestClient) -> None:
        r = client.post("/api/v1/auth/register", json=dict(REGISTER, roles=["operator"]))
        assert r.status_code == 422
        assert r.json()["field"] == "roles"

    def test_short_password_names_the_field(self, client: TestClient) -> None:
        r = client.post("/api/v1/auth/register", json=dict(REGISTER, password="short"))
        assert r.status_code == 422
        assert r.json()["field"] == "password"


class TestTokens:
    def test_wrong_password_is_401(self, client: TestClient, session: Session) -> None:
        user = make_user(session)
        r = client.post("/api/v1/auth/token", data={"username": user.email, "password": "nope"})
        assert r.status_code == 401
        assert login(client, user.email, PASSWORD)

    def test_no_token_and_bad_token_are_401(self, client: TestClient) -> None:
        assert client.get("/api/v1/me").status_code == 401
        r = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-jwt"})
        assert r.status_code == 401

    def test_expired_token_is_refused(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        user = make_user(session)
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        token = jwt.encode(
            {
                "sub": str(user.id),
                "iat": past,
                "exp": past + dt.timedelta(minutes=5),
                "typ": "access",
            },
            settings.secret_key.get_secret_value(),
            algorithm="HS256",
        )
        r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]

    def test_token_carries_an_expiry(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        user = make_user(session)
        r = client.post("/api/v1/auth/token", data={"username": user.email, "password": PASSWORD})
        payload = jwt.decode(
            r.json()["access_token"], settings.secret_key.get_secret_value(), algorithms=["HS256"]
        )
        assert payload["exp"] - payload["iat"] == settings.access_token_minutes * 60


class TestOrgScoping:
    def test_other_org_is_404_and_list_is_own(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        alice, bob = make_user(session), make_user(session)
        r = client.get(f"/api/v1/orgs/{bob.org_id}", headers=auth(settings, alice))
        assert r.status_code == 404
        listed = client.get("/api/v1/orgs", headers=auth(settings, alice)).json()
        assert listed["count"] == 1
        assert listed["data"][0]["id"] == alice.org_id

    def test_admin_sees_every_org(
        self, client: TestClient, session: Session, settings: Settings
    ) -> None:
        admin, other = make_user(session, roles=(Role.admin,)), make_user(session)
        assert (
            client.get(f"/api/v1/orgs/{other.org_id}", headers=auth(settings, admin)).status_code
            == 200
        )
        assert client.get("/api/v1/orgs", headers=auth(settings, admin)).json()["count"] >= 2
