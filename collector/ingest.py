"""The collector's ingest: MQTT up batches → validate → dedup → writer, acknowledged last.

Delivery guarantee (docs/collector.md): a QoS 1 message is acknowledged (PUBACK) only after
its records are durably written and remembered by the dedup filter, or parked as dead letters.
paho-mqtt runs with ``manual_ack=True`` on a persistent session (fixed client id), so anything
un-acknowledged when the collector or its database dies is redelivered by the broker.

Threads: paho's network thread only enqueues (``on_message``); one worker thread takes the
messages in arrival order and acknowledges them in that same order, which is what MQTT asks of
a QoS 1 receiver (PUBACKs in the order the PUBLISHes arrived). While the database is
unavailable the worker retries the same message with capped exponential back-off; the messages
behind it wait, un-acknowledged, and the broker stops sending once its in-flight window is full.
That is the back-pressure: nothing is dropped and nothing is buffered without bound.

Rules (when the configuration has a ``rules``/``registry``/``alerts``/``notify`` section): the
stored records of each message go to ``RulesService.handle`` after the durable write and before
the acknowledgement; gateway status goes to ``on_status``. A failing rules step is logged (once
per error type), counted (``rules_errors``) and the message is still acknowledged: its records
are stored, and redelivering them would only make the dedup filter drop them. Alerts and
gateway commands are published through this collector's own MQTT client (QoS 1).

Shared rules (``rules_state.url``, collector/rules_shared.py): instead of running the rules,
the rule inputs of each message (its stored records, a gateway's status) are appended to the
shared PostgreSQL inbox before the acknowledgement; while that database is unavailable the
message is held and retried like a database outage. Whichever collector holds the leader lock
runs the rules on the inbox.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector import deadletter as dl
from collector.config import CollectorConfig, RulesConfig
from collector.dedup import DedupFilter, open_state_db
from shouhu import wire
from shouhu.exceptions import BrokerError, EnvelopeError, StorageError, StorageUnavailable
from shouhu.model import Record

if TYPE_CHECKING:
    from collector.alerts.notifier import Notifier
    from collector.alerts.store import AlertStore, Delivery
    from collector.registry.store import RegistryStore
    from collector.rules.actions import Rejected
    from collector.rules_service import RulesService
    from collector.rules_shared import InboxEntry, SharedRules
    from collector.writers.base import Writer

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
IDLE_POLL_S = 0.2
RULE_REJECTED = "rule-rejected"  # dead-letter reason: a rule could not read a stored record
PUBLISH_WAIT_S = 2.0  # on stop: how long to wait for our last alert publishes to leave
NOTIFY_DRAIN_S = 3.0  # on stop: how long queued notifications may still take


@dataclass(frozen=True, slots=True)
class Inbound:
    """One MQTT message as paho handed it over, plus the connection it arrived on."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    connection: int  # acks go only to the connection that delivered the message


@dataclass(frozen=True, slots=True)
class CollectorStats:
    """Counters since start (``in_flight`` and ``holding`` are current values)."""

    connected: bool
    received: int  # MQTT messages taken from the broker
    records: int  # good records in received batches (duplicates included)
    stored: int  # records newly written
    duplicates: int  # records dropped by the dedup filter
    dead_letters: int  # messages or records parked
    db_unavailable: bool  # the writer (or state db) is down right now
    outages: int  # how many times it went down
    in_flight: int  # received but not yet acknowledged
    holding: int  # messages held un-acked because the database is down (0 when up)
    acked: int
    rules: bool = False  # the rule engine runs (the fields below mean something)
    open_alerts: int = 0  # alerts not yet resolved
    notified: int = 0  # notifications the channels took
    notify_failed: int = 0  # delivery attempts that failed (each retry counts)
    rules_errors: int = 0  # rules steps that raised (the records were stored and acked)
    rules_leader: bool | None = None  # shared rules: this collector leads (None: not shared)

    def line(self) -> str:
        """One status line for humans."""
        db = f"DB DOWN holding {self.holding}" if self.db_unavailable else "db ok"
        text = (
            f"{'connected' if self.connected else 'DISCONNECTED'} | {db} | "
            f"received {self.received} stored {self.stored} dup {self.duplicates} "
            f"dead {self.dead_letters} in-flight {self.in_flight}"
        )
        if self.rules:
            text += (
                f" | alerts open {self.open_alerts} notified {self.notified}"
                f" failed {self.notify_failed}"
            )
            if self.rules_errors:
                text += f" rules-errors {self.rules_errors}"
            if self.rules_leader is not None:
                text += " | rules leader" if self.rules_leader else " | rules follower"
        return text


class GatewayStatusBook:
    """Last retained status per gateway, in the state db."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS gateway_status (
        gw TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        agent TEXT,
        profiles TEXT NOT NULL,
        ts INTEGER NOT NULL,
        received_ms INTEGER NOT NULL
    );
    """

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = open_state_db(path)
        try:
            self._db.executescript(self.SCHEMA)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot create gateway_status in {path}: {exc}") from exc

    def record(self, gw: str, status: dict[str, Any]) -> None:
        ts = status.get("ts")
        row = (
            gw,
            str(status.get("state")),
            None if status.get("agent") is None else str(status.get("agent")),
            json.dumps(status.get("profiles") or {}),
            ts if isinstance(ts, int) and not isinstance(ts, bool) else 0,
            int(time.time() * 1000),
        )
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO gateway_status"
                    " (gw, state, agent, profiles, ts, received_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.Error as exc:
                raise StorageUnavailable(f"gateway status: {exc}") from exc

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT gw, state, agent, profiles, ts, received_ms FROM gateway_status"
            ).fetchall()
        return {
            gw: {"state": s, "agent": a, "profiles": json.loads(p), "ts": ts, "received_ms": r}
            for gw, s, a, p, ts, r in rows
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


class DeliveryCounter:
    """The alert store's delivery log, counting what the channels took (for the status line)."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def log_delivery(self, d: Delivery) -> None:
        with self._lock:
            if d.ok:
                self.sent += 1
            else:
                self.failed += 1
        self.store.log_delivery(d)


def _make_writer(config: CollectorConfig) -> Writer:
    from collector.writers import WRITERS, make_writer  # lazy: influx clients are heavy

    kind = config.writer.kind  # config spells it influx-v2; the table may say influx_v2
    if kind not in WRITERS and kind.replace("-", "_") in WRITERS:
        kind = kind.replace("-", "_")
    return make_writer(kind, config.writer.options)


class Collector:
    """Subscribe, store, acknowledge. ``start()`` returns at once; ``stop()`` drains and leaves.

    ``writer`` may be given (tests, the demo); otherwise it is built from ``config.writer``.
    """

    def __init__(
        self,
        config: CollectorConfig,
        *,
        writer: Writer | None = None,
        on_stored: Callable[[str, Sequence[Record]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.writer: Writer = writer if writer is not None else _make_writer(config)
        self.dedup = DedupFilter(config.state_path)
        self.dead_letters = dl.DeadLetters(config.state_path)
        self.status_book = GatewayStatusBook(config.state_path)
        self._on_stored = on_stored  # extra hook: called after a durable write (and the rules)
        self._rules_logged: set[str] = set()  # error types of failed rules steps already logged
        self._publishes: collections.deque[mqtt.MQTTMessageInfo] = collections.deque(maxlen=256)
        self.rules: RulesService | None = None  # in-process rules (no rules_state)
        self.shared_rules: SharedRules | None = None  # rules_state: inbox + leader election
        self.notifier: Notifier | None = None
        self.alert_store: AlertStore | None = None
        self.registry: RegistryStore | None = None
        self._deliveries: DeliveryCounter | None = None
        if config.rules is not None:
            self._build_rules(config.rules, clock)
        if self.registry is not None:  # readings of registered gateways get their place
            from collector.writers.base import RegistryGatewayLookup, attach_gateway_lookup

            attach_gateway_lookup(self.writer, RegistryGatewayLookup(self.registry))
        self._queue: queue.Queue[Inbound] = queue.Queue()
        self._stop = threading.Event()  # finish what is queued, then leave
        self._abort = threading.Event()  # leave now; un-acked messages stay with the broker
        self._connected = threading.Event()
        self._connection = 0
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            (
                "received", "records", "stored", "duplicates", "dead_letters", "outages", "acked",
                "rules_errors",
            ),
            0,
        )  # fmt: skip
        self._in_flight = 0
        self._down_since: float | None = None
        self._worker: threading.Thread | None = None
        self._client = self._make_client()

    # --- rules ----------------------------------------------------------------------------

    def _build_rules(self, rc: RulesConfig, clock: Callable[[], float]) -> None:
        """Registry, alert store (in the state db), notifier and the rules service."""
        from collector.alerts.notifier import Notifier
        from collector.alerts.store import AlertStore
        from collector.registry.store import RegistryStore
        from shouhu.profiles import load_profiles

        engine = rc.engine.with_profiles(load_profiles().values())
        self.registry = RegistryStore(rc.registry)
        if rc.shared_state is not None:
            from collector.rules_shared import SharedRules

            self.shared_rules = SharedRules(
                rc.shared_state, self._make_rules_service, holder=self.config.broker.client_id,
                clock=clock,
            )  # fmt: skip
            self.alert_store = self.shared_rules.store
        else:
            self.alert_store = AlertStore(self.config.state_path, clock=clock)
        self._deliveries = DeliveryCounter(self.alert_store)
        self.notifier = Notifier(
            self._deliveries,
            attempts=rc.notify_attempts,
            backoff_s=rc.notify_backoff_s,
            clock=clock,
        )
        self._rules_engine_config = engine
        self._rules_clock = clock
        if self.shared_rules is None:
            self.rules = self._make_rules_service(self.alert_store)

    def _make_rules_service(self, store: AlertStore) -> RulesService:
        """The rules service on ``store``, starting from the state saved there."""
        from collector.rules_service import RulesService

        rc, notifier = self.config.rules, self.notifier
        assert rc is not None and notifier is not None and self.registry is not None
        notifier.on_delivered = None  # the new service measures latency from now on
        return RulesService(
            self._rules_engine_config,
            self.registry,
            store,
            notifier,
            self._publish,
            self.writer,
            self._rules_clock,
            lifecycle=rc.lifecycle,
            dead_letter=self._dead_letter_rejected,
        )

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """The rules service's way out: our own client. paho queues QoS 1 while disconnected."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except (ValueError, OSError) as exc:
            raise BrokerError(f"cannot publish on {topic}: {exc}") from exc
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise BrokerError(f"cannot publish on {topic}: {mqtt.error_string(info.rc)}")
        self._publishes.append(info)

    def _dead_letter_rejected(self, r: Rejected) -> None:
        """A stored record one rule could not read: parked with the rule's reason."""
        payload = json.dumps({"gw": r.gw, "seq": r.seq, "rule": r.rule, "reason": r.reason})
        topic = f"rules/{r.rule}"
        self._park(topic, r.gw, RULE_REJECTED, f"record {r.seq}: {r.reason}", payload.encode())

    def _rules_step(self, what: str, step: Callable[[], None]) -> None:
        """Run one rules step; a failure is logged once per error type and counted, never raised.

        The records are already stored: the message is acknowledged whatever happens here.
        """
        try:
            step()
        except Exception as exc:
            self._count(rules_errors=1)
            name = type(exc).__name__
            if name not in self._rules_logged:
                self._rules_logged.add(name)
                log.exception("rules step (%s) failed; further %s only counted", what, name)

    # --- MQTT ---------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        b = self.config.broker
        v5 = b.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=b.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # MQTT 3.1.1: a persistent session keeps our subscriptions and un-acked messages.
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if b.username:
            client.username_pw_set(b.username, b.password)
        if b.tls:
            client.tls_set(ca_certs=b.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            log.error("broker %s refused the connection: %s", self.config.broker.url, rc)
            return
        with self._lock:
            self._connection += 1
        b = self.config.broker
        up = wire.shared_filter(b.shared_group) if b.shared_group else wire.UP_FILTER
        client.subscribe([(up, 1), (wire.STATUS_FILTER, 1)])
        self._connected.set()
        log.info(
            "connected to %s (session present: %s), subscribed to %s",
            b.url,
            getattr(flags, "session_present", "?"),
            up,
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.config.broker.url, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # paho's network thread: enqueue only, never block on the database here.
        with self._lock:
            self._counts["received"] += 1
            self._in_flight += 1
            conn = self._connection
        self._queue.put(Inbound(msg.topic, bytes(msg.payload), msg.qos, msg.mid, conn))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho reconnects on its own) and start the worker."""
        b = self.config.broker
        props = None
        kwargs: dict[str, Any] = {}
        if b.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = b.session_expiry_s
            kwargs["clean_start"] = False
        try:
            self._client.connect_async(b.host, b.port, b.keepalive_s, properties=props, **kwargs)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {b.url}: {exc}") from exc
        self._client.loop_start()
        if self.rules is not None:
            self.rules.start()  # the tick thread: timers, escalations, ack/resolve requests
        if self.shared_rules is not None:
            self.shared_rules.start()  # leader election; the leader runs and ticks the rules
        self._worker = threading.Thread(target=self._work, name="collector-ingest", daemon=True)
        self._worker.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every received message is acknowledged (or parked); True if it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._in_flight == 0:
                    return True
            time.sleep(0.02)
        return False

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Process what is queued (bounded), then disconnect. Un-acked messages stay queued
        at the broker for the next start."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(drain_timeout)
            if self._worker.is_alive():
                self._abort.set()
                self._worker.join(max(self.config.retry_max_s, 1.0) + 1.0)
            self._worker = None
        self._stop_rules()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        closeables: list[Any] = [self.writer, self.dedup, self.dead_letters, self.status_book]
        if self.shared_rules is not None:
            closeables.append(self.shared_rules)  # its inbox and the shared alert store
        elif self.alert_store is not None:
            closeables.append(self.alert_store)
        if self.registry is not None:
            closeables.append(self.registry)
        for closeable in closeables:
            try:
                closeable.close()
            except Exception as exc:  # closing anyway; one failure must not hide the rest
                log.warning("closing %s: %s", type(closeable).__name__, exc)

    def _stop_rules(self) -> None:
        """Stop the ticker, let queued notifications go out (bounded), flush our publishes."""
        if self.rules is not None:
            self.rules.stop()
        if self.shared_rules is not None:
            self.shared_rules.stop()  # releases the leader lock: another collector takes over
        if self.notifier is not None:
            if not self.notifier.wait_idle(NOTIFY_DRAIN_S):
                log.warning("stopping with notifications still queued or retrying")
            self.notifier.stop()
        deadline = time.monotonic() + PUBLISH_WAIT_S
        while self._publishes and self._connected.is_set():
            info = self._publishes.popleft()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                info.wait_for_publish(left)
            except (RuntimeError, ValueError):  # never queued (paho says why): nothing to wait
                continue

    # --- stats --------------------------------------------------------------------------

    def stats(self) -> CollectorStats:
        with self._lock:
            c = dict(self._counts)
            in_flight = self._in_flight
            down = self._down_since is not None
        shared = self.shared_rules
        return CollectorStats(
            connected=self._connected.is_set(),
            received=c["received"],
            records=c["records"],
            stored=c["stored"],
            duplicates=c["duplicates"],
            dead_letters=c["dead_letters"],
            db_unavailable=down,
            outages=c["outages"],
            in_flight=in_flight,
            holding=in_flight if down else 0,
            acked=c["acked"],
            rules=self.rules is not None or shared is not None,
            open_alerts=self._open_alerts(),
            notified=self._deliveries.sent if self._deliveries is not None else 0,
            notify_failed=self._deliveries.failed if self._deliveries is not None else 0,
            rules_errors=c["rules_errors"],
            rules_leader=None if shared is None else shared.leading,
        )

    def _open_alerts(self) -> int:
        if self.rules is not None:
            return self.rules.open_alert_count()
        if self.shared_rules is not None:
            return self.shared_rules.open_alert_count()
        return 0

    def health(self) -> dict[str, Any]:
        """Stats plus how long the database has been down and the dead letters per reason."""
        s = self.stats()
        with self._lock:
            since = self._down_since
        out: dict[str, Any] = {k: getattr(s, k) for k in s.__dataclass_fields__}
        out["db_down_for_s"] = round(time.monotonic() - since, 1) if since is not None else 0.0
        out["dead_letter_reasons"] = self.dead_letters.session_counts()
        return out

    def gateway_status(self) -> dict[str, dict[str, Any]]:
        return self.status_book.all()

    # --- the worker ---------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._counts[k] += v

    def _work(self) -> None:
        while not self._abort.is_set():
            try:
                item = self._queue.get(timeout=IDLE_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if self._handle_until_done(item):
                self._ack(item)
            else:
                return  # aborted while the database was down: leave it un-acked

    def _handle_until_done(self, item: Inbound) -> bool:
        """Process one message, retrying while storage is unavailable. False if aborted."""
        delay = BACKOFF_START_S
        # shared rules: inputs stored (and deduped) but not yet in the inbox survive retries
        todo: list[InboxEntry] = []
        handled = False
        while True:
            try:
                if not handled:
                    self._handle(item, todo)
                    handled = True
                if todo and self.shared_rules is not None:
                    self.shared_rules.inbox.append(todo)
                todo.clear()
            except StorageUnavailable as exc:
                self._storage_down(exc)
                if self._abort.wait(delay):
                    return False
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            except Exception:  # a bug must not kill ingest; the message is parked instead
                log.exception("unexpected error handling a message on %s", item.topic)
                try:
                    self._park(
                        item.topic, None, "internal-error", "see the collector log", item.payload
                    )
                except StorageUnavailable as exc:
                    self._storage_down(exc)
                    if self._abort.wait(delay):
                        return False
                    continue
            self._storage_up()
            return True

    def _storage_down(self, exc: StorageUnavailable) -> None:
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
                self._counts["outages"] += 1
            holding = self._in_flight
        if first:
            log.error("database unavailable, holding %d messages: %s", holding, exc.one_line())

    def _storage_up(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("database back after %.1f s", time.monotonic() - since)

    def _ack(self, item: Inbound) -> None:
        with self._lock:
            self._in_flight -= 1
            current = item.connection == self._connection
            self._counts["acked"] += 1
        if item.qos > 0 and current:
            # A message from an older connection will be redelivered (and deduped) instead.
            self._client.ack(item.mid, item.qos)

    def _park(self, topic: str, gw: str | None, reason: str, detail: str, payload: bytes) -> None:
        self.dead_letters.add(topic=topic, gw=gw, reason=reason, detail=detail, payload=payload)
        self._count(dead_letters=1)

    def _handle(self, item: Inbound, todo: list[InboxEntry] | None = None) -> None:
        """Store or park one message. Idempotent: it may run again after StorageUnavailable.

        With shared rules the rule inputs go to ``todo`` (for the inbox) as soon as the dedup
        filter has them, so a retry after a later failure still delivers them."""
        if mqtt.topic_matches_sub(wire.STATUS_FILTER, item.topic):
            self._handle_status(item, todo)
            return
        try:
            gw, _stream = wire.parse_up_topic(item.topic)
        except EnvelopeError as exc:
            self._park(item.topic, None, dl.BAD_TOPIC, exc.one_line(), item.payload)
            return
        try:
            batch = wire.decode_batch(item.payload, topic_gw=gw)
        except EnvelopeError as exc:
            self._park(item.topic, gw, dl.BAD_ENVELOPE, exc.one_line(), item.payload)
            return
        new, dups = self.dedup.filter_new(gw, batch.records)
        refused = self._write(gw, new)
        stored = [r for r in new if r.seq not in refused]
        self.dedup.commit(gw, new)  # refused ones too: a redelivery must not park them twice
        if todo is not None and self.shared_rules is not None:
            from collector.rules_shared import InboxEntry

            todo.extend(InboxEntry(gw, record=r) for r in stored)
        for record in new:
            if record.seq in refused:
                payload = json.dumps(record.to_dict(), default=str).encode()
                self._park(item.topic, gw, dl.STORAGE_REJECTED, refused[record.seq], payload)
        for rej in batch.rejected:
            payload = json.dumps(rej.raw, default=str).encode()
            self._park(item.topic, gw, dl.BAD_RECORD, f"record {rej.index}: {rej.reason}", payload)
        self._count(records=len(batch.records), stored=len(stored), duplicates=dups)
        if stored and self.rules is not None:
            rules = self.rules
            self._rules_step("records", lambda: rules.handle(gw, stored))
        if stored and self._on_stored is not None:
            self._on_stored(gw, stored)

    def _write(self, gw: str, records: list[Record]) -> dict[int, str]:
        """Write; on a permanent refusal, isolate the bad records one by one.

        Returns the refused records' ``seq`` with the store's reason."""
        if not records:
            return {}
        try:
            self.writer.write(gw, records)
            return {}
        except StorageUnavailable:
            raise
        except StorageError as batch_exc:
            log.debug("batch refused (%s); retrying record by record", batch_exc)
        refused: dict[int, str] = {}
        for r in records:
            try:
                self.writer.write(gw, [r])
            except StorageUnavailable:
                raise
            except StorageError as exc:
                refused[r.seq] = exc.one_line()
        return refused

    def _handle_status(self, item: Inbound, todo: list[InboxEntry] | None = None) -> None:
        try:
            gw = wire.parse_status_topic(item.topic)
            status = wire.decode_status(item.payload)
        except EnvelopeError as exc:
            self._park(item.topic, None, dl.BAD_STATUS, exc.one_line(), item.payload)
            return
        self.status_book.record(gw, status)
        if todo is not None and self.shared_rules is not None:
            from collector.rules_shared import InboxEntry

            todo.append(InboxEntry(gw, status=str(status.get("state"))))
        if self.rules is not None:
            rules, state = self.rules, str(status.get("state"))
            self._rules_step("status", lambda: rules.on_status(gw, state))
