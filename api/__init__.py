"""JSON API under /api/v1."""

from fastapi import APIRouter

from api.routes import accounts, bookings, catalog, health, machines, matching, orders

router = APIRouter(prefix="/api/v1")
for module in (health, accounts, catalog, machines, orders, bookings, matching):
    router.include_router(module.router)
