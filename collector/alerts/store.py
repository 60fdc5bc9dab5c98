"""The alert store: alert history, delivery log and the rule engine's state.

It lives in the collector state database (SQLite, beside dedup and dead letters) or, when
several collectors share the rules (``rules_state.url``, docs/collector.md), in PostgreSQL.
Plain portable SQL (TEXT/INTEGER columns, JSON as text, ``INSERT ... ON CONFLICT``) in the
spirit of ``collector/registry/schema.py``; the few differences come from the registry's
``DIALECTS`` table (placeholders, 64-bit integers) plus ``_PG_IDENTITY`` below.

Tables:

* ``alerts``: one row per alert id, its latest public state (no ``message``: names and
  addresses stay in the notifier's hands and in ``engine_state``).
* ``alert_events``: every transition (``AlertEvent``).
* ``deliveries``: one row per delivery attempt: the channel *scheme* only (``tgram``,
  ``mailto``), never the URL, which holds tokens and passwords.
* ``engine_state``: JSON of ``RuleEngine.to_state()`` and ``AlertBook.to_state()`` plus the
  running collector's heartbeat, written in the same transaction as that step's events, so
  rule timers and open alerts survive a restart exactly as they were.
* ``pending_actions``: ``ack``/``resolve`` asked for from the command line while a collector
  runs; the collector applies them in its next tick (it owns the alert book in memory).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

from collector.alerts.lifecycle import AlertBook, PublicAlert, Publish
from collector.dedup import open_state_db
from collector.registry.store import DIALECTS, DbConnection, Dialect, connect_db
from shouhu.exceptions import ShouhuError, StorageError, StorageUnavailable

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    subjects TEXT NOT NULL DEFAULT '[]',
    data TEXT NOT NULL DEFAULT '{}',
    acked_by TEXT,
    raised_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, kind);
CREATE TABLE IF NOT EXISTS alert_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert_id);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT '',
    contact_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    at_ms INTEGER NOT NULL,
    latency_ms INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id);
CREATE TABLE IF NOT EXISTS engine_state (
    name TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL,
    saved_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    requested_ms INTEGER NOT NULL,
    done_ms INTEGER,
    ok INTEGER,
    error TEXT NOT NULL DEFAULT ''
);
"""

ENGINE: Final = "engine"
BOOK: Final = "book"
HEARTBEAT: Final = "heartbeat"
# A collector that has not ticked for this long is taken as not running (the CLI then acts alone).
ALIVE_MS: Final = 10_000

PendingKind = Literal["ack", "resolve"]
SCHEMA_LOCK_KEY: Final = 0x5348_414C  # "SHAL": one collector at a time creates the tables
# PostgreSQL spells SQLite's auto-numbered key differently (applied before INTEGER -> BIGINT)
_PG_IDENTITY: Final = (r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class StoreTx:
    """One open transaction: ``execute`` takes our ``?`` SQL and returns the driver's cursor."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self.dialect.sql(sql), tuple(params))
        return self._cursor


@dataclass(frozen=True, slots=True)
class AlertRow:
    id: str
    kind: str
    key: str
    severity: str
    state: str
    title: str
    subjects: tuple[str, ...]
    data: Mapping[str, Any]
    acked_by: str | None
    raised_ms: int
    updated_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity,
            "state": self.state,
            "title": self.title,
            "subjects": list(self.subjects),
            "data": dict(self.data),
            "acked_by": self.acked_by,
            "raised_ms": self.raised_ms,
            "updated_ms": self.updated_ms,
        }


@dataclass(frozen=True, slots=True)
class EventRow:
    alert_id: str
    state: str
    at_ms: int
    actor: str
    detail: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery attempt to one contact (also what the notifier reports)."""

    alert_id: str | None  # None for a Notice
    kind: str
    state: str  # the alert state the message announced ("" for a Notice)
    contact_id: str
    channel: str  # URL scheme only
    attempt: int
    ok: bool
    error: str
    at_ms: int
    latency_ms: int | None  # triggering reading -> hand-off to the channel (ok attempts)


@dataclass(frozen=True, slots=True)
class PendingAction:
    id: int
    action: PendingKind
    alert_id: str
    by: str
    reason: str
    requested_ms: int
    done_ms: int | None = None
    ok: bool | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class AlertDetail:
    alert: AlertRow
    events: tuple[EventRow, ...]
    deliveries: tuple[Delivery, ...]


class AlertStore:
    """The alert tables behind one lock; every method is one transaction."""

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        guard: Callable[[StoreTx], None] | None = None,
    ) -> None:
        """``path``: a SQLite file or a ``postgresql://`` URL. ``guard`` runs first in every
        ``record_step`` transaction and may raise to refuse it (the shared rules leader's fence).
        """
        self.path = path
        self._clock = clock
        self._guard = guard
        self._lock = threading.RLock()
        self._c = self._open()
        try:
            with self._tx(write=True) as tx:
                if self._c.dialect.name == "postgresql":  # collectors starting together
                    tx.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_KEY,))
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        tx.execute(self._ddl(statement))
        except StorageError as exc:
            self.close()
            raise StorageUnavailable(f"cannot create the alert tables in {path}: {exc}") from exc

    def _open(self) -> DbConnection:
        if is_postgres_url(self.path):
            return connect_db(self.path)
        db = open_state_db(self.path)
        try:
            db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open the alert store {self.path}: {exc}") from exc
        return DbConnection(
            db, DIALECTS["sqlite"], (sqlite3.IntegrityError,), (sqlite3.OperationalError,)
        )

    def _ddl(self, statement: str) -> str:
        if self._c.dialect.name == "postgresql":
            statement = re.sub(*_PG_IDENTITY, statement)
        return self._c.dialect.ddl(statement)

    def close(self) -> None:
        with self._lock, contextlib.suppress(*self._c.unavailable_errors):
            self._c.conn.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[StoreTx]:
        """One transaction; a PostgreSQL connection the server dropped is replaced first."""
        with self._lock:
            refused: tuple[type[BaseException], ...] = (sqlite3.Error, *self._c.integrity_errors)
            try:
                if self._c.broken:
                    with contextlib.suppress(*self._c.unavailable_errors):
                        self._c.conn.close()
                    self._c = self._open()
                sqlite = self._c.dialect.name == "sqlite"
                cursor = self._c.conn.cursor()
                cursor.execute("BEGIN IMMEDIATE" if write and sqlite else "BEGIN")
                try:
                    yield StoreTx(cursor, self._c.dialect)
                    cursor.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(*self._c.unavailable_errors):
                        cursor.execute("ROLLBACK")
                    raise
            except self._c.unavailable_errors as exc:
                raise StorageUnavailable(f"alert store {self._where()}: {exc}") from exc
            except refused as exc:
                raise StorageError(f"alert store {self._where()}: {exc}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith("psycopg"):  # any other driver error
                    raise StorageError(f"alert store {self._where()}: {exc}") from exc
                raise

    def _where(self) -> str:
        """The path, or the URL without its password (it goes into logs)."""
        if not is_postgres_url(self.path):
            return self.path
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.path)

    # --- one step of the rules service --------------------------------------------------

    def record_step(
        self,
        publishes: Sequence[Publish],
        *,
        engine_state: Mapping[str, Any] | None = None,
        book_state: Mapping[str, Any] | None = None,
        heartbeat_ms: int | None = None,
        within: Callable[[StoreTx], None] | None = None,
    ) -> None:
        """Store a step's alert events and the state after it, all or nothing.

        ``within`` runs in the same transaction (the shared rules leader marks the inbox rows
        the step consumed)."""
        now = self._now_ms()
        with self._tx(write=True) as db:
            if self._guard is not None:
                self._guard(db)
            if within is not None:
                within(db)
            for p in publishes:
                _store_event(db, p.payload)
            blobs = {ENGINE: engine_state, BOOK: book_state}
            for name, body in blobs.items():
                if body is not None:
                    _put_state(db, name, json.dumps(body, sort_keys=True), now)
            if heartbeat_ms is not None:
                _put_state(db, HEARTBEAT, str(heartbeat_ms), now)

    def load_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``(engine_state, book_state)`` as last saved, None where nothing was saved."""
        with self._tx(write=False) as db:
            rows = dict(db.execute("SELECT name, body FROM engine_state").fetchall())
        try:
            engine = json.loads(rows[ENGINE]) if ENGINE in rows else None
            book = json.loads(rows[BOOK]) if BOOK in rows else None
        except ValueError as exc:
            raise StorageError(f"saved rule state in {self.path} is not JSON: {exc}") from exc
        return engine, book

    def collector_alive(self, now_ms: int | None = None) -> bool:
        """True when a rules service ticked within ``ALIVE_MS``."""
        now = self._now_ms() if now_ms is None else now_ms
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT body FROM engine_state WHERE name = ?", (HEARTBEAT,)
            ).fetchone()
        return row is not None and now - int(row[0]) < ALIVE_MS

    def clear_heartbeat(self) -> None:
        """A collector that stops says so, so the CLI need not wait ``ALIVE_MS``."""
        with self._tx(write=True) as db:
            db.execute("DELETE FROM engine_state WHERE name = ?", (HEARTBEAT,))

    def log_delivery(self, d: Delivery) -> None:
        with self._tx(write=True) as db:
            db.execute(
                "INSERT INTO deliveries (alert_id, kind, state, contact_id, channel, attempt, ok,"
                " error, at_ms, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.alert_id,
                    d.kind,
                    d.state,
                    d.contact_id,
                    d.channel,
                    d.attempt,
                    int(d.ok),
                    d.error[:500],
                    d.at_ms,
                    d.latency_ms,
                ),
            )

    # --- queries --------------------------------------------------------------------------

    def list_alerts(
        self, *, open_only: bool = True, kind: str | None = None, limit: int = 200
    ) -> list[AlertRow]:
        """Newest first."""
        where: list[str] = []
        params: list[Any] = []
        if open_only:
            where.append("state <> 'resolved'")
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY raised_ms DESC, id LIMIT ?"
        with self._tx(write=False) as db:
            rows = db.execute(sql, (*params, limit)).fetchall()
        return [_alert_row(r) for r in rows]

    def get(self, alert_id: str) -> AlertRow | None:
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
        return None if row is None else _alert_row(row)

    def show(self, alert_id: str) -> AlertDetail:
        """The alert with its transitions and delivery attempts; ShouhuError if unknown."""
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
            if row is None:
                raise ShouhuError(f"no alert {alert_id!r}", hint="see `shouhu alerts list --all`")
            events = db.execute(
                "SELECT alert_id, state, at_ms, actor, detail FROM alert_events"
                " WHERE alert_id = ? ORDER BY id",
                (alert_id,),
            ).fetchall()
            deliveries = db.execute(
                "SELECT alert_id, kind, state, contact_id, channel, attempt, ok, error, at_ms,"
                " latency_ms FROM deliveries WHERE alert_id = ? ORDER BY id",
                (alert_id,),
            ).fetchall()
        return AlertDetail(
            _alert_row(row),
            tuple(EventRow(*e) for e in events),
            tuple(_delivery(d) for d in deliveries),
        )

    def deliveries(self, alert_id: str | None = None) -> list[Delivery]:
        sql = (
            "SELECT alert_id, kind, state, contact_id, channel, attempt, ok, error, at_ms,"
            " latency_ms FROM deliveries"
        )
        params: tuple[Any, ...] = ()
        if alert_id is not None:
            sql, params = sql + " WHERE alert_id = ?", (alert_id,)
        with self._tx(write=False) as db:
            rows = db.execute(sql + " ORDER BY id", params).fetchall()
        return [_delivery(d) for d in rows]

    # --- ack/resolve asked for from outside the running collector --------------------------

    def request(self, action: PendingKind, alert_id: str, by: str, reason: str = "") -> int:
        """Queue an ack/resolve for the running collector; returns the request id."""
        with self._tx(write=True) as db:
            row = db.execute(
                "INSERT INTO pending_actions (action, alert_id, by, reason, requested_ms)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (action, alert_id, by, reason, self._now_ms()),
            ).fetchone()
            return int(row[0])

    def pending(self) -> list[PendingAction]:
        """Requests not yet applied, oldest first."""
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT id, action, alert_id, by, reason, requested_ms FROM pending_actions"
                " WHERE done_ms IS NULL ORDER BY id"
            ).fetchall()
        return [PendingAction(*r) for r in rows]

    def pending_action(self, request_id: int) -> PendingAction | None:
        with self._tx(write=False) as db:
            r = db.execute(
                "SELECT id, action, alert_id, by, reason, requested_ms, done_ms, ok, error"
                " FROM pending_actions WHERE id = ?",
                (request_id,),
            ).fetchone()
        if r is None:
            return None
        ok = None if r[7] is None else bool(r[7])
        return PendingAction(r[0], r[1], r[2], r[3], r[4], r[5], r[6], ok, r[8])

    def finish(self, request_id: int, ok: bool, error: str = "") -> None:
        with self._tx(write=True) as db:
            db.execute(
                "UPDATE pending_actions SET done_ms = ?, ok = ?, error = ? WHERE id = ?",
                (self._now_ms(), int(ok), error[:500], request_id),
            )

    def apply_offline(
        self, action: PendingKind, alert_id: str, by: str, reason: str = "resolved by hand"
    ) -> PublicAlert:
        """Ack/resolve with no collector running: change the saved alert book directly.

        Read, change and write back in one write transaction. Nobody is notified and nothing
        is published (no collector is connected); the event is in the alert history.
        """
        now = self._now_ms()
        with self._tx(write=True) as db:
            row = db.execute("SELECT body FROM engine_state WHERE name = ?", (BOOK,)).fetchone()
            if row is None:
                raise ShouhuError(f"no open alert {alert_id!r}", hint="no alert state saved yet")
            book = AlertBook.from_state(json.loads(row[0]))
            if action == "ack":
                effects = book.ack(alert_id, by, now)
            else:
                effects = book.resolve(alert_id, by, now, reason or "resolved by hand")
            publishes = [e for e in effects if isinstance(e, Publish)]
            for p in publishes:
                _store_event(db, p.payload)
            _put_state(db, BOOK, json.dumps(book.to_state(), sort_keys=True), now)
        return publishes[-1].payload


_ALERT_COLUMNS: Final = (
    "id, kind, key, severity, state, title, subjects, data, acked_by, raised_ms, updated_ms"
)


def _alert_row(r: Sequence[Any]) -> AlertRow:
    return AlertRow(
        id=r[0],
        kind=r[1],
        key=r[2],
        severity=r[3],
        state=r[4],
        title=r[5],
        subjects=tuple(json.loads(r[6])),
        data=json.loads(r[7]),
        acked_by=r[8],
        raised_ms=int(r[9]),
        updated_ms=int(r[10]),
    )


def _delivery(r: Sequence[Any]) -> Delivery:
    return Delivery(r[0], r[1], r[2], r[3], r[4], int(r[5]), bool(r[6]), r[7], int(r[8]), r[9])


def _put_state(db: StoreTx, name: str, body: str, now_ms: int) -> None:
    db.execute(
        "INSERT INTO engine_state (name, body, saved_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET body = excluded.body, saved_ms = excluded.saved_ms",
        (name, body, now_ms),
    )


def _store_event(db: StoreTx, p: PublicAlert) -> None:
    """One transition: history row plus the alert's latest public state."""
    db.execute(
        "INSERT INTO alert_events (alert_id, kind, key, state, at_ms, actor, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (p["id"], p["kind"], p["key"], p["state"], p["at"], p["actor"], p["detail"]),
    )
    acked_by = p["actor"] if p["state"] == "acknowledged" else None
    db.execute(
        "INSERT INTO alerts (id, kind, key, severity, state, title, subjects, data, acked_by,"
        " raised_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, state = excluded.state,"
        " title = excluded.title, subjects = excluded.subjects, data = excluded.data,"
        " acked_by = COALESCE(excluded.acked_by, alerts.acked_by),"
        " updated_ms = excluded.updated_ms",
        (
            p["id"],
            p["kind"],
            p["key"],
            p["severity"],
            p["state"],
            p["title"],
            json.dumps(p["subjects"]),
            json.dumps(p["data"], sort_keys=True, default=str),
            acked_by,
            p["at"],
            p["at"],
        ),
    )
