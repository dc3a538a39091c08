"""Dependencies shared by the JSON routers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.accounts.service import get_user_by_token
from app.config import Settings, get_settings
from app.db import end_reads, end_request_reads, request_session
from models import User
from models.base import MAX_ID

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")

SessionDep = Annotated[Session, Depends(request_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def get_current_user(session: SessionDep, settings: SettingsDep, token: TokenDep) -> User:
    user = get_user_by_token(session=session, settings=settings, token=token)
    end_reads(session)  # the handler is another hop through the threadpool: none waits for it
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


class SessionRoute(APIRoute):
    """The route class of every JSON router: the request's reads end when its handler
    returns, before FastAPI validates and serializes what it returned (which it does
    after the handler, outside anything a dependency can wrap), so no connection waits
    in a transaction while a response is built or sent."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _ending_reads(endpoint), **kwargs)


def _ending_reads(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            result = await endpoint(*args, **kwargs)
            await run_in_threadpool(end_request_reads)  # a commit: not on the event loop
            return result

        return run_async

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        end_request_reads()
        return result

    return run


Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip")]

# Ids in paths and filters: positive 32-bit integers (PostgreSQL's int4).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
