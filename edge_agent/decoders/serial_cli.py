"""``shouhu decode serial --profile ID LINE``: decode one receiver line offline, print JSON.

Handy at an install: paste what the RFLink / rtl_433 / EV1527 module printed and see the
readings the gateway would publish. ``LINE`` may be ``-`` to decode every line of stdin.
Prints one JSON object per reading (JSON Lines); exits 1 when no line gave a reading, 2 when
the profile is unknown or not a serial one.
"""

from __future__ import annotations

import json
import sys
import time

import click

from edge_agent.decoders import get_decoder
from shouhu.exceptions import DecodeError, ShouhuError
from shouhu.model import RawFrame, Reading


def reading_to_json(reading: Reading) -> str:
    """The reading as the envelope would carry it (without ``seq``)."""
    return json.dumps(
        {
            "ts": reading.ts,
            "kind": reading.kind,
            "profile": reading.profile,
            "device": reading.device,
            "data": dict(reading.data),
        },
        ensure_ascii=False,
        sort_keys=True,
    )


@click.command("serial")
@click.option(
    "--profile", "profile_id", required=True, help="Device profile id, e.g. smoke-rflink."
)
@click.option("--port", default="cli", show_default=True, help="Value for the frame's meta.port.")
@click.option(
    "--ts", type=int, default=None, help="Frame time in ms since the epoch (default: now)."
)
@click.argument("line")
def serial(profile_id: str, port: str, ts: int | None, line: str) -> None:
    """Decode LINE (one line a serial receiver printed) with a serial device profile.

    LINE "-" decodes stdin line by line (e.g. piped from rtl_433 -F json); a malformed line is
    then reported on stderr and the next one is read.
    """
    from edge_agent.sources.serial import find_profile

    try:
        profile = find_profile(profile_id)
        decode = get_decoder(profile.decoder)
    except ShouhuError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    if profile.transport != "serial":
        raise click.BadParameter(
            f"{profile.id} is a {profile.transport} profile", param_hint="--profile"
        )
    streaming = line == "-"
    found = failed = 0
    for text in sys.stdin if streaming else [line]:
        frame_ts = ts if ts is not None else int(time.time() * 1000)
        payload = text.rstrip("\r\n").encode("utf-8", "surrogateescape")
        try:
            readings = decode(RawFrame("cli", frame_ts, payload, {"port": port}), profile)
        except DecodeError as exc:
            failed += 1
            click.echo(f"error: {exc.one_line()}", err=True)
            if not streaming:
                sys.exit(exc.exit_code)
            continue
        for reading in readings:
            click.echo(reading_to_json(reading))
            found += 1
    if not found and not failed:
        click.echo(f"no reading: the line matches nothing in profile {profile.ref}", err=True)
    if not found:
        sys.exit(1)
