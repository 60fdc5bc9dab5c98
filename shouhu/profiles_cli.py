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
