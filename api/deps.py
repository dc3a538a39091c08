"""Dependencies shared by the JSON routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from app.accounts.service import get_user_by_token
from app.config import Settings, get_settings
from app.db import get_session
from models import User
from models.base import MAX_ID

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")

SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def get_current_user(session: SessionDep, settings: SettingsDep, token: TokenDep) -> User:
    return get_user_by_token(session=session, settings=settings, token=token)


CurrentUser = Annotated[User, Depends(get_current_user)]


Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip")]

# Ids in paths and filters: positive 32-bit integers (PostgreSQL's int4).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
