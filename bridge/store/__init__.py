"""The durable outbox (delivery log), Cortex records and deploy history, on SQLAlchemy Core."""

from bridge.store.budget import CORTEX_BUDGET, Draw
from bridge.store.listener import Listener
from bridge.store.records import Lookup, RecordWrite
from bridge.store.schema import (
    DEAD,
    DELIVERED,
    DELIVERING,
    QUEUED,
    RETRYING,
    SCHEMA_VERSION,
    STATUSES,
    Delivery,
    Record,
    StoreError,
)
from bridge.store.store import SENDING, WAKE_CHANNEL, Lease, LeaseLost, Store

__all__ = [
    "CORTEX_BUDGET",
    "DEAD",
    "DELIVERED",
    "DELIVERING",
    "QUEUED",
    "RETRYING",
    "SCHEMA_VERSION",
    "SENDING",
    "STATUSES",
    "WAKE_CHANNEL",
    "Delivery",
    "Draw",
    "Lease",
    "LeaseLost",
    "Listener",
    "Lookup",
    "Record",
    "RecordWrite",
    "Store",
    "StoreError",
]
