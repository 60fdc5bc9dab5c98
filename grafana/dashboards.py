"""The command-center boards as Python data: one small builder per board, shared helpers.

Every query is raw InfluxQL (``rawQuery: true``) against the datasource with the fixed uid
``shouhu-influxdb``, so boards work on InfluxDB 1.x, 2.x (DBRP) and 3.x alike. Queries use what
Grafana substitutes: ``$timeFilter``, ``$__interval``, ``$__interval_ms`` and template variables
matched as regexes (``"gw" =~ /^$gateway$/``; "All" is ``.*``).

Measurements come from ``collector.points`` (raw readings: ``sighting``, ``tap``, ``alarm``,
``event``, ``telemetry``, ``gateway_health``) and ``collector.derived`` (``alert_event``,
``patrol_checkin``, ``gateway_state``, ``school_tap``; sightings and alarms enriched with
``site``/``zone``/``lat``/``lon``). ``dashboards()`` is the single entry point; the JSON in
``grafana/generated/`` is written from it and a test checks it is fresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

Json = dict[str, Any]

DATASOURCE_UID: Final = "shouhu-influxdb"
DATASOURCE: Final[Mapping[str, str]] = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION: Final = 39
FOLDER_TITLE: Final = "Shouhu"
FOLDER_UID: Final = "shouhu"
GRID_WIDTH: Final = 24
# "Open now" panels sum +1/-1 over this look-back rather than the picked range.
OPEN_LOOKBACK: Final = "time > now() - 30d"
GENERATED_DIR: Final = Path(__file__).parent / "generated"

# Flattened gateway_health fields (collector.points flattens ``sources: {name: {...}}`` to
# ``sources.<name>.frames``): written down once so a renamed agent field is one edit here.
HEALTH = {
    "outbox_depth": "outbox_depth",
    "outbox_age": "outbox_oldest_age_s",
    "publish_lag": "publish_lag_ms",
    "decode_errors": "decode_errors",
    "cpu": "cpu_percent",
    "rss": "rss_bytes",
    "reconnects": "reconnects",
    "uptime": "uptime_s",
    "source_frames": r"/^sources\..+\.frames$/",
    "source_errors": r"/^sources\..+\.errors$/",
    "source_present": r"/^sources\..+\.present$/",
}

GW = '"gw" =~ /^$gateway$/'
TF = "$timeFilter"


# --- shared helpers --------------------------------------------------------------------------


def target(query: str, ref: str = "A", *, table: bool = False, alias: str = "") -> Json:
    """One raw InfluxQL query of a panel."""
    t: Json = {
        "refId": ref,
        "datasource": dict(DATASOURCE),
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        t["alias"] = alias
    return t


def _targets(queries: Iterable[str | Json], *, table: bool) -> list[Json]:
    out = []
    for i, q in enumerate(queries):
        ref = chr(ord("A") + i)
        out.append(target(q, ref, table=table) if isinstance(q, str) else {**q, "refId": ref})
    return out


def panel(
    kind: str,
    title: str,
    queries: Iterable[str | Json],
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
    unit: str = "",
    table: bool = False,
    options: Json | None = None,
    defaults: Json | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    """A panel without ``id``/``gridPos``: ``board`` numbers and places them."""
    field_defaults: Json = dict(defaults or {})
    if unit:
        field_defaults["unit"] = unit
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "targets": _targets(queries, table=table),
        "fieldConfig": {"defaults": field_defaults, "overrides": []},
        "options": options or {},
        "gridPos": {"w": w, "h": h},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def timeseries(title: str, *queries: str | Json, bars: bool = False, **kw: Any) -> Json:
    custom = {"drawStyle": "bars", "fillOpacity": 80} if bars else {"fillOpacity": 10}
    defaults = {"custom": custom, **kw.pop("defaults", {})}
    options = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["sum", "max"]}}
    return panel("timeseries", title, queries, defaults=defaults, options=options, **kw)


def stat(title: str, *queries: str | Json, **kw: Any) -> Json:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    kw.setdefault("w", 6)
    kw.setdefault("h", 5)
    return panel("stat", title, queries, options=options, **kw)


def table_panel(title: str, *queries: str | Json, **kw: Any) -> Json:
    options = {"showHeader": True, "cellHeight": "sm"}
    return panel("table", title, queries, table=True, options=options, **kw)


def bargauge(title: str, *queries: str | Json, **kw: Any) -> Json:
    options = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["sum"], "fields": "", "values": False},
    }
    return panel("bargauge", title, queries, options=options, **kw)


def map_layer(
    kind: str, name: str, *, color_field: str = "", weight_field: str = "", size: int = 8
) -> Json:
    """A Geomap layer located by the ``lat``/``lon`` columns of a table query."""
    config: Json
    if kind == "heatmap":
        config = {"blur": 15, "radius": 10, "weight": {"field": weight_field, "fixed": 1}}
    else:
        color = {"field": color_field} if color_field else {"fixed": "blue"}
        config = {"showLegend": True, "style": {"color": color, "size": {"fixed": size}}}
    return {
        "type": kind,
        "name": name,
        "config": config,
        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
        "tooltip": True,
    }


def geomap(title: str, query: str, layer: Json, **kw: Any) -> Json:
    options = {
        "view": {"id": "fit", "lat": 0, "lon": 0, "zoom": 12},
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
        "basemap": {"type": "default", "name": "Basemap"},
        "layers": [layer],
        "tooltip": {"mode": "details"},
    }
    kw.setdefault("h", 12)
    return panel("geomap", title, [query], table=True, options=options, **kw)


def query_variable(
    name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True
) -> Json:
    """A template variable filled by an InfluxQL ``SHOW TAG VALUES`` (refreshed on time change)."""
    current = {"text": "All", "value": "$__all"} if include_all else {}
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": query,
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "current": current,
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def place_variables() -> list[Json]:
    """site → zone → gateway, each narrowing the next (tags written by ``collector.derived``)."""
    return [
        query_variable("site", "Site", 'SHOW TAG VALUES WITH KEY = "site"'),
        query_variable(
            "zone", "Zone", 'SHOW TAG VALUES WITH KEY = "zone" WHERE "site" =~ /^$site$/'
        ),
        query_variable(
            "gateway",
            "Gateway",
            'SHOW TAG VALUES WITH KEY = "gw" WHERE "site" =~ /^$site$/ AND "zone" =~ /^$zone$/',
        ),
    ]


def board(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    variables: list[Json],
    *,
    refresh: str = "1m",
    time_from: str = "now-6h",
) -> Json:
    """A dashboard: numbers the panels 1.. and flows them left to right in rows of 24."""
    placed = []
    x = y = row_h = 0
    for n, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        placed.append({**p, "id": n, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
        x, row_h = x + w, max(row_h, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["shouhu"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["shouhu"], "asDropdown": True, "title": "Shouhu"}
        ],
        "panels": placed,
    }


# --- the boards ------------------------------------------------------------------------------


def city_overview() -> Json:
    state_where = f'"site" =~ /^$site$/ AND "zone" =~ /^$zone$/ AND {GW} AND {TF}'
    panels = [
        geomap(
            "Gateways (green online, red offline)",
            'SELECT last("online") AS "online", last("lat") AS "lat", last("lon") AS "lon" '
            f'FROM "gateway_state" WHERE {state_where} GROUP BY "gw", "site", "zone"',
            map_layer("markers", "Gateways", color_field="online", size=10),
            w=14,
            h=14,
            defaults={
                "color": {"mode": "thresholds"},
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                },
            },
        ),
        stat(
            "Gateways offline",
            'SELECT count("online") - sum("online") FROM '
            f'(SELECT last("online") AS "online" FROM "gateway_state" WHERE {state_where} GROUP BY "gw")',
            w=5,
        ),
        stat(
            "Gateways online",
            'SELECT sum("online") FROM '
            f'(SELECT last("online") AS "online" FROM "gateway_state" WHERE {state_where} GROUP BY "gw")',
            w=5,
        ),
        bargauge(
            "Open alerts by kind",
            f'SELECT sum("open") FROM "alert_event" WHERE {OPEN_LOOKBACK} GROUP BY "kind"',
            w=10,
            h=9,
            description="Raised minus resolved over the last 30 days, per alert kind.",
        ),
        timeseries(
            "Readings per second by stream",
            target(
                'SELECT count("seq") / ($__interval_ms / 1000) '
                'FROM "sighting", "tap", "alarm", "event", "telemetry" '
                f"WHERE {GW} AND {TF} GROUP BY time($__interval) fill(0)",
                alias="$measurement",
            ),
            unit="reqps",
            w=12,
        ),
        timeseries(
            "Alerts raised by kind",
            'SELECT sum("value") FROM "alert_event" '
            f'WHERE "state" = \'raised\' AND {TF} GROUP BY time($__interval), "kind" fill(none)',
            bars=True,
            w=12,
        ),
        table_panel(
            "Latest alert events",
            'SELECT "kind", "severity", "state", "district", "key", "alert_id" FROM "alert_event" '
            f"WHERE {TF} ORDER BY time DESC LIMIT 50",
            w=24,
        ),
    ]
    return board(
        "shouhu-city",
        "Shouhu · City overview",
        "Gateways on the map, open alerts and the flow of readings across the city.",
        panels,
        place_variables(),
    )


def wanderers() -> Json:
    device = '"device" =~ /^$device$/'
    variables = [
        *place_variables(),
        query_variable(
            "device",
            "Amulet (device key)",
            'SHOW TAG VALUES FROM "sighting" WITH KEY = "device" WHERE "gw" =~ /^$gateway$/',
            multi=False,
            include_all=False,
        ),
    ]
    panels = [
        geomap(
            "Footprints of $device",
            'SELECT mean("lat") AS "lat", mean("lon") AS "lon", count("seq") AS "sightings" '
            f'FROM "sighting" WHERE {device} AND {TF} GROUP BY time($__interval), "gw" fill(none)',
            map_layer("markers", "Footprints", size=6),
            w=14,
            h=14,
            description="Sightings enriched with the hearing gateway's position, per interval.",
        ),
        stat(
            "Wearers outside safe zones now",
            f'SELECT sum("open") FROM "alert_event" WHERE "kind" =~ /^wanderer/ AND {OPEN_LOOKBACK} '
            'GROUP BY "kind"',
            w=10,
            h=6,
        ),
        table_panel(
            "Wanderer alerts",
            'SELECT "kind", "state", "severity", "key", "alert_id" FROM "alert_event" '
            f'WHERE "kind" =~ /^wanderer/ AND {TF} ORDER BY time DESC LIMIT 50',
            w=10,
            h=8,
        ),
        panel(
            "state-timeline",
            "Timeline: gateways hearing $device",
            [
                'SELECT count("seq") FROM "sighting" '
                f'WHERE {device} AND {GW} AND {TF} GROUP BY time($__interval), "gw" fill(none)'
            ],
            w=24,
            h=7,
            options={"showValue": "never", "mergeValues": False, "rowHeight": 0.8},
        ),
        timeseries(
            "Signal strength by gateway",
            'SELECT mean("rssi") FROM "sighting" '
            f'WHERE {device} AND {GW} AND {TF} GROUP BY time($__interval), "gw" fill(none)',
            unit="dBm",
        ),
        bargauge(
            "Sightings per gateway",
            f'SELECT count("seq") FROM "sighting" WHERE {device} AND {GW} AND {TF} GROUP BY "gw"',
        ),
    ]
    return board(
        "shouhu-wanderers",
        "Shouhu · Wanderers",
        "Where an amulet (device key only) was heard, and who is outside a safe zone now.",
        panels,
        variables,
    )


def fire() -> Json:
    district = '"district" =~ /^$district$/'
    smoke = "\"kind\" = 'smoke'"
    variables = [
        *place_variables(),
        query_variable(
            "district", "District", 'SHOW TAG VALUES FROM "alert_event" WITH KEY = "district"'
        ),
    ]
    panels = [
        timeseries(
            "Smoke alarms by district",
            f'SELECT sum("value") FROM "alert_event" WHERE {smoke} AND "state" = \'raised\' '
            f'AND {district} AND {TF} GROUP BY time($__interval), "district" fill(none)',
            bars=True,
        ),
        timeseries(
            "Alarm frames by site",
            'SELECT count("seq") FROM "alarm" '
            f"WHERE \"event\" = 'alarm' AND {GW} AND {TF} "
            'GROUP BY time($__interval), "site" fill(none)',
            bars=True,
        ),
        stat(
            "Alarms in progress",
            f'SELECT sum("open") FROM "alert_event" WHERE {smoke} AND {district} AND {OPEN_LOOKBACK} '
            'GROUP BY "district"',
            w=8,
        ),
        table_panel(
            "Supervision, battery and fault alerts open",
            'SELECT sum("open") AS "open" FROM "alert_event" '
            f'WHERE "kind" =~ /^smoke_/ AND {district} AND {OPEN_LOOKBACK} GROUP BY "kind", "district"',
            w=8,
            h=5,
        ),
        table_panel(
            "Low battery reports",
            'SELECT count("seq") AS "reports" FROM "event" '
            f'WHERE "event" = \'low_battery\' AND {GW} AND {TF} GROUP BY "device", "gw"',
            w=8,
            h=5,
        ),
        timeseries(
            "Time from alarm to notification",
            'SELECT max("latency_ms") AS "max", mean("latency_ms") AS "mean" FROM "alert_event" '
            f"WHERE {smoke} AND \"state\" = 'notified' AND {district} AND {TF} "
            "GROUP BY time($__interval) fill(none)",
            unit="ms",
            w=16,
        ),
        stat(
            "Alarm → notification, 95th percentile",
            'SELECT percentile("latency_ms", 95) FROM "alert_event" '
            f"WHERE {smoke} AND \"state\" = 'notified' AND {district} AND {TF}",
            unit="ms",
            w=8,
            h=8,
        ),
    ]
    return board(
        "shouhu-fire",
        "Shouhu · Fire",
        "Smoke alarms by district, alarms in progress, supervision faults and alert latency.",
        panels,
        variables,
    )


def patrol() -> Json:
    unit = '"unit" =~ /^$unit$/'
    variables = [
        query_variable("unit", "Unit", 'SHOW TAG VALUES FROM "patrol_checkin" WITH KEY = "unit"'),
        query_variable(
            "box",
            "Patrol box",
            'SHOW TAG VALUES FROM "patrol_checkin" WITH KEY = "box" WHERE "unit" =~ /^$unit$/',
        ),
    ]
    where = f'{unit} AND "box" =~ /^$box$/ AND {TF}'
    panels = [
        bargauge(
            "Check-ins per box",
            f'SELECT sum("value") FROM "patrol_checkin" WHERE "verdict" <> \'missed\' AND {where} '
            'GROUP BY "box"',
        ),
        timeseries(
            "Check-ins per unit",
            f'SELECT sum("value") FROM "patrol_checkin" WHERE "verdict" <> \'missed\' AND {where} '
            'GROUP BY time($__interval), "unit" fill(none)',
            bars=True,
        ),
        table_panel(
            "Abnormal check-ins",
            'SELECT "box", "unit", "route", "reasons" FROM "patrol_checkin" '
            f"WHERE \"verdict\" = 'abnormal' AND {where} ORDER BY time DESC LIMIT 100",
        ),
        table_panel(
            "Missed checkpoints",
            'SELECT "box", "unit", "route", "reasons" FROM "patrol_checkin" '
            f"WHERE \"verdict\" = 'missed' AND {where} ORDER BY time DESC LIMIT 100",
        ),
        panel(
            "heatmap",
            "Patrol density by box over time",
            [
                f'SELECT sum("value") FROM "patrol_checkin" WHERE "verdict" <> \'missed\' AND {where} '
                'GROUP BY time($__interval), "box" fill(0)'
            ],
            options={
                "calculate": False,
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "yAxis": {"axisPlacement": "left"},
            },
        ),
        geomap(
            "Patrol density on the map",
            'SELECT sum("value") AS "checkins", last("lat") AS "lat", last("lon") AS "lon" '
            f'FROM "patrol_checkin" WHERE "verdict" <> \'missed\' AND {where} GROUP BY "box"',
            map_layer("heatmap", "Check-ins", weight_field="checkins"),
            h=8,
        ),
    ]
    return board(
        "shouhu-patrol",
        "Shouhu · Patrol",
        "Patrol box check-ins per box and unit, abnormal ones with reasons, missed checkpoints.",
        panels,
        variables,
        time_from="now-24h",
    )


def schools() -> Json:
    school = '"school" =~ /^$school$/'
    variables = [
        *place_variables(),
        query_variable("school", "School", 'SHOW TAG VALUES FROM "school_tap" WITH KEY = "school"'),
    ]

    def per_5_min(direction: str) -> str:
        return (
            f'SELECT sum("value") FROM "school_tap" WHERE "direction" = \'{direction}\' '
            f'AND {school} AND {TF} GROUP BY time(5m), "school" fill(0)'
        )

    panels = [
        timeseries("Arrivals per school, per 5 minutes", per_5_min("arrival"), bars=True),
        timeseries("Departures per school, per 5 minutes", per_5_min("departure"), bars=True),
        bargauge(
            "Taps by direction",
            f'SELECT sum("value") FROM "school_tap" WHERE {school} AND {TF} GROUP BY "direction"',
        ),
        timeseries(
            "Card taps per gateway, per 5 minutes",
            f'SELECT count("seq") FROM "tap" WHERE {GW} AND {TF} GROUP BY time(5m), "gw" fill(0)',
            bars=True,
        ),
    ]
    return board(
        "shouhu-schools",
        "Shouhu · Schools",
        "Arrivals and departures per school in 5-minute buckets (no names: counts only).",
        panels,
        variables,
        time_from="now-12h",
    )


def gateway_health() -> Json:
    def per_gw(select: str, *, where: str = "") -> str:
        return (
            f'SELECT {select} FROM "gateway_health" WHERE {GW} AND {where}{TF} '
            'GROUP BY time($__interval), "gw" fill(none)'
        )

    panels = [
        timeseries(
            "Outbox depth (records not yet acknowledged)",
            per_gw(f'max("{HEALTH["outbox_depth"]}")'),
        ),
        timeseries("Oldest unsent record age", per_gw(f'max("{HEALTH["outbox_age"]}")'), unit="s"),
        timeseries("Publish lag", per_gw(f'max("{HEALTH["publish_lag"]}")'), unit="ms"),
        timeseries(
            "Frames per second by source",
            per_gw(f"non_negative_derivative(max({HEALTH['source_frames']}), 1s)"),
            unit="reqps",
        ),
        timeseries(
            "Decode and source errors per interval",
            per_gw(f'non_negative_difference(max("{HEALTH["decode_errors"]}")) AS "decode_errors"'),
            per_gw(f"non_negative_difference(max({HEALTH['source_errors']}))"),
        ),
        timeseries(
            "Broker reconnects per interval",
            per_gw(f'non_negative_difference(max("{HEALTH["reconnects"]}"))'),
            bars=True,
        ),
        timeseries("CPU", per_gw(f'mean("{HEALTH["cpu"]}")'), unit="percent"),
        timeseries("Memory (RSS)", per_gw(f'max("{HEALTH["rss"]}")'), unit="bytes"),
        table_panel(
            "Radios present and uptime (last report)",
            f'SELECT last("{HEALTH["uptime"]}") AS "uptime_s", last({HEALTH["source_present"]}) '
            f'FROM "gateway_health" WHERE {GW} AND {TF} GROUP BY "gw"',
            w=24,
        ),
    ]
    return board(
        "shouhu-gateways",
        "Shouhu · Gateway health",
        "Outbox, publish lag, frames and errors per radio, CPU and memory of every gateway.",
        panels,
        place_variables(),
        time_from="now-3h",
    )


BOARDS: Final[Mapping[str, Callable[[], Json]]] = {
    "city-overview": city_overview,
    "wanderers": wanderers,
    "fire": fire,
    "patrol": patrol,
    "schools": schools,
    "gateway-health": gateway_health,
}


def dashboards() -> dict[str, Json]:
    """Every board by file stem (``city-overview`` → ``city-overview.json``)."""
    return {name: build() for name, build in BOARDS.items()}


def to_json(dashboard: Json) -> str:
    """The stable text of a board: sorted keys, two-space indent, trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboards(directory: Path) -> list[Path]:
    """Write every board as ``<name>.json`` into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, dashboard in dashboards().items():
        path = directory / f"{name}.json"
        path.write_text(to_json(dashboard), encoding="utf-8")
        paths.append(path)
    return paths
