"""The publisher and the whole agent against a real Mosquitto (the ``mosquitto`` fixture).

What is proved: a record leaves the outbox only after the broker's PUBACK (a frozen or stopped
broker keeps it there); after the broker comes back everything drains; alarms do not wait for a
batch; retained online/offline status; the agent end to end with the simulated radio, and a
malformed frame dead-lettered without stopping anything.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.agent import Agent
from edge_agent.config import BatchingConfig, BrokerConfig, parse_config
from edge_agent.decoders.ble import ad_from_parts, build_ibeacon_ad
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher, chunk_records
from edge_agent.sources.base import Emit
from shouhu import wire
from shouhu.model import RawFrame, Reading, Record

T0 = 1_763_800_000_000
AMULET_UUID = "fda50693-a4e2-4fb1-afcf-c6eb07647825"


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Listener:
    """A persistent-session QoS 1 subscriber that survives broker restarts."""

    def __init__(self, host: str, port: int, gw: str) -> None:
        self.records: list[Record] = []
        self.topics: list[str] = []
        self.status: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"listener-{gw}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *a: c.subscribe(
            [(f"shouhu/v1/gw/{gw}/up/#", 1), (wire.status_topic(gw), 1)]
        )
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 10)
        self.client.loop_start()
        assert self._subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.topic.endswith("/status"):
                self.status = wire.decode_status(msg.payload)
                return
            batch = wire.decode_batch(msg.payload)
            assert not batch.rejected
            self.topics.append(msg.topic)
            self.records.extend(batch.records)

    def seqs(self) -> set[int]:
        with self._lock:
            return {r.seq for r in self.records}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def gw() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def listener(mosquitto: Any, gw: str) -> Iterator[Listener]:
    listening = Listener(mosquitto.host, mosquitto.port, gw)
    yield listening
    listening.close()


def broker_config(mosquitto: Any) -> BrokerConfig:
    return BrokerConfig(url=mosquitto.url, host=mosquitto.host, port=mosquitto.port, tls=False)


def sightings(n: int, start: int = 0) -> list[Reading]:
    return [
        Reading(T0 + i, "sighting", "amulet-ibeacon@1", f"ibeacon:{AMULET_UUID}:1:{i}",
                {"event": "enter", "rssi": -70})
        for i in range(start, start + n)
    ]  # fmt: skip


def alarm() -> Reading:
    return Reading(T0, "alarm", "smoke-rflink@1", "rf433:hh-0042-kitchen", {"event": "alarm"})


def publisher_for(
    gw: str, mosquitto: Any, outbox: Outbox, batching: BatchingConfig | None = None
) -> Publisher:
    return Publisher(
        gw,
        broker_config(mosquitto),
        outbox,
        batching or BatchingConfig(max_records=50, max_age_ms=50),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


def test_outbox_drains_after_puback_and_survives_a_broker_outage(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    accepted = outbox.append(sightings(120))
    pub = publisher_for(gw, mosquitto, outbox)
    pub.start()
    try:
        assert pub.wait_drained(10)
        assert wait_for(lambda: listener.seqs() == {r.seq for r in accepted})
        assert listener.status["state"] == "online"
        assert pub.stats().acked == 120

        mosquitto.stop()
        try:
            assert wait_for(lambda: not pub.stats().connected)
            more = outbox.append([*sightings(30, start=200), alarm()])
            pub.wake()
            time.sleep(0.5)
            assert outbox.depth() == 31  # nobody acknowledged them: they stay
        finally:
            mosquitto.start()
        assert pub.wait_drained(15)
        assert wait_for(lambda: {r.seq for r in more} <= listener.seqs(), 15)
        assert pub.stats().reconnects >= 1
    finally:
        pub.stop()
    assert wait_for(lambda: listener.status.get("state") == "offline")


def test_records_stay_while_the_broker_does_not_acknowledge(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    """A frozen broker (SIGSTOP) receives but never acks: nothing may leave the outbox."""
    outbox = Outbox(tmp_path / "outbox.db")
    pub = publisher_for(gw, mosquitto, outbox)
    pub.start()
    pid = mosquitto._proc.pid
    try:
        assert pub.wait_connected(10)
        os.kill(pid, signal.SIGSTOP)
        try:
            records = outbox.append([alarm(), *sightings(10)])
            pub.wake()
            assert wait_for(lambda: pub.stats().published >= 11, 5)
            time.sleep(0.3)
            assert outbox.depth() == 11 and pub.stats().acked == 0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert pub.wait_drained(15)
        assert wait_for(lambda: {r.seq for r in records} <= listener.seqs())
    finally:
        pub.stop()


def test_alarms_go_out_at_once_routine_streams_wait_for_their_batch(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    batching = BatchingConfig(max_records=20, max_age_ms=60_000)
    pub = publisher_for(gw, mosquitto, outbox, batching)
    pub.start()
    try:
        assert pub.wait_connected(10)
        outbox.append(sightings(5))
        (urgent,) = outbox.append([alarm()])
        started = time.monotonic()
        pub.wake()
        assert wait_for(lambda: urgent.seq in listener.seqs(), 5)
        assert time.monotonic() - started < 1.0
        assert listener.seqs() == {urgent.seq}  # 5 sightings: not a full batch, not old
        assert outbox.depth() == 5
        outbox.append(sightings(15, start=10))  # now 20: a full batch goes
        pub.wake()
        assert wait_for(lambda: len(listener.seqs()) == 21, 5)
        assert any(t.endswith("/up/alarm") for t in listener.topics)
        assert any(t.endswith("/up/sighting") for t in listener.topics)
    finally:
        pub.stop()


def test_chunks_respect_record_and_byte_bounds() -> None:
    records = [Record.from_reading(i + 1, r) for i, r in enumerate(sightings(25))]
    assert [len(c) for c in chunk_records(records, 10, 1_000_000)] == [10, 10, 5]
    size = len(wire.encode_batch("gw-1", records[:1], T0))
    chunks = chunk_records(records, 100, 4 * size)
    assert all(len(wire.encode_batch("gw-1", c, T0)) <= 4 * size for c in chunks)
    assert sum(len(c) for c in chunks) == 25 and len(chunks) > 5


# --- the agent end to end ----------------------------------------------------------------------


class ScriptedSource:
    """A source that plays given frames once (a real Source, used in place of a radio)."""

    transport = "ble"

    def __init__(self, name: str, frames: list[RawFrame]) -> None:
        self.name = name
        self.frames = frames
        self.sent = 0

    def start(self, emit: Emit) -> None:
        for frame in self.frames:
            emit(frame)
            self.sent += 1

    def stop(self) -> None:
        pass

    def health(self) -> Mapping[str, Any]:
        return {"frames": self.sent, "errors": 0, "present": True}


def agent_config(gw: str, mosquitto: Any, tmp_path: Path, sources: list[dict[str, Any]]) -> Any:
    return parse_config(
        {
            "gateway": {"id": gw},
            "broker": {"url": mosquitto.url},
            "sources": sources,
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "batching": {"max_age_ms": 50},
            "aggregator": {"update_interval_s": 2, "away_timeout_s": 3},
            "health": {"interval_s": 0.5},
        },
        "test",
    )


def test_agent_with_the_simulated_radio_end_to_end(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    sim = {"wearers": 4, "seed": 11, "time_scale": 5, "mean_away_s": 2, "aeds": 1}
    config = agent_config(
        gw, mosquitto, tmp_path, [{"name": "sim0", "type": "sim", "options": sim}]
    )
    agent = Agent(config, reconnect_min_s=0.1)
    agent.start()
    try:
        assert wait_for(
            lambda: {r.data.get("event") for r in listener.records} >= {"enter", "update"}, 15
        )
        assert wait_for(lambda: any(r.kind == "health" for r in listener.records), 5)
    finally:
        agent.stop(drain_timeout_s=3)
    assert agent.publisher.stats().acked > 0
    assert agent.stats().outbox.depth == 0  # counters stay readable after stop
    health = next(r for r in listener.records if r.kind == "health")
    assert health.device == f"gw:{gw}" and health.profile == "gateway-health@1"
    assert health.data["sources"]["sim0"]["present"] is True
    assert {"uptime_s", "outbox_depth", "cpu_percent", "rss_bytes"} <= set(health.data)
    # every beacon that entered also exited (flushed at stop), in seq order per device
    by_device: dict[str, list[str]] = {}
    for r in sorted(listener.records, key=lambda r: r.seq):
        if r.kind == "sighting":
            by_device.setdefault(r.device, []).append(r.data["event"])
    assert by_device
    for events in by_device.values():
        assert events.count("enter") == events.count("exit") and events[-1] == "exit"
    reopened = Outbox(tmp_path / "outbox.db")
    assert reopened.depth() == 0  # drained: everything acked
    assert reopened.stats().accepted == len(listener.seqs())


def test_agent_dead_letters_a_malformed_frame_and_goes_on(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    good = build_ibeacon_ad(AMULET_UUID, 10001, 7)
    # well-formed AD structures, but the iBeacon inside is cut short: DecodeError
    truncated = ad_from_parts({0x004C: good[7:20]}, flags=0x06)
    now = int(time.time() * 1000)
    frames = [
        RawFrame("scripted", now, truncated, {"rssi": -70}),
        RawFrame("scripted", now + 1, b"\xff\xff\xff", {"rssi": -70}),  # not an AD structure
        RawFrame("scripted", now + 2, good, {"rssi": -71}),
    ]
    config = agent_config(gw, mosquitto, tmp_path, [])
    agent = Agent(config, sources=[ScriptedSource("scripted", frames)], reconnect_min_s=0.1)
    agent.start()
    try:
        assert wait_for(lambda: any(r.kind == "sighting" for r in listener.records), 10)
        stats = agent.stats()
        assert stats.frames == 3 and stats.decode_errors == 2
        letters = agent.outbox.dead_letters()
        assert any(
            letter.raw_hex == truncated.hex() and "truncated" in letter.reason for letter in letters
        )
        assert all(json.dumps(letter.meta) for letter in letters)
    finally:
        agent.stop()
    (enter,) = [r for r in listener.records if r.kind == "sighting" and r.data["event"] == "enter"]
    assert enter.device == f"ibeacon:{AMULET_UUID.replace('-', '')}:10001:7"


# --- TLS: mqtts:// is verified TLS or nothing --------------------------------------------------


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("shouhu test CA"))
        .issuer_name(name("shouhu test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "srv.pem",
        directory / "srv.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def test_mqtts_uses_verified_tls_and_never_falls_back_to_plaintext(gw: str, tmp_path: Path) -> None:
    from services import Mosquitto, free_port

    ca_file, cert_file, key_file = _tls_files(tmp_path)
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "broker",
        extra_config=(
            f"listener {tls_port} 127.0.0.1\ncafile {ca_file}\n"
            f"certfile {cert_file}\nkeyfile {key_file}\n"
        ),
    )
    with broker:
        doc = {"gateway": {"id": gw}, "outbox": {"path": str(tmp_path / "o.db")}}

        def publisher(url: str, ca: Path | None, box: Outbox) -> Publisher:
            section: dict[str, Any] = {"url": url}
            if ca is not None:
                section["ca_file"] = str(ca)
            config = parse_config({**doc, "broker": section}, "test")
            return Publisher(gw, config.broker, box, reconnect_min_s=0.1, reconnect_max_s=0.2)

        # mqtts:// at the plaintext port: the TLS handshake fails; nothing is sent in clear
        plain_box = Outbox(tmp_path / "plain.db")
        plain_box.append([alarm()])
        wrong = publisher(f"mqtts://127.0.0.1:{broker.port}", ca_file, plain_box)
        # the system CAs do not trust our test CA: verification fails
        untrusted_box = Outbox(tmp_path / "untrusted.db")
        untrusted_box.append([alarm()])
        untrusted = publisher(f"mqtts://127.0.0.1:{tls_port}", None, untrusted_box)
        good_box = Outbox(tmp_path / "good.db")
        good_box.append([alarm(), *sightings(3)])
        good = publisher(f"mqtts://127.0.0.1:{tls_port}", ca_file, good_box)
        for p in (wrong, untrusted, good):
            p.start()
        try:
            assert good.wait_drained(10) and good.stats().acked == 4
            assert wait_for(lambda: wrong.stats().connect_failures >= 2)
            assert wait_for(lambda: untrusted.stats().connect_failures >= 2)
            assert not wrong.wait_connected(0) and not untrusted.wait_connected(0)
            assert plain_box.depth() == 1 and untrusted_box.depth() == 1
            assert "certificate" in (untrusted.stats().last_error or "").lower()
        finally:
            for p in (wrong, untrusted, good):
                p.stop()


def test_cli_run_publishes_and_stops_cleanly_on_sigterm(
    mosquitto: Any, gw: str, listener: Listener, tmp_path: Path
) -> None:
    import subprocess
    import sys

    import yaml

    config = tmp_path / "gateway.yaml"
    doc = {
        "gateway": {"id": gw},
        "broker": {"url": mosquitto.url},
        "sources": [{"name": "sim0", "type": "sim", "options": {"wearers": 3, "seed": 2}}],
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "batching": {"max_age_ms": 50},
        "health": {"interval_s": 0.5},
    }
    config.write_text(yaml.safe_dump(doc))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shouhu.cli", "agent", "run", "--config", str(config),
         "--status-every", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: any(r.kind == "health" for r in listener.records), 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "online published" in err and "stopped:" in err
    assert wait_for(lambda: listener.status.get("state") == "offline")
    assert Outbox(tmp_path / "outbox.db").depth() == 0
