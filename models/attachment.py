"""Files attached to orders (CAD, tech packs) and the audit log of every access."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from models.base import UTCDateTime, utcnow


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", index=True, ondelete="CASCADE")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=120)
    size_bytes: int
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=300, unique=True)
    uploaded_by_user_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AttachmentPublic(SQLModel):
    id: int
    order_id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: dt.datetime


class AttachmentLink(SQLModel):
    url: str
    expires_at: dt.datetime


class AttachmentAccess(SQLModel, table=True):
    __tablename__ = "attachment_access"

    id: int | None = Field(default=None, primary_key=True)
    attachment_id: int = Field(foreign_key="attachment.id", index=True, ondelete="CASCADE")
    user_id: int | None = Field(default=None, foreign_key="user.id")
    org_id: int | None = Field(default=None, foreign_key="organization.id")
    action: str = Field(max_length=20)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AttachmentAccessPublic(SQLModel):
    attachment_id: int
    user_id: int | None
    org_id: int | None
    action: str
    at: dt.datetime
