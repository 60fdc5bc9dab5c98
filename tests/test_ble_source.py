"""BleSource: real bleak advertisement objects in, frames the shipped profiles decode out;
and a scanner with no Bluetooth adapter (this machine has none) that keeps running."""

from __future__ import annotations

import struct
import threading
import time
import uuid

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edge_agent.decoders.ble import parse_ad, uuid16
from edge_agent.decoders.dispatch import FrameDecoder
from edge_agent.sources.ble import BleSource
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame
from shouhu.profiles import load_profiles

AMULET_UUID = "fda50693-a4e2-4fb1-afcf-c6eb07647825"
AED_NAMESPACE = "5368cbe75f7e4a1d8a00"
EDDYSTONE = uuid16(0xFEAA)


def advertisement(
    *,
    manufacturer_data: dict[int, bytes] | None = None,
    service_data: dict[str, bytes] | None = None,
    service_uuids: list[str] | None = None,
    local_name: str | None = None,
    tx_power: int | None = None,
    rssi: int = -70,
) -> AdvertisementData:
    """A real bleak ``AdvertisementData`` as the BlueZ backend builds it."""
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer_data or {},
        service_data=service_data or {},
        service_uuids=service_uuids or [],
        tx_power=tx_power,
        rssi=rssi,
        platform_data=(),
    )


def ibeacon_adv(major: int, minor: int, rssi: int) -> AdvertisementData:
    body = b"\x02\x15" + uuid.UUID(AMULET_UUID).bytes + struct.pack(">HHb", major, minor, -59)
    return advertisement(manufacturer_data={0x004C: body}, rssi=rssi)


def collect(source: BleSource) -> list[RawFrame]:
    frames: list[RawFrame] = []
    source._emit = frames.append  # what start() installs; the scanner thread is not needed here
    return frames


def test_ibeacon_advertisement_becomes_a_decodable_frame() -> None:
    source = BleSource("ble0", {})
    frames = collect(source)
    device = BLEDevice("c3:00:00:12:34:56", None, details={"path": "/org/bluez/hci0/dev_C3"})
    before = time.time_ns() // 1_000_000
    source.on_advertisement(device, ibeacon_adv(10001, 4711, rssi=-67))
    assert len(frames) == 1
    frame = frames[0]
    assert frame.source == "ble0"
    assert before <= frame.ts <= time.time_ns() // 1_000_000
    assert frame.meta == {"address": "C3:00:00:12:34:56", "rssi": -67}
    profile, readings = FrameDecoder(load_profiles()).decode("ble", frame)
    assert profile is not None and profile.id == "amulet-ibeacon"
    assert [(r.kind, r.device, dict(r.data)) for r in readings] == [
        (
            "sighting",
            "ibeacon:fda50693a4e24fb1afcfc6eb07647825:10001:4711",
            {"rssi": -67, "tx_power": -59, "major": 10001, "minor": 4711},
        )
    ]
    assert source.health()["frames"] == 1


def test_eddystone_tlm_gets_the_uid_learned_from_the_same_address() -> None:
    source = BleSource("ble0", {})
    frames = collect(source)
    aed = BLEDevice("D0:00:00:00:00:A1", "AED", details=None)
    instance = "0000000000a1"
    uid = bytes([0x00, 0xEE]) + bytes.fromhex(AED_NAMESPACE + instance) + b"\x00\x00"
    tlm = bytes([0x20, 0x00]) + struct.pack(">HHII", 2300, 0x1680, 99, 600)
    # A TLM heard before any UID from that address has no id yet.
    source.on_advertisement(
        aed, advertisement(service_data={EDDYSTONE: tlm}, service_uuids=[EDDYSTONE])
    )
    source.on_advertisement(
        aed,
        advertisement(
            service_data={EDDYSTONE: uid}, service_uuids=[EDDYSTONE], local_name="AED", rssi=-80
        ),
    )
    source.on_advertisement(
        aed, advertisement(service_data={EDDYSTONE: tlm}, service_uuids=[EDDYSTONE])
    )
    assert "eddystone_id" not in frames[0].meta
    assert frames[2].meta["eddystone_id"] == f"{AED_NAMESPACE}:{instance}"
    assert parse_ad(frames[1].payload).local_name == "AED"

    decoder = FrameDecoder(load_profiles())
    results = [decoder.decode("ble", f) for f in frames]
    assert [(p.id if p else None, [(r.kind, r.device) for r in rs]) for p, rs in results] == [
        ("aed-eddystone", [("event", "eddystone-mac:D0:00:00:00:00:A1")]),
        ("aed-eddystone", [("sighting", f"eddystone:{AED_NAMESPACE}:{instance}")]),
        ("aed-eddystone", [("event", f"eddystone:{AED_NAMESPACE}:{instance}")]),
    ]
    assert results[2][1][0].data["battery_mv"] == 2300


def test_unrelated_and_oversized_advertisements_do_not_raise() -> None:
    source = BleSource("ble0", {})
    frames = collect(source)
    phone = BLEDevice("11:22:33:44:55:66", None, details=None)
    source.on_advertisement(phone, advertisement(manufacturer_data={0x0006: b"\x01\x09\x20"}))
    source.on_advertisement(phone, advertisement(manufacturer_data={0x0059: bytes(300)}))
    assert len(frames) == 1
    assert FrameDecoder(load_profiles()).decode("ble", frames[0]) == (None, [])
    health = source.health()
    assert health["frames"] == 1 and health["errors"] == 1


def test_a_failing_consumer_does_not_break_the_callback() -> None:
    source = BleSource("ble0", {})

    def broken(frame: RawFrame) -> None:
        raise RuntimeError("consumer bug")

    source._emit = broken
    source.on_advertisement(BLEDevice("C3:00:00:00:00:01", None, None), ibeacon_adv(1, 2, -50))
    assert source.health()["errors"] == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"passive": "yes"}, "ble0.passive"),
        ({"adapter": 0}, "ble0.adapter"),
        ({"backoff_initial_s": 0}, "ble0.backoff_initial_s"),
        ({"scan_interval": 1}, "ble0.scan_interval"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BleSource("ble0", options)
    assert caught.value.field == field


@pytest.mark.parametrize("passive", [False, True])
def test_start_without_an_adapter_keeps_retrying(passive: bool) -> None:
    source = BleSource(
        "ble0", {"passive": passive, "backoff_initial_s": 0.02, "backoff_max_s": 0.05}
    )
    source.start(lambda frame: None)
    try:
        deadline = time.monotonic() + 10
        while source.health()["attempts"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        health = source.health()
    finally:
        source.stop()
    assert health["present"] is False
    assert health["attempts"] >= 4  # it retried, with backoff, instead of dying
    assert health["errors"] >= 1 and health["last_error"]
    assert not any(t.name == "ble-ble0" for t in threading.enumerate())
