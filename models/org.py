"""Organizations and their users."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import EmailStr
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, json_list, utcnow


class Role(StrEnum):
    owner = "owner"
    buyer = "buyer"
    operator = "operator"
    admin = "admin"


class OrganizationBase(SQLModel):
    name: str = Field(min_length=2, max_length=200)
    is_owner: bool = False
    is_buyer: bool = False
    is_operator: bool = False
    city: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class Organization(OrganizationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OrganizationPublic(OrganizationBase):
    id: int
    created_at: dt.datetime


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)
    email: str = Field(max_length=254, unique=True)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=300)
    roles: list[str] = Field(default_factory=list, sa_column=json_list())
    is_active: bool = True
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    def has_role(self, role: Role) -> bool:
        return role.value in self.roles


class UserPublic(SQLModel):
    id: int
    org_id: int
    email: str
    full_name: str
    roles: list[str]
    is_active: bool


class RegisterRequest(SQLModel):
    """Register an organization together with its first user."""

    org_name: str = Field(min_length=2, max_length=200)
    roles: list[Role] = Field(min_length=1, description="owner and/or buyer")
    city: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=8, max_length=200)


class Me(SQLModel):
    user: UserPublic
    organization: OrganizationPublic


class Token(SQLModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
