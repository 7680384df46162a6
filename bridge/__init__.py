"""cortex-deploy-bridge: every deploy recorded in Cortex, exactly once."""

__version__ = "0.1.0"
