"""``shouhu provision``: what an installer runs to set up a gateway."""

from __future__ import annotations

import os
from pathlib import Path

import click

from provisioning.accounts import gateway_acl, mosquitto_password_line, new_account
from provisioning.gateway_config import SOURCE_PRESETS, gateway_document, to_yaml
from shouhu.exceptions import ConfigError


@click.group()
def provision() -> None:
    """Provision gateways: configuration files and broker accounts."""


@provision.command("gateway")
@click.argument("gw")
@click.option("--site", required=True, help="Site or district the gateway serves.")
@click.option(
    "--broker", "broker_url", required=True, help="mqtts://host:8883 (or mqtt:// on a LAN)."
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    default=("ble",),
    show_default=True,
    type=click.Choice(sorted(SOURCE_PRESETS)),
    help="Radio sources on this gateway (repeat).",
)
@click.option("--ca-file", help="CA certificate the gateway trusts for mqtts://.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("provisioned"),
    show_default=True,
    help="Directory to write into.",
)
@click.option("--outbox", "outbox_path", default="/var/lib/shouhu/outbox.sqlite", show_default=True)
def gateway_cmd(
    gw: str,
    site: str,
    broker_url: str,
    sources: tuple[str, ...],
    ca_file: str | None,
    out_dir: Path,
    outbox_path: str,
) -> None:
    """Write OUT/GW/gateway.yaml with a fresh broker account, and add the account to
    OUT/mosquitto/passwd and OUT/mosquitto/acl for the broker."""
    gw_dir = out_dir / gw
    if (gw_dir / "gateway.yaml").exists():
        raise ConfigError(
            f"{gw_dir / 'gateway.yaml'} exists already",
            hint="remove it first to re-provision (the old password stops working)",
        )
    account = new_account(gw)
    doc = gateway_document(
        gw,
        site=site,
        broker_url=broker_url,
        username=account.username,
        password_file="broker-password",
        sources=sources,
        outbox_path=outbox_path,
        ca_file=ca_file,
    )
    gw_dir.mkdir(parents=True, exist_ok=True)
    (gw_dir / "gateway.yaml").write_text(to_yaml(doc))
    secret = gw_dir / "broker-password"
    secret.write_text(account.password + "\n")
    os.chmod(secret, 0o600)
    broker_dir = out_dir / "mosquitto"
    broker_dir.mkdir(parents=True, exist_ok=True)
    with open(broker_dir / "passwd", "a") as f:
        f.write(mosquitto_password_line(account.username, account.password) + "\n")
    with open(broker_dir / "acl", "a") as f:
        f.write(gateway_acl(gw, account.username) + "\n")
    click.echo(
        f"provisioned {gw}: {gw_dir / 'gateway.yaml'}; broker account added to {broker_dir}/passwd and acl"
    )
