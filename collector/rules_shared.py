"""Several collectors, one rule engine: a shared inbox, a leader lock and fenced state in PostgreSQL.

With ``rules_state.url`` (docs/collector.md, "Several collectors") no collector runs the rules
on what it received. Instead:

* every collector appends the rule inputs of a stored batch (its records, or a gateway's new
  status) to ``rule_inbox`` in one transaction, before it acknowledges the MQTT message
  (``RuleInbox.append``); a record already in the inbox (same ``gw``, ``seq``, ``ts``: a
  redelivery to another collector) is not added twice;
* exactly one collector leads: it holds the session advisory lock ``RULES_LEADER_LOCK_KEY`` on a
  dedicated connection (``SharedRules``). On taking the lock it bumps ``rules_leader.epoch``,
  loads the engine and alert book from the shared alert store (``AlertStore`` on the same
  PostgreSQL: ``engine_state`` rows ``engine``/``book``/``heartbeat``, alert history,
  deliveries, pending CLI actions), then consumes the inbox in id order, a few rows a step, and
  ticks every second;
* each step saves the state, its alert events and marks its inbox rows consumed in ONE
  transaction, which first checks (``SELECT ... FOR UPDATE``) that the epoch is still its own.
  A leader whose lock session died (network, crash) therefore cannot write after a successor
  took over: the successor's epoch bump waits for, or invalidates, the old leader's step.
* the others retry the lock every ``retry_s``; when the leader's session ends the lock is free,
  one of them takes over and carries on from the saved state and the unconsumed inbox.

Side effects (notifications, publishes) run after the commit, as in ``RulesService``: a leader
dying in between loses them rather than sending them twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from collector.alerts.store import AlertStore, StoreTx
from shouhu.exceptions import ShouhuError, StorageError, StorageUnavailable
from shouhu.model import Record

if TYPE_CHECKING:
    from collector.rules_service import RulesService

log = logging.getLogger(__name__)

RULES_LEADER_LOCK_KEY: Final = 0x5348_524C  # "SHRL": held by the rules leader's session
INBOX_SCHEMA_LOCK_KEY: Final = 0x5348_5249  # "SHRI": one collector at a time creates tables
BATCH_ROWS: Final = 50  # inbox rows read per round; one step per record group or status
IDLE_POLL_S: Final = 0.1  # the leader looks at an empty inbox this often
RETENTION_MS: Final = 24 * 3600 * 1000  # consumed rows kept this long (the redelivery window)
PURGE_EVERY_MS: Final = 60_000

INBOX_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS rule_inbox (
        id BIGSERIAL PRIMARY KEY,
        gw TEXT NOT NULL,
        kind TEXT NOT NULL,
        seq BIGINT,
        ts BIGINT,
        body TEXT NOT NULL,
        added_ms BIGINT NOT NULL,
        consumed_ms BIGINT,
        error TEXT NOT NULL DEFAULT ''
    )""",
    # a record redelivered to another collector is one row (NULL seq: statuses never clash)
    "CREATE UNIQUE INDEX IF NOT EXISTS rule_inbox_record ON rule_inbox (gw, seq, ts)",
    "CREATE INDEX IF NOT EXISTS rule_inbox_todo ON rule_inbox (id) WHERE consumed_ms IS NULL",
    """CREATE TABLE IF NOT EXISTS rules_leader (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch BIGINT NOT NULL,
        holder TEXT NOT NULL DEFAULT '',
        since_ms BIGINT NOT NULL DEFAULT 0
    )""",
    "INSERT INTO rules_leader (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
)

RECORD: Final = "record"
STATUS: Final = "status"


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One rule input: a stored record of ``gw``, or its new status (exactly one is set)."""

    gw: str
    record: Record | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    gw: str
    kind: str
    body: str


def _connect_autocommit(url: str) -> Any:
    """A psycopg connection in autocommit mode (the advisory lock lives on its session)."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"cannot reach the rules database: {exc}") from exc


def _translated(what: str) -> contextlib.AbstractContextManager[None]:
    """psycopg errors -> our tree: OperationalError is 'for now', the rest a refusal."""
    import psycopg

    @contextlib.contextmanager
    def cm() -> Any:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"{what}: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"{what}: {exc}") from exc

    return cm()


def create_tables(conn: Any) -> None:
    with _translated("cannot create the rule inbox"), conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INBOX_SCHEMA_LOCK_KEY,))
        for statement in INBOX_SCHEMA:
            conn.execute(statement)


class RuleInbox:
    """Where every collector puts the rule inputs it stored (thread-safe, one connection)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: Any = _connect_autocommit(url)
        create_tables(self._conn)

    def append(self, entries: Sequence[InboxEntry]) -> None:
        """All entries in one transaction, or StorageUnavailable/StorageError and none."""
        if not entries:
            return
        now = int(self._clock() * 1000)
        rows: list[tuple[Any, ...]] = []
        for e in entries:
            if e.record is not None:
                body = json.dumps(e.record.to_dict(), default=str, sort_keys=True)
                rows.append((e.gw, RECORD, e.record.seq, e.record.ts, body, now))
            else:
                rows.append((e.gw, STATUS, None, None, str(e.status), now))
        with self._lock, _translated("cannot append to the rule inbox"):
            if self._conn.broken:  # the server dropped us: a new connection for this try
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = _connect_autocommit(self.url)
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO rule_inbox (gw, kind, seq, ts, body, added_ms)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    rows,
                )

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()


def _mark_consumed(ids: Sequence[int], now_ms: int, error: str = "") -> Callable[[StoreTx], None]:
    """The inbox part of a leader's step (runs inside the step's transaction)."""

    def mark(tx: StoreTx) -> None:
        cur = tx.execute(
            "UPDATE rule_inbox SET consumed_ms = ?, error = ?"
            " WHERE id = ANY(?) AND consumed_ms IS NULL",
            (now_ms, error[:500], list(ids)),
        )
        if cur.rowcount != len(ids):
            raise StorageError("inbox rows consumed by someone else: not the rules leader")

    return mark


class SharedRules:
    """This collector's part in the shared rules: leader election and, while leading, the rules.

    ``make_service(store)`` builds a ``RulesService`` on the shared alert store; it is called
    each time this collector becomes leader, so the service starts from the saved state.
    """

    def __init__(
        self,
        url: str,
        make_service: Callable[[AlertStore], RulesService],
        *,
        holder: str,
        clock: Callable[[], float] = time.time,
        retry_s: float = 1.0,
        tick_s: float = 1.0,
    ) -> None:
        self.url = url
        self.holder = holder
        self._make_service = make_service
        self._clock = clock
        self.retry_s = retry_s
        self.tick_s = tick_s
        self.inbox = RuleInbox(url, clock=clock)
        self.store = AlertStore(url, clock=clock, guard=self._fence)
        self._lock_conn: Any = None
        self._epoch: int | None = None
        self._service: RulesService | None = None
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self.counts: dict[str, int] = {"steps": 0, "poisoned": 0, "leaderships": 0}

    # --- what the collector asks ------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self._service is not None

    @property
    def lock_pid(self) -> int | None:
        """The server process of the lock session (for operators and the takeover tests)."""
        conn = self._lock_conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def open_alert_count(self) -> int:
        service = self._service
        if service is not None:
            return service.open_alert_count()
        try:
            return len(self.store.list_alerts(open_only=True, limit=10_000))
        except ShouhuError:
            return 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rules-leader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Leave: the lock is released at once, so another collector takes over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._step_down("stopping")

    def close(self) -> None:
        """After ``stop`` and after the notifier drained (it logs deliveries in the store)."""
        self.inbox.close()
        self.store.close()

    # --- leadership -------------------------------------------------------------------------

    def _fence(self, tx: StoreTx) -> None:
        """AlertStore guard: refuse a step unless the epoch is still the one we took."""
        row = tx.execute("SELECT epoch FROM rules_leader WHERE id = 1 FOR UPDATE").fetchone()
        if self._epoch is None or row is None or int(row[0]) != self._epoch:
            raise StorageError("not the rules leader any more (another collector took over)")

    def _try_lead(self) -> bool:
        """Take the lock if it is free; then bump the epoch and load the saved state."""
        if self._lock_conn is None or self._lock_conn.closed or self._lock_conn.broken:
            self._close_lock_conn()
            self._lock_conn = _connect_autocommit(self.url)
        with _translated("cannot take the rules leader lock"):
            row = self._lock_conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (RULES_LEADER_LOCK_KEY,)
            ).fetchone()
            if not row or not row[0]:
                return False
            with self._lock_conn.transaction():
                epoch = self._lock_conn.execute(
                    "UPDATE rules_leader SET epoch = epoch + 1, holder = %s, since_ms = %s"
                    " WHERE id = 1 RETURNING epoch",
                    (self.holder, int(self._clock() * 1000)),
                ).fetchone()
        self._epoch = int(epoch[0])
        try:
            service = self._make_service(self.store)
        except BaseException:
            self._step_down("could not build the rules service")
            raise
        with self._state_lock:
            self._service = service
        self.counts["leaderships"] += 1
        log.info("%s is now the rules leader (epoch %d)", self.holder, self._epoch)
        return True

    def _step_down(self, why: str) -> None:
        with self._state_lock:
            was = self._service is not None
            self._service = None
        self._epoch = None
        self._close_lock_conn()
        if was:
            log.warning("%s is no longer the rules leader: %s", self.holder, why)

    def _close_lock_conn(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing the session releases the lock
                conn.close()

    # --- the leader's loop ------------------------------------------------------------------

    def _run(self) -> None:
        last_tick = 0.0
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                if self._service is None and not self._try_lead():
                    self._stop.wait(self.retry_s)
                    continue
                did = self._consume()
                now = time.monotonic()
                if now - last_tick >= self.tick_s:
                    last_tick = now
                    assert self._service is not None
                    self._service.tick()
                    if now - last_purge >= PURGE_EVERY_MS / 1000:
                        last_purge = now
                        self._purge()
                if not did:
                    self._stop.wait(IDLE_POLL_S)
            except ShouhuError as exc:
                self._log_once(exc, "rules leader step failed")
                self._step_down(exc.one_line())
                self._stop.wait(self.retry_s)
            except Exception as exc:  # a bug must not end the rules for every collector
                self._log_once(exc, "rules leader step failed")
                self._step_down(type(exc).__name__)
                self._stop.wait(self.retry_s)

    def _log_once(self, exc: BaseException, what: str) -> None:
        name = type(exc).__name__
        if name in self._logged:
            log.debug("%s: %s", what, exc)
            return
        self._logged.add(name)
        if isinstance(exc, ShouhuError):
            log.error("%s: %s (further %s only at debug level)", what, exc.one_line(), name)
        else:
            log.exception("%s (further %s only at debug level)", what, name)

    def _todo(self) -> list[InboxRow]:
        """Unconsumed rows in id order (read on the lock session: dead session, no rows)."""
        with _translated("cannot read the rule inbox"):
            rows = self._lock_conn.execute(
                "SELECT id, gw, kind, body FROM rule_inbox WHERE consumed_ms IS NULL"
                " ORDER BY id LIMIT %s",
                (BATCH_ROWS,),
            ).fetchall()
        return [InboxRow(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def _consume(self) -> bool:
        """One round: consecutive records of one gateway are one step, a status is one step."""
        rows = self._todo()
        i = 0
        while i < len(rows):
            j = i + 1
            if rows[i].kind == RECORD:
                while j < len(rows) and rows[j].kind == RECORD and rows[j].gw == rows[i].gw:
                    j += 1
            self._apply(rows[i:j])
            i = j
        return bool(rows)

    def _apply(self, group: Sequence[InboxRow]) -> None:
        service = self._service
        assert service is not None
        ids = [r.id for r in group]
        now = int(self._clock() * 1000)
        gw = group[0].gw
        try:
            records = [_record(r) for r in group if r.kind == RECORD]
            unknown = [r.kind for r in group if r.kind not in (RECORD, STATUS)]
            if unknown:
                raise ValueError(f"unknown inbox entry kind {unknown[0]!r}")
        except (ValueError, KeyError, TypeError) as exc:
            self._poisoned(ids, now, f"unreadable inbox row: {exc}")
            return
        try:
            if group[0].kind == STATUS:
                service.on_status(gw, group[0].body, within=_mark_consumed(ids, now))
            else:
                service.handle(gw, records, within=_mark_consumed(ids, now))
        except ShouhuError:
            raise  # the database or the fence: step down, the rows stay for the next leader
        except Exception as exc:
            # a rule bug on these inputs: start again from the saved state and skip them, or
            # every leader after us would fail on the same rows forever
            self._log_once(exc, f"rules failed on inbox rows {ids[0]}..{ids[-1]}; skipped")
            fresh = self._make_service(self.store)
            with self._state_lock:
                self._service = fresh
            self._poisoned(ids, now, f"rules failed: {type(exc).__name__}: {exc}")
            return
        self.counts["steps"] += 1

    def _poisoned(self, ids: Sequence[int], now: int, why: str) -> None:
        """Mark rows consumed with the reason (fenced like any step); logged once per kind."""
        self.counts["poisoned"] += len(ids)
        if "poison" not in self._logged:
            self._logged.add("poison")
            log.error("skipping inbox rows %s: %s (further ones only counted)", ids, why)
        self.store.record_step([], within=_mark_consumed(ids, now, why))

    def _purge(self) -> None:
        cutoff = int(self._clock() * 1000) - RETENTION_MS
        with _translated("cannot purge the rule inbox"):
            self._lock_conn.execute(
                "DELETE FROM rule_inbox WHERE consumed_ms IS NOT NULL AND consumed_ms < %s",
                (cutoff,),
            )


def _record(row: InboxRow) -> Record:
    d = json.loads(row.body)
    if not isinstance(d, dict):
        raise ValueError("record body is not an object")
    return Record.from_dict(d)  # type: ignore[arg-type]
