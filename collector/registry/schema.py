"""The registry schema: one plain-SQL schema for SQLite (default) and PostgreSQL.

Portable on purpose: only TEXT, INTEGER and REAL columns, lists of names stored as JSON text,
schedules stored as their text form (``"Mon-Fri 21:00-06:00"``), references to other rows as
link tables with foreign keys (so a gateway still in use cannot be removed by accident).
``"order"`` is a reserved word in SQL, so a contact's escalation order is ``position``.
The statements are written in SQLite's terms; on PostgreSQL, ``Dialect.ddl`` in ``store.py``
widens the column types (INTEGER to BIGINT, REAL to DOUBLE PRECISION, TEXT compared by code
point) so values read back the same from either database.

The schema only grows through ``MIGRATIONS``: each entry is the version it brings the database
to and the statements that do it; ``schema_version`` records the highest one applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from collector.domain import Window
from shouhu.exceptions import ConfigError

SCHEMA_VERSION_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY)"
)

_V1: Final[tuple[str, ...]] = (
    # one row, bumped by every write: collectors poll it to reload cheaply
    """CREATE TABLE registry_changes (
        id INTEGER NOT NULL PRIMARY KEY,
        counter INTEGER NOT NULL,
        changed_ms INTEGER NOT NULL
    )""",
    "INSERT INTO registry_changes (id, counter, changed_ms) VALUES (1, 0, 0)",
    """CREATE TABLE gateways (
        id TEXT NOT NULL PRIMARY KEY,
        site TEXT NOT NULL,
        zone TEXT NOT NULL DEFAULT '',
        lat REAL,
        lon REAL
    )""",
    """CREATE TABLE wearers (
        id TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        device TEXT NOT NULL UNIQUE,
        safe_zones TEXT NOT NULL DEFAULT '[]',
        risk_schedule TEXT NOT NULL DEFAULT '',
        home_by TEXT,
        missing INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE wearer_gateways (
        wearer_id TEXT NOT NULL REFERENCES wearers (id) ON DELETE CASCADE,
        gateway_id TEXT NOT NULL REFERENCES gateways (id),
        PRIMARY KEY (wearer_id, gateway_id)
    )""",
    """CREATE TABLE aeds (
        id TEXT NOT NULL PRIMARY KEY,
        device TEXT NOT NULL UNIQUE,
        expected_gateway TEXT NOT NULL REFERENCES gateways (id),
        location TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE households (
        id TEXT NOT NULL PRIMARY KEY,
        address TEXT NOT NULL,
        district TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE household_gateways (
        household_id TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
        gateway_id TEXT NOT NULL REFERENCES gateways (id),
        PRIMARY KEY (household_id, gateway_id)
    )""",
    """CREATE TABLE smoke_alarms (
        device TEXT NOT NULL PRIMARY KEY,
        household_id TEXT NOT NULL REFERENCES households (id) ON DELETE CASCADE,
        room TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE patrol_boxes (
        id TEXT NOT NULL PRIMARY KEY,
        device TEXT NOT NULL UNIQUE,
        lat REAL,
        lon REAL,
        location TEXT NOT NULL DEFAULT '',
        sun_meta_key TEXT,
        sun_file_key TEXT
    )""",
    """CREATE TABLE patrol_routes (
        id TEXT NOT NULL PRIMARY KEY,
        unit TEXT NOT NULL,
        schedule TEXT NOT NULL DEFAULT '',
        min_stay_s INTEGER NOT NULL DEFAULT 0,
        max_speed_kmh REAL NOT NULL DEFAULT 60.0
    )""",
    """CREATE TABLE route_boxes (
        route_id TEXT NOT NULL REFERENCES patrol_routes (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        box_id TEXT NOT NULL REFERENCES patrol_boxes (id),
        PRIMARY KEY (route_id, position)
    )""",
    """CREATE TABLE schools (
        id TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        not_arrived_by TEXT,
        days TEXT NOT NULL DEFAULT 'Mon-Fri'
    )""",
    """CREATE TABLE school_gateways (
        school_id TEXT NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
        gateway_id TEXT NOT NULL REFERENCES gateways (id),
        PRIMARY KEY (school_id, gateway_id)
    )""",
    """CREATE TABLE students (
        id TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        card TEXT NOT NULL UNIQUE,
        school_id TEXT NOT NULL REFERENCES schools (id)
    )""",
    # owner_kind: wearer | aed | household | route | student (a student's contacts are guardians)
    """CREATE TABLE contacts (
        id TEXT NOT NULL PRIMARY KEY,
        owner_kind TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'family',
        position INTEGER NOT NULL DEFAULT 0,
        url TEXT NOT NULL
    )""",
    "CREATE INDEX contacts_owner ON contacts (owner_kind, owner_id)",
)

# (version the statements bring the database to, statements); append only, never edit
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = ((1, _V1),)

LATEST_VERSION: Final = MIGRATIONS[-1][0]


# --- the text forms of columns (shared by the store, the CSV import and the CLI) ----------------

DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX: Final = {name.lower(): i for i, name in enumerate(DAY_NAMES)}
_HHMM: Final = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def check_hhmm(text: str) -> str:
    """``"HH:MM"`` (00:00 to 23:59), zero-padded; a ConfigError otherwise."""
    m = _HHMM.match(text.strip())
    if m is None:
        raise ConfigError(f"not a HH:MM time: {text!r}")
    return f"{int(m.group(1)):02d}:{m.group(2)}"


def parse_days(text: str) -> frozenset[int]:
    """``"Mon-Fri"``, ``"Sat,Sun"``, ``"Mon,Wed-Fri"``, ``"Fri-Mon"`` (wraps) or ``"daily"``."""
    spec = text.strip().lower()
    if spec in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        first, dash, last = (p.strip() for p in part.partition("-"))
        if first not in _DAY_INDEX or (dash and last not in _DAY_INDEX):
            raise ConfigError(f"not a day or day range: {part.strip()!r} (use Mon..Sun)")
        a = _DAY_INDEX[first]
        b = _DAY_INDEX[last] if dash else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def format_days(days: Iterable[int]) -> str:
    """The canonical text of a weekday set: runs of three or more as ranges (``Mon-Fri``)."""
    ordered = sorted(set(days))
    if len(ordered) == 7:
        return "daily"
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{DAY_NAMES[ordered[i]]}-{DAY_NAMES[ordered[j]]}")
        else:
            parts.extend(DAY_NAMES[d] for d in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


def parse_schedule(text: str) -> tuple[Window, ...]:
    """``"Mon-Fri 21:00-06:00; Sat,Sun 20:00-07:00"`` as windows (an empty text: none)."""
    windows: list[Window] = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        days_text, _, span = item.rpartition(" ")
        start, dash, end = span.partition("-")
        if not days_text.strip() or not dash:
            raise ConfigError(f"not a schedule window: {item!r} (like 'Mon-Fri 21:00-06:00')")
        windows.append(Window(parse_days(days_text), check_hhmm(start), check_hhmm(end)))
    return tuple(windows)


def format_schedule(windows: Iterable[Window]) -> str:
    """The canonical text of windows; ``parse_schedule`` reads it back unchanged."""
    return "; ".join(f"{format_days(w.days)} {w.start}-{w.end}" for w in windows)
