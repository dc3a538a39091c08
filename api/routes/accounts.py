from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import CurrentUser, Id, Limit, Offset, SessionDep, SessionRoute, SettingsDep
from app.accounts import service as accounts
from models.base import Page
from models.org import Me, OrganizationPublic, RegisterRequest, Token, UserPublic

router = APIRouter(tags=["accounts"], route_class=SessionRoute)


@router.post("/auth/register", response_model=Me, status_code=201)
def register(session: SessionDep, data: RegisterRequest) -> Me:
    """Register an organization (owner and/or buyer) with its first user."""
    user = accounts.register_organization(session=session, data=data)
    org = accounts.get_organization_or_raise(session=session, user=user, org_id=user.org_id)
    return Me(
        user=UserPublic.model_validate(user), organization=OrganizationPublic.model_validate(org)
    )


@router.post("/auth/token", response_model=Token)
def token(
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """OAuth2 password flow: email as username, returns a bearer JWT."""
    access, expires_in = accounts.issue_token(
        session=session, settings=settings, email=form.username, password=form.password
    )
    return Token(access_token=access, expires_in=expires_in)


@router.get("/me", response_model=Me)
def me(session: SessionDep, user: CurrentUser) -> Me:
    org = accounts.get_organization_or_raise(session=session, user=user, org_id=user.org_id)
    return Me(
        user=UserPublic.model_validate(user), organization=OrganizationPublic.model_validate(org)
    )


@router.get("/orgs", response_model=Page[OrganizationPublic])
def list_orgs(
    session: SessionDep, user: CurrentUser, limit: Limit = 50, offset: Offset = 0
) -> Page[OrganizationPublic]:
    rows, count = accounts.list_organizations(
        session=session, user=user, limit=limit, offset=offset
    )
    return Page(data=[OrganizationPublic.model_validate(o) for o in rows], count=count)


@router.get("/orgs/{org_id}", response_model=OrganizationPublic)
def get_org(session: SessionDep, user: CurrentUser, org_id: Id) -> OrganizationPublic:
    org = accounts.get_organization_or_raise(session=session, user=user, org_id=org_id)
    return OrganizationPublic.model_validate(org)
