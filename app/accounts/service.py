"""Organizations, users, sign-in, and who may see what."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.config import Settings
from app.db import begin_write
from app.errors import AlreadyExists, InvalidInput, NotAuthenticated, OrganizationNotFound
from app.security import create_access_token, decode_access_token, hash_password, verify_password
from models import Cluster, Organization, Role, User
from models.org import RegisterRequest

SELF_SERVICE_ROLES = {Role.owner, Role.buyer}


def register_organization(*, session: Session, data: RegisterRequest) -> User:
    """Create an organization and its first user. Operators and admins are made by
    an admin, not by sign-up."""
    begin_write(session)
    roles = set(data.roles)
    if not roles <= SELF_SERVICE_ROLES:
        raise InvalidInput("only owner and buyer organizations can sign up", field="roles")
    email = data.email.lower()
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise AlreadyExists("a user with this email already exists", field="email")
    if session.exec(select(Organization.id).where(Organization.name == data.org_name)).first():
        raise AlreadyExists("an organization with this name already exists", field="org_name")
    org = Organization(
        name=data.org_name,
        is_owner=Role.owner in roles,
        is_buyer=Role.buyer in roles,
        city=data.city,
        address=data.address,
        lat=data.lat,
        lon=data.lon,
    )
    session.add(org)
    session.flush()
    assert org.id is not None
    user = User(
        org_id=org.id,
        email=email,
        full_name=data.full_name,
        password_hash=hash_password(data.password),
        roles=sorted(r.value for r in roles),
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent sign-up took the name or email
        session.rollback()
        raise AlreadyExists("organization or email already registered", field="email") from exc
    session.refresh(user)
    return user


def authenticate(*, session: Session, email: str, password: str) -> User | None:
    user = session.exec(select(User).where(User.email == email.lower())).first()
    if user is None or not user.is_active or not verify_password(password, user.password_hash):
        return None
    return user


def issue_token(
    *, session: Session, settings: Settings, email: str, password: str
) -> tuple[str, int]:
    user = authenticate(session=session, email=email, password=password)
    if user is None:
        raise NotAuthenticated("incorrect email or password")
    assert user.id is not None
    return create_access_token(settings=settings, user_id=user.id)


def get_user_by_token(*, session: Session, settings: Settings, token: str) -> User:
    user_id = decode_access_token(settings=settings, token=token)
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("invalid token")
    return user


def get_organization_or_raise(*, session: Session, user: User, org_id: int) -> Organization:
    """An org is visible to its members and to admins; any other is a 404."""
    org = session.get(Organization, org_id)
    if org is None or not (is_admin(user) or org.id == user.org_id):
        raise OrganizationNotFound("organization not found")
    return org


def list_organizations(
    *, session: Session, user: User, limit: int, offset: int
) -> tuple[list[Organization], int]:
    query = select(Organization)
    if not is_admin(user):
        query = query.where(Organization.id == user.org_id)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(Organization.id)).offset(offset).limit(limit)).all()
    return list(rows), count


def is_admin(user: User) -> bool:
    return user.has_role(Role.admin)


def operated_cluster_ids(*, session: Session, user: User) -> list[int]:
    """The clusters the caller's org operates (empty for non-operators)."""
    if not user.has_role(Role.operator):
        return []
    ids = session.exec(select(Cluster.id).where(Cluster.operator_org_id == user.org_id)).all()
    return [i for i in ids if i is not None]
