"""The payments provider's webhooks, through the inbox."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, SessionRoute, SettingsDep
from app.money import webhooks
from app.money.provider import SIGNATURE_HEADER

router = APIRouter(tags=["payments"], route_class=SessionRoute)


@router.post(
    "/webhooks/payments",
    responses={400: {"description": "the signature is missing, stale or wrong"}},
)
async def payments_webhook(
    request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, bool]:
    """Signed provider events: each is stored once (a duplicate answers 200 and does
    nothing) and brings the payments it names forward, never backwards. Async only to
    read the raw body the signature covers; the work runs in the threadpool."""
    payload = await request.body()
    new = await run_in_threadpool(
        webhooks.receive_webhook,
        session=session,
        settings=settings,
        payload=payload,
        signature=request.headers.get(SIGNATURE_HEADER),
    )
    return {"received": True, "duplicate": not new}
