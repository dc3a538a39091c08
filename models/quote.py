"""Instant quotes: options for a prospective order, nothing committed."""

from __future__ import annotations

import datetime as dt

from sqlmodel import SQLModel

from models.base import CURRENCY


class QuoteStep(SQLModel):
    seq: int
    process_key: str
    machine_id: int
    machine_name: str
    owner_org_id: int
    cluster_id: int | None
    start_at: dt.datetime
    end_at: dt.datetime
    price_fen: int  # processing
    transport_fen: int  # to the next step's site, or to the delivery point after the last
    distance_km: float  # machine to delivery point


class QuoteOption(SQLModel):
    labels: list[str]  # cheapest | earliest | nearest (one option may be several)
    completion_at: dt.datetime  # the last step ends
    delivery_at: dt.datetime  # ... and the goods reach the delivery point
    processing_fen: int
    transport_fen: int
    total_fen: int
    currency: str = CURRENCY
    max_distance_km: float
    steps: list[QuoteStep]


class QuotePublic(SQLModel):
    options: list[QuoteOption]
    unavailable: str | None = None  # why there is no option, when there is none
    seconds: float
