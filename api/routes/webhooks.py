"""The payments provider's webhooks, through the inbox."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import SessionDep, SettingsDep
from app import money
from app.payments import SIGNATURE_HEADER, InvalidWebhookSignature
from app.errors import InvalidInput

router = APIRouter(tags=["payments"])


@router.post(
    "/webhooks/payments",
    responses={400: {"description": "the signature is missing, stale or wrong"}},
)
async def payments_webhook(request: Request, session: SessionDep, settings: SettingsDep) -> dict[str, bool]:
    """Signed provider events: each is stored once (duplicates answer 200 and do nothing)
    and brings the payments it names forward; never backwards."""
    payload = await request.body()
    signature = request.headers.get(SIGNATURE_HEADER)
    from starlette.concurrency import run_in_threadpool

    try:
        new = await run_in_threadpool(
            money.receive_webhook, session=session, settings=settings, payload=payload, signature=signature
        )
    except InvalidWebhookSignature as exc:
        raise InvalidInput(exc.message, field=SIGNATURE_HEADER) from exc
    return {"received": True, "duplicate": not new}
