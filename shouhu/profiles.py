"""Device profiles: the YAML documents in ``device_profiles/`` (docs/device-profiles.md).

A profile says which frames it matches, which built-in decoder reads them, what readings come
out and what they mean for alerts. Loading validates the whole document and reports the file
and the field that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Transport = Literal["ble", "nfc", "serial"]


@dataclass(frozen=True, slots=True)
class GoldenFrame:
    """An example frame shipped with a profile and the reading(s) it must decode to."""

    name: str
    payload: bytes  # BLE: AD structures; NFC: tag dump / URL; serial: one line
    meta: Mapping[str, Any]
    expect: tuple[
        Mapping[str, Any], ...
    ]  # each: subset of {kind, device, data{...}}; () = no match


@dataclass(frozen=True, slots=True)
class AlertSemantics:
    """What a profile's readings mean to the rule engine."""

    severity: Mapping[str, str] = field(default_factory=dict)  # event -> info|warning|critical
    supervision_s: int | None = None  # expected reporting interval; silence → supervision lost
    battery_low_mv: int | None = None
    battery_low_pct: int | None = None
    debounce_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    version: int
    transport: Transport
    decoder: str  # a name in edge_agent.decoders.DECODERS
    description: str = ""
    match: Mapping[str, Any] = field(default_factory=dict)  # decoder-specific matchers
    options: Mapping[str, Any] = field(default_factory=dict)  # decoder-specific options
    readings: tuple[str, ...] = ()  # streams this profile emits
    alerts: AlertSemantics = field(default_factory=AlertSemantics)
    golden: tuple[GoldenFrame, ...] = ()
    source_path: str | None = None

    @property
    def ref(self) -> str:
        """``id@version`` as carried in every record."""
        return f"{self.id}@{self.version}"
