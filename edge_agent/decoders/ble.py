"""BLE advertisements: AD structures in, iBeacon / Eddystone readings out. Pure: no I/O.

A BLE source hands over the advertisement as *canonical AD bytes* (``ad_from_parts``), the
same length/type/value structures a radio sends (Bluetooth Core Spec Supplement, part A):

    [len][type][value ...] [len][type][value ...] ...   len counts type + value; 0 ends the data

``parse_ad`` reads them into a frozen ``Advertisement``; the decoders read that:

- ``decode_ibeacon``: Apple manufacturer data (company 0x004C, type 0x02, length 0x15):
  proximity UUID, major, minor, measured power -> a ``sighting`` of
  ``ibeacon:<uuid as 32 hex>:<major>:<minor>``.
- ``decode_eddystone``: service data for UUID 0xFEAA (github.com/google/eddystone):
  UID and URL frames -> ``sighting``; TLM (telemetry) -> ``event`` ``telemetry``.

Device keys of Eddystone frames: a UID frame names its beacon (``eddystone:<ns>:<inst>``).
URL and TLM frames carry no id, so they are keyed by the radio address
(``eddystone-mac:<address>``) unless the frame's meta has ``eddystone_id`` (``<ns>:<inst>``,
which ``BleSource`` fills in from the UID frames it heard from the same address).
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shouhu.exceptions import DecodeError, ProfileError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile

# AD types (Bluetooth Assigned Numbers, "Common Data Types")
AD_FLAGS: Final = 0x01
AD_UUID16_PARTIAL: Final = 0x02
AD_UUID16_COMPLETE: Final = 0x03
AD_UUID32_PARTIAL: Final = 0x04
AD_UUID32_COMPLETE: Final = 0x05
AD_UUID128_PARTIAL: Final = 0x06
AD_UUID128_COMPLETE: Final = 0x07
AD_NAME_SHORT: Final = 0x08
AD_NAME_COMPLETE: Final = 0x09
AD_TX_POWER: Final = 0x0A
AD_SERVICE_DATA16: Final = 0x16
AD_SERVICE_DATA32: Final = 0x20
AD_SERVICE_DATA128: Final = 0x21
AD_MANUFACTURER: Final = 0xFF

MAX_AD_VALUE: Final = 254  # one length byte counts the type byte too

BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
APPLE_COMPANY_ID: Final = 0x004C
IBEACON_PREFIX: Final = b"\x02\x15"  # type 0x02 "proximity beacon", 0x15 = 21 bytes follow
IBEACON_LEN: Final = 23
EDDYSTONE_UUID16: Final = 0xFEAA

EDDYSTONE_UID: Final = 0x00
EDDYSTONE_URL: Final = 0x10
EDDYSTONE_TLM: Final = 0x20
EDDYSTONE_EID: Final = 0x30
EDDYSTONE_FRAMES: Final[Mapping[str, int]] = {
    "uid": EDDYSTONE_UID,
    "url": EDDYSTONE_URL,
    "tlm": EDDYSTONE_TLM,
}

URL_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: Final = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip
TLM_TEMPERATURE_NA: Final = 0x8000


def uuid16(value: int) -> str:
    """A 16-bit UUID as the full 128-bit string bleak uses (``0000feaa-0000-1000-...``)."""
    return f"{value:08x}{BASE_UUID_SUFFIX}"


def _short_uuid(full: str) -> int | None:
    """The 16-bit form of a UUID built on the Bluetooth base UUID, else ``None``."""
    if full.endswith(BASE_UUID_SUFFIX) and full.startswith("0000"):
        return int(full[4:8], 16)
    return None


def _uuid_from_le(raw: bytes) -> str:
    """A UUID from its little-endian AD bytes (2, 4 or 16 of them) as a 128-bit string."""
    if len(raw) == 16:
        return str(uuidlib.UUID(bytes=raw[::-1]))
    return f"{int.from_bytes(raw, 'little'):08x}{BASE_UUID_SUFFIX}"


def _canonical_uuid(value: str | int) -> str:
    if isinstance(value, int):
        return uuid16(value)
    return str(uuidlib.UUID(value))


@dataclass(frozen=True, slots=True)
class Advertisement:
    """The AD structures of one advertisement (plus scan response), as typed fields.

    UUIDs are lowercase 128-bit strings, as bleak reports them; 16-bit ones are built on the
    Bluetooth base UUID (``uuid16``). A repeated structure keeps the last value, as bleak does.
    """

    flags: int | None = None
    local_name: str | None = None
    tx_power: int | None = None
    service_uuids: tuple[str, ...] = ()
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)


def parse_ad(data: bytes) -> Advertisement:
    """Parse AD structures; a truncated or overlong structure raises ``DecodeError``.

    A zero length byte ends the data (the rest is padding, as in a 31-byte HCI buffer).
    Types other than the ones ``Advertisement`` has fields for are skipped.
    """
    flags: int | None = None
    name: str | None = None
    tx_power: int | None = None
    uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:
            break
        end = pos + 1 + length
        if end > len(data):
            raise DecodeError(
                f"AD structure at byte {pos} claims {length} bytes, only {len(data) - pos - 1} left"
            )
        ad_type, value = data[pos + 1], data[pos + 2 : end]
        pos = end
        if ad_type == AD_FLAGS:
            if len(value) != 1:
                raise DecodeError(f"flags: expected 1 byte, got {len(value)}")
            flags = value[0]
        elif ad_type in (AD_NAME_SHORT, AD_NAME_COMPLETE):
            if ad_type == AD_NAME_COMPLETE or name is None:
                name = value.decode("utf-8", errors="replace")
        elif ad_type == AD_TX_POWER:
            if len(value) != 1:
                raise DecodeError(f"tx power: expected 1 byte, got {len(value)}")
            tx_power = struct.unpack("b", value)[0]
        elif ad_type in _UUID_LIST_SIZES:
            size = _UUID_LIST_SIZES[ad_type]
            if len(value) % size:
                raise DecodeError(
                    f"service UUID list (type 0x{ad_type:02x}): {len(value)} bytes "
                    f"is not a multiple of {size}"
                )
            for i in range(0, len(value), size):
                found = _uuid_from_le(value[i : i + size])
                if found not in uuids:
                    uuids.append(found)
        elif ad_type in _SERVICE_DATA_SIZES:
            size = _SERVICE_DATA_SIZES[ad_type]
            if len(value) < size:
                raise DecodeError(
                    f"service data (type 0x{ad_type:02x}): {len(value)} bytes, "
                    f"shorter than its {size}-byte UUID"
                )
            service_data[_uuid_from_le(value[:size])] = value[size:]
        elif ad_type == AD_MANUFACTURER:
            if len(value) < 2:
                raise DecodeError(f"manufacturer data: {len(value)} bytes, no company id")
            manufacturer[int.from_bytes(value[:2], "little")] = value[2:]
    return Advertisement(flags, name, tx_power, tuple(uuids), service_data, manufacturer)


_UUID_LIST_SIZES: Final[Mapping[int, int]] = {
    AD_UUID16_PARTIAL: 2,
    AD_UUID16_COMPLETE: 2,
    AD_UUID32_PARTIAL: 4,
    AD_UUID32_COMPLETE: 4,
    AD_UUID128_PARTIAL: 16,
    AD_UUID128_COMPLETE: 16,
}
_SERVICE_DATA_SIZES: Final[Mapping[int, int]] = {
    AD_SERVICE_DATA16: 2,
    AD_SERVICE_DATA32: 4,
    AD_SERVICE_DATA128: 16,
}


# ---------------------------------------------------------------------------------------------
# Building AD bytes (the BLE source and the simulator)
# ---------------------------------------------------------------------------------------------


def _structure(ad_type: int, value: bytes) -> bytes:
    if len(value) > MAX_AD_VALUE:
        raise DecodeError(f"AD type 0x{ad_type:02x}: {len(value)} bytes do not fit one structure")
    return bytes((len(value) + 1, ad_type)) + value


def _uuid_le(full: str) -> bytes:
    short = _short_uuid(full)
    if short is not None:
        return short.to_bytes(2, "little")
    return uuidlib.UUID(full).bytes[::-1]


def ad_from_parts(
    manufacturer_data: Mapping[int, bytes] | None = None,
    service_data: Mapping[str, bytes] | Mapping[int, bytes] | None = None,
    service_uuids: Iterable[str | int] = (),
    local_name: str | None = None,
    tx_power: int | None = None,
    *,
    flags: int | None = None,
) -> bytes:
    """Canonical AD bytes for the parts of an advertisement (bleak's ``AdvertisementData``).

    The same parts always give the same bytes: flags, complete 16-bit then 128-bit service
    UUID lists, service data and manufacturer data sorted by key, tx power, complete name.
    UUIDs may be 128-bit strings or 16-bit ints. A part too long for one AD structure raises
    ``DecodeError``.
    """
    out = bytearray()
    if flags is not None:
        out += _structure(AD_FLAGS, bytes((flags & 0xFF,)))
    full_uuids = sorted({_canonical_uuid(u) for u in service_uuids})
    short = b"".join(_uuid_le(u) for u in full_uuids if _short_uuid(u) is not None)
    long = b"".join(_uuid_le(u) for u in full_uuids if _short_uuid(u) is None)
    if short:
        out += _structure(AD_UUID16_COMPLETE, short)
    if long:
        out += _structure(AD_UUID128_COMPLETE, long)
    for key, value in sorted(
        ((_canonical_uuid(k), bytes(v)) for k, v in (service_data or {}).items())
    ):
        ad_type = AD_SERVICE_DATA16 if _short_uuid(key) is not None else AD_SERVICE_DATA128
        out += _structure(ad_type, _uuid_le(key) + value)
    for company, value in sorted((manufacturer_data or {}).items()):
        out += _structure(AD_MANUFACTURER, (company & 0xFFFF).to_bytes(2, "little") + bytes(value))
    if tx_power is not None:
        out += _structure(AD_TX_POWER, struct.pack("b", max(-128, min(127, tx_power))))
    if local_name:
        out += _structure(AD_NAME_COMPLETE, local_name.encode("utf-8"))
    return bytes(out)


def build_ibeacon_ad(uuid: str, major: int, minor: int, tx_power: int = -59) -> bytes:
    """The AD bytes an iBeacon sends: flags 0x06 + Apple manufacturer data."""
    if not (0 <= major <= 0xFFFF and 0 <= minor <= 0xFFFF and -128 <= tx_power <= 127):
        raise ValueError("major/minor must be 0..65535 and tx_power -128..127")
    body = IBEACON_PREFIX + uuidlib.UUID(uuid).bytes + struct.pack(">HHb", major, minor, tx_power)
    return ad_from_parts({APPLE_COMPANY_ID: body}, flags=0x06)


# ---------------------------------------------------------------------------------------------
# iBeacon
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IBeacon:
    uuid: str  # 32 lowercase hex digits, no dashes
    major: int
    minor: int
    tx_power: int  # measured power: RSSI at 1 m, dBm

    @property
    def device(self) -> str:
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


def parse_ibeacon(adv: Advertisement) -> IBeacon | None:
    """The iBeacon in ``adv``, ``None`` if it is not one; a short iBeacon is a ``DecodeError``.

    Extra bytes after the 23 of the spec are ignored (some vendors append a battery byte).
    """
    data = adv.manufacturer_data.get(APPLE_COMPANY_ID)
    if data is None or not data.startswith(IBEACON_PREFIX):
        return None
    if len(data) < IBEACON_LEN:
        raise DecodeError(f"iBeacon truncated: {len(data)} of {IBEACON_LEN} bytes")
    major, minor, power = struct.unpack(">HHb", data[18:23])
    return IBeacon(data[2:18].hex(), major, minor, power)


def _normalise_hex(value: Any, length: int) -> str | None:
    """``value`` as lowercase hex of ``length`` digits (dashes/colons/case ignored), else None."""
    if not isinstance(value, str):
        return None
    text = value.replace("-", "").replace(":", "").lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        return None
    return text


def _int_set(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    return frozenset(values)


def decode_ibeacon(frame: RawFrame, profile: Profile) -> list[Reading]:
    """A ``sighting`` for an iBeacon that matches ``match.uuid`` / ``major`` / ``minor``."""
    beacon = parse_ibeacon(parse_ad(frame.payload))
    if beacon is None:
        return []
    match = profile.match
    if "uuid" in match and _normalise_hex(match["uuid"], 32) != beacon.uuid:
        return []
    for key in ("major", "minor"):
        wanted = _int_set(match.get(key))
        if wanted is not None and getattr(beacon, key) not in wanted:
            return []
    data = {
        "rssi": frame.meta.get("rssi"),
        "tx_power": beacon.tx_power,
        "major": beacon.major,
        "minor": beacon.minor,
    }
    return [Reading(frame.ts, "sighting", profile.ref, beacon.device, data)]


# ---------------------------------------------------------------------------------------------
# Eddystone
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    tx_power: int  # calibrated Tx power at 0 m, dBm
    namespace: str  # 20 hex digits
    instance: str  # 12 hex digits

    @property
    def eddystone_id(self) -> str:
        return f"{self.namespace}:{self.instance}"


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    tx_power: int
    url: str


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    """Telemetry. Unencrypted (version 0) fields are ``None`` when the beacon does not know
    them (battery 0 mV, temperature 0x8000) or when the frame is encrypted (version 1)."""

    encrypted: bool
    battery_mv: int | None = None
    temperature_c: float | None = None
    adv_count: int | None = None
    uptime_s: float | None = None


EddystoneFrame = EddystoneUid | EddystoneUrl | EddystoneTlm


def decode_eddystone_url(scheme: int, encoded: bytes) -> str:
    """Expand an Eddystone-URL: scheme prefix code + text with expansion codes."""
    if scheme >= len(URL_SCHEMES):
        raise DecodeError(f"Eddystone-URL: unknown scheme code 0x{scheme:02x}")
    parts = [URL_SCHEMES[scheme]]
    for byte in encoded:
        if byte < len(URL_EXPANSIONS):
            parts.append(URL_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:
            parts.append(chr(byte))
        else:
            raise DecodeError(f"Eddystone-URL: reserved byte 0x{byte:02x} in URL")
    return "".join(parts)


def parse_eddystone(adv: Advertisement) -> EddystoneFrame | None:
    """The Eddystone frame in ``adv``; ``None`` for no Eddystone or a frame type we don't read
    (EID, reserved); a short or malformed Eddystone frame is a ``DecodeError``."""
    data = adv.service_data.get(uuid16(EDDYSTONE_UUID16))
    if data is None:
        return None
    if not data:
        raise DecodeError("Eddystone service data is empty")
    frame_type = data[0]
    if frame_type == EDDYSTONE_UID:
        if len(data) < 18:  # the two RFU bytes at the end are optional in practice
            raise DecodeError(f"Eddystone-UID truncated: {len(data)} of 18 bytes")
        return EddystoneUid(struct.unpack("b", data[1:2])[0], data[2:12].hex(), data[12:18].hex())
    if frame_type == EDDYSTONE_URL:
        if len(data) < 3:
            raise DecodeError(f"Eddystone-URL truncated: {len(data)} bytes")
        if len(data) > 20:
            raise DecodeError(f"Eddystone-URL too long: {len(data)} of at most 20 bytes")
        url = decode_eddystone_url(data[2], data[3:])
        return EddystoneUrl(struct.unpack("b", data[1:2])[0], url)
    if frame_type == EDDYSTONE_TLM:
        if len(data) < 2:
            raise DecodeError("Eddystone-TLM truncated: no version byte")
        version = data[1]
        if version == 0x01:
            if len(data) < 18:
                raise DecodeError(f"encrypted Eddystone-TLM truncated: {len(data)} of 18 bytes")
            return EddystoneTlm(encrypted=True)
        if version != 0x00:
            raise DecodeError(f"Eddystone-TLM: unknown version 0x{version:02x}")
        if len(data) < 14:
            raise DecodeError(f"Eddystone-TLM truncated: {len(data)} of 14 bytes")
        battery, temp_raw, adv_count, uptime = struct.unpack(">HHII", data[2:14])
        temperature = None if temp_raw == TLM_TEMPERATURE_NA else _signed16(temp_raw) / 256
        return EddystoneTlm(
            encrypted=False,
            battery_mv=battery or None,
            temperature_c=temperature,
            adv_count=adv_count,
            uptime_s=uptime / 10,
        )
    return None


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def decode_eddystone(frame: RawFrame, profile: Profile) -> list[Reading]:
    """UID/URL frames -> ``sighting``; TLM -> ``event`` ``telemetry`` (see the module doc for
    the device keys). ``match``: ``namespace``, ``instance``, ``frames`` (uid/url/tlm)."""
    parsed = parse_eddystone(parse_ad(frame.payload))
    if parsed is None:
        return []
    match = profile.match
    frames = match.get("frames")
    if frames is not None and _frame_name(parsed) not in frames:
        return []
    known_id = parsed.eddystone_id if isinstance(parsed, EddystoneUid) else None
    if known_id is None:
        meta_id = frame.meta.get("eddystone_id")
        known_id = meta_id if isinstance(meta_id, str) else None
    if known_id is not None:
        namespace, _, instance = known_id.partition(":")
        for key, have in (("namespace", namespace), ("instance", instance)):
            wanted = match.get(key)
            if wanted is not None and _normalise_hex(wanted, len(have) or 1) != have:
                return []
        device = f"eddystone:{known_id}"
    elif match.get("instance") is not None or match.get("require_id"):
        return []  # only beacons we can name belong to this profile
    else:
        device = f"eddystone-mac:{str(frame.meta.get('address', 'unknown')).upper()}"
    rssi = frame.meta.get("rssi")
    data: dict[str, Any]
    if isinstance(parsed, EddystoneUid):
        data = {
            "rssi": rssi,
            "tx_power": parsed.tx_power,
            "frame": "uid",
            "namespace": parsed.namespace,
            "instance": parsed.instance,
        }
        return [Reading(frame.ts, "sighting", profile.ref, device, data)]
    if isinstance(parsed, EddystoneUrl):
        data = {"rssi": rssi, "tx_power": parsed.tx_power, "frame": "url", "url": parsed.url}
        return [Reading(frame.ts, "sighting", profile.ref, device, data)]
    data = {
        "event": "telemetry",
        "encrypted": parsed.encrypted,
        "battery_mv": parsed.battery_mv,
        "temperature_c": parsed.temperature_c,
        "adv_count": parsed.adv_count,
        "uptime_s": parsed.uptime_s,
        "rssi": rssi,
    }
    return [Reading(frame.ts, "event", profile.ref, device, data)]


def _frame_name(parsed: EddystoneFrame) -> str:
    if isinstance(parsed, EddystoneUid):
        return "uid"
    return "url" if isinstance(parsed, EddystoneUrl) else "tlm"


def eddystone_uid_of(payload: bytes) -> str | None:
    """``<namespace>:<instance>`` if ``payload`` holds an Eddystone-UID frame (never raises)."""
    try:
        parsed = parse_eddystone(parse_ad(payload))
    except DecodeError:
        return None
    return parsed.eddystone_id if isinstance(parsed, EddystoneUid) else None


# ---------------------------------------------------------------------------------------------
# Profile validation hook (called by shouhu.profiles)
# ---------------------------------------------------------------------------------------------

_MATCH_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "ibeacon": frozenset({"uuid", "major", "minor"}),
    "eddystone": frozenset({"namespace", "instance", "frames", "require_id"}),
}


def validate_profile(profile: Profile) -> None:
    """Check ``match``/``options`` of an ``ibeacon`` or ``eddystone`` profile."""
    allowed = _MATCH_KEYS.get(profile.decoder)
    if allowed is None:
        return
    if profile.transport != "ble":
        raise ProfileError(
            f"transport: decoder {profile.decoder} needs ble, got {profile.transport!r}"
        )
    for key in profile.match:
        if key not in allowed:
            raise ProfileError(f"match.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in profile.options:
        raise ProfileError(f"options.{key}: unknown key ({profile.decoder} takes no options)")
    match = profile.match
    if "uuid" in match and _normalise_hex(match["uuid"], 32) is None:
        raise ProfileError(f"match.uuid: expected a 128-bit UUID, got {match['uuid']!r}")
    for key in ("major", "minor"):
        if key in match:
            values = match[key] if isinstance(match[key], list) else [match[key]]
            if not values or not all(_is_u16(v) for v in values):
                raise ProfileError(
                    f"match.{key}: expected an integer 0..65535 or a list of them, got {match[key]!r}"
                )
    for key, digits in (("namespace", 20), ("instance", 12)):
        if key in match and _normalise_hex(match[key], digits) is None:
            raise ProfileError(f"match.{key}: expected {digits} hex digits, got {match[key]!r}")
    if "frames" in match:
        frames = match["frames"]
        if not isinstance(frames, list) or not frames or not set(frames) <= set(EDDYSTONE_FRAMES):
            raise ProfileError(
                f"match.frames: expected a list of {', '.join(EDDYSTONE_FRAMES)}, got {frames!r}"
            )
    if "require_id" in match and not isinstance(match["require_id"], bool):
        raise ProfileError(f"match.require_id: expected true or false, got {match['require_id']!r}")


def _is_u16(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF
