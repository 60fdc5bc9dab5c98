"""Records → InfluxDB points: a lookup table plus one pure function (docs/storage.md).

Rules, written once here:

* measurement: by record kind (``MEASUREMENTS``); an ``event`` whose ``data.event`` is
  ``telemetry`` (Eddystone TLM) goes to ``telemetry``, ``health`` to ``gateway_health``.
* tags: ``gw``, ``device``, ``profile`` (the id, without ``@version``) and the few string data
  keys of ``TAG_KEYS`` for that measurement. Tags are indexed, so only low-cardinality values
  that dashboards group by. Never personal data: readings carry device keys, and the data keys
  of ``PERSONAL_KEYS`` are dropped if a decoder ever emitted one.
* fields: every other scalar of ``data``; nested objects flattened ``a.b``, lists as JSON
  text; plus ``seq`` and, when known, ``lag_ms`` (received − observed). Numbers from ``data``
  are written as floats (except ``INTEGER_KEYS``): InfluxDB refuses a point whose field type
  differs from earlier points, and a decoder may say ``-73`` once and ``-73.5`` the next time.
* time: ``ts_ms * 1_000_000 + seq % 1_000_000`` ns. Two readings of one device in the same
  millisecond stay two points; writing the same record again rewrites the same point.
* place (``ENRICHED_KINDS``: sightings, taps, alarms, events): given the registered gateway
  that heard the reading, tags ``site``, ``zone`` and ``district`` (when known) and fields
  ``lat``, ``lon``, so a map and "by site/district" panels work from raw readings. What the
  reading carries itself wins. The place is the registry's at *write* time: a record rewritten
  after the gateway moved lands in a different series (same time), see docs/storage.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from collector.domain import Gateway
from shouhu.model import Record

FieldValue = int | float | str | bool

MEASUREMENTS: Final[Mapping[str, str]] = {
    "sighting": "sighting",
    "tap": "tap",
    "alarm": "alarm",
    "event": "event",
    "health": "gateway_health",
}
# (kind, data["event"]) pairs that get a measurement of their own.
EVENT_MEASUREMENTS: Final[Mapping[tuple[str, str], str]] = {
    ("event", "telemetry"): "telemetry",
}
# String data keys stored as tags, per measurement; everything else is a field.
TAG_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "sighting": ("event",),
    "tap": ("event", "technology"),
    "alarm": ("event", "protocol"),
    "event": ("event", "protocol"),
    "telemetry": ("event",),
    "gateway_health": ("source", "transport"),
}
# Keys whose whole numbers stay integers (they are counters, never fractional).
INTEGER_KEYS: Final[frozenset[str]] = frozenset({"count"})
# Never stored in the time series, whatever a decoder puts in ``data``.
PERSONAL_KEYS: Final[frozenset[str]] = frozenset(
    {"name", "person", "wearer", "owner", "phone", "email", "address_line", "contact"}
)
# Names InfluxDB reserves for itself (1.x refuses a "time" field; 2.x uses "_field" etc.).
RESERVED_KEYS: Final[Mapping[str, str]] = {
    "time": "time_",
    "_field": "field_",
    "_measurement": "measurement_",
    "_time": "time_",
}
# Record kinds whose points get the hearing gateway's place (health is the gateway's own).
ENRICHED_KINDS: Final[frozenset[str]] = frozenset({"sighting", "tap", "alarm", "event"})
MAX_TAG_LEN: Final = 128
# InfluxDB refuses string fields over 64 KiB; a reading never needs more than this.
MAX_STRING_LEN: Final = 4096
NS_PER_MS: Final = 1_000_000
FLATTEN_DEPTH: Final = 3


@dataclass(frozen=True, slots=True)
class PlacedGateway(Gateway):
    """A registered gateway plus the district of the households it serves (``""``: none or
    several). The registry keeps districts on households; readings are tagged with it."""

    district: str = ""


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point; tags and fields as sorted tuples so equal points compare equal."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    time_ns: int


def measurement_of(record: Record) -> str:
    event = record.data.get("event")
    if isinstance(event, str) and (record.kind, event) in EVENT_MEASUREMENTS:
        return EVENT_MEASUREMENTS[(record.kind, event)]
    return MEASUREMENTS[record.kind]


def point_time_ns(ts_ms: int, seq: int) -> int:
    """Observation time in ns, with ``seq`` in the sub-millisecond digits (see module doc)."""
    return ts_ms * NS_PER_MS + seq % NS_PER_MS


def _flatten(prefix: str, value: Any, depth: int) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and depth < FLATTEN_DEPTH:
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}", inner, depth + 1)
    else:
        yield prefix, value


def _field_value(key: str, value: Any) -> FieldValue | None:
    """The value as InfluxDB stores it, or None when there is nothing storable."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value[:MAX_STRING_LEN]
    if isinstance(value, int):
        return value if key.rsplit(".", 1)[-1] in INTEGER_KEYS else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = str(value)
    return text[:MAX_STRING_LEN]


def _place(gateway: Gateway) -> tuple[dict[str, str], dict[str, FieldValue]]:
    """The tags and fields a registered gateway adds to the readings it heard."""
    district = gateway.district if isinstance(gateway, PlacedGateway) else ""
    tags = {"site": gateway.site, "zone": gateway.zone, "district": district}
    fields: dict[str, FieldValue] = {}
    for key, value in (("lat", gateway.lat), ("lon", gateway.lon)):
        if isinstance(value, int | float) and math.isfinite(value):
            fields[key] = float(value)
    return {k: v[:MAX_TAG_LEN] for k, v in tags.items() if v}, fields


def record_to_point(
    gw: str,
    record: Record,
    *,
    received_ms: int | None = None,
    gateway: Gateway | None = None,
) -> Point:
    """Map one record of gateway ``gw`` to its point (pure; see the module doc for the rules).

    ``gateway``: the registry's entry for ``gw`` (None: not registered, no place is added).
    """
    measurement = measurement_of(record)
    tag_keys = TAG_KEYS.get(measurement, ())
    tags: dict[str, str] = {
        "gw": gw,
        "device": record.device,
        "profile": record.profile.split("@", 1)[0],
    }
    fields: dict[str, FieldValue] = {}
    for key, raw in record.data.items():
        key = str(key)
        if key in PERSONAL_KEYS or key in ("gw", "device", "profile", "seq", "lag_ms"):
            continue
        if key in tag_keys and isinstance(raw, str) and 0 < len(raw) <= MAX_TAG_LEN:
            tags[key] = raw
            continue
        for flat_key, inner in _flatten(key, raw, 1):
            value = _field_value(flat_key, inner)
            if value is not None:
                fields[RESERVED_KEYS.get(flat_key, flat_key)] = value
    if gateway is not None and record.kind in ENRICHED_KINDS:
        place_tags, place_fields = _place(gateway)
        # what the reading says itself wins (a tag and a field never share a name)
        tags = {**{k: v for k, v in place_tags.items() if k not in fields}, **tags}
        fields = {**{k: v for k, v in place_fields.items() if k not in tags}, **fields}
    fields["seq"] = int(record.seq)
    if received_ms is not None:
        fields["lag_ms"] = int(received_ms - record.ts)
    return Point(
        measurement=measurement,
        tags=tuple(sorted((k, v) for k, v in tags.items() if v)),
        fields=tuple(sorted(fields.items())),
        time_ns=point_time_ns(record.ts, record.seq),
    )


# --- line protocol ------------------------------------------------------------------------
# https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/
# Line protocol cannot carry some characters everywhere: a newline ends the line, and InfluxDB
# 1.x and 2.x disagree on a backslash in a name or tag. So in names and tags a newline or tab
# becomes a space and a backslash a "/" (device keys and ids never contain them); in string
# field values a newline becomes the two characters backslash-n, which every version reads back.

_NAME_ESCAPES: Final = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\\": "/", "\n": r"\ ", "\r": r"\ ", "\t": r"\ "}
)
_MEASUREMENT_ESCAPES: Final = str.maketrans(
    {",": r"\,", " ": r"\ ", "\\": "/", "\n": r"\ ", "\r": r"\ ", "\t": r"\ "}
)
_STRING_ESCAPES: Final = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n", "\r": r"\r"})


def _escape_name(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_NAME_ESCAPES) or "_"


def _format_field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def to_line_protocol(point: Point) -> str:
    """One line (no trailing newline) of InfluxDB line protocol, nanosecond timestamp."""
    if not point.fields:
        raise ValueError("a point needs at least one field")
    head = (point.measurement.translate(_MEASUREMENT_ESCAPES) or "_") + "".join(
        f",{_escape_name(k)}={_escape_name(v)}" for k, v in point.tags
    )
    body = ",".join(f"{_escape_name(k)}={_format_field(v)}" for k, v in point.fields)
    return f"{head} {body} {point.time_ns}"


def records_to_lines(
    gw: str, records: Iterable[Record], *, gateway: Gateway | None = None
) -> list[str]:
    """Line protocol for a batch of one gateway's records, in order (``gateway``: its place)."""
    return [to_line_protocol(record_to_point(gw, r, gateway=gateway)) for r in records]
