from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import CurrentUser, Id, IdFilter, Limit, Offset, SessionDep, SessionRoute, SettingsDep
from app.bookings import flows as booking_flows
from app.bookings import service as bookings
from app.orders import attachments
from models.attachment import AttachmentLink, AttachmentPublic
from models.base import Page
from models.booking import (
    BookingKind,
    BookingPublic,
    BookingState,
    BookingTransition,
    LeaseCreate,
)

router = APIRouter(tags=["bookings"], route_class=SessionRoute)


@router.post(
    "/leases",
    response_model=BookingPublic,
    status_code=201,
    responses={409: {"description": "the slot collides with another booking"}},
)
def create_lease(session: SessionDep, user: CurrentUser, data: LeaseCreate) -> BookingPublic:
    """Lease a slot of a leasable machine's offered time, priced from its hourly rate;
    its deposit is charged."""
    return BookingPublic.model_validate(
        booking_flows.create_lease(session=session, user=user, data=data)
    )


@router.get("/bookings", response_model=Page[BookingPublic])
def list_bookings(
    session: SessionDep,
    user: CurrentUser,
    kind: BookingKind | None = None,
    state: BookingState | None = None,
    machine_id: IdFilter = None,
    order_id: IdFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[BookingPublic]:
    rows, count = bookings.list_bookings(
        session=session, user=user, kind=kind, state=state, machine_id=machine_id,
        order_id=order_id, limit=limit, offset=offset,
    )  # fmt: skip
    return Page(data=[BookingPublic.model_validate(b) for b in rows], count=count)


@router.get("/bookings/{booking_id}", response_model=BookingPublic)
def get_booking(session: SessionDep, user: CurrentUser, booking_id: Id) -> BookingPublic:
    booking = bookings.get_booking_or_raise(session=session, user=user, booking_id=booking_id)
    return BookingPublic.model_validate(booking)


@router.post(
    "/bookings/{booking_id}/{action}",
    response_model=BookingPublic,
    responses={
        409: {
            "description": "the state machine or a lifecycle rule (whole order, early start,"
            " precedence, complete after start) forbids this move now; the detail names it"
        }
    },
)
def transition_booking(
    session: SessionDep,
    user: CurrentUser,
    booking_id: Id,
    action: str,
    data: BookingTransition | None = None,
) -> BookingPublic:
    """accept (authorizes a service's price) | decline (reason required) | start |
    complete (charges a lease) | cancel (void, or the late-cancellation fee)."""
    booking = booking_flows.transition_booking(
        session=session, user=user, booking_id=booking_id, action=action,
        reason=data.reason if data else "",
    )  # fmt: skip
    return BookingPublic.model_validate(booking)


@router.get("/attachments/{attachment_id}", response_model=AttachmentPublic, tags=["orders"])
def get_attachment(session: SessionDep, user: CurrentUser, attachment_id: Id) -> AttachmentPublic:
    attachment = attachments.get_attachment_or_raise(
        session=session, user=user, attachment_id=attachment_id
    )
    return AttachmentPublic.model_validate(attachment)


@router.post("/attachments/{attachment_id}/link", response_model=AttachmentLink, tags=["orders"])
def attachment_link(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, attachment_id: Id
) -> AttachmentLink:
    """A download link that expires (the buyer, and owners the work is assigned to)."""
    token, expires = attachments.create_download_link(
        session=session, settings=settings, user=user, attachment_id=attachment_id
    )
    return AttachmentLink(url=f"/api/v1/attachments/download/{token}", expires_at=expires)


@router.get("/attachments/download/{token}", tags=["orders"], response_class=FileResponse)
def download_attachment(session: SessionDep, settings: SettingsDep, token: str) -> FileResponse:
    attachment, path = attachments.open_download(session=session, settings=settings, token=token)
    return FileResponse(
        path,
        media_type=attachment.content_type,
        filename=attachment.filename,
        headers={"X-Content-SHA256": attachment.sha256},
    )
