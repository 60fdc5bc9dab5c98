"""The contract every radio source follows, and the table that names them.

A source owns one radio. ``start(emit)`` returns at once and runs the radio in the source's
own thread(s); every frame heard is handed to ``emit`` (thread-safe, never blocks for long).
A source survives its radio disappearing and coming back, and says so in ``health()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shouhu.model import RawFrame

Emit = Callable[[RawFrame], None]

# source type (the ``type:`` of a source in gateway.yaml) -> "module:class"
SOURCES: dict[str, str] = {
    "sim": "edge_agent.sources.sim:SimSource",
    "ble": "edge_agent.sources.ble:BleSource",
    "nfc": "edge_agent.sources.nfc:NfcSource",
    "serial": "edge_agent.sources.serial:SerialSource",
    "script": "edge_agent.sources.script:ScriptSource",
}


class Source(Protocol):
    """A running radio. Constructed as ``cls(name, options)`` from the gateway config."""

    name: str
    transport: str  # "ble" | "nfc" | "serial": which profiles decode its frames

    def start(self, emit: Emit) -> None: ...

    def stop(self) -> None: ...

    def health(self) -> Mapping[str, Any]:
        """Counters for the health record: ``frames``, ``errors``, ``present`` (radio there)."""
        ...
