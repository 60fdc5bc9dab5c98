"""A full outbox while the broker is unreachable: urgent records are kept, and go out first.

The gateway's network is a TCP relay in front of the real Mosquitto (``BrokerGate``): closed,
the publisher's connects are refused, as when the uplink is down; opened, it relays bytes. The
subscriber is connected to the broker directly the whole time, so it sees exactly what the
gateway published and in which order.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import BatchingConfig, BrokerConfig
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from shouhu import wire
from shouhu.model import Reading, Record

T0 = 1_763_800_000_000
BOUND = 200  # outbox max_records
AMULET = "amulet-ibeacon@1"
SMOKE = "smoke-rflink@1"


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class BrokerGate:
    """A TCP relay to ``target`` on a fixed loopback port; ``close()`` refuses and cuts."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.create_server(("127.0.0.1", 0)) as probe:
            self.port = probe.getsockname()[1]
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        if self._server is not None:
            self._server.close()
            self._server = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                inside, _ = server.accept()
            except OSError:
                return
            try:
                outside = socket.create_connection(self.target, timeout=5)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            with self._lock:
                self._sockets += [inside, outside]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    @staticmethod
    def _relay(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Arrivals:
    """Subscribes to the gateway's up topics on the broker itself; keeps arrival order, and
    what ``probe()`` said at the moment each message arrived."""

    def __init__(self, host: str, port: int, gw: str, probe: Callable[[], Any]) -> None:
        self.messages: list[tuple[str, tuple[Record, ...], float, Any]] = []
        self._probe = probe
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"arrivals-{gw}"
        )
        self.client.on_connect = lambda c, *a: c.subscribe(f"shouhu/v1/gw/{gw}/up/#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 10)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        batch = wire.decode_batch(bytes(msg.payload))
        stream = msg.topic.rsplit("/", 1)[1]
        with self._lock:
            self.messages.append((stream, batch.records, time.monotonic(), self._probe()))

    def seqs(self) -> list[int]:
        with self._lock:
            return [r.seq for _, records, _, _ in self.messages for r in records]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def routine(n: int, start: int = 0) -> list[Reading]:
    """Enter/update sightings: the first to go when the outbox is full."""
    return [
        Reading(T0 + i, "sighting", AMULET, f"ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:{i}",
                {"event": "enter" if i % 2 else "update", "rssi": -70})
        for i in range(start, start + n)
    ]  # fmt: skip


KEEP = [
    Reading(T0 + 10_000, "alarm", SMOKE, "rflink:fa20rf:97e3b2", {"event": "alarm"}),
    Reading(T0 + 10_001, "alarm", SMOKE, "rflink:fa20rf:97e3b2", {"event": "tamper"}),
    Reading(T0 + 10_002, "tap", "patrol-ntag21x@1", "nfc:04a1b2c3d4e5f6", {"clone_proof": False}),
    Reading(T0 + 10_003, "sighting", AMULET, "ibeacon:fda50693a4e24fb1afcfc6eb07647825:1:0",
            {"event": "exit", "rssi_avg": -80.5}),
]  # fmt: skip


@pytest.fixture
def gw() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gate(mosquitto: Any) -> Iterator[BrokerGate]:
    relay = BrokerGate((mosquitto.host, mosquitto.port))
    yield relay
    relay.close()


def test_full_outbox_keeps_urgent_records_and_sends_them_first_when_the_broker_returns(
    mosquitto: Any, gw: str, gate: BrokerGate, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_records=BOUND)
    backlog = outbox.append(routine(BOUND))
    assert outbox.depth() == BOUND
    broker = BrokerConfig(url=f"mqtt://127.0.0.1:{gate.port}", host="127.0.0.1", port=gate.port, tls=False)  # fmt: skip
    # full routine batches go at once; the partial last one waits max_age_ms
    batching = BatchingConfig(max_records=50, max_age_ms=2_000)
    pub = Publisher(gw, broker, outbox, batching, reconnect_min_s=0.1, reconnect_max_s=0.3)
    arrivals = Arrivals(mosquitto.host, mosquitto.port, gw, outbox.depth)
    pub.start()
    try:
        assert wait_for(lambda: pub.stats().connect_failures >= 2)  # the uplink is down

        kept = outbox.append(KEEP)
        more = outbox.append(routine(30, start=1_000))  # still full: more routine ones go
        pub.wake()
        stats = outbox.stats()
        assert outbox.depth() == BOUND and stats.overflow == 0
        assert stats.evicted == len(KEEP) + 30
        pending = {r.seq: r for r in outbox.pending(10 * BOUND)}
        assert all(r.seq in pending for r in kept)  # alarm, tamper, tap, exit: all still there
        evicted = [r.seq for r in backlog[: len(KEEP) + 30]]
        assert not any(seq in pending for seq in evicted)  # the oldest routine ones went
        assert all(r.seq in pending for r in more)

        time.sleep(0.3)
        assert arrivals.messages == []  # nothing got out meanwhile
        opened = time.monotonic()
        gate.open()
        assert wait_for(lambda: len(arrivals.seqs()) >= 3, 10)
        first, second = arrivals.messages[0], arrivals.messages[1]
        # the alarms (alarm + tamper) first, the tap next, before any of the 196 sightings
        assert first[0] == "alarm" and [r.data["event"] for r in first[1]] == ["alarm", "tamper"]
        assert second[0] == "tap" and [r.seq for r in second[1]] == [kept[2].seq]
        assert first[2] - opened < 2.0  # reconnect backoff is at most 0.3 s; no batching wait
        # when the alarm arrived, routine sightings were still queued: at least the partial
        # last batch (197 routine records in batches of 50), which waits for max_age_ms
        assert first[3] >= (BOUND - 3) % batching.max_records

        assert pub.wait_drained(15)  # the last partial batch (with the exit) after max_age
        got = arrivals.seqs()
        assert sorted(got) == sorted(pending) and len(got) == len(set(got))
        exit_batch = next(m for m in arrivals.messages if kept[3].seq in {r.seq for r in m[1]})
        assert exit_batch[0] == "sighting" and exit_batch[2] - first[2] >= 1.5  # it waited
    finally:
        pub.stop()
        arrivals.close()
        outbox.close()
