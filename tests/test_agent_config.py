"""gateway.yaml: the example parses, defaults hold, and every mistake names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from edge_agent.cli import agent
from edge_agent.config import load_config, parse_config
from provisioning.gateway_config import gateway_document
from shouhu.exceptions import ConfigError

EXAMPLE = Path(__file__).parent.parent / "examples" / "gateway.yaml"


def minimal(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "gateway": {"id": "gw-east-017"},
        "broker": {"url": "mqtt://127.0.0.1:1883"},
    }
    doc.update(sections)
    return doc


def test_the_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.id == "gw-east-017"
    assert config.broker.tls and config.broker.port == 8883
    assert config.client_id == "shouhu-gw-gw-east-017"
    assert [s.type for s in config.sources] == ["sim"]


def test_defaults() -> None:
    config = parse_config(minimal(), "gateway.yaml")
    assert (config.broker.host, config.broker.port, config.broker.tls) == ("127.0.0.1", 1883, False)
    assert config.broker.protocol == "3.1.1" and config.broker.keepalive == 60
    assert config.outbox.max_records == 200_000
    b = config.batching
    assert (b.max_records, b.max_bytes, b.max_age_ms) == (500, 256 * 1024, 500)
    a = config.aggregator
    assert (a.update_interval_s, a.away_timeout_s, a.ema_alpha) == (30.0, 20.0, 0.3)
    assert config.health_interval_s == 30.0
    assert config.profile_dirs is None and config.sources == ()


def test_provisioning_writes_documents_this_parser_accepts(tmp_path: Path) -> None:
    doc = gateway_document(
        "gw-a",
        site="school",
        broker_url="mqtt://broker:1883",
        username=None,
        password_file=None,
        sources=["sim", "ble", "serial"],
        outbox_path=str(tmp_path / "o.db"),
    )
    config = parse_config(doc, "provisioned")
    assert [s.name for s in config.sources] == ["sim0", "ble0", "serial0"]


def test_password_file_and_mqtts(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    broker = {"url": "mqtts://mq.example", "username": "gw", "password_file": str(secret)}
    config = parse_config(minimal(broker={**broker, "ca_file": str(ca)}))
    assert config.broker.password == "s3cret" and config.broker.tls and config.broker.port == 8883
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"broker": {"url": "http://x"}}, "broker.url", "must start with mqtt:// or mqtts://"),
        ({"broker": {"url": "tcp://x:1883"}}, "broker.url", "mqtt://"),
        ({"broker": {}}, "broker.url", "required"),
        ({"broker": {"url": "mqtt://x:99999"}}, "broker.url", "not a valid URL"),
        ({"broker": {"url": "mqtt://x", "ca_file": "/etc/hostname"}}, "broker.ca_file", "TLS"),
        ({"broker": {"url": "mqtts://x", "ca_file": "/nope.pem"}}, "broker.ca_file", "no such"),
        ({"broker": {"url": "mqtt://x", "pasword": "p"}}, "broker.pasword", "unknown key"),
        ({"broker": {"url": "mqtt://x", "password": "p"}}, "broker.username", "required"),
        ({"broker": {"url": "mqtt://x", "protocol": 4}}, "broker.protocol", "3.1.1 or 5"),
        ({"gateway": {"id": "GW_1"}}, "gateway.id", "a-z"),
        ({"gateway": {}}, "gateway.id", "required"),
        ({"gateway": {"id": "gw", "name": "x"}}, "gateway.name", "unknown key"),
        ({"sources": {"name": "x"}}, "sources", "list"),
        ({"sources": [{"name": "a", "type": "lora"}]}, "sources[0].type", "one of"),
        ({"sources": [{"name": "a", "type": "sim", "opts": {}}]}, "sources[0].opts", "unknown"),
        (
            {"sources": [{"name": "a", "type": "sim"}, {"name": "a", "type": "ble"}]},
            "sources[1].name",
            "duplicate",
        ),
        ({"outbox": {"max_records": 0}}, "outbox.max_records", ">= 1"),
        ({"outbox": {"path": ""}}, "outbox.path", "non-empty"),
        ({"batching": {"max_bytes": 10}}, "batching.max_bytes", ">= 1024"),
        ({"aggregator": {"ema_alpha": 1.5}}, "aggregator.ema_alpha", "(0, 1.0]"),
        ({"aggregator": {"away_timeout_s": "20"}}, "aggregator.away_timeout_s", "number"),
        ({"health": {"interval_s": 0}}, "health.interval_s", "> 0"),
        ({"profiles": {"dirs": ["/no/such/dir"]}}, "profiles.dirs", "no such"),
        ({"outbx": {}}, "outbx", "unknown section"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], field: str, message: str) -> None:
    doc = minimal(**change)
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, "gateway.yaml")
    assert caught.value.field == field
    assert str(caught.value).startswith(f"gateway.yaml:{field}: ")
    assert message in str(caught.value)


def test_load_config_reports_yaml_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("gateway:\n  id: gw-1\n broker: [\n")
    with pytest.raises(ConfigError, match=r"gateway.yaml: not valid YAML at line \d"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_cli_check_config(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(minimal(sources=[{"name": "sim0", "type": "sim", "options": {"seed": 3}}]))
    )
    result = runner.invoke(agent, ["check-config", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok: gateway gw-east-017" in result.output and "sim0:sim" in result.output

    path.write_text(yaml.safe_dump(minimal(broker={"url": "http://x"})))
    result = runner.invoke(agent, ["check-config", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path}:broker.url: must start with mqtt:// or mqtts://"
    )

    bad_source = minimal(sources=[{"name": "sim0", "type": "sim", "options": {"wearer": 3}}])
    path.write_text(yaml.safe_dump(bad_source))
    result = runner.invoke(agent, ["check-config", "--config", str(path)])
    assert result.exit_code == 2 and "sources.sim0.options.wearer" in result.output
    assert len(result.output.strip().splitlines()) == 1
