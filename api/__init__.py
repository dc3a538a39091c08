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
    telemetry,
    webhooks,
    windows,
)

router = APIRouter(prefix="/api/v1")
for module in (
    health,
    accounts,
    catalog,
    machines,
    orders,
    bookings,
    matching,
    quotes,
    payments,
    telemetry,
    webhooks,
    windows,
):
    router.include_router(module.router)
