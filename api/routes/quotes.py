from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SessionDep, SessionRoute, SettingsDep
from app.orders import quotes
from models.order import OrderCreate
from models.quote import QuotePublic

router = APIRouter(tags=["orders"], route_class=SessionRoute)


@router.post(
    "/quotes",
    response_model=QuotePublic,
    responses={403: {"description": "not a buyer"}, 422: {"description": "the draft is invalid"}},
)
def create_quote(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, data: OrderCreate
) -> QuotePublic:
    """Up to three options for an order draft (same body as POST /orders): cheapest,
    earliest completion, nearest. Each with machines, UTC times and a price
    breakdown in integer fen. Nothing is written or held."""
    return quotes.create_quote(session=session, user=user, data=data, settings=settings)
