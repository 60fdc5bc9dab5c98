"""Gateway configuration documents for installers (pure: dicts in, YAML text out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from shouhu import wire
from shouhu.exceptions import ConfigError

SOURCE_PRESETS: dict[str, dict[str, Any]] = {
    "sim": {"type": "sim", "options": {"wearers": 5, "seed": 1}},
    "ble": {"type": "ble", "options": {"passive": True}},
    "nfc": {"type": "nfc", "options": {"path": "usb", "debounce_s": 2.0}},
    "serial": {"type": "serial", "options": {"port": "/dev/ttyUSB0", "profile": "smoke-rflink"}},
}


def gateway_document(
    gw: str,
    *,
    site: str,
    broker_url: str,
    username: str | None,
    password_file: str | None,
    sources: Sequence[str],
    outbox_path: str,
    ca_file: str | None = None,
) -> dict[str, Any]:
    """The ``gateway.yaml`` for one gateway, in the schema of ``edge_agent.config``."""
    wire.status_topic(gw)
    if not broker_url.startswith(("mqtt://", "mqtts://")):
        raise ConfigError("must start with mqtt:// or mqtts://", field="--broker")
    unknown = [s for s in sources if s not in SOURCE_PRESETS]
    if unknown:
        raise ConfigError(
            f"unknown source type {unknown[0]!r}",
            field="--source",
            hint=f"one of {', '.join(SOURCE_PRESETS)}",
        )
    broker: dict[str, Any] = {"url": broker_url}
    if username:
        broker["username"] = username
    if password_file:
        broker["password_file"] = password_file
    if ca_file:
        broker["ca_file"] = ca_file
    return {
        "gateway": {"id": gw, "site": site},
        "broker": broker,
        "sources": [{"name": f"{s}0", **SOURCE_PRESETS[s]} for s in sources],
        "outbox": {"path": outbox_path},
    }


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
