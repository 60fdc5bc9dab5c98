"""The demo's city: who lives there, which gateways hear them, and what happens in 40 seconds.

``build_city(now_ms, url_of)`` returns everything ``shouhu demo`` needs for its scripted story,
on top of the simulated background wearers:

- **Wanderer at night.** Wang Fang's amulet leaves her home gateway, is heard at the east
  market and then at the east station: a ``wanderer`` alert to her son.
- **Kitchen fire.** The Chen household has two interlinked 433 MHz alarms and two gateways
  (hall, stair) with RFLink receivers. The kitchen alarm's burst is heard by both: one
  ``smoke`` incident for the family and the fire brigade, a ``sound`` command to both
  gateways; later the alarm clears, the incident resolves and both gateways get ``silence``.
- **Patrol round.** Unit 07 taps two NTAG 424 DNA boxes with valid SUN messages (computed here
  with the boxes' real keys), then shows the first box's URL again (a replayed counter):
  ``patrol_abnormal`` to the police desk. The river box's round closed without a visit:
  ``patrol_missed``.
- **School morning.** Two student cards at the school gate: arrival notices to the parents.

Every frame is what a radio would hand over (iBeacon AD bytes, RFLink lines, NDEF messages) and
goes through the real decoders on ``script`` sources. Pure apart from the random key material
(drawn from ``seed``): no I/O, no clock (``now_ms`` is given).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import ndef
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from collector.domain import (
    Contact,
    Gateway,
    Household,
    PatrolBox,
    PatrolRoute,
    School,
    SmokeAlarm,
    Student,
    Wearer,
    Window,
)
from collector.rules.schedule import in_windows, local
from collector.sun import sdm_mac
from edge_agent.decoders.ble import build_ibeacon_ad
from shouhu.cardkey import card_key

TZ: Final = "Asia/Shanghai"
ALL_DAYS: Final = frozenset(range(7))
NIGHT: Final = Window(ALL_DAYS, "21:00", "07:00")  # the wearer's risk schedule
AMULET_UUID: Final = "fda50693-a4e2-4fb1-afcf-c6eb07647825"
AMULET_MAJOR: Final = 20001  # the background sim uses 10001: no clash
PATROL_HOST: Final = "patrol.shouhu.example"  # device_profiles/patrol-ntag424.yaml
MINUTE_MS: Final = 60_000
STORY_LENGTH_S: Final = 40.0  # the last scripted frame is before this

# Recipients: path on the local channel -> (who, role)
RECIPIENTS: Final[Mapping[str, tuple[str, str]]] = {
    "/family-wang": ("Wang Jun, son of Wang Fang", "family"),
    "/family-chen": ("Chen Mei, 8 Willow Lane", "family"),
    "/fire-brigade": ("Fire brigade, station 4", "fire_brigade"),
    "/police-desk": ("Police desk, east district", "police_desk"),
    "/parent-ming": ("Ming Hua, mother of Xiao Ming", "guardian"),
    "/parent-li": ("Li Qiang, father of Li Lily", "guardian"),
}


@dataclass(frozen=True, slots=True)
class CityGateway:
    """One scripted gateway: its id and the ``sources`` list of its gateway config."""

    id: str
    sources: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class City:
    tz: str
    now_ms: int
    entities: tuple[Any, ...]  # registry values (collector.domain)
    gateways: tuple[CityGateway, ...]
    rules: Mapping[str, Any]  # the collector's ``rules:`` section
    prime_tick_ms: int  # the rule state starts as if the collector had ticked then
    story: tuple[str, ...]  # what happens, for the summary


# --- frames ------------------------------------------------------------------------------------


def _ble(at_s: float, minor: int, rssi: int) -> dict[str, Any]:
    ad = build_ibeacon_ad(AMULET_UUID, AMULET_MAJOR, minor)
    return {
        "at_s": at_s,
        "payload": ad.hex(),
        "meta": {"rssi": rssi, "address": "C3:20:01:00:00:07"},
    }


def rflink_line(counter: int, device_id: str, on: bool) -> str:
    """An RFLink Gateway line for an FA20RF smoke alarm (docs/serial.md)."""
    return f"20;{counter & 0xFF:02X};FA20RF;ID={device_id};SMOKEALERT={'ON' if on else 'OFF'};"


def sun_url(meta_key: bytes, file_key: bytes, uid: bytes, counter: int, pad: bytes) -> str:
    """The URL an NTAG 424 DNA writes on a read (NXP AN12196): encrypted PICCData + SDMMAC."""
    ctr_le = counter.to_bytes(3, "little")
    plain = bytes([0xC7]) + uid + ctr_le + pad[:5]  # UID and counter mirrored, UID 7 bytes
    enc = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).encryptor()
    picc = enc.update(plain) + enc.finalize()
    mac = sdm_mac(file_key, uid, ctr_le)
    return f"https://{PATROL_HOST}/t?picc_data={picc.hex().upper()}&cmac={mac.hex().upper()}"


def ndef_uri(url: str) -> bytes:
    """An NDEF message with one URI record, as the tag holds it."""
    return b"".join(ndef.message_encoder([ndef.UriRecord(url)]))


def _tap(at_s: float, payload: bytes, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"at_s": at_s, "payload": payload.hex(), "meta": dict(meta)}


# --- the clock ---------------------------------------------------------------------------------


def _hhmm(ms: int) -> str:
    return local(ms, TZ).strftime("%H:%M")


def risk_schedule(now_ms: int) -> tuple[tuple[Window, ...], str]:
    """Night (21:00-07:00), plus a window around now when it is day: the demo needs night."""
    if in_windows((NIGHT,), now_ms, TZ) and in_windows((NIGHT,), now_ms + 5 * MINUTE_MS, TZ):
        return (NIGHT,), f"it is {_hhmm(now_ms)} in {TZ}: night, her risk schedule 21:00-07:00"
    start = now_ms - now_ms % MINUTE_MS - 5 * MINUTE_MS
    extra = Window(ALL_DAYS, _hhmm(start), _hhmm(start + 70 * MINUTE_MS))
    note = (
        f"it is {_hhmm(now_ms)} in {TZ}, not night: the demo adds {extra.start}-{extra.end}"
        " to her risk schedule 21:00-07:00"
    )
    return (NIGHT, extra), note


def river_round_end(now_ms: int) -> int:
    """The minute boundary in [now - 25 s, now + 35 s): when the river box's round closes.

    Rounds close on whole minutes; this one closes inside the story's 40 s whenever it starts
    (a boundary before the start is judged on the collector's first tick, see ``prime_tick_ms``).
    """
    return -(-(now_ms - 25_000) // MINUTE_MS) * MINUTE_MS


# --- the city ----------------------------------------------------------------------------------


def build_city(now_ms: int, url_of: Callable[[str], str], seed: int = 1) -> City:
    """The registry, the scripted gateways and the story, for a demo starting at ``now_ms``."""
    rng = random.Random(seed)

    def contact(cid: str, path: str, order: int = 0) -> Contact:
        name, role = RECIPIENTS[path]
        return Contact(cid, name, url_of(path), role, order)

    # Wanderer
    minor = 7
    amulet = f"ibeacon:{AMULET_UUID.replace('-', '')}:{AMULET_MAJOR}:{minor}"
    schedule, night_note = risk_schedule(now_ms)
    wearer = Wearer(
        "w-wang",
        "Wang Fang",
        amulet,
        frozenset({"gw-wang-home"}),
        frozenset({"home-wang"}),
        schedule,
        contacts=(contact("c-wang-jun", "/family-wang"),),
    )
    home = [_ble(t, minor, -55 - t % 3) for t in range(0, 6)]
    market = [_ble(9 + t, minor, -76 + t % 3) for t in range(0, 7)]
    station = [_ble(15 + t, minor, -72 + t % 2) for t in range(0, 7)]

    # Kitchen fire
    kitchen, hallway = "97e3b2", "5c81d0"
    household = Household(
        "h-chen",
        "8 Willow Lane, flat 2",
        frozenset({"gw-chen-hall", "gw-chen-stair"}),
        "district-4",
        (
            SmokeAlarm(f"rflink:fa20rf:{kitchen}", "h-chen", "kitchen"),
            SmokeAlarm(f"rflink:fa20rf:{hallway}", "h-chen", "hallway"),
        ),
        (contact("c-chen-mei", "/family-chen"), contact("c-brigade-4", "/fire-brigade")),
    )
    burst = [rflink_line(0x30 + i, kitchen, True) for i in range(3)]
    hall = [{"at_s": 18.0 + 0.2 * i, "payload_text": line} for i, line in enumerate(burst)]
    stair = [{"at_s": 18.1 + 0.2 * i, "payload_text": line} for i, line in enumerate(burst[:2])]
    hall.append({"at_s": 33.0, "payload_text": rflink_line(0x40, kitchen, False)})
    transmit = {
        "sound": f"10;FA20RF;{hallway};1;ON;",  # sound the interlinked hallway alarm
        "silence": f"10;FA20RF;{hallway};1;OFF;",
    }

    # Patrol
    boxes: list[PatrolBox] = []
    keys: dict[str, tuple[bytes, bytes, bytes]] = {}
    places = {
        "box-market-gate": (31.24000, 121.48000, "east market gate"),
        "box-temple": (31.24020, 121.48015, "temple side door"),
        "box-river": (31.24500, 121.48500, "river steps"),
    }
    for i, (box_id, (lat, lon, where)) in enumerate(places.items()):
        meta_key, file_key = rng.randbytes(16), rng.randbytes(16)
        uid = bytes.fromhex(f"04a15e3c7280{i + 1:02x}")
        keys[box_id] = (meta_key, file_key, uid)
        boxes.append(
            PatrolBox(box_id, f"nfc:{uid.hex()}", lat, lon, where, meta_key.hex(), file_key.hex())
        )
    river_end = river_round_end(now_ms)
    river_window = Window(ALL_DAYS, _hhmm(river_end - 30 * MINUTE_MS), _hhmm(river_end))
    routes = (
        PatrolRoute("route-market", "gw-patrol-07", ("box-market-gate", "box-temple"),
                    contacts=(contact("c-desk-market", "/police-desk"),)),
        PatrolRoute("route-river", "gw-patrol-07", ("box-river",), (river_window,),
                    contacts=(contact("c-desk-river", "/police-desk"),)),
    )  # fmt: skip

    def box_tap(at_s: float, box_id: str, counter: int) -> dict[str, Any]:
        meta_key, file_key, uid = keys[box_id]
        url = sun_url(meta_key, file_key, uid, counter, rng.randbytes(5))
        meta = {"uid": uid.hex(), "technology": "Type4Tag", "product": "NXP NTAG424DNA"}
        return _tap(at_s, ndef_uri(url), meta)

    market_tap = box_tap(22.0, "box-market-gate", 41)
    replayed = {**market_tap, "at_s": 29.0}  # the same URL (counter 41) shown again
    patrol = [market_tap, box_tap(26.0, "box-temple", 17), replayed]

    # School
    card_hash_key = rng.randbytes(32)
    cards = {"st-ming": "a1b2c3d4", "st-lily": "5e6f7a8b"}
    school = School("s-willow", "Willow Primary", frozenset({"gw-school-gate"}))
    students = (
        Student("st-ming", "Xiao Ming", card_key(cards["st-ming"], card_hash_key), "s-willow",
                (contact("c-ming-hua", "/parent-ming"),)),
        Student("st-lily", "Li Lily", card_key(cards["st-lily"], card_hash_key), "s-willow",
                (contact("c-li-qiang", "/parent-li"),)),
    )  # fmt: skip
    card_meta = {"technology": "Type4Tag", "product": "Type4Tag",
                 "uid_hash_key": card_hash_key.hex()}  # fmt: skip
    school_taps = [
        _tap(35.0, b"", {**card_meta, "uid": cards["st-ming"]}),
        _tap(36.5, b"", {**card_meta, "uid": cards["st-lily"]}),
    ]

    gateways_reg = (
        Gateway("gw-wang-home", "12 Willow Lane", "home-wang", 31.2300, 121.4700),
        Gateway("gw-market-east", "east market", "market", 31.2400, 121.4800),
        Gateway("gw-station-east", "east station", "station", 31.2500, 121.4900),
        Gateway("gw-chen-hall", "8 Willow Lane hall", "home-chen", 31.2310, 121.4710),
        Gateway("gw-chen-stair", "8 Willow Lane stair", "home-chen", 31.2311, 121.4711),
        Gateway("gw-patrol-07", "patrol unit 07", "patrol"),
        Gateway("gw-school-gate", "Willow Primary gate", "school", 31.2350, 121.4750),
    )

    def script(transport: str, frames: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"name": "script", "type": "script",
                "options": {"transport": transport, "frames": frames, **extra}}  # fmt: skip

    gateways = (
        CityGateway("gw-wang-home", (script("ble", home),)),
        CityGateway("gw-market-east", (script("ble", market),)),
        CityGateway("gw-station-east", (script("ble", station),)),
        CityGateway("gw-chen-hall", (script("serial", hall, transmit=transmit),)),
        CityGateway("gw-chen-stair", (script("serial", stair, transmit=transmit),)),
        CityGateway("gw-patrol-07", (script("nfc", patrol),)),
        CityGateway("gw-school-gate", (script("nfc", school_taps),)),
    )
    story = (
        f" 0-21 s  Wang Fang's amulet leaves home, heard at the east market, then the east"
        f" station ({night_note})",
        "18 s     the Chen kitchen alarm's RF burst, heard by the hall and the stair gateways",
        "22-29 s  patrol unit 07 taps the market gate and the temple box (valid SUN), then the"
        " market gate's URL again (replayed counter 41)",
        f"{(river_end - now_ms) / 1000:+.0f} s    the river box's round ({river_window.start}-"
        f"{river_window.end}) closes without a visit (rounds close on whole minutes)",
        "33 s     the kitchen alarm stops",
        "35-37 s  Xiao Ming and Li Lily tap their cards at the Willow Primary gate",
    )
    return City(
        tz=TZ,
        now_ms=now_ms,
        entities=(*gateways_reg, wearer, household, *boxes, *routes, school, *students),
        gateways=gateways,
        rules={"tz": TZ, "gateway": {"health_interval_s": 3600}},
        prime_tick_ms=river_end - MINUTE_MS,
        story=story,
    )
