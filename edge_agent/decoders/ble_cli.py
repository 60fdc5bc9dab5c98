"""``shouhu decode ble HEX``: decode one advertisement (AD bytes) offline and print JSON.

Paste what ``btmon``/``hcidump`` showed as advertising data (or a golden frame) and see which
profile claims it and what the gateway would publish. Exit 1: no profile matches; exit 2: bad
hex, a malformed advertisement or a bad option.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from edge_agent.decoders.dispatch import FrameDecoder
from shouhu.exceptions import DecodeError
from shouhu.model import RawFrame


def _parse_hex(ctx: click.Context, param: click.Parameter, value: str) -> bytes:
    text = value.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise click.BadParameter(f"not hex bytes: {value!r}") from None
    if not data:
        raise click.BadParameter("no bytes given")
    return data


@click.command("ble")
@click.argument("payload", metavar="HEX", callback=_parse_hex)
@click.option(
    "--rssi", type=int, default=-70, show_default=True, help="meta.rssi of the frame (dBm)."
)
@click.option(
    "--address", default="00:00:00:00:00:00", show_default=True, help="meta.address of the frame."
)
@click.option(
    "--eddystone-id",
    default=None,
    help="meta.eddystone_id (<namespace>:<instance>) for TLM/URL frames.",
)
@click.option(
    "--profile",
    "profile_id",
    default=None,
    help="Decode with this profile only (id or id@version).",
)
@click.option(
    "--profiles-dir",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Load profiles from here instead of the shipped ones.",
)
def ble(
    payload: bytes,
    rssi: int,
    address: str,
    eddystone_id: str | None,
    profile_id: str | None,
    profiles_dir: Path | None,
) -> None:
    """Decode HEX (BLE advertising data: AD structures) with the BLE device profiles."""
    from shouhu.profiles import load_profiles

    loaded = load_profiles([profiles_dir] if profiles_dir else None)
    if profile_id is not None:
        chosen = {p.id: p for p in loaded.values() if profile_id in (p.id, p.ref)}
        if not chosen:
            raise click.BadParameter(f"no profile {profile_id!r}", param_hint="--profile")
        if next(iter(chosen.values())).transport != "ble":
            raise click.BadParameter(
                f"profile {profile_id} is not a ble profile", param_hint="--profile"
            )
        loaded = chosen
    meta: dict[str, object] = {"address": address.upper(), "rssi": rssi}
    if eddystone_id:
        meta["eddystone_id"] = eddystone_id.lower()
    frame = RawFrame(source="cli", ts=int(time.time() * 1000), payload=payload, meta=meta)
    decoder = FrameDecoder(loaded)
    try:
        profile, readings = decoder.decode("ble", frame)
    except DecodeError as exc:
        click.echo(f"error: malformed advertisement: {exc.one_line()}", err=True)
        sys.exit(2)
    if profile is None:
        tried = ", ".join(p.id for p in decoder.candidates("ble")) or "none loaded"
        click.echo(
            f"error: no device profile matches this advertisement (tried: {tried})", err=True
        )
        sys.exit(1)
    for reading in readings:
        out = {
            "profile": reading.profile,
            "device": reading.device,
            "kind": reading.kind,
            "data": dict(reading.data),
        }
        click.echo(json.dumps(out, ensure_ascii=False, sort_keys=True))
