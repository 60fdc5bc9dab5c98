"""Serial RF receivers for wireless interlinked smoke alarms: one text line in, readings out.

Three receiver families, one smoke vocabulary (``SMOKE_EVENTS``) in ``data.event``:

- ``decode_rflink``: RFLink Gateway lines ``20;<counter>;<protocol>;ID=...;LABEL=value;``.
- ``decode_rtl433``: rtl_433 JSON lines (``rtl_433 -F json``), one event per object.
- ``decode_fixed_code``: EV1527-style 24-bit codes from a UART decoder module.

All three are pure: no I/O, no state. They return ``[]`` when a line is not for the profile
(a banner, another protocol, a neighbour's doorbell) and raise ``DecodeError`` when it is but
is malformed (truncated, bad field). Smoke transmitters repeat a frame many times; collapsing
those bursts is ``BurstFilter``'s job, which the agent applies after decoding.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from shouhu.exceptions import DecodeError, ProfileError
from shouhu.model import RawFrame, Reading, Stream
from shouhu.profiles import Profile

SmokeEvent = Literal[
    "alarm", "alarm_cleared", "test", "hush", "low_battery", "tamper", "heartbeat", "fault"
]

# event -> stream. Anything a person must react to now travels on the urgent "alarm" stream.
SMOKE_EVENTS: Final[Mapping[str, Stream]] = {
    "alarm": "alarm",
    "alarm_cleared": "alarm",
    "tamper": "alarm",
    "fault": "alarm",
    "test": "alarm",
    "hush": "alarm",
    "low_battery": "event",
    "heartbeat": "event",
}


def _text(frame: RawFrame) -> str:
    try:
        return frame.payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"line is not UTF-8 text: {frame.payload[:40]!r}") from exc


def _reading(
    frame: RawFrame, profile: Profile, device: str, event: str, data: Mapping[str, Any]
) -> Reading:
    return Reading(
        ts=frame.ts,
        kind=SMOKE_EVENTS[event],
        profile=profile.ref,
        device=device,
        data={**data, "event": event},
    )


def _str_list(value: Any) -> frozenset[str] | None:
    """A matcher list from YAML (``None`` = match anything), compared case-insensitively."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    return frozenset(str(v).lower() for v in value)


# ---------------------------------------------------------------------------------------------
# RFLink
# ---------------------------------------------------------------------------------------------

RFLINK_NODE: Final = "20"  # node 20: gateway -> host. 10 and 11 are host -> gateway.
_HEX = re.compile(r"[0-9A-Fa-f]+")


def _rflink_temp(raw: str) -> float:
    """RFLink TEMP: hex tenths of a degree, the high bit is the sign (``80c3`` = -19.5)."""
    value = int(raw, 16)
    return -(value & 0x7FFF) / 10 if value & 0x8000 else value / 10


def decode_rflink(frame: RawFrame, profile: Profile) -> list[Reading]:
    """One RFLink Gateway line -> smoke readings.

    ``SMOKEALERT=ON/OFF`` is the RFLink smoke field (FA20RF, KD101 ...). Protocols listed in
    ``options.cmd_alarm_protocols`` report alarms as ``CMD=ON/OFF`` instead. ``BAT=LOW``
    adds a ``low_battery`` reading. ``match.protocols`` / ``match.ids`` restrict the profile.
    Banners and status lines (no ``ID=``) are not readings.
    """
    line = _text(frame)
    fields = line.split(";")
    if len(fields) < 3 or fields[0] != RFLINK_NODE:
        return []
    protocol = fields[2]
    if "=" in protocol or not protocol:
        return []  # "20;01;MySensors=OFF;..." status line
    protocols = _str_list(profile.match.get("protocols"))
    if protocols is not None and protocol.lower() not in protocols:
        return []
    if not any(f.startswith("ID=") for f in fields[3:]):
        return []  # banner ("Nodo RadioFrequencyLink - ..."), PONG, OK, DEBUG
    if not line.endswith(";"):
        raise DecodeError(f"RFLink line truncated (no final ';'): {line[:80]!r}")
    labels: dict[str, str] = {}
    for item in fields[3:-1]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DecodeError(f"RFLink field without LABEL=value: {item[:40]!r}")
        labels[key.upper()] = value
    device_id = labels.get("ID", "")
    if not _HEX.fullmatch(device_id):
        raise DecodeError(f"RFLink ID is not hexadecimal: {device_id[:20]!r}")
    device_id = device_id.lower()
    ids = _str_list(profile.match.get("ids"))
    if ids is not None and device_id not in ids:
        return []

    data: dict[str, Any] = {"protocol": protocol, "id": device_id}
    if "SWITCH" in labels:
        data["channel"] = labels["SWITCH"]
    bat = labels.get("BAT")
    if bat is not None:
        if bat.upper() not in ("OK", "LOW"):
            raise DecodeError(f"RFLink BAT must be OK or LOW, got {bat[:10]!r}")
        data["battery_ok"] = bat.upper() == "OK"
    if "TEMP" in labels:
        try:
            data["temperature_c"] = _rflink_temp(labels["TEMP"])
        except ValueError as exc:
            raise DecodeError(f"RFLink TEMP is not hexadecimal: {labels['TEMP'][:10]!r}") from exc

    events: list[str] = []
    state = labels.get("SMOKEALERT")
    cmd_protocols = _str_list(profile.options.get("cmd_alarm_protocols")) or frozenset()
    if state is None and protocol.lower() in cmd_protocols:
        state = labels.get("CMD")
    if state is not None:
        match state.upper():
            case "ON" | "ALLON":
                events.append("alarm")
            case "OFF" | "ALLOFF":
                events.append("alarm_cleared")
            case _:
                raise DecodeError(f"RFLink smoke state must be ON or OFF, got {state[:10]!r}")
    if data.get("battery_ok") is False:
        events.append("low_battery")
    device = f"rflink:{protocol.lower()}:{device_id}"
    return [_reading(frame, profile, device, event, data) for event in events]


# ---------------------------------------------------------------------------------------------
# rtl_433 JSON
# ---------------------------------------------------------------------------------------------

# Cavius "message" bits (rtl_433 src/devices/cavius.c). 0x08 (battery low) is a flag beside them.
CAVIUS_MESSAGES: Final[Mapping[int, str | None]] = {
    0x80: None,  # pairing: not a smoke event
    0x40: "test",
    0x20: "alarm",
    0x10: "alarm",  # "Warning/Water detected" (heat and water units)
    0x04: "hush",  # "Alarm muted"
}
CAVIUS_BATTLOW: Final = 0x08
# Older rtl_433 builds only give "text"; matched by the leading word, lower case.
CAVIUS_TEXTS: Final[Mapping[str, str | None]] = {
    "fire": "alarm",
    "warning": "alarm",
    "test": "test",
    "alarm": "hush",  # "Alarm muted"
    "battery": "low_battery",
    "pairing": None,
}


def _flag(obj: Mapping[str, Any], key: str) -> bool | None:
    """An rtl_433 0/1 field (a JSON number, bool or "0"/"1" string) as a bool."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.upper() in ("1", "0"):
        return value == "1"
    raise DecodeError(f"rtl_433 field {key!r} is not 0/1: {str(value)[:20]!r}")


def _battery_ok(obj: Mapping[str, Any]) -> bool | None:
    ok = _flag(obj, "battery_ok")
    if ok is not None:
        return ok
    battery = obj.get("battery")  # Interlogix and older decoders: "OK" / "LOW"
    if isinstance(battery, str) and battery.upper() in ("OK", "LOW"):
        return battery.upper() == "OK"
    return None


def _rtl433_gs558(obj: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Smoke-GS558 (Siterwell GS 558, VisorTech RWM-460): it only transmits when alarming."""
    data = {k: obj[k] for k in ("unit", "code") if k in obj}
    learn = _flag(obj, "learn")
    if learn:
        return [], data  # pairing burst between interlinked units
    return ["alarm"], data


def _rtl433_cavius(obj: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Cavius smoke/heat/water units: ``message`` bits (newer builds) or ``text`` (older)."""
    data = {k: obj[k] for k in ("net_id", "netid", "message", "text") if k in obj}
    battery_ok = _battery_ok(obj)
    message = obj.get("message")
    if isinstance(message, int) and not isinstance(message, bool):
        if message & CAVIUS_BATTLOW:
            battery_ok = False
        kind = message & ~CAVIUS_BATTLOW
        if kind not in CAVIUS_MESSAGES and not (kind == 0 and battery_ok is False):
            raise DecodeError(f"Cavius message 0x{message & 0xFF:02x} is not known")
        event = CAVIUS_MESSAGES.get(kind)
    elif isinstance(obj.get("text"), str):
        word = re.split(r"[^a-z]+", obj["text"].strip().lower() + " ")[0]
        if word not in CAVIUS_TEXTS:
            raise DecodeError(f"Cavius text {obj['text'][:30]!r} is not known")
        event = CAVIUS_TEXTS[word]
        if event == "low_battery":
            battery_ok, event = False, None
    else:
        raise DecodeError("Cavius frame without message or text")
    events = [event] if event else []  # None: pairing, not a smoke event
    if battery_ok is False:
        events.append("low_battery")
    if battery_ok is not None:
        data["battery_ok"] = battery_ok
    return events, data


def _rtl433_interlogix(
    obj: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """Interlogix/GE: every frame carries the latch states; F1 is the alarm contact of a
    smoke or heat unit, F3 the cover (tamper). A frame without alarm is a supervision."""
    subtype = obj.get("subtype", obj.get("device_type"))
    data: dict[str, Any] = {"subtype": subtype} if subtype is not None else {}
    alarm_switch = str(options.get("alarm_switch", "switch1"))
    tamper_switch = str(options.get("tamper_switch", "switch3"))
    states: dict[str, bool] = {}
    for key in (alarm_switch, tamper_switch):
        value = obj.get(key)
        if value is None:
            raise DecodeError(f"Interlogix frame without {key}")
        if str(value).upper() not in ("OPEN", "CLOSED"):
            raise DecodeError(f"Interlogix {key} must be OPEN or CLOSED, got {str(value)[:10]!r}")
        states[key] = str(value).upper() == "OPEN"
    data["alarm"] = states[alarm_switch]
    battery_ok = _battery_ok(obj)
    if battery_ok is not None:
        data["battery_ok"] = battery_ok
    events = []
    if states[alarm_switch]:
        events.append("alarm")
    if states[tamper_switch]:
        events.append("tamper")
    if battery_ok is False:
        events.append("low_battery")
    return events or ["heartbeat"], data


def _rtl433_generic(obj: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Security sensors with 0/1 flags (Honeywell-Security 5800 smoke, 2GIG ...):
    ``alarm``, ``tamper``, ``battery_ok``, ``heartbeat``."""
    alarm = _flag(obj, "alarm")
    tamper = _flag(obj, "tamper")
    heartbeat = _flag(obj, "heartbeat")
    battery_ok = _battery_ok(obj)
    if alarm is None and tamper is None and heartbeat is None and battery_ok is None:
        raise DecodeError(
            f"rtl_433 model {obj.get('model')!r} has none of alarm, tamper, heartbeat, battery_ok"
        )
    data: dict[str, Any] = {f"raw_{k}": obj[k] for k in ("event", "state") if k in obj}
    if battery_ok is not None:
        data["battery_ok"] = battery_ok
    events: list[str] = []
    if alarm:
        events.append("alarm")
    if tamper:
        events.append("tamper")
    if battery_ok is False:
        events.append("low_battery")
    if not events:
        # a supervision frame, or a state change back to normal (the alarm restored)
        events.append("heartbeat" if heartbeat else "alarm_cleared")
    return events, data


def decode_rtl433(frame: RawFrame, profile: Profile) -> list[Reading]:
    """One rtl_433 JSON object -> smoke readings; ``match.models`` lists the models.

    Known models: Smoke-GS558, Cavius-Security, Interlogix-Security; any other listed model
    is read from the common 0/1 flags ``alarm``, ``tamper``, ``battery_ok``, ``heartbeat``
    (Honeywell-Security and friends).
    """
    line = _text(frame)
    if not line.startswith("{"):
        return []
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"rtl_433 line is not valid JSON: {line[:80]!r}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), str):
        return []
    model: str = obj["model"]
    models = _str_list(profile.match.get("models"))
    if models is not None and model.lower() not in models:
        return []
    raw_id = obj.get("id")
    if raw_id is None or isinstance(raw_id, bool | dict | list) or str(raw_id) == "":
        raise DecodeError(f"rtl_433 {model} frame without a device id")
    device_id = str(raw_id).lower()
    device = f"rtl433:{model}:{device_id}"

    match model.lower():
        case "smoke-gs558":
            events, data = _rtl433_gs558(obj)
            if isinstance(obj.get("unit"), int | str):
                device += f":{obj['unit']}"  # interlinked units share the group id
        case "cavius-security" | "cavius":
            events, data = _rtl433_cavius(obj)
        case "interlogix-security" | "interlogix":
            events, data = _rtl433_interlogix(obj, profile.options)
        case _:
            events, data = _rtl433_generic(obj)
    data = {"protocol": model, "id": device_id, **data}
    if "channel" in obj and "channel" not in data:
        data["channel"] = obj["channel"]
    if isinstance(obj.get("rssi"), int | float):
        data["rssi"] = obj["rssi"]
    return [_reading(frame, profile, device, event, data) for event in events]


# ---------------------------------------------------------------------------------------------
# EV1527-style fixed codes
# ---------------------------------------------------------------------------------------------

# "RX:A1B2C3", "0xA1B2C3", "A1B2C3" and "LC:A1B2C3" are all common UART module outputs.
DEFAULT_CODE_PATTERN: Final = r"^(?:[A-Za-z]{1,4}:\s*|0[xX])?(?P<code>[0-9A-Fa-f]{6})$"


@functools.lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise DecodeError(f"profile options.line_pattern: not a regex ({exc})") from exc
    if "code" not in compiled.groupindex:
        raise DecodeError("profile options.line_pattern: needs a (?P<code>...) group")
    return compiled


@dataclass(frozen=True, slots=True)
class FixedCode:
    """A 24-bit EV1527 code: 20-bit transmitter address, 4-bit key (data) nibble."""

    code: int

    @property
    def address(self) -> str:
        return f"{self.code >> 4:05x}"

    @property
    def key(self) -> str:
        return f"{self.code & 0xF:x}"

    @property
    def hex(self) -> str:
        return f"{self.code:06x}"


def decode_fixed_code(frame: RawFrame, profile: Profile) -> list[Reading]:
    """A code line -> the reading ``options.codes`` assigns to it.

    ``options.line_pattern`` (a regex with a ``code`` group) finds the code in the line, read
    in ``options.code_base`` (16, or 10 for rc-switch style modules).
    ``codes`` keys are either a full 6-hex-digit code (``{device, event}``) or a 5-hex-digit
    address (``{device, events: {key nibble: event}}``). Codes of other transmitters are
    not for this profile; a known address with an unknown key is a DecodeError.
    """
    line = _text(frame)
    pattern = _compile(str(profile.options.get("line_pattern", DEFAULT_CODE_PATTERN)))
    found = pattern.search(line)
    if found is None:
        return []
    base = profile.options.get("code_base", 16)  # 10: rc-switch "Received 6241793 / 24bit"
    if base not in (10, 16):
        raise DecodeError(f"profile options.code_base must be 10 or 16, got {base!r}")
    try:
        code = FixedCode(int(found.group("code"), base))
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"code is not a base-{base} number: {line[:40]!r}") from exc
    if code.code >= 1 << 24:
        raise DecodeError(f"code {found.group('code')!r} is longer than 24 bits")
    codes = profile.options.get("codes") or {}
    if not isinstance(codes, Mapping):
        raise DecodeError("profile options.codes must be a mapping")
    codes = {str(k).lower(): v for k, v in codes.items()}

    data: dict[str, Any] = {"protocol": "ev1527", "code": code.hex, "key": code.key}
    if code.hex in codes:
        entry = codes[code.hex]
        event = entry.get("event") if isinstance(entry, Mapping) else None
    elif code.address in codes:
        entry = codes[code.address]
        events = entry.get("events") if isinstance(entry, Mapping) else None
        if not isinstance(events, Mapping):
            raise DecodeError(f"profile options.codes.{code.address}.events must be a mapping")
        events = {str(k).lower(): v for k, v in events.items()}
        if code.key not in events:
            raise DecodeError(f"transmitter {code.address} sent key {code.key}, not in events")
        event = events[code.key]
    else:
        return []
    if event not in SMOKE_EVENTS:
        raise DecodeError(f"profile maps code {code.hex} to {event!r}, not a smoke event")
    name = entry.get("device") or code.address
    return [_reading(frame, profile, f"rf433:{name}", str(event), data)]


# ---------------------------------------------------------------------------------------------
# Burst filter (stateful, so the agent owns it; decoders stay pure)
# ---------------------------------------------------------------------------------------------


class BurstFilter:
    """Collapse the repeats of one RF burst: a smoke transmitter sends the same frame 8-30 times.

    ``accept(reading)`` is True for the first reading of a (device, event) and False for
    repeats heard less than ``window_s`` after the previous one (the window slides with
    each repeat, so a burst is one reading however long). ``refresh_s`` lets a condition
    that keeps being transmitted (a sounding alarm) through again every ``refresh_s``.
    Time is the readings' own ``ts``, so replaying recorded frames gives the same result.
    Use ``profile.alerts.debounce_s`` as the window; 0 disables the filter.
    """

    def __init__(self, window_s: float, refresh_s: float | None = 60.0) -> None:
        if window_s < 0:
            raise ValueError("window_s must be >= 0")
        self.window_ms = int(window_s * 1000)
        self.refresh_ms = int(refresh_s * 1000) if refresh_s else None
        # (device, event) -> (ts last heard, ts last accepted)
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self.suppressed = 0

    def accept(self, reading: Reading) -> bool:
        if self.window_ms == 0:
            return True
        key = (reading.device, str(reading.data.get("event", reading.kind)))
        now = reading.ts
        previous = self._seen.get(key)
        if previous is not None:
            last_heard, last_accepted = previous
            in_burst = abs(now - last_heard) < self.window_ms
            due = self.refresh_ms is not None and now - last_accepted >= self.refresh_ms
            if in_burst and not due:
                self._seen[key] = (max(now, last_heard), last_accepted)
                self.suppressed += 1
                return False
        self._seen[key] = (now, now)
        if len(self._seen) > 4096:
            self._forget_before(now - self.window_ms)
        return True

    def _forget_before(self, ts: int) -> None:
        """Drop keys whose burst is over, so a long-running agent does not grow."""
        self._seen = {k: v for k, v in self._seen.items() if v[0] >= ts}


# ---------------------------------------------------------------------------------------------
# Profile validation hook (called by shouhu.profiles when a profile is loaded)
# ---------------------------------------------------------------------------------------------

_MATCH_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "rflink": frozenset({"protocols", "ids"}),
    "rtl433-json": frozenset({"models"}),
    "fixed-code": frozenset(),
}
_SERIAL_OPTION_KEYS: Final = frozenset({"baud", "framing", "line_terminator"})
_OPTION_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "rflink": _SERIAL_OPTION_KEYS | {"cmd_alarm_protocols"},
    "rtl433-json": _SERIAL_OPTION_KEYS | {"alarm_switch", "tamper_switch"},
    "fixed-code": _SERIAL_OPTION_KEYS | {"line_pattern", "code_base", "codes"},
}
_FRAMING = re.compile(r"^[5-8][NEOMS](1|1\.5|2)$")


def _check_str_list(path: str, value: Any, *, hex_only: bool = False) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ProfileError(f"{path}: expected a list of names, got {value!r}")
    if hex_only and not all(_HEX.fullmatch(v) for v in items):
        raise ProfileError(f"{path}: expected hexadecimal ids, got {value!r}")


def _check_event(path: str, value: Any) -> None:
    if value not in SMOKE_EVENTS:
        raise ProfileError(f"{path}: {value!r} is not one of {', '.join(SMOKE_EVENTS)}")


def _check_codes(codes: Any) -> None:
    if not isinstance(codes, Mapping) or not codes:
        raise ProfileError(f"options.codes: expected a mapping of codes, got {codes!r}")
    for key, entry in codes.items():
        path = f"options.codes.{key}"
        if not isinstance(key, str):
            raise ProfileError(f"{path}: quote the code (YAML read it as {type(key).__name__})")
        if not re.fullmatch(r"[0-9A-Fa-f]{5,6}", key):
            raise ProfileError(f"{path}: expected 5 hex digits (address) or 6 (full code)")
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{path}: expected {{device, event(s)}}, got {entry!r}")
        device = entry.get("device")
        if device is not None and not (
            isinstance(device, str) and re.fullmatch(r"[\w.-]+", device)
        ):
            raise ProfileError(
                f"{path}.device: expected a short name [A-Za-z0-9_.-], got {device!r}"
            )
        if len(key) == 6:
            _check_event(f"{path}.event", entry.get("event"))
            continue
        events = entry.get("events")
        if not isinstance(events, Mapping) or not events:
            raise ProfileError(f"{path}.events: expected {{key nibble: event}}, got {events!r}")
        for nibble, event in events.items():
            if not re.fullmatch(r"[0-9A-Fa-f]", str(nibble)):
                raise ProfileError(f"{path}.events.{nibble}: expected one hex digit as the key")
            _check_event(f"{path}.events.{nibble}", event)


def validate_profile(profile: Profile) -> None:
    """Check ``match``/``options`` of an ``rflink``, ``rtl433-json`` or ``fixed-code`` profile,
    so a wrong profile is refused when loaded rather than dead-lettering every frame."""
    allowed_match = _MATCH_KEYS.get(profile.decoder)
    if allowed_match is None:
        return
    if profile.transport != "serial":
        raise ProfileError(
            f"transport: decoder {profile.decoder} needs serial, got {profile.transport!r}"
        )
    for key in profile.match:
        if key not in allowed_match:
            names = ", ".join(sorted(allowed_match)) or "none"
            raise ProfileError(f"match.{key}: unknown key (allowed: {names})")
    allowed_options = _OPTION_KEYS[profile.decoder]
    for key in profile.options:
        if key not in allowed_options:
            names = ", ".join(sorted(allowed_options))
            raise ProfileError(f"options.{key}: unknown key (allowed: {names})")
    match, options = profile.match, profile.options
    for key in ("protocols", "models"):
        if key in match:
            _check_str_list(f"match.{key}", match[key])
    if "ids" in match:
        _check_str_list("match.ids", match["ids"], hex_only=True)
    if "cmd_alarm_protocols" in options:
        _check_str_list("options.cmd_alarm_protocols", options["cmd_alarm_protocols"])
    for key in ("alarm_switch", "tamper_switch"):
        if key in options and not re.fullmatch(r"switch[1-5]", str(options[key])):
            raise ProfileError(f"options.{key}: expected switch1..switch5, got {options[key]!r}")
    baud = options.get("baud", 1)
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ProfileError(f"options.baud: expected a positive integer, got {baud!r}")
    if "framing" in options and not _FRAMING.match(str(options["framing"])):
        raise ProfileError(f"options.framing: expected e.g. 8N1 or 7E1, got {options['framing']!r}")
    if options.get("line_terminator", "\n") not in ("\n", "\r\n", "\r"):
        raise ProfileError(
            f'options.line_terminator: expected "\\n" or "\\r\\n", got {options["line_terminator"]!r}'
        )
    if profile.decoder == "fixed-code":
        try:
            _compile(str(options.get("line_pattern", DEFAULT_CODE_PATTERN)))
        except DecodeError as exc:
            raise ProfileError(exc.message.removeprefix("profile ")) from exc
        if options.get("code_base", 16) not in (10, 16):
            raise ProfileError(
                f"options.code_base: expected 10 or 16, got {options['code_base']!r}"
            )
        _check_codes(options.get("codes"))
