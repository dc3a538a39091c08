"""Every table, imported so that ``SQLModel.metadata`` (and Alembic) sees them all."""

from models.attachment import Attachment, AttachmentAccess
from models.base import CURRENCY, UTCDateTime, utcnow
from models.booking import ACTIVE_STATES, Booking, BookingKind, BookingState
from models.cluster import Cluster
from models.machine import AvailabilityRule, AvailabilityWindow, Machine, MachineStatus
from models.order import Operation, Order, OrderEvent, OrderStatus
from models.org import Organization, Role, User
from models.taxonomy import Family, Material, Process, ProcessMaterial

__all__ = [
    "ACTIVE_STATES",
    "CURRENCY",
    "Attachment",
    "AttachmentAccess",
    "AvailabilityRule",
    "AvailabilityWindow",
    "Booking",
    "BookingKind",
    "BookingState",
    "Cluster",
    "Family",
    "Machine",
    "MachineStatus",
    "Material",
    "Operation",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "Organization",
    "Process",
    "ProcessMaterial",
    "Role",
    "UTCDateTime",
    "User",
    "utcnow",
]
