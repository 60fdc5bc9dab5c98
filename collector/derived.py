"""Points the command-center boards need beyond raw readings (pure, no personal data).

Raw records become points in ``collector.points``; the rule engine and the alert lifecycle know
more (an alert was notified, a check-in was abnormal, a gateway went offline, a child arrived).
These functions turn those facts into ``Point`` values the collector writes beside the readings:

==================  ===================================  =========================================
measurement         tags                                 fields
==================  ===================================  =========================================
``alert_event``     kind, severity, state, district      alert_id, key, value=1, open (+1 raised,
                                                         -1 resolved, else 0), latency_ms (notified)
``patrol_checkin``  box, unit, route, verdict            reasons (comma-joined), value=1, lat, lon
``gateway_state``   gw, site, zone                       online (0/1), lat, lon
``school_tap``      school, direction                    value=1
(any, enriched)     + site, zone                         + lat, lon
==================  ===================================  =========================================

Only ids, device keys and numbers go in: never a name, address or phone number. Times are
nanoseconds; each function picks sub-millisecond digits so distinct facts in the same millisecond
stay distinct points and writing the same fact again rewrites the same point (idempotent).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from typing import Final, Literal

from collector.alerts.lifecycle import AlertEvent
from collector.domain import Gateway
from collector.points import MAX_TAG_LEN, NS_PER_MS, FieldValue, Point
from collector.rules.actions import Verdict

Direction = Literal["arrival", "departure"]
DIRECTIONS: Final[frozenset[str]] = frozenset({"arrival", "departure"})
# How each alert state moves the count of open alerts (summed by the "open alerts" panels).
OPEN_DELTA: Final[Mapping[str, int]] = {"raised": 1, "resolved": -1}


def _point(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    time_ns: int,
) -> Point:
    """A Point with empty tags and None fields left out, everything sorted."""
    return Point(
        measurement=measurement,
        tags=tuple(sorted((k, v[:MAX_TAG_LEN]) for k, v in tags.items() if v)),
        fields=tuple(sorted((k, v) for k, v in fields.items() if v is not None)),
        time_ns=time_ns,
    )


def _sub_ms(text: str) -> int:
    """A stable sub-millisecond offset for ``text`` (the same fact always gets the same one)."""
    return zlib.crc32(text.encode()) % NS_PER_MS


def _coordinate(value: float | None) -> float | None:
    return None if value is None else float(value)


def alert_event_point(
    event: AlertEvent,
    severity: str,
    district: str = "",
    latency_ms: int | None = None,
) -> Point:
    """One alert transition. ``latency_ms`` belongs to ``notified``: reading → channel."""
    return _point(
        "alert_event",
        {"kind": event.kind, "severity": severity, "state": event.state, "district": district},
        {
            "alert_id": event.alert_id,
            "key": event.key,
            "value": 1,
            "open": OPEN_DELTA.get(event.state, 0),
            "latency_ms": None if latency_ms is None else int(latency_ms),
        },
        event.at_ms * NS_PER_MS + _sub_ms(f"{event.alert_id}/{event.state}/{event.actor}"),
    )


def patrol_checkin_point(
    verdict: Verdict, *, lat: float | None = None, lon: float | None = None
) -> Point:
    """A judged check-in (or a missed checkpoint); ``lat``/``lon`` are the box's, when known."""
    return _point(
        "patrol_checkin",
        {
            "box": verdict.box,
            "unit": verdict.unit,
            "route": verdict.route,
            "verdict": verdict.verdict,
        },
        {
            "reasons": ",".join(verdict.reasons),
            "value": 1,
            "lat": _coordinate(lat),
            "lon": _coordinate(lon),
        },
        verdict.ts * NS_PER_MS,
    )


def gateway_state_point(gw: Gateway, online: bool, ts_ms: int) -> Point:
    """Where a gateway is and whether it is up (the city map colours it by ``online``)."""
    return _point(
        "gateway_state",
        {"gw": gw.id, "site": gw.site, "zone": gw.zone},
        {"online": int(online), "lat": _coordinate(gw.lat), "lon": _coordinate(gw.lon)},
        ts_ms * NS_PER_MS,
    )


def school_tap_point(school_id: str, direction: Direction, ts_ms: int, seq: int = 0) -> Point:
    """One arrival or departure at a school; ``seq`` keeps taps of the same ms apart."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be arrival or departure, not {direction!r}")
    return _point(
        "school_tap",
        {"school": school_id, "direction": direction},
        {"value": 1},
        ts_ms * NS_PER_MS + seq % NS_PER_MS,
    )


def enrich_point(point: Point, gateway: Gateway | None) -> Point:
    """``point`` with the gateway's site/zone tags and lat/lon fields, when it is registered.

    Sightings so enriched put a wearer's footprints on a map; alarms group by site and zone.
    Existing tags and fields win: a reading that carries its own position keeps it.
    """
    if gateway is None:
        return point
    tags = {"site": gateway.site, "zone": gateway.zone, **dict(point.tags)}
    fields: dict[str, FieldValue | None] = {
        "lat": _coordinate(gateway.lat),
        "lon": _coordinate(gateway.lon),
        **dict(point.fields),
    }
    enriched = _point(point.measurement, tags, fields, point.time_ns)
    return dataclasses.replace(point, tags=enriched.tags, fields=enriched.fields)
