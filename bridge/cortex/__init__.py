"""The Cortex Deploys API client: knows Cortex, knows nothing of GitHub or GitLab."""

from bridge.cortex.client import CortexClient

__all__ = ["CortexClient"]
