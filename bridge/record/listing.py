"""Kept for the imports of ``bridge.record.listing`` until they name the core: what Cortex
holds for one entity (Known, Listing) is the core's reading, in bridge/record/core.py."""

from bridge.record.core import Known, Listing

__all__ = ["Known", "Listing"]
