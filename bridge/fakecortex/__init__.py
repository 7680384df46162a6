"""A local stand-in for the Cortex Deploys API, strict about what it accepts.

Used by ``cortex-deploy-bridge demo``, the test suite and the benchmarks. It validates every
request body against SaveDeployRequest (Cortex OpenAPI, tag "Deploys"), keeps deploys in
memory, and injects faults on demand: 429 with ``Retry-After``, 5xx, slowness, and
connections dropped before or after the deploy is stored. Faults come queued one by one
(:meth:`FakeCortex.inject`), at random (``chaos``: a seeded share of requests fails in one of
those ways), or from a Cortex-like rate limit (``rate_limit_per_minute``).

Run alone: ``python -m bridge.fakecortex --port 8787 --token secret [--chaos 0.3 --seed 7
--rate-limit 1000]``. What it stored can then be read back, with the same bearer token, at
``GET /_stand-in/deploys`` and ``GET /_stand-in/stats``: paths outside the Cortex API, which
chaos and the rate limit never touch.
"""

from __future__ import annotations

from bridge.fakecortex.cli import main
from bridge.fakecortex.faults import CHAOS_KINDS, Fault
from bridge.fakecortex.handler import STAND_IN_PREFIX, Received
from bridge.fakecortex.schema import DEPLOY_TYPES, validate_save_deploy_request
from bridge.fakecortex.server import FakeCortex

__all__ = [
    "CHAOS_KINDS",
    "DEPLOY_TYPES",
    "STAND_IN_PREFIX",
    "FakeCortex",
    "Fault",
    "Received",
    "main",
    "validate_save_deploy_request",
]
