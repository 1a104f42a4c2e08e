"""Shared by the hub, the agent and edgectl: contracts, PKI, config, errors."""

__version__ = "0.1.0"
