"""Alerts: the pure lifecycle (``lifecycle``); delivery lives in the collector's I/O shell."""

from collector.alerts.lifecycle import (
    TRANSITIONS,
    Alert,
    AlertBook,
    AlertEvent,
    DeliverTo,
    Effect,
    LifecycleConfig,
    PublicAlert,
    Publish,
)

__all__ = [
    "TRANSITIONS",
    "Alert",
    "AlertBook",
    "AlertEvent",
    "DeliverTo",
    "Effect",
    "LifecycleConfig",
    "Publish",
    "PublicAlert",
]
