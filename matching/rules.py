"""The market's arithmetic rules, in one place: distance, transport and price rounding.

Pure (standard library only) so that every layer computes them the same way: the
matcher's compile step, its validation, the benchmark generator and, through imports,
the application (quotes, search by distance, booking prices).

* Distance is the great-circle (haversine) distance in km on a sphere of the mean
  earth radius.
* Transport between two sites takes ``transport_fixed_min`` plus the driving time at
  ``transport_speed_kmh``, rounded up to the minute, and costs ``transport_fen_per_km``
  per km rounded to the fen; two sites less than :data:`SAME_SITE_KM` apart are one site
  (no transport).
* A price is time at an hourly rate, rounded up to the fen with integer arithmetic.
"""

from __future__ import annotations

import math
from typing import Protocol

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE_LAT = math.pi / 180 * EARTH_RADIUS_KM
SAME_SITE_KM = 0.05  # closer than this: one site, no transport


class TransportTariff(Protocol):
    """What transport costs and how long it takes (``matching.Weights`` is one)."""

    @property
    def transport_fen_per_km(self) -> int: ...

    @property
    def transport_speed_kmh(self) -> float: ...

    @property
    def transport_fixed_min(self) -> int: ...


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def km_per_degree_lon(lat: float) -> float:
    """Length of one degree of longitude at latitude ``lat`` (for bounding boxes)."""
    return math.pi / 180 * EARTH_RADIUS_KM * math.cos(math.radians(lat))


def transport_minutes(km: float, tariff: TransportTariff) -> int:
    """Minutes to move goods over ``km``: 0 on one site, else the fixed time plus the
    driving time, rounded up."""
    if km < SAME_SITE_KM:
        return 0
    return tariff.transport_fixed_min + math.ceil(km / tariff.transport_speed_kmh * 60 - 1e-9)


def transport_fen(km: float, tariff: TransportTariff) -> int:
    """Cost of moving goods over ``km``, rounded to the fen."""
    return round(km * tariff.transport_fen_per_km)


def transport_minutes_between(
    lat1: float, lon1: float, lat2: float, lon2: float, tariff: TransportTariff
) -> int:
    """Transport time between two sites (:func:`transport_minutes` of their distance)."""
    return transport_minutes(haversine_km(lat1, lon1, lat2, lon2), tariff)


def price_fen(*, minutes: int, hourly_rate_fen: int) -> int:
    """Time priced from an hourly rate, rounded up to the fen (integer arithmetic)."""
    return -(-minutes * hourly_rate_fen // 60)
