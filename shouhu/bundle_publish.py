"""Publish retained messages once and wait for the broker's PUBACKs (the `flash` I/O edge)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from shouhu.broker_url import parse_broker_url
from shouhu.exceptions import BrokerError, ConfigError


def publish_retained(
    broker_url: str,
    messages: Mapping[str, bytes],
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    timeout_s: float = 10.0,
) -> None:
    """QoS 1, retained; raises BrokerError unless every message was acknowledged in time."""
    address = parse_broker_url(broker_url, field_name="--broker")
    host, port, tls = address.host, address.port, address.tls
    url_user, url_password = address.username, address.password
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    if username or url_user:
        client.username_pw_set(username or url_user, password or url_password)
    if tls:
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    elif ca_file:
        raise ConfigError("a CA file needs an mqtts:// broker URL", field="--ca-file")
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot reach broker {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1, retain=True) for t, p in messages.items()]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise BrokerError(
                    f"broker {host}:{port} did not acknowledge within {timeout_s} s",
                    hint="check the broker URL, credentials and ACL",
                )
    except (RuntimeError, ValueError) as exc:
        raise BrokerError(f"publishing to {host}:{port} failed: {exc}") from exc
    finally:
        client.disconnect()
        client.loop_stop()
