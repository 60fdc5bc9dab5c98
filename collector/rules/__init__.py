"""The pure rule engine: records and gateway status in, actions out (docs/rules.md).

No I/O and no clock reads anywhere in this package: every entry point takes ``now_ms``.
"""

from collector.rules.actions import (
    Action,
    Notice,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    SendCommand,
    StateDict,
    Verdict,
)
from collector.rules.engine import DISPATCH, EngineConfig, RuleEngine
from collector.rules.registry_view import RegistryView, StaticRegistry

__all__ = [
    "DISPATCH",
    "Action",
    "EngineConfig",
    "Notice",
    "RaiseAlert",
    "RegistryView",
    "Rejected",
    "ResolveAlert",
    "RuleEngine",
    "SendCommand",
    "StateDict",
    "StaticRegistry",
    "Verdict",
]
