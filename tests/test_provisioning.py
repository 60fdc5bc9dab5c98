"""Provisioning: broker account lines and gateway configuration documents."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provisioning.accounts import (
    gateway_acl,
    mosquitto_password_line,
    new_account,
    verify_password_line,
)
from provisioning.gateway_config import gateway_document
from shouhu.cli import main
from shouhu.exceptions import ConfigError, EnvelopeError


def test_password_line_is_mosquitto_pbkdf2_sha512() -> None:
    line = mosquitto_password_line("gw-1", "s3cret", salt=b"0123456789ab")
    user, hashed = line.split(":", 1)
    assert user == "gw-1"
    assert hashed.startswith("$7$101$")
    assert verify_password_line(line, "s3cret")
    assert not verify_password_line(line, "wrong")


def test_acl_confines_a_gateway_to_its_own_topics() -> None:
    acl = gateway_acl("gw-east-017")
    assert "topic write shouhu/v1/gw/gw-east-017/up/#" in acl
    assert "topic read shouhu/v1/gw/gw-east-017/down/#" in acl
    assert "+" not in acl and "gw-east-018" not in acl


def test_account_refuses_a_bad_gateway_id() -> None:
    with pytest.raises(EnvelopeError):
        new_account("GW 1")


def test_gateway_document_rejects_plain_http_broker() -> None:
    with pytest.raises(ConfigError, match="--broker"):
        gateway_document(
            "gw-1",
            site="x",
            broker_url="http://b",
            username=None,
            password_file=None,
            sources=["sim"],
            outbox_path="o.sqlite",
        )


def test_provision_gateway_writes_config_and_broker_files(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["provision", "gateway", "gw-east-017", "--site", "east", "--broker", "mqtts://b:8883"]
    result = runner.invoke(main, [*args, "--source", "sim", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load((tmp_path / "gw-east-017" / "gateway.yaml").read_text())
    assert doc["gateway"] == {"id": "gw-east-017", "site": "east"}
    assert doc["broker"]["username"] == "gw-east-017"
    password = (tmp_path / "gw-east-017" / "broker-password").read_text().strip()
    passwd = (tmp_path / "mosquitto" / "passwd").read_text().splitlines()
    assert verify_password_line(passwd[0], password)
    assert "user gw-east-017" in (tmp_path / "mosquitto" / "acl").read_text()
    # a second run must not silently replace the account
    again = runner.invoke(main, [*args, "--out", str(tmp_path)])
    assert again.exit_code == 2
    assert "exists already" in again.output
