from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, UploadFile

from api.deps import CurrentUser, Id, Limit, Offset, SessionDep, SessionRoute, SettingsDep
from app.orders import attachments
from app.orders import flows as order_flows
from app.orders import service as orders
from models.attachment import AttachmentAccessPublic, AttachmentPublic
from models.base import Page
from models.order import OrderCreate, OrderEventPublic, OrderPublic, OrderStatus, OrderUpdate

router = APIRouter(prefix="/orders", tags=["orders"], route_class=SessionRoute)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such order, or not visible to the caller"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "the order's state forbids this"}}


@router.post("", response_model=OrderPublic, status_code=201)
def create_order(session: SessionDep, user: CurrentUser, data: OrderCreate) -> OrderPublic:
    order = orders.create_order(session=session, user=user, data=data)
    return orders.order_public(session=session, order=order)


@router.get("", response_model=Page[OrderPublic])
def list_orders(
    session: SessionDep,
    user: CurrentUser,
    status: OrderStatus | None = None,
    sort: str = "-created",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[OrderPublic]:
    rows, count = orders.list_orders(
        session=session, user=user, status=status, limit=limit, offset=offset, sort=sort
    )
    return Page(data=orders.orders_public(session=session, orders=rows), count=count)


@router.get("/{order_id}", response_model=OrderPublic, responses=NOT_FOUND)
def get_order(session: SessionDep, user: CurrentUser, order_id: Id) -> OrderPublic:
    order = orders.get_order_or_raise(session=session, user=user, order_id=order_id)
    return orders.order_public(session=session, order=order)


@router.patch("/{order_id}", response_model=OrderPublic, responses={**NOT_FOUND, **CONFLICT})
def update_order(
    session: SessionDep, user: CurrentUser, order_id: Id, data: OrderUpdate
) -> OrderPublic:
    order = orders.update_order(session=session, user=user, order_id=order_id, data=data)
    return orders.order_public(session=session, order=order)


@router.post("/{order_id}/open", response_model=OrderPublic, responses={**NOT_FOUND, **CONFLICT})
def open_order(session: SessionDep, user: CurrentUser, order_id: Id) -> OrderPublic:
    order = orders.open_order(session=session, user=user, order_id=order_id)
    return orders.order_public(session=session, order=order)


@router.post("/{order_id}/cancel", response_model=OrderPublic, responses={**NOT_FOUND, **CONFLICT})
def cancel_order(
    session: SessionDep,
    user: CurrentUser,
    order_id: Id,
    reason: Annotated[str, Body(embed=True, max_length=500)] = "",
) -> OrderPublic:
    """Cancel; held payments are voided, or the late-cancellation fee is captured."""
    order = order_flows.cancel_order(session=session, user=user, order_id=order_id, reason=reason)
    return orders.order_public(session=session, order=order)


@router.get("/{order_id}/timeline", response_model=list[OrderEventPublic], responses=NOT_FOUND)
def timeline(session: SessionDep, user: CurrentUser, order_id: Id) -> list[OrderEventPublic]:
    return orders.order_timeline(session=session, user=user, order_id=order_id)


@router.post(
    "/{order_id}/attachments",
    response_model=AttachmentPublic,
    status_code=201,
    responses={413: {"description": "file too big"}, 415: {"description": "file type refused"}},
)
def upload_attachment(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    order_id: Id,
    file: Annotated[UploadFile, File(description="CAD file or tech pack")],
) -> AttachmentPublic:
    attachment = attachments.upload_attachment(
        session=session, settings=settings, user=user, order_id=order_id,
        filename=file.filename or "", content_type=file.content_type or "", stream=file.file,
    )  # fmt: skip
    return AttachmentPublic.model_validate(attachment)


@router.get("/{order_id}/attachments", response_model=list[AttachmentPublic], responses=NOT_FOUND)
def list_attachments(
    session: SessionDep, user: CurrentUser, order_id: Id
) -> list[AttachmentPublic]:
    rows = attachments.list_attachments(session=session, user=user, order_id=order_id)
    return [AttachmentPublic.model_validate(a) for a in rows]


@router.get(
    "/{order_id}/attachments/access-log",
    response_model=list[AttachmentAccessPublic],
    responses=NOT_FOUND,
)
def attachment_access_log(
    session: SessionDep, user: CurrentUser, order_id: Id
) -> list[AttachmentAccessPublic]:
    """Every upload, link and download of this order's files (buyer only)."""
    rows = attachments.access_log(session=session, user=user, order_id=order_id)
    return [AttachmentAccessPublic.model_validate(a) for a in rows]
