"""``shouhu decode ble|nfc|serial``: decode one frame offline and print JSON."""

from __future__ import annotations

import click

from shouhu.cli import LazyGroup

DECODE_COMMANDS: dict[str, str] = {
    "ble": "edge_agent.decoders.ble_cli:ble",
    "nfc": "edge_agent.decoders.nfc_cli:nfc",
    "serial": "edge_agent.decoders.serial_cli:serial",
}


@click.group(cls=LazyGroup, lazy_commands=DECODE_COMMANDS)
def decode() -> None:
    """Decode a raw frame with the shipped device profiles and print JSON."""
