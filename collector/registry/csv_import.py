"""Import registry entries from CSV files: validate every row first, then all or nothing.

Parsing is pure (``parse_rows``: cells in, domain values and row errors out); reading the files
and the one write transaction are at the edges (``plan_import``, ``apply_import``). A file with
any bad row imports nothing, and every bad row is reported as ``wearers.csv:17: home_gateways:
unknown gateway 'gw-x'``. Entries already in the registry are updated (a re-import is how a
district office keeps its list current); a wearer's ``missing`` flag is kept when the file has no
``missing`` column, so a routine re-import never clears a missing-person report.

Formats (one header row; list cells separated by ``;``) are in docs/registry.md.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from collector.domain import (
    Aed,
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
from collector.registry.schema import check_hhmm, parse_days, parse_schedule
from collector.registry.store import (
    CONTACT_OWNERS,
    CONTACT_ROLES,
    KINDS,
    Entity,
    OwnedContact,
    RegistrySnapshot,
    RegistryStore,
    key_of,
    kind_of,
)
from shouhu.cardkey import card_key, is_card_key
from shouhu.exceptions import ConfigError, ShouhuError, StorageError

# kind -> (required columns, optional columns)
COLUMNS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "gateways": (("id", "site"), ("zone", "lat", "lon")),
    "households": (("id", "address"), ("district", "gateways")),
    "alarms": (("device", "household"), ("room",)),
    "wearers": (
        ("id", "name", "device"),
        ("home_gateways", "safe_zones", "risk_schedule", "home_by", "missing"),
    ),
    "aeds": (("id", "device", "expected_gateway"), ("location",)),
    "boxes": (("id", "device"), ("lat", "lon", "location", "sun_meta_key", "sun_file_key")),
    "routes": (("id", "unit", "boxes"), ("schedule", "min_stay_s", "max_speed_kmh")),
    "schools": (("id", "name"), ("gateways", "not_arrived_by", "days")),
    "students": (("id", "name", "school"), ("card", "card_uid")),
    "contacts": (("id", "owner_kind", "owner_id", "name", "url"), ("role", "order")),
}

# other spellings of a kind, in --kind or a file name
KIND_ALIASES: Final[dict[str, str]] = {
    "smoke_alarms": "alarms",
    "smoke-alarms": "alarms",
    "patrol_boxes": "boxes",
    "patrol-boxes": "boxes",
    "patrol_routes": "routes",
    "patrol-routes": "routes",
    "guardians": "contacts",
}

_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_DEVICE: Final = re.compile(r"^\S+$")
_SCHEME_URL: Final = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
_AES_KEY: Final = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class RowError:
    """One thing wrong with one row: where, which column, what."""

    source: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return (
            f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"
        )


@dataclass(slots=True)
class Known:
    """What the rows may refer to: keys already in the registry or earlier in this import."""

    keys: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    device_owner: dict[str, str] = field(default_factory=dict)  # device key -> "wearer w-1"
    missing_wearers: set[str] = field(default_factory=set)

    @classmethod
    def from_snapshot(cls, snap: RegistrySnapshot, contacts: Iterable[OwnedContact]) -> Known:
        known = cls()
        known.add_all(snap.gateways)
        known.add_all(snap.households)
        known.add_all(a for h in snap.households for a in h.alarms)
        known.add_all(snap.wearers)
        known.add_all(snap.aeds)
        known.add_all(snap.boxes)
        known.add_all(snap.routes)
        known.add_all(snap.schools)
        known.add_all(snap.students)
        known.add_all(contacts)
        known.missing_wearers = {w.id for w in snap.wearers if w.missing}
        return known

    def add_all(self, values: Iterable[Entity]) -> None:
        for v in values:
            kind = kind_of(v)
            self.keys[kind].add(key_of(v))
            device = _device_of(v)
            if device is not None:
                self.device_owner[device] = f"{KINDS[kind].noun} {key_of(v)}"


def _device_of(v: Entity) -> str | None:
    if isinstance(v, Wearer | Aed | PatrolBox | SmokeAlarm):
        return v.device
    if isinstance(v, Student):
        return v.card
    return None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    kind: str
    source: str
    values: tuple[Entity, ...]
    errors: tuple[RowError, ...]


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """Validated files, in import order; nothing may be applied while ``errors`` is not empty."""

    files: tuple[ParsedFile, ...]

    @property
    def errors(self) -> tuple[RowError, ...]:
        return tuple(e for f in self.files for e in f.errors)

    @property
    def values(self) -> tuple[Entity, ...]:
        return tuple(v for f in self.files for v in f.values)


def normalize_kind(name: str) -> str | None:
    """The kind a ``--kind`` value names, or None."""
    name = name.strip().lower()
    return name if name in KINDS else KIND_ALIASES.get(name)


def kind_from_filename(path: str | Path) -> str | None:
    """``wearers.csv``, ``district-7_wearers.csv``, ``smoke_alarms.csv`` -> the kind, or None."""
    stem = Path(path).stem.lower()
    direct = normalize_kind(stem)
    if direct:
        return direct
    for alias in sorted([*KINDS, *KIND_ALIASES], key=len, reverse=True):
        if stem.endswith(("_" + alias, "-" + alias, "." + alias)):
            return normalize_kind(alias)
    return None


def check_contact_url(url: str) -> str | None:
    """Why ``url`` is not a usable apprise notification URL, or None when it is."""
    if not _SCHEME_URL.match(url):
        return f"not a notification URL {url!r} (like tgram://bot_token/chat_id or mailto://...)"
    import apprise

    with _quiet("apprise"):
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return f"apprise cannot use {url!r} (unknown scheme or missing parts)"
    return None


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Apprise logs every URL it refuses; our row error already says so."""
    logger = logging.getLogger(logger_name)
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


T = TypeVar("T")


class _Row:
    """The cells of one row and the errors found in them."""

    def __init__(self, cells: Mapping[str, str], line: int, source: str, known: Known) -> None:
        self.cells = cells
        self.line = line
        self.source = source
        self.known = known
        self.errors: list[RowError] = []

    def error(self, column: str, message: str) -> None:
        self.errors.append(RowError(self.source, self.line, column, message))

    def text(self, column: str, *, required: bool = False) -> str:
        value = (self.cells.get(column) or "").strip()
        if required and not value:
            self.error(column, "required")
        return value

    def ident(self, column: str) -> str:
        value = self.text(column, required=True)
        if value and not _ID.match(value):
            self.error(column, f"not an id: {value!r} (letters, digits, . _ : -)")
        return value

    def device(self, column: str) -> str:
        value = self.text(column, required=True)
        if value and not _DEVICE.match(value):
            self.error(column, f"a device key has no spaces: {value!r}")
        return value

    def ref(self, column: str, kind: str) -> str:
        value = self.text(column, required=True)
        if value and value not in self.known.keys[kind]:
            noun = KINDS[kind].noun
            self.error(column, f"unknown {noun} {value!r}")
        return value

    def refs(self, column: str, kind: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in self.text(column).split(";") if v.strip())
        for v in values:
            if v not in self.known.keys[kind]:
                self.error(column, f"unknown {KINDS[kind].noun} {v!r}")
        return values

    def names(self, column: str) -> frozenset[str]:
        return frozenset(v.strip() for v in self.text(column).split(";") if v.strip())

    def number(self, column: str, low: float, high: float) -> float | None:
        value = self.text(column)
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            self.error(column, f"not a number: {value!r}")
            return None
        if not low <= number <= high:
            self.error(column, f"{number} is out of range {low:g}..{high:g}")
            return None
        return number

    def integer(self, column: str, default: int, low: int = 0) -> int:
        value = self.text(column)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            self.error(column, f"not a whole number: {value!r}")
            return default
        if number < low:
            self.error(column, f"must be at least {low}")
        return number

    def flag(self, column: str) -> bool:
        value = self.text(column).lower()
        if value in ("", "0", "no", "false", "n"):
            return False
        if value in ("1", "yes", "true", "y"):
            return True
        self.error(column, f"not yes/no: {value!r}")
        return False

    def parsed(self, column: str, parse: Callable[[str], T], default: T) -> T:
        value = self.text(column)
        if not value:
            return default
        try:
            return parse(value)
        except ShouhuError as exc:
            self.error(column, exc.message)
            return default

    def lat_lon(self) -> tuple[float | None, float | None]:
        lat, lon = self.number("lat", -90, 90), self.number("lon", -180, 180)
        if (lat is None) != (lon is None) and not any(
            e.column in ("lat", "lon") for e in self.errors
        ):
            self.error("lat" if lat is None else "lon", "give both lat and lon, or neither")
        return lat, lon


def _gateway(r: _Row) -> Gateway:
    lat, lon = r.lat_lon()
    return Gateway(r.ident("id"), r.text("site", required=True), r.text("zone"), lat, lon)


def _household(r: _Row) -> Household:
    return Household(
        id=r.ident("id"),
        address=r.text("address", required=True),
        gateways=frozenset(r.refs("gateways", "gateways")),
        district=r.text("district"),
    )


def _alarm(r: _Row) -> SmokeAlarm:
    return SmokeAlarm(r.device("device"), r.ref("household", "households"), r.text("room"))


def _wearer(r: _Row) -> Wearer:
    wearer_id = r.ident("id")
    missing = r.flag("missing") if "missing" in r.cells else wearer_id in r.known.missing_wearers
    empty: tuple[Window, ...] = ()
    return Wearer(
        id=wearer_id,
        name=r.text("name", required=True),
        device=r.device("device"),
        home_gateways=frozenset(r.refs("home_gateways", "gateways")),
        safe_zones=r.names("safe_zones"),
        risk_schedule=r.parsed("risk_schedule", parse_schedule, empty),
        home_by=r.parsed("home_by", check_hhmm, None),
        missing=missing,
    )


def _aed(r: _Row) -> Aed:
    return Aed(
        r.ident("id"), r.device("device"), r.ref("expected_gateway", "gateways"), r.text("location")
    )


def _box(r: _Row) -> PatrolBox:
    keys: list[str | None] = []
    for column in ("sun_meta_key", "sun_file_key"):
        value = r.text(column)
        if value and not _AES_KEY.match(value):
            r.error(column, "an AES-128 key is 32 hex digits")
        keys.append(value.lower() or None)
    lat, lon = r.lat_lon()
    return PatrolBox(r.ident("id"), r.device("device"), lat, lon, r.text("location"), *keys)


def _route(r: _Row) -> PatrolRoute:
    boxes = r.refs("boxes", "boxes")
    if not boxes and r.text("boxes") == "":
        r.error("boxes", "required")
    empty: tuple[Window, ...] = ()
    speed = r.number("max_speed_kmh", 1, 1000)
    return PatrolRoute(
        id=r.ident("id"),
        unit=r.text("unit", required=True),
        boxes=boxes,
        schedule=r.parsed("schedule", parse_schedule, empty),
        min_stay_s=r.integer("min_stay_s", 0),
        max_speed_kmh=60.0 if speed is None else speed,
    )


def _school(r: _Row) -> School:
    return School(
        id=r.ident("id"),
        name=r.text("name", required=True),
        gateways=frozenset(r.refs("gateways", "gateways")),
        not_arrived_by=r.parsed("not_arrived_by", check_hhmm, None),
        days=r.parsed("days", parse_days, frozenset({0, 1, 2, 3, 4})),
    )


def _student(r: _Row, card_hash_key: bytes | None) -> Student:
    card, uid = r.text("card"), r.text("card_uid")
    if card and uid:
        r.error("card_uid", "give card or card_uid, not both")
    elif card:
        if not is_card_key(card):
            r.error("card", f"not a hashed card key {card!r} (card: + 24 hex digits)")
    elif uid:
        if card_hash_key is None:
            r.error("card_uid", "a clear card UID needs --uid-hash-key-file to hash it")
        else:
            try:
                card = card_key(uid, card_hash_key)
            except ShouhuError as exc:
                r.error("card_uid", exc.message.replace(uid, "<uid>"))  # keep the UID out of logs
    else:
        r.error("card", "required (or card_uid)")
    return Student(r.ident("id"), r.text("name", required=True), card, r.ref("school", "schools"))


def _contact(r: _Row) -> OwnedContact:
    owner_kind = r.text("owner_kind", required=True)
    owner_id = r.text("owner_id", required=True)
    if owner_kind and owner_kind not in CONTACT_OWNERS:
        r.error("owner_kind", f"not one of {', '.join(CONTACT_OWNERS)}: {owner_kind!r}")
    elif owner_kind and owner_id:
        r.ref("owner_id", CONTACT_OWNERS[owner_kind])
    role = r.text("role") or "family"
    if role not in CONTACT_ROLES:
        r.error("role", f"not one of {', '.join(CONTACT_ROLES)}: {role!r}")
    url = r.text("url", required=True)
    problem = check_contact_url(url) if url else None
    if problem:
        r.error("url", problem)
    contact = Contact(
        r.ident("id"), r.text("name", required=True), url, role, r.integer("order", 0)
    )
    return OwnedContact(owner_kind, owner_id, contact)


# kind -> row parser (students also need the card hash key: see ``parse_rows``)
ROW_PARSERS: dict[str, Callable[[_Row], Entity]] = {
    "gateways": _gateway,
    "households": _household,
    "alarms": _alarm,
    "wearers": _wearer,
    "aeds": _aed,
    "boxes": _box,
    "routes": _route,
    "schools": _school,
    "contacts": _contact,
}


def parse_rows(
    kind: str,
    header: Sequence[str],
    rows: Iterable[tuple[int, Mapping[str, str]]],
    *,
    source: str,
    known: Known,
    card_hash_key: bytes | None = None,
) -> ParsedFile:
    """Validate every row of one file against ``known`` (pure); good rows become values.

    ``rows`` are (line number, cells by column); ``known`` gains this file's keys so that a
    later file of the same import may refer to them.
    """
    required, optional = COLUMNS[kind]
    errors: list[RowError] = []
    missing = [c for c in required if c not in header]
    if missing:
        errors.append(RowError(source, 1, "", f"missing column(s) {', '.join(missing)}"))
    unknown = [c for c in header if c not in required and c not in optional]
    if unknown:
        errors.append(
            RowError(
                source,
                1,
                "",
                f"unknown column(s) {', '.join(unknown)} (a {KINDS[kind].noun} file has {', '.join(required + optional)})",
            )
        )
    if errors:
        return ParsedFile(kind, source, (), tuple(errors))

    values: list[Entity] = []
    first_line: dict[str, int] = {}
    device_line: dict[str, int] = {}
    for line, cells in rows:
        r = _Row(cells, line, source, known)
        if None in cells:  # csv.DictReader puts surplus cells under None
            r.error("", "more cells than columns")
        value: Entity = _student(r, card_hash_key) if kind == "students" else ROW_PARSERS[kind](r)
        key = key_of(value)
        key_column = KINDS[kind].key
        if key in first_line:
            r.error(key_column, f"duplicate {key_column} {key!r} (also on line {first_line[key]})")
        elif key:
            first_line[key] = line
        device = _device_of(value)
        if device and kind != "alarms":  # an alarm's device is its key, checked above
            device_column = "card" if kind == "students" else "device"
            owner = known.device_owner.get(device)
            if device in device_line:
                r.error(device_column, f"{device!r} also on line {device_line[device]}")
            elif owner is not None and owner != f"{KINDS[kind].noun} {key}":
                r.error(device_column, f"{device!r} already belongs to {owner}")
            device_line[device] = line
        elif kind == "alarms" and device:
            owner = known.device_owner.get(device)
            if owner is not None and not owner.startswith("alarm "):
                r.error("device", f"{device!r} already belongs to {owner}")
        if r.errors:
            errors.extend(r.errors)
        else:
            values.append(value)
    if not errors:
        known.add_all(values)
    return ParsedFile(kind, source, tuple(values), tuple(errors))


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and (line, cells) rows of a CSV file (UTF-8, a spreadsheet's BOM allowed)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows: list[tuple[int, dict[str, str]]] = []
            start = 2
            for cells in reader:
                rows.append((start, cells))
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}", source=str(path)) from exc
    return header, rows


def plan_import(
    store: RegistryStore,
    paths: Sequence[str | Path],
    *,
    kind: str | None = None,
    card_hash_key: bytes | None = None,
) -> ImportPlan:
    """Read and validate the files (gateways before the wearers that use them, and so on).

    A ConfigError when a file's kind cannot be told; row problems are in ``plan.errors``.
    """
    typed: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        k = normalize_kind(kind) if kind else kind_from_filename(p)
        if k is None:
            raise ConfigError(
                f"cannot tell what {p.name} holds",
                hint=f"name it after the kind (wearers.csv) or pass --kind ({', '.join(KINDS)})",
            )
        typed.append((k, p))
    order = list(KINDS)
    typed.sort(key=lambda kp: order.index(kp[0]))
    known = Known.from_snapshot(store.snapshot(), store.contacts())
    files = []
    for k, p in typed:
        header, rows = read_csv(p)
        files.append(
            parse_rows(k, header, rows, source=p.name, known=known, card_hash_key=card_hash_key)
        )
    return ImportPlan(tuple(files))


def apply_import(store: RegistryStore, plan: ImportPlan) -> dict[str, int]:
    """Write a validated plan in one transaction; counts per kind (every kind of the plan)."""
    if plan.errors:
        raise StorageError(
            f"{len(plan.errors)} bad row(s); nothing imported", hint="fix the rows listed"
        )
    counts = dict.fromkeys((f.kind for f in plan.files), 0)
    counts.update(store.add_all(plan.values, replace=True))
    return counts


def summary(counts: Mapping[str, int]) -> str:
    """``imported 449 wearers, 12 contacts``."""
    return "imported " + ", ".join(f"{n} {kind}" for kind, n in counts.items())


def import_csv(
    store: RegistryStore,
    paths: Sequence[str | Path],
    *,
    kind: str | None = None,
    card_hash_key: bytes | None = None,
) -> dict[str, int]:
    """Validate and import in one go; a StorageError lists the bad rows when there are any."""
    plan = plan_import(store, paths, kind=kind, card_hash_key=card_hash_key)
    if plan.errors:
        raise StorageError(
            f"nothing imported: {'; '.join(map(str, plan.errors))}", hint="fix the rows listed"
        )
    return apply_import(store, plan)
