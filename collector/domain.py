"""The registry's domain values: who and what the rules reason about (frozen, no I/O).

Personal data (names, phone numbers, addresses) lives only here and in the registry database,
never in MQTT payloads or InfluxDB; readings carry device keys, and the registry maps a device
key to the person or place it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A weekly schedule as (weekday set, start "HH:MM", end "HH:MM") windows, local time of the city;
# an end before the start crosses midnight (e.g. 21:00-06:00). Weekdays: 0 = Monday.


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]
    start: str  # "HH:MM"
    end: str  # "HH:MM"


@dataclass(frozen=True, slots=True)
class Contact:
    """Someone to notify: ``url`` is an apprise URL (e.g. ``tgram://…``, ``mailto://…``, ``json://…``)."""

    id: str
    name: str
    url: str
    role: str = "family"  # family | guardian | fire_brigade | police_desk | operator
    order: int = 0  # escalation order: 0 first, then 1, ...


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    site: str
    zone: str = ""
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class Wearer:
    """A person with dementia wearing a beacon amulet."""

    id: str
    name: str
    device: str  # amulet device key, e.g. "ibeacon:<uuid>:<major>:<minor>"
    home_gateways: frozenset[str] = frozenset()
    safe_zones: frozenset[str] = frozenset()  # zones of gateways where the wearer is safe
    risk_schedule: tuple[Window, ...] = ()  # when leaving safety raises a wanderer alert
    home_by: str | None = None  # "HH:MM": not seen at home by then -> alert
    missing: bool = False  # reported missing: every sighting becomes a footprint notice
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True, slots=True)
class Aed:
    id: str
    device: str  # beacon device key
    expected_gateway: str
    location: str = ""
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True, slots=True)
class SmokeAlarm:
    device: str  # smoke alarm device key from its profile
    household: str
    room: str = ""


@dataclass(frozen=True, slots=True)
class Household:
    id: str
    address: str
    gateways: frozenset[str] = frozenset()  # gateways hearing this household's alarms
    district: str = ""
    alarms: tuple[SmokeAlarm, ...] = ()
    contacts: tuple[Contact, ...] = ()  # family and fire brigade (role fire_brigade)


@dataclass(frozen=True, slots=True)
class PatrolBox:
    id: str
    device: str  # NFC tag device key
    lat: float | None = None
    lon: float | None = None
    location: str = ""
    sun_meta_key: str | None = None  # hex; NTAG 424 DNA SDM meta read key (cloud side only)
    sun_file_key: str | None = None  # hex; SDM file read key (cloud side only)


@dataclass(frozen=True, slots=True)
class PatrolRoute:
    """An officer's (or unit's) round: boxes to visit in windows, with the watch rule."""

    id: str
    unit: str
    boxes: tuple[str, ...]
    schedule: tuple[Window, ...] = ()
    min_stay_s: int = 0  # watch rule: second tap at a box at least this long after the first
    max_speed_kmh: float = 60.0  # faster than this between consecutive boxes is impossible travel
    contacts: tuple[Contact, ...] = ()  # police desk


@dataclass(frozen=True, slots=True)
class School:
    id: str
    name: str
    gateways: frozenset[str] = frozenset()
    not_arrived_by: str | None = None  # "HH:MM"; None = feature off
    days: frozenset[int] = field(default_factory=lambda: frozenset({0, 1, 2, 3, 4}))


@dataclass(frozen=True, slots=True)
class Student:
    id: str
    name: str
    card: str  # card device key: "card:<keyed hash>" (the clear UID is never stored)
    school: str
    guardians: tuple[Contact, ...] = ()
