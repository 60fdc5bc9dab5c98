"""``shouhu decode nfc URL --profile patrol-ntag424 --key HEX``: check one SUN URL offline.

Handy when personalising NTAG 424 DNA tags: tap the tag with a phone, paste the URL, and see
whether the collector would accept it. Prints ``{"uid", "counter", "verdict", "reason"}`` as
JSON; ``verdict`` is ``valid``, ``bad_mac``, ``replay`` or ``bad_picc_data``. Exits 0 when
valid, 1 when not, 2 on bad input (unknown profile, URL not for it, malformed parameters,
malformed keys).
"""

from __future__ import annotations

import json
import re
import sys
import time

import click

from shouhu.exceptions import ShouhuError

REASONS = {
    "valid": "SDMMAC verified and the counter is above the last accepted one",
    "bad_mac": "SDMMAC does not verify with the file read key: cloned, forged or wrong key",
    "replay": "SDMMAC verifies but the counter is not above the last accepted one: replayed URL",
    "bad_picc_data": "PICCData does not decrypt to UID + counter: wrong meta read key or forged",
}


def _hex_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    text = value.replace(" ", "").replace(":", "")
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise click.BadParameter("expected 32 hex digits (an AES-128 key)")
    return text


@click.command("nfc")
@click.argument("url")
@click.option(
    "--profile",
    "profile_id",
    default="patrol-ntag424",
    show_default=True,
    help="An ntag424-sun device profile (names the URL's parameters).",
)
@click.option(
    "--key",
    "meta_key",
    required=True,
    callback=_hex_key,
    help="SDM meta read key (decrypts PICCData), 32 hex digits.",
)
@click.option(
    "--file-key",
    callback=_hex_key,
    default=None,
    help="SDM file read key (MAC), 32 hex digits; default: the --key value.",
)
@click.option(
    "--last-counter",
    type=click.IntRange(min=-1),
    default=-1,
    show_default=True,
    help="Last accepted read counter of this tag (replay check).",
)
def nfc(url: str, profile_id: str, meta_key: str, file_key: str | None, last_counter: int) -> None:
    """Verify the NTAG 424 DNA SUN parameters in URL (as the tag wrote it) and print JSON."""
    import ndef

    from collector.sun import verify_sun
    from edge_agent.decoders.nfc import sun_fields
    from edge_agent.sources.serial import find_profile
    from shouhu.model import RawFrame

    try:
        profile = find_profile(profile_id)
        if profile.decoder != "ntag424-sun":
            raise click.BadParameter(
                f"{profile.id} is not an ntag424-sun profile", param_hint="--profile"
            )
        technology = profile.match.get("technology", ["Type4Tag"])
        meta = {"technology": technology if isinstance(technology, str) else technology[0]}
        payload = b"".join(ndef.message_encoder([ndef.UriRecord(url)]))
        found = sun_fields(RawFrame("cli", int(time.time() * 1000), payload, meta), profile)
        if found is None:
            raise click.BadParameter(
                f"not a URL of profile {profile.ref} (host {profile.match.get('url_host')})",
                param_hint="URL",
            )
        data, _uid = found
        verdict = verify_sun(
            data["picc_data"],
            data["cmac"],
            meta_key,
            file_key or meta_key,
            last_counter,
            enc_hex=data.get("enc"),
            mac_param=str(profile.options.get("cmac_param", "cmac")),
        )
    except ShouhuError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(2)
    click.echo(
        json.dumps(
            {
                "uid": verdict.uid or None,
                "counter": verdict.counter if verdict.counter >= 0 else None,
                "verdict": verdict.reason,
                "reason": REASONS.get(verdict.reason, verdict.reason),
            },
            sort_keys=True,
        )
    )
    if not verdict.ok:
        sys.exit(1)
