"""The durable outbox (delivery log), Cortex records and deploy history, on SQLAlchemy Core."""

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
from bridge.store.store import Store

__all__ = [
    "DEAD",
    "DELIVERED",
    "DELIVERING",
    "QUEUED",
    "RETRYING",
    "SCHEMA_VERSION",
    "STATUSES",
    "Delivery",
    "Record",
    "Store",
    "StoreError",
]
