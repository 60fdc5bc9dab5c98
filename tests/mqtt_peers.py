"""The far end of the broker in tests: a client that publishes what gateways would."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from shouhu import wire
from shouhu.model import Record


def wall_ms() -> int:
    return int(time.time() * 1000)


class GatewayClient:
    """Publishes batch envelopes and retained statuses as gateways do (QoS 1, waits for PUBACK).

    ``clock_ms`` stamps records and envelopes (a test may shift time); the retained statuses it
    set are cleared on ``close`` so they do not leak into other tests on the session broker.
    """

    def __init__(self, host: str, port: int, clock_ms: Callable[[], int] = wall_ms) -> None:
        self.clock_ms = clock_ms
        self._seq: dict[str, itertools.count[int]] = {}
        self.retained: set[str] = set()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gwpub-{uuid.uuid4().hex[:10]}"
        )
        self.client.connect(host, port)
        self.client.loop_start()

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def send(
        self, gw: str, kind: str, profile: str, device: str, data: dict[str, Any], ts: int = 0
    ) -> Record:
        seq = next(self._seq.setdefault(gw, itertools.count(1)))
        record = Record(seq, ts or self.clock_ms(), kind, profile, device, data)  # type: ignore[arg-type]
        self._publish(
            wire.up_topic(gw, kind), wire.encode_batch(gw, [record], sent=self.clock_ms())
        )
        return record

    def status(self, gw: str, state: str) -> None:
        body = wire.encode_status(state, agent_version="test", ts=self.clock_ms())
        self._publish(wire.status_topic(gw), body, retain=True)
        self.retained.add(gw)

    def clear_status(self, gw: str) -> None:
        self._publish(wire.status_topic(gw), b"", retain=True)
        self.retained.discard(gw)

    def close(self) -> None:
        for gw in sorted(self.retained):
            self._publish(wire.status_topic(gw), b"", retain=True)
        self.client.disconnect()
        self.client.loop_stop()
