"""Three device families through one gateway to the collector's database, with real parts.

One ``Agent`` runs three sources at once:
- ``serial``: an RFLink on ``socket://`` (``serial_player.TcpLink``) playing the recorded
  session: receiver reset noise, a line split across reads, and a smoke alarm repeated three
  times in one RF burst, then a second burst after a pause;
- ``nfc``: nfcpy's ``udp`` reader with a tag emulated on the other end
  (``nfc_tag_emulator``) carrying a patrol URL; a FeliCa tag, so the shipped profile that
  claims it is ``student-card`` (its UID becomes a keyed hash);
- ``sim``: the simulated BLE radio with amulet wearers walking past.
A ``Collector`` with the SQLite writer subscribes on the same Mosquitto. Each family must land
in the database, each record exactly once, and each RF burst as exactly one alarm.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nfc_tag_emulator import EmulatedTag, tap_in_thread, uri_message
from serial_player import RFLINK_SESSION, TcpLink, play

from collector.config import BrokerConfig, CollectorConfig, WriterConfig
from collector.ingest import Collector
from collector.writers.sqlite import SqliteWriter
from edge_agent.agent import Agent
from edge_agent.config import parse_config
from shouhu.cardkey import card_key

IDM = bytes.fromhex("02fe0102030405f6")
PATROL_URL = "https://patrol.shouhu.example/b/b-204"
HASH_KEY = bytes(range(32))
SMOKE_DEVICE = "rflink:fa20rf:97e3b2"
SECOND_BURST = (
    b"20;21;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
    b"20;22;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
    b"20;23;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
)
BURST_GAP_S = 2.5  # > the profile's debounce_s (2): the next frame starts a new burst


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serial_nfc_and_ble_families_reach_the_database_exactly_once(
    mosquitto: Any, tmp_path: Path
) -> None:
    gw = f"gw-{uuid.uuid4().hex[:10]}"
    key_file = tmp_path / "uid-hash.key"
    key_file.write_text(HASH_KEY.hex() + "\n", encoding="ascii")
    udp_port = free_udp_port()
    link = TcpLink()
    sources = [
        {"name": "rf0", "type": "serial", "options": {
            "port": link.url, "profile": "smoke-rflink",
            "read_timeout_s": 0.05, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}},
        {"name": "nfc0", "type": "nfc", "options": {
            "path": f"udp:127.0.0.1:{udp_port}", "targets": ["212F"], "debounce_s": 30,
            "uid_hash_key_file": str(key_file)}},
        {"name": "ble0", "type": "sim", "options": {
            "wearers": 3, "seed": 5, "time_scale": 5, "mean_away_s": 1, "mean_linger_s": 5}},
    ]  # fmt: skip
    config = parse_config(
        {
            "gateway": {"id": gw},
            "broker": {"url": mosquitto.url},
            "sources": sources,
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "batching": {"max_age_ms": 100},
            "aggregator": {"update_interval_s": 2, "away_timeout_s": 3},
        },
        "test",
    )
    writer = SqliteWriter({"path": str(tmp_path / "records.db")})
    collector = Collector(
        CollectorConfig(
            broker=BrokerConfig(mosquitto.host, mosquitto.port, client_id=f"col-{gw}"),
            writer=WriterConfig("sqlite", {"path": str(tmp_path / "records.db")}),
            state_path=str(tmp_path / "state.db"),
        ),
        writer=writer,
    )
    collector.start()
    agent = Agent(config, reconnect_min_s=0.1)
    tag = EmulatedTag(udp_port, IDM, uri_message(PATROL_URL))

    def stored(kind: str) -> list[Any]:
        return [r for r in writer.records(gw) if r.kind == kind]

    try:
        assert collector.wait_connected(10)
        time.sleep(0.2)  # the collector's SUBACK before anything is published
        agent.start()
        rf0, nfc0, _ = agent.sources
        assert wait_for(lambda: rf0.health()["present"] and nfc0.health()["present"])

        tapping = tap_in_thread(tag, hold_s=0.3, timeout_s=15)
        play(link, RFLINK_SESSION, gap_s=0.02)  # burst 1: three repeats of one alarm
        time.sleep(BURST_GAP_S)
        play(link, SECOND_BURST, gap_s=0.02)  # burst 2
        tapping.join(20)
        assert tag.activations >= 1

        assert wait_for(lambda: len(stored("alarm")) == 2 and len(stored("tap")) == 1, 15)
        assert wait_for(lambda: any(r.data["event"] == "enter" for r in stored("sighting")), 15)
    finally:
        agent.stop(drain_timeout_s=3)
        link.close()
        collector.wait_idle(10)
        parked = [d for d in collector.dead_letters.list(limit=1000) if d.gw == gw]
        collector.stop()  # closes its writer: read the database afresh
    assert parked == []
    check = SqliteWriter({"path": str(tmp_path / "records.db")})
    try:
        records = check.records(gw)
    finally:
        check.close()
    # every record the gateway accepted is in the database, and only once
    seqs = [r.seq for r in records]
    assert len(seqs) == len(set(seqs)) == agent.stats().accepted
    assert sorted(seqs) == list(range(1, len(seqs) + 1))

    alarms = [r for r in records if r.kind == "alarm"]
    assert [(r.profile, r.device, r.data["event"]) for r in alarms] == [
        ("smoke-rflink@1", SMOKE_DEVICE, "alarm"),
        ("smoke-rflink@1", SMOKE_DEVICE, "alarm"),
    ]  # six frames heard, two bursts, two readings
    assert alarms[1].ts - alarms[0].ts >= BURST_GAP_S * 1000 - 500
    assert rf0.health()["frames"] >= 7 + len(SECOND_BURST)

    (tap,) = [r for r in records if r.kind == "tap"]
    assert tap.profile == "student-card@1"
    assert tap.device == card_key(IDM.hex(), HASH_KEY) and IDM.hex() not in repr(tap)
    assert tap.data["technology"] == "Type3Tag"

    sightings = [r for r in records if r.kind == "sighting"]
    assert sightings and {r.profile for r in sightings} == {"amulet-ibeacon@1"}
    assert all(r.device.startswith("ibeacon:fda50693a4e24fb1afcfc6eb07647825:") for r in sightings)
    events = [r.data["event"] for r in sightings]
    assert events.count("enter") == events.count("exit") >= 1  # exits flushed at stop
