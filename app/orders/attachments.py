"""Order attachments: CAD files and tech packs.

Stored on disk under a random key with their size and SHA-256. Visible only to the
buyer and to an owner the work is assigned to (a confirmed, running or finished
booking of the order on its machine); every access is written to an audit log the
buyer reads. Downloads go through links that expire.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import uuid
from pathlib import Path
from typing import BinaryIO

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import Session, col, select

from app.config import Settings
from app.db import begin_write
from app.errors import AttachmentNotFound, AttachmentRejected, InvalidTransition, NotFound
from app.orders.service import get_order_or_raise, get_own_order_or_raise
from models import Attachment, AttachmentAccess, OrderStatus, User, utcnow

EXTENSIONS: dict[str, str] = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".csv": "text/csv",
    ".zip": "application/zip",
    ".step": "model/step",
    ".stp": "model/step",
    ".stl": "model/stl",
    ".dxf": "image/vnd.dxf",
    ".igs": "model/iges",
    ".iges": "model/iges",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
GENERIC_TYPES = {"application/octet-stream", ""}
CHUNK = 1 << 16


def _effective_type(settings: Settings, filename: str, content_type: str) -> str:
    ext = Path(filename).suffix.lower()
    if ext not in EXTENSIONS:
        raise AttachmentRejected(
            f"file type {ext or '(none)'} is not accepted; allowed: {', '.join(sorted(EXTENSIONS))}",
            field="file",
        )
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in GENERIC_TYPES:
        return EXTENSIONS[ext]
    allowed = set(settings.attachment_content_types) | set(EXTENSIONS.values())
    guessed = mimetypes.guess_type(filename)[0]
    if declared not in allowed and declared != guessed:
        raise AttachmentRejected(f"content type {declared} is not accepted", field="file")
    return declared


def check_upload(*, settings: Settings, filename: str, content_type: str, size: int | None) -> None:
    """Refuse a file by name, type and declared size before anything is written
    (the upload itself re-checks the bytes it reads)."""
    name = Path(filename or "").name
    if not name:
        raise AttachmentRejected("the file has no name", field="file", status_code=422)
    _effective_type(settings, name, content_type)
    if size == 0:
        raise AttachmentRejected("the file is empty", field="file", status_code=422)
    if size is not None and size > settings.attachment_max_bytes:
        raise AttachmentRejected(
            f"the file is larger than {settings.attachment_max_bytes} bytes",
            field="file",
            status_code=413,
        )


def upload_attachment(
    *,
    session: Session,
    settings: Settings,
    user: User,
    order_id: int,
    filename: str,
    content_type: str,
    stream: BinaryIO,
) -> Attachment:
    begin_write(session)
    order = get_own_order_or_raise(session=session, user=user, order_id=order_id)
    if order.status in (OrderStatus.cancelled.value, OrderStatus.completed.value):
        raise InvalidTransition(f"the order is {order.status}", field="order_id")
    name = Path(filename or "").name[:255]
    if not name:
        raise AttachmentRejected("the file has no name", field="file", status_code=422)
    effective = _effective_type(settings, name, content_type)
    key = f"{uuid.uuid4().hex[:2]}/{uuid.uuid4().hex}"
    path = Path(settings.attachment_dir) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > settings.attachment_max_bytes:
                    raise AttachmentRejected(
                        f"the file is larger than {settings.attachment_max_bytes} bytes",
                        field="file",
                        status_code=413,
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise AttachmentRejected("the file is empty", field="file", status_code=422)
        attachment = Attachment(
            order_id=order_id,
            filename=name,
            content_type=effective,
            size_bytes=size,
            sha256=digest.hexdigest(),
            storage_key=key,
            uploaded_by_user_id=user.id,
        )
        session.add(attachment)
        session.flush()
        _log(session, attachment, user, "upload")
        session.commit()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    session.refresh(attachment)
    return attachment


def _may_read(session: Session, user: User, attachment: Attachment) -> bool:
    # get_order_or_raise admits the buyer, admins and owners with assigned work.
    try:
        get_order_or_raise(session=session, user=user, order_id=attachment.order_id)
    except NotFound:
        return False
    return True


def get_attachment_or_raise(*, session: Session, user: User, attachment_id: int) -> Attachment:
    attachment = session.get(Attachment, attachment_id)
    if attachment is None or not _may_read(session, user, attachment):
        raise AttachmentNotFound("attachment not found", field="attachment_id")
    return attachment


def list_attachments(*, session: Session, user: User, order_id: int) -> list[Attachment]:
    get_order_or_raise(session=session, user=user, order_id=order_id)
    return list(
        session.exec(
            select(Attachment).where(Attachment.order_id == order_id).order_by(col(Attachment.id))
        ).all()
    )


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key.get_secret_value(), salt="attachment-link")


def create_download_link(
    *, session: Session, settings: Settings, user: User, attachment_id: int
) -> tuple[str, dt.datetime]:
    """A token for a download link that expires; access is re-checked on use."""
    begin_write(session)
    attachment = get_attachment_or_raise(session=session, user=user, attachment_id=attachment_id)
    token = _serializer(settings).dumps({"a": attachment.id, "u": user.id})
    _log(session, attachment, user, "link")
    session.commit()
    return token, utcnow() + dt.timedelta(minutes=settings.attachment_link_minutes)


def open_download(*, session: Session, settings: Settings, token: str) -> tuple[Attachment, Path]:
    begin_write(session)
    try:
        data = _serializer(settings).loads(token, max_age=settings.attachment_link_minutes * 60)
    except SignatureExpired as exc:
        raise AttachmentNotFound("the download link has expired", field="token") from exc
    except BadSignature as exc:
        raise AttachmentNotFound("invalid download link", field="token") from exc
    user = session.get(User, int(data["u"]))
    if user is None or not user.is_active:
        raise AttachmentNotFound("invalid download link", field="token")
    attachment = get_attachment_or_raise(session=session, user=user, attachment_id=int(data["a"]))
    _log(session, attachment, user, "download")
    session.commit()
    return attachment, Path(settings.attachment_dir) / attachment.storage_key


def access_log(*, session: Session, user: User, order_id: int) -> list[AttachmentAccess]:
    """The audit log of the order's files, for the buyer (and admins)."""
    get_own_order_or_raise(session=session, user=user, order_id=order_id)
    return list(
        session.exec(
            select(AttachmentAccess)
            .join(Attachment, col(Attachment.id) == AttachmentAccess.attachment_id)
            .where(Attachment.order_id == order_id)
            .order_by(col(AttachmentAccess.at), col(AttachmentAccess.id))
        ).all()
    )


def _log(session: Session, attachment: Attachment, user: User, action: str) -> None:
    assert attachment.id is not None
    session.add(
        AttachmentAccess(
            attachment_id=attachment.id, user_id=user.id, org_id=user.org_id, action=action
        )
    )
