"""``shouhu profiles validate|list``: check device profile files, show the loaded set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from shouhu.exceptions import ProfileError
from shouhu.profiles import Profile, load_profile, load_profiles


@click.group()
def profiles() -> None:
    """Validate and list device profiles (device_profiles/*.yaml)."""


def _files(paths: tuple[Path, ...]) -> list[Path]:
    from device_profiles import PROFILES_DIR

    files: list[Path] = []
    for entry in paths or (PROFILES_DIR,):
        files.extend(sorted(entry.glob("*.yaml")) if entry.is_dir() else [entry])
    return files


@profiles.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Validate profile files (PATH: files or directories; default: the shipped profiles).

    Prints one line per file and exits 1 if any is invalid.
    """
    seen: dict[str, Path] = {}
    good = bad = 0
    for file in _files(paths):
        try:
            profile = load_profile(file)
            if profile.id in seen:
                raise ProfileError(
                    f"{file}: id: duplicate profile id {profile.id!r} (also in {seen[profile.id]})"
                )
        except ProfileError as exc:
            bad += 1
            click.echo(f"invalid {exc.one_line()}")
            continue
        seen[profile.id] = file
        good += 1
        click.echo(
            f"ok      {file}: {profile.ref} ({profile.transport}, {profile.decoder}, {len(profile.golden)} golden)"
        )
    click.echo(f"{good} profiles valid, {bad} invalid")
    if bad:
        sys.exit(1)


@profiles.command("list")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_profiles(paths: tuple[Path, ...], as_json: bool) -> None:
    """List profiles: id, version, transport, decoder, description."""
    loaded = load_profiles(list(paths) or None)
    if as_json:
        click.echo(json.dumps([_summary(p) for p in loaded.values()], indent=2, ensure_ascii=False))
        return
    rows = [("ID", "VERSION", "TRANSPORT", "DECODER", "DESCRIPTION")]
    rows += [
        (p.id, str(p.version), p.transport, p.decoder, _one_line(p.description))
        for p in loaded.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[4]
        )


def _one_line(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _summary(profile: Profile) -> dict[str, object]:
    return {
        "id": profile.id,
        "version": profile.version,
        "ref": profile.ref,
        "transport": profile.transport,
        "decoder": profile.decoder,
        "description": profile.description,
        "readings": list(profile.readings),
        "path": profile.source_path,
    }


# --- signed bundles: keygen, sign, flash ------------------------------------------------


@profiles.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for bundle-signing.key (keep secret) and bundle-signing.pub (give to gateways).",
)
def keygen(out_dir: Path) -> None:
    """Make an Ed25519 key pair for signing profile bundles."""
    from shouhu.bundle import generate_keypair

    private = out_dir / "bundle-signing.key"
    if private.exists():
        raise ProfileError(f"{private} exists already", hint="move it away to make a new key")
    out_dir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    private.write_bytes(private_pem)
    private.chmod(0o600)
    (out_dir / "bundle-signing.pub").write_bytes(public_pem)
    click.echo(f"wrote {private} (secret) and {out_dir / 'bundle-signing.pub'} (for gateways)")


@profiles.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--serial", type=click.IntRange(min=1), required=True, help="Must grow with every bundle."
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
def sign(paths: tuple[Path, ...], key_file: Path, serial: int, out_file: Path) -> None:
    """Validate profiles (PATH: files or dirs; default: the shipped ones) and sign a bundle."""
    import time

    from device_profiles import PROFILES_DIR
    from shouhu.bundle import build_bundle, load_private_key, texts_from_files

    texts = texts_from_files(list(paths) or [PROFILES_DIR])
    payload = build_bundle(
        texts,
        serial=serial,
        created=int(time.time() * 1000),
        private_key=load_private_key(key_file.read_bytes()),
    )
    out_file.write_bytes(payload)
    click.echo(f"signed bundle {serial} with {len(texts)} profiles: {out_file}")


@profiles.command()
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--broker", "broker_url", required=True, help="mqtt://host:port or mqtts://host:port")
@click.option("--gateway", "gateways", multiple=True, required=True, help="Gateway id (repeat).")
@click.option("--username")
@click.option("--password", envvar="SHOUHU_BROKER_PASSWORD")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False))
@click.option("--timeout", "timeout_s", default=10.0, show_default=True)
def flash(
    bundle_file: Path,
    broker_url: str,
    gateways: tuple[str, ...],
    username: str | None,
    password: str | None,
    ca_file: str | None,
    timeout_s: float,
) -> None:
    """Publish a signed bundle (retained) to each gateway's down/profiles topic.

    Gateways that are offline pick it up when they reconnect; each answers on its ack topic.
    """
    from shouhu.bundle_publish import publish_retained
    from shouhu.wire import down_topic

    payload = bundle_file.read_bytes()
    topics = [down_topic(gw, "profiles") for gw in gateways]
    publish_retained(
        broker_url,
        {t: payload for t in topics},
        username=username,
        password=password,
        ca_file=ca_file,
        timeout_s=timeout_s,
    )
    click.echo(f"flashed {bundle_file} to {len(topics)} gateway(s)")
