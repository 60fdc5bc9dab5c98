"""The registry database: gateways, wearers, AEDs, households, patrol boxes, schools, contacts.

``RegistryStore(url)`` opens SQLite (a path or ``sqlite:///path``; the default) or PostgreSQL
(``postgresql://...`` through psycopg 3, when several collectors share the work). Both run the
same SQL from ``schema.py``; the few differences live in ``DIALECTS``. Every read returns the frozen values of ``collector.domain``; every write
bumps one counter so a collector can poll ``changes()`` and reload its ``snapshot()`` only when
something changed. Personal data stays in this database, never in MQTT or InfluxDB.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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
)
from collector.registry.schema import (
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    format_days,
    format_schedule,
    parse_days,
    parse_schedule,
)
from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable

if TYPE_CHECKING:
    from collector.rules.registry_view import StaticRegistry


@dataclass(frozen=True, slots=True)
class OwnedContact:
    """A contact with the registry entry it belongs to (the domain values nest contacts)."""

    owner_kind: str  # a key of CONTACT_OWNERS
    owner_id: str
    contact: Contact


@dataclass(frozen=True, slots=True)
class Change:
    """How many writes the registry has seen, and when the last one was (ms since the epoch)."""

    counter: int
    changed_ms: int


Entity = (
    Gateway
    | Wearer
    | Aed
    | Household
    | SmokeAlarm
    | PatrolBox
    | PatrolRoute
    | School
    | Student
    | OwnedContact
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    """One kind of registry entry: its value type, table, key column and CLI noun."""

    type: type
    table: str
    key: str
    noun: str  # singular, as the CLI spells it: `shouhu registry <noun> add`


# kind (as CSV files and `--kind` name it) -> what it is; in dependency order (import order)
KINDS: Final[dict[str, KindInfo]] = {
    "gateways": KindInfo(Gateway, "gateways", "id", "gateway"),
    "households": KindInfo(Household, "households", "id", "household"),
    "alarms": KindInfo(SmokeAlarm, "smoke_alarms", "device", "alarm"),
    "wearers": KindInfo(Wearer, "wearers", "id", "wearer"),
    "aeds": KindInfo(Aed, "aeds", "id", "aed"),
    "boxes": KindInfo(PatrolBox, "patrol_boxes", "id", "box"),
    "routes": KindInfo(PatrolRoute, "patrol_routes", "id", "route"),
    "schools": KindInfo(School, "schools", "id", "school"),
    "students": KindInfo(Student, "students", "id", "student"),
    "contacts": KindInfo(OwnedContact, "contacts", "id", "contact"),
}

# a contact's owner_kind -> the kind of entry it belongs to
CONTACT_OWNERS: Final[dict[str, str]] = {
    "wearer": "wearers",
    "aed": "aeds",
    "household": "households",
    "route": "routes",
    "student": "students",
}
CONTACT_ROLES: Final = ("family", "guardian", "fire_brigade", "police_desk", "operator")


def kind_of(value: Entity) -> str:
    """The kind name of a registry value."""
    for kind, info in KINDS.items():
        if isinstance(value, info.type):
            return kind
    raise TypeError(f"not a registry value: {value!r}")


def key_of(value: Entity) -> str:
    """The primary key of a registry value (a smoke alarm's is its device key)."""
    if isinstance(value, SmokeAlarm):
        return value.device
    if isinstance(value, OwnedContact):
        return value.contact.id
    return value.id


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Everything in the registry at one instant (one read transaction)."""

    change: Change
    gateways: tuple[Gateway, ...]
    wearers: tuple[Wearer, ...]
    aeds: tuple[Aed, ...]
    households: tuple[Household, ...]
    boxes: tuple[PatrolBox, ...]
    routes: tuple[PatrolRoute, ...]
    schools: tuple[School, ...]
    students: tuple[Student, ...]

    def view(self) -> StaticRegistry:
        """The in-memory ``RegistryView`` the rule engine reads."""
        from collector.rules.registry_view import StaticRegistry

        return StaticRegistry(
            gateways=self.gateways,
            wearers=self.wearers,
            aeds=self.aeds,
            households=self.households,
            boxes=self.boxes,
            routes=self.routes,
            schools=self.schools,
            students=self.students,
        )


def as_dict(value: Any) -> dict[str, Any]:
    """A registry value as JSON-able data (sets sorted, schedules and weekdays as text)."""
    if isinstance(value, OwnedContact):
        return {
            "owner_kind": value.owner_kind,
            "owner_id": value.owner_id,
            **as_dict(value.contact),
        }
    return {f.name: _jsonable(f.name, getattr(value, f.name)) for f in fields(value)}


def _jsonable(name: str, v: Any) -> Any:
    if name in ("risk_schedule", "schedule"):
        return format_schedule(v)
    if name == "days":
        return format_days(v)
    if isinstance(v, frozenset):
        return sorted(v)
    if isinstance(v, tuple):
        return [_jsonable("", x) for x in v]
    if is_dataclass(v):
        return as_dict(v)
    return v


# --- the dialect table: everything that differs between SQLite and PostgreSQL -----------------


# One key for PostgreSQL's advisory lock that serializes registry writes across collectors.
REGISTRY_LOCK_KEY: Final = 0x5348_5247  # "SHRG"


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    placeholder: str  # DB-API paramstyle: sqlite3 "qmark", psycopg "format"
    # Writers take one lock up front, so two writers never deadlock and each sees every write
    # committed before it (SQLite: the database write lock; PostgreSQL: an advisory lock).
    begin_write: tuple[str, ...]
    # Reads see one instant (a snapshot() must not mix two versions of the registry).
    begin_read: str
    # (pattern, replacement) applied to the schema's column types: SQLite's INTEGER is 64-bit and
    # REAL is a double, PostgreSQL's are 32-bit; SQLite compares TEXT by code point, PostgreSQL
    # by the database's locale unless told "C".
    column_types: tuple[tuple[str, str], ...] = ()

    def sql(self, text: str) -> str:
        """Our SQL is written with ``?``; the driver may want ``%s``."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def ddl(self, statement: str) -> str:
        """A schema statement with this database's column types."""
        for pattern, replacement in self.column_types:
            statement = re.sub(pattern, replacement, statement)
        return statement


DIALECTS: Final[dict[str, Dialect]] = {
    "sqlite": Dialect("sqlite", "?", ("BEGIN IMMEDIATE",), "BEGIN"),
    "postgresql": Dialect(
        "postgresql",
        "%s",
        ("BEGIN", f"SELECT pg_advisory_xact_lock({REGISTRY_LOCK_KEY})"),
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        (
            (r"\bINTEGER\b", "BIGINT"),
            (r"\bREAL\b", "DOUBLE PRECISION"),
            (r"\bTEXT\b", 'TEXT COLLATE "C"'),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class DbConnection:
    conn: Any  # a DB-API connection in autocommit mode; we issue BEGIN/COMMIT ourselves
    dialect: Dialect
    integrity_errors: tuple[type[BaseException], ...]  # the data is at fault
    unavailable_errors: tuple[type[BaseException], ...]  # the database is, for now

    @property
    def broken(self) -> bool:
        """The server went away under this connection (psycopg knows; sqlite3 never is)."""
        return bool(getattr(self.conn, "broken", False))


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :] or ":memory:"
    if url.startswith("sqlite://"):
        return ":memory:"
    return url


def connect_db(url: str) -> DbConnection:
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "a postgresql:// registry needs the psycopg driver",
                hint="pip install 'psycopg[binary]', or use a SQLite path",
            ) from exc
        try:
            pg_conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"cannot reach the registry database: {exc}") from exc
        return DbConnection(
            pg_conn,
            DIALECTS["postgresql"],
            # DataError: text with a NUL byte, a number out of range: the value is at fault
            (psycopg.IntegrityError, psycopg.DataError),
            (psycopg.OperationalError,),
        )
    path = _sqlite_path(url)
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(
            f"cannot open the registry database {path!r}: {exc}",
            hint="check the --db path (or SHOUHU_REGISTRY) and its permissions",
        ) from exc
    return DbConnection(
        conn, DIALECTS["sqlite"], (sqlite3.IntegrityError,), (sqlite3.OperationalError,)
    )


def _upsert(table: str, key: str, columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


Row = tuple[Any, ...]


class _Tx:
    """A cursor that speaks our SQL in the connection's dialect."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cursor.execute(self._dialect.sql(sql), tuple(params))
        return int(self._cursor.rowcount)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(self._dialect.sql(sql), tuple(params))
        return [tuple(r) for r in self._cursor.fetchall()]

    def exists(self, kind: str, key: str) -> bool:
        info = KINDS[kind]
        return bool(self.rows(f"SELECT 1 FROM {info.table} WHERE {info.key} = ?", (key,)))


def _where(column: str, key: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if key is None else (f" WHERE {column} = ?", (key,))


def _lat_lon(lat: Any, lon: Any) -> tuple[float | None, float | None]:
    return (None if lat is None else float(lat), None if lon is None else float(lon))


class RegistryStore:
    """CRUD over the registry database, returning ``collector.domain`` values.

    ``add`` refuses an existing key unless ``replace``; values that nest contacts (or a
    household's smoke alarms) store those too, without removing ones stored before. Thread-safe:
    one connection behind a lock.
    """

    def __init__(self, url: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.url = str(url)
        self._clock = clock
        self._lock = threading.RLock()
        self._c = connect_db(self.url)
        self._migrate()

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._c.conn.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        dialect = self._c.dialect
        with self._lock, self._translated():
            with self._transaction(write=True, count=False) as tx:
                tx.run(dialect.ddl(SCHEMA_VERSION_TABLE))
            current = self.schema_version()
            latest = MIGRATIONS[-1][0]
            if current > latest:
                raise StorageError(
                    f"the registry database has schema v{current}, newer than this Shouhu (v{latest})",
                    hint="upgrade shouhu",
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                with self._transaction(write=True, count=False) as tx:
                    # another process may have migrated while we waited for the write lock
                    done = tx.rows("SELECT 1 FROM schema_version WHERE version = ?", (version,))
                    if done:
                        continue
                    for statement in statements:
                        tx.run(dialect.ddl(statement))
                    tx.run("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        with self._lock, self._transaction(write=False) as tx:
            rows = tx.rows("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._c.integrity_errors as exc:
            raise StorageError(f"the registry refused the write: {exc}") from exc
        except self._c.unavailable_errors as exc:
            raise StorageUnavailable(f"the registry database is unavailable: {exc}") from exc

    @contextmanager
    def _transaction(self, *, write: bool, count: bool = True) -> Iterator[_Tx]:
        """One transaction; a write bumps the change counter; any error rolls everything back.

        A connection the server dropped (a restart, a failover) is replaced here, so the store
        is usable again as soon as the database is; the call that found it dropped fails with
        StorageUnavailable.
        """
        with self._lock, self._translated():
            if self._c.broken:
                with contextlib.suppress(*self._c.unavailable_errors):
                    self._c.conn.close()
                self._c = connect_db(self.url)
            dialect = self._c.dialect
            cursor = self._c.conn.cursor()
            for statement in dialect.begin_write if write else (dialect.begin_read,):
                cursor.execute(statement)
            tx = _Tx(cursor, dialect)
            try:
                yield tx
                if write and count:
                    tx.run(
                        "UPDATE registry_changes SET counter = counter + 1, changed_ms = ? WHERE id = 1",
                        (int(self._clock() * 1000),),
                    )
                cursor.execute("COMMIT")
            except BaseException:
                # a dead connection cannot roll back; the server already has
                with contextlib.suppress(*self._c.unavailable_errors):
                    cursor.execute("ROLLBACK")
                raise

    # --- change tracking and snapshot ---------------------------------------------------------

    def changes(self) -> Change:
        """The write counter: cheap to poll; reload the snapshot when it moves."""
        with self._transaction(write=False) as tx:
            (counter, changed_ms), *_ = tx.rows(
                "SELECT counter, changed_ms FROM registry_changes WHERE id = 1"
            )
        return Change(int(counter), int(changed_ms))

    def snapshot(self) -> RegistrySnapshot:
        """Every entry, read in one transaction (the rule engine's view is built from it)."""
        with self._transaction(write=False) as tx:
            (counter, changed_ms), *_ = tx.rows(
                "SELECT counter, changed_ms FROM registry_changes WHERE id = 1"
            )
            return RegistrySnapshot(
                change=Change(int(counter), int(changed_ms)),
                gateways=self._gateways(tx),
                wearers=self._wearers(tx),
                aeds=self._aeds(tx),
                households=self._households(tx),
                boxes=self._boxes(tx),
                routes=self._routes(tx),
                schools=self._schools(tx),
                students=self._students(tx),
            )

    # --- generic CRUD -------------------------------------------------------------------------

    def add(self, value: Entity, *, replace: bool = False) -> None:
        """Store one value; a StorageError says what is wrong (existing key, unknown reference)."""
        self.add_all([value], replace=replace)

    def add_all(self, values: Iterable[Entity], *, replace: bool = True) -> dict[str, int]:
        """Store many values in one transaction (all or none); counts per kind."""
        counts: dict[str, int] = {}
        with self._transaction(write=True) as tx:
            for value in values:
                kind = kind_of(value)
                if not replace and tx.exists(kind, key_of(value)):
                    noun = KINDS[kind].noun
                    raise StorageError(
                        f"{noun} {key_of(value)!r} already exists",
                        hint="add --replace to update it (or import a CSV, which updates)",
                    )
                self._put(tx, value)
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def get(self, kind: str, key: str) -> Entity | None:
        """One entry of ``kind`` by its key, or None."""
        found = self.items(kind, key)
        return found[0] if found else None

    def items(self, kind: str, key: str | None = None) -> tuple[Entity, ...]:
        """All entries of ``kind`` (or the one with ``key``), ordered by key."""
        loaders: dict[str, Callable[[_Tx, str | None], tuple[Any, ...]]] = {
            "gateways": self._gateways,
            "wearers": self._wearers,
            "aeds": self._aeds,
            "households": self._households,
            "alarms": self._alarms,
            "boxes": self._boxes,
            "routes": self._routes,
            "schools": self._schools,
            "students": self._students,
            "contacts": self._owned_contacts,
        }
        if kind not in loaders:
            raise ConfigError(f"unknown registry kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
        with self._transaction(write=False) as tx:
            return loaders[kind](tx, key)

    def remove(self, kind: str, key: str) -> bool:
        """Remove one entry (and the contacts it owns); False when there was none.

        An entry others still refer to (a gateway a wearer uses, a box on a route, a school
        with students) is not removed: the StorageError names who uses it.
        """
        info = KINDS[kind]
        with self._transaction(write=True) as tx:
            users = self._users_of(tx, kind, key)
            if users:
                raise StorageError(
                    f"{info.noun} {key!r} is still used by {', '.join(users)}",
                    hint="remove those or change them first",
                )
            owner_kind = next((o for o, k in CONTACT_OWNERS.items() if k == kind), None)
            if owner_kind is not None:
                tx.run(
                    "DELETE FROM contacts WHERE owner_kind = ? AND owner_id = ?", (owner_kind, key)
                )
            return tx.run(f"DELETE FROM {info.table} WHERE {info.key} = ?", (key,)) > 0

    def set_missing(self, wearer_id: str, missing: bool) -> Wearer:
        """Mark a wearer reported missing (every sighting becomes a footprint) or found again."""
        with self._transaction(write=True) as tx:
            if not tx.run("UPDATE wearers SET missing = ? WHERE id = ?", (int(missing), wearer_id)):
                raise StorageError(
                    f"unknown wearer {wearer_id!r}",
                    hint="see `shouhu registry wearer list`",
                )
            return self._wearers(tx, wearer_id)[0]

    # --- typed reads --------------------------------------------------------------------------

    def gateways(self) -> tuple[Gateway, ...]:
        with self._transaction(write=False) as tx:
            return self._gateways(tx)

    def gateway(self, gateway_id: str) -> Gateway | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._gateways(tx, gateway_id)), None)

    def wearers(self) -> tuple[Wearer, ...]:
        with self._transaction(write=False) as tx:
            return self._wearers(tx)

    def wearer(self, wearer_id: str) -> Wearer | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._wearers(tx, wearer_id)), None)

    def aeds(self) -> tuple[Aed, ...]:
        with self._transaction(write=False) as tx:
            return self._aeds(tx)

    def aed(self, aed_id: str) -> Aed | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._aeds(tx, aed_id)), None)

    def households(self) -> tuple[Household, ...]:
        with self._transaction(write=False) as tx:
            return self._households(tx)

    def household(self, household_id: str) -> Household | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._households(tx, household_id)), None)

    def smoke_alarms(self) -> tuple[SmokeAlarm, ...]:
        with self._transaction(write=False) as tx:
            return self._alarms(tx)

    def smoke_alarm(self, device: str) -> SmokeAlarm | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._alarms(tx, device)), None)

    def patrol_boxes(self) -> tuple[PatrolBox, ...]:
        with self._transaction(write=False) as tx:
            return self._boxes(tx)

    def patrol_box(self, box_id: str) -> PatrolBox | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._boxes(tx, box_id)), None)

    def patrol_routes(self) -> tuple[PatrolRoute, ...]:
        with self._transaction(write=False) as tx:
            return self._routes(tx)

    def patrol_route(self, route_id: str) -> PatrolRoute | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._routes(tx, route_id)), None)

    def schools(self) -> tuple[School, ...]:
        with self._transaction(write=False) as tx:
            return self._schools(tx)

    def school(self, school_id: str) -> School | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._schools(tx, school_id)), None)

    def students(self) -> tuple[Student, ...]:
        with self._transaction(write=False) as tx:
            return self._students(tx)

    def student(self, student_id: str) -> Student | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._students(tx, student_id)), None)

    def contacts(self) -> tuple[OwnedContact, ...]:
        with self._transaction(write=False) as tx:
            return self._owned_contacts(tx)

    def contact(self, contact_id: str) -> OwnedContact | None:
        with self._transaction(write=False) as tx:
            return next(iter(self._owned_contacts(tx, contact_id)), None)

    # --- writes -------------------------------------------------------------------------------

    def _require(self, tx: _Tx, kind: str, key: str) -> None:
        if not tx.exists(kind, key):
            noun = KINDS[kind].noun
            raise StorageError(
                f"unknown {noun} {key!r}",
                hint=f"add it first with `shouhu registry {noun} add`",
            )

    def _unique_device(self, tx: _Tx, kind: str, column: str, device: str, key: str) -> None:
        info = KINDS[kind]
        rows = tx.rows(f"SELECT id FROM {info.table} WHERE {column} = ? AND id <> ?", (device, key))
        if rows:
            raise StorageError(
                f"{column} {device!r} already belongs to {info.noun} {rows[0][0]}",
                hint=f"remove that {info.noun} first, or check the {column}",
            )

    def _link(
        self, tx: _Tx, table: str, owner_col: str, owner: str, gateways: Iterable[str]
    ) -> None:
        tx.run(f"DELETE FROM {table} WHERE {owner_col} = ?", (owner,))
        for gw in sorted(gateways):
            self._require(tx, "gateways", gw)
            tx.run(f"INSERT INTO {table} ({owner_col}, gateway_id) VALUES (?, ?)", (owner, gw))

    def _put_contacts(
        self, tx: _Tx, owner_kind: str, owner_id: str, contacts: Iterable[Contact]
    ) -> None:
        for c in contacts:
            self._put(tx, OwnedContact(owner_kind, owner_id, c))

    def _put(self, tx: _Tx, v: Entity) -> None:
        if isinstance(v, Gateway):
            tx.run(
                _upsert("gateways", "id", ("id", "site", "zone", "lat", "lon")),
                (v.id, v.site, v.zone, v.lat, v.lon),
            )
        elif isinstance(v, Wearer):
            self._unique_device(tx, "wearers", "device", v.device, v.id)
            cols: tuple[str, ...] = (
                "id",
                "name",
                "device",
                "safe_zones",
                "risk_schedule",
                "home_by",
                "missing",
            )
            tx.run(
                _upsert("wearers", "id", cols),
                (
                    v.id,
                    v.name,
                    v.device,
                    json.dumps(sorted(v.safe_zones)),
                    format_schedule(v.risk_schedule),
                    v.home_by,
                    int(v.missing),
                ),
            )
            self._link(tx, "wearer_gateways", "wearer_id", v.id, v.home_gateways)
            self._put_contacts(tx, "wearer", v.id, v.contacts)
        elif isinstance(v, Aed):
            self._unique_device(tx, "aeds", "device", v.device, v.id)
            self._require(tx, "gateways", v.expected_gateway)
            tx.run(
                _upsert("aeds", "id", ("id", "device", "expected_gateway", "location")),
                (v.id, v.device, v.expected_gateway, v.location),
            )
            self._put_contacts(tx, "aed", v.id, v.contacts)
        elif isinstance(v, Household):
            tx.run(
                _upsert("households", "id", ("id", "address", "district")),
                (v.id, v.address, v.district),
            )
            self._link(tx, "household_gateways", "household_id", v.id, v.gateways)
            for alarm in v.alarms:
                self._put(tx, SmokeAlarm(alarm.device, v.id, alarm.room))
            self._put_contacts(tx, "household", v.id, v.contacts)
        elif isinstance(v, SmokeAlarm):
            self._require(tx, "households", v.household)
            tx.run(
                _upsert("smoke_alarms", "device", ("device", "household_id", "room")),
                (v.device, v.household, v.room),
            )
        elif isinstance(v, PatrolBox):
            self._unique_device(tx, "boxes", "device", v.device, v.id)
            cols = (
                "id",
                "device",
                "lat",
                "lon",
                "location",
                "sun_meta_key",
                "sun_file_key",
            )
            tx.run(
                _upsert("patrol_boxes", "id", cols),
                (v.id, v.device, v.lat, v.lon, v.location, v.sun_meta_key, v.sun_file_key),
            )
        elif isinstance(v, PatrolRoute):
            cols = ("id", "unit", "schedule", "min_stay_s", "max_speed_kmh")
            tx.run(
                _upsert("patrol_routes", "id", cols),
                (v.id, v.unit, format_schedule(v.schedule), v.min_stay_s, v.max_speed_kmh),
            )
            tx.run("DELETE FROM route_boxes WHERE route_id = ?", (v.id,))
            for position, box in enumerate(v.boxes):
                self._require(tx, "boxes", box)
                tx.run(
                    "INSERT INTO route_boxes (route_id, position, box_id) VALUES (?, ?, ?)",
                    (v.id, position, box),
                )
            self._put_contacts(tx, "route", v.id, v.contacts)
        elif isinstance(v, School):
            tx.run(
                _upsert("schools", "id", ("id", "name", "not_arrived_by", "days")),
                (v.id, v.name, v.not_arrived_by, format_days(v.days)),
            )
            self._link(tx, "school_gateways", "school_id", v.id, v.gateways)
        elif isinstance(v, Student):
            self._unique_device(tx, "students", "card", v.card, v.id)
            self._require(tx, "schools", v.school)
            tx.run(
                _upsert("students", "id", ("id", "name", "card", "school_id")),
                (v.id, v.name, v.card, v.school),
            )
            self._put_contacts(tx, "student", v.id, v.guardians)
        elif isinstance(v, OwnedContact):
            if v.owner_kind not in CONTACT_OWNERS:
                raise StorageError(
                    f"a contact cannot belong to a {v.owner_kind!r}",
                    hint=f"owner kind is one of {', '.join(CONTACT_OWNERS)}",
                )
            self._require(tx, CONTACT_OWNERS[v.owner_kind], v.owner_id)
            c = v.contact
            cols = (
                "id",
                "owner_kind",
                "owner_id",
                "name",
                "role",
                "position",
                "url",
            )
            tx.run(
                _upsert("contacts", "id", cols),
                (c.id, v.owner_kind, v.owner_id, c.name, c.role, c.order, c.url),
            )
        else:  # pragma: no cover - kind_of() already refused it
            raise TypeError(f"not a registry value: {v!r}")

    def _users_of(self, tx: _Tx, kind: str, key: str) -> list[str]:
        """Who still refers to the entry ``kind``/``key`` (so it must not be removed)."""
        queries: dict[str, tuple[tuple[str, str], ...]] = {
            "gateways": (
                ("wearer", "SELECT wearer_id FROM wearer_gateways WHERE gateway_id = ?"),
                ("household", "SELECT household_id FROM household_gateways WHERE gateway_id = ?"),
                ("school", "SELECT school_id FROM school_gateways WHERE gateway_id = ?"),
                ("aed", "SELECT id FROM aeds WHERE expected_gateway = ?"),
            ),
            "boxes": (("route", "SELECT DISTINCT route_id FROM route_boxes WHERE box_id = ?"),),
            "schools": (("student", "SELECT id FROM students WHERE school_id = ?"),),
        }
        users: list[str] = []
        for noun, sql in queries.get(kind, ()):
            users.extend(f"{noun} {row[0]}" for row in tx.rows(sql, (key,)))
        return users

    # --- reads --------------------------------------------------------------------------------

    def _gateway_links(
        self, tx: _Tx, table: str, owner_col: str, key: str | None
    ) -> dict[str, frozenset[str]]:
        where, params = _where(owner_col, key)
        links: dict[str, set[str]] = {}
        for owner, gw in tx.rows(f"SELECT {owner_col}, gateway_id FROM {table}{where}", params):
            links.setdefault(owner, set()).add(gw)
        return {k: frozenset(v) for k, v in links.items()}

    def _contacts_of(
        self, tx: _Tx, owner_kind: str, key: str | None
    ) -> dict[str, tuple[Contact, ...]]:
        sql = "SELECT owner_id, id, name, url, role, position FROM contacts WHERE owner_kind = ?"
        params: tuple[Any, ...] = (owner_kind,)
        if key is not None:
            sql += " AND owner_id = ?"
            params += (key,)
        found: dict[str, list[Contact]] = {}
        for owner, cid, name, url, role, position in tx.rows(
            sql + " ORDER BY position, id", params
        ):
            found.setdefault(owner, []).append(Contact(cid, name, url, role, int(position)))
        return {k: tuple(v) for k, v in found.items()}

    def _gateways(self, tx: _Tx, key: str | None = None) -> tuple[Gateway, ...]:
        where, params = _where("id", key)
        return tuple(
            Gateway(gid, site, zone, *_lat_lon(lat, lon))
            for gid, site, zone, lat, lon in tx.rows(
                f"SELECT id, site, zone, lat, lon FROM gateways{where} ORDER BY id", params
            )
        )

    def _wearers(self, tx: _Tx, key: str | None = None) -> tuple[Wearer, ...]:
        where, params = _where("id", key)
        homes = self._gateway_links(tx, "wearer_gateways", "wearer_id", key)
        contacts = self._contacts_of(tx, "wearer", key)
        sql = f"SELECT id, name, device, safe_zones, risk_schedule, home_by, missing FROM wearers{where} ORDER BY id"
        return tuple(
            Wearer(
                id=wid,
                name=name,
                device=device,
                home_gateways=homes.get(wid, frozenset()),
                safe_zones=frozenset(json.loads(zones)),
                risk_schedule=parse_schedule(schedule),
                home_by=home_by,
                missing=bool(missing),
                contacts=contacts.get(wid, ()),
            )
            for wid, name, device, zones, schedule, home_by, missing in tx.rows(sql, params)
        )

    def _aeds(self, tx: _Tx, key: str | None = None) -> tuple[Aed, ...]:
        where, params = _where("id", key)
        contacts = self._contacts_of(tx, "aed", key)
        sql = f"SELECT id, device, expected_gateway, location FROM aeds{where} ORDER BY id"
        return tuple(
            Aed(aid, device, gw, location, contacts.get(aid, ()))
            for aid, device, gw, location in tx.rows(sql, params)
        )

    def _alarms(self, tx: _Tx, key: str | None = None) -> tuple[SmokeAlarm, ...]:
        where, params = _where("device", key)
        sql = f"SELECT device, household_id, room FROM smoke_alarms{where} ORDER BY device"
        return tuple(SmokeAlarm(d, h, r) for d, h, r in tx.rows(sql, params))

    def _households(self, tx: _Tx, key: str | None = None) -> tuple[Household, ...]:
        where, params = _where("id", key)
        gateways = self._gateway_links(tx, "household_gateways", "household_id", key)
        contacts = self._contacts_of(tx, "household", key)
        alarms: dict[str, list[SmokeAlarm]] = {}
        a_where, a_params = _where("household_id", key)
        for d, h, r in tx.rows(
            f"SELECT device, household_id, room FROM smoke_alarms{a_where} ORDER BY device",
            a_params,
        ):
            alarms.setdefault(h, []).append(SmokeAlarm(d, h, r))
        sql = f"SELECT id, address, district FROM households{where} ORDER BY id"
        return tuple(
            Household(
                hid,
                address,
                gateways.get(hid, frozenset()),
                district,
                tuple(alarms.get(hid, ())),
                contacts.get(hid, ()),
            )
            for hid, address, district in tx.rows(sql, params)
        )

    def _boxes(self, tx: _Tx, key: str | None = None) -> tuple[PatrolBox, ...]:
        where, params = _where("id", key)
        sql = f"SELECT id, device, lat, lon, location, sun_meta_key, sun_file_key FROM patrol_boxes{where} ORDER BY id"
        return tuple(
            PatrolBox(bid, device, *_lat_lon(lat, lon), location, meta, file)
            for bid, device, lat, lon, location, meta, file in tx.rows(sql, params)
        )

    def _routes(self, tx: _Tx, key: str | None = None) -> tuple[PatrolRoute, ...]:
        where, params = _where("id", key)
        contacts = self._contacts_of(tx, "route", key)
        boxes: dict[str, list[str]] = {}
        b_where, b_params = _where("route_id", key)
        for rid, box in tx.rows(
            f"SELECT route_id, box_id FROM route_boxes{b_where} ORDER BY route_id, position",
            b_params,
        ):
            boxes.setdefault(rid, []).append(box)
        sql = f"SELECT id, unit, schedule, min_stay_s, max_speed_kmh FROM patrol_routes{where} ORDER BY id"
        return tuple(
            PatrolRoute(
                rid,
                unit,
                tuple(boxes.get(rid, ())),
                parse_schedule(schedule),
                int(min_stay),
                float(max_speed),
                contacts.get(rid, ()),
            )
            for rid, unit, schedule, min_stay, max_speed in tx.rows(sql, params)
        )

    def _schools(self, tx: _Tx, key: str | None = None) -> tuple[School, ...]:
        where, params = _where("id", key)
        gateways = self._gateway_links(tx, "school_gateways", "school_id", key)
        sql = f"SELECT id, name, not_arrived_by, days FROM schools{where} ORDER BY id"
        return tuple(
            School(sid, name, gateways.get(sid, frozenset()), not_arrived_by, parse_days(days))
            for sid, name, not_arrived_by, days in tx.rows(sql, params)
        )

    def _students(self, tx: _Tx, key: str | None = None) -> tuple[Student, ...]:
        where, params = _where("id", key)
        guardians = self._contacts_of(tx, "student", key)
        sql = f"SELECT id, name, card, school_id FROM students{where} ORDER BY id"
        return tuple(
            Student(sid, name, card, school, guardians.get(sid, ()))
            for sid, name, card, school in tx.rows(sql, params)
        )

    def _owned_contacts(self, tx: _Tx, key: str | None = None) -> tuple[OwnedContact, ...]:
        where, params = _where("id", key)
        sql = f"SELECT owner_kind, owner_id, id, name, url, role, position FROM contacts{where} ORDER BY owner_kind, owner_id, position, id"
        return tuple(
            OwnedContact(kind, owner, Contact(cid, name, url, role, int(position)))
            for kind, owner, cid, name, url, role, position in tx.rows(sql, params)
        )
