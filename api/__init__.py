"""JSON API under /api/v1."""

from fastapi import APIRouter

from api.routes import (
    accounts,
    bookings,
    catalog,
    health,
    machines,
    matching,
    orders,
    payments,
    quotes,
    webhooks,
)

router = APIRouter(prefix="/api/v1")
for module in (health, accounts, catalog, machines, orders, bookings, matching, quotes, payments, webhooks):
    router.include_router(module.router)
