"""Password hashing (argon2) and bearer tokens (JWT)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import Settings
from app.errors import NotAuthenticated

ALGORITHM = "HS256"


@lru_cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_access_token(*, settings: Settings, user_id: int) -> tuple[str, int]:
    lifetime = dt.timedelta(minutes=settings.access_token_minutes)
    now = dt.datetime.now(dt.UTC)
    payload = {"sub": str(user_id), "iat": now, "exp": now + lifetime, "typ": "access"}
    token = jwt.encode(payload, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)
    return token, int(lifetime.total_seconds())


def decode_access_token(*, settings: Settings, token: str) -> int:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("token expired") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthenticated("invalid token") from exc
    if payload.get("typ") != "access":
        raise NotAuthenticated("invalid token")
    try:
        return int(payload["sub"])
    except (TypeError, ValueError) as exc:
        raise NotAuthenticated("invalid token") from exc


def new_machine_token() -> tuple[str, str]:
    """A telemetry token and the SHA-256 we keep of it."""
    token = "mt_" + secrets.token_urlsafe(24)
    return token, hashlib.sha256(token.encode()).hexdigest()
