"""Every table, imported so that ``SQLModel.metadata`` (and Alembic) sees them all."""

from models.attachment import Attachment, AttachmentAccess
from models.base import CURRENCY, UTCDateTime, utcnow
from models.booking import ACTIVE_STATES, HELD_STATES, Booking, BookingKind, BookingState
from models.cluster import Cluster
from models.machine import AvailabilityRule, AvailabilityWindow, Machine, MachineStatus
from models.match_run import MatchRun, MatchRunStatus, MatchRunUnmatched, MatchScope
from models.order import Operation, Order, OrderEvent, OrderStatus
from models.org import Organization, Role, User
from models.payment import (
    LedgerEntry,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    PaymentKind,
    PaymentStatus,
    ProviderAccount,
)
from models.taxonomy import Family, Material, Process, ProcessMaterial
from models.telemetry import MachineState, MachineStateSpan
from models.usage import HistoryRollup, MachineDay, MachineHistory

__all__ = [
    "ACTIVE_STATES",
    "HELD_STATES",
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
    "HistoryRollup",
    "LedgerEntry",
    "LedgerTransaction",
    "Machine",
    "MachineDay",
    "MachineHistory",
    "MachineState",
    "MachineStateSpan",
    "MachineStatus",
    "MatchRun",
    "MatchRunStatus",
    "MatchRunUnmatched",
    "MatchScope",
    "Material",
    "Operation",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "Organization",
    "Payment",
    "PaymentEvent",
    "PaymentKind",
    "PaymentStatus",
    "Process",
    "ProcessMaterial",
    "ProviderAccount",
    "Role",
    "UTCDateTime",
    "User",
    "utcnow",
]
