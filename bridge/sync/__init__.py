"""Sync: read deploys from SCMs and deployment APIs, and record what Cortex lacks."""
