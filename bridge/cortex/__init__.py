"""The Cortex Deploys API client: knows Cortex, knows nothing of GitHub or GitLab."""

from bridge.cortex.client import CortexClient
from bridge.cortex.retry import RetryPolicy

__all__ = ["CortexClient", "RetryPolicy"]
