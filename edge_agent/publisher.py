"""The publisher: outbox → MQTT, QoS 1; a record leaves the outbox only on the broker's PUBACK.

One thread owns one paho-mqtt 2.x client (``CallbackAPIVersion.VERSION2``) and drives its
socket itself (paho's "external loop": ``loop_read``/``loop_write``/``loop_misc`` under our
``select``), so the in-flight table, the outbox and the callbacks all run in that one thread;
``wake()`` from any thread interrupts the ``select`` through a socket pair.

Guarantees (docs/agent.md, "Delivery"):

- connect with a fixed client id (``shouhu-gw-<id>``), ``clean_session=False`` (MQTT 3.1.1) or
  ``clean_start=False`` + session expiry (MQTT 5); Last Will: retained ``offline`` on the
  status topic; on every connect a retained ``online`` status;
- ``alarm`` and ``tap`` records are published as soon as they are in the outbox; routine
  streams go in batches bounded by ``max_records``, ``max_bytes`` and ``max_age_ms``;
- each batch's message id maps to its seqs; ``outbox.delete(seqs)`` is called only from
  ``on_publish`` (the PUBACK). A dropped connection forgets the in-flight table: on the next
  connection (a fresh client: paho's own retry queue is not used) everything still in the
  outbox is published again and the collector drops duplicates by ``(gw, seq)``;
- reconnect with jittered exponential backoff (``reconnect_min_s`` 1 s .. ``reconnect_max_s``
  60 s); ``mqtts://`` always uses TLS with certificate and host name checks, never plaintext.

Commands (with ``on_command``): on every connection the publisher subscribes (QoS 1) to its own
``shouhu/v1/gw/{gw}/down/cmd`` and hands each message to ``on_command`` as a
``CommandDelivery``; paho runs with ``manual_ack``, so the broker's copy is acknowledged only
when the caller ``settle()``s it, after the command was carried out (a crash before that means
"delivered again", never "lost"). ``publish_ack()`` queues the answer for
``shouhu/v1/gw/{gw}/ack`` (QoS 1, in memory: answers queued while offline go out on the next
connection, up to ``MAX_PENDING_ACKS``).

Profile bundles (with ``on_profiles``): the publisher also subscribes (QoS 1) to its own
``shouhu/v1/gw/{gw}/down/profiles``; the retained bundle comes on every connection and is handed
to ``on_profiles`` the same way (``settle()`` it, answer with ``publish_ack()``).
``set_profiles()`` changes the profile versions the status reports and republishes the retained
``online`` status (the Last Will of the current connection keeps the old versions until the
next connection).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import BatchingConfig, BrokerConfig
from edge_agent.outbox import Outbox
from shouhu import __version__, wire
from shouhu.exceptions import BrokerError, ConfigError, EnvelopeError, StorageError
from shouhu.model import STREAMS, URGENT_STREAMS, Record

log = logging.getLogger(__name__)

MAX_INFLIGHT_BATCHES: Final = 32  # batches awaiting PUBACK; more wait in the outbox
CONNACK_TIMEOUT_S: Final = 10.0
SESSION_EXPIRY_S: Final = 7 * 24 * 3600  # MQTT 5: how long the broker keeps our session
ENVELOPE_OVERHEAD: Final = 96  # bytes of {"v":1,"gw":...,"sent":...,"records":[]}
ROUTINE_STREAMS: Final = tuple(s for s in STREAMS if s not in URGENT_STREAMS)
MAX_PENDING_ACKS: Final = 1_000  # command answers waiting for a connection; beyond, oldest go


@dataclass(frozen=True, slots=True)
class PublisherStats:
    connected: bool
    published: int  # records sent, retries included
    acked: int  # records the broker acknowledged (and the outbox forgot)
    batches: int  # messages sent
    reconnects: int  # successful connections after the first
    connect_failures: int
    inflight: int  # records awaiting PUBACK
    lag_ms: int | None  # at the last PUBACK: its time minus the newest record's ts
    ack_rtt_ms: int | None  # at the last PUBACK: publish → PUBACK
    last_error: str | None


@dataclass(frozen=True, slots=True)
class CommandDelivery:
    """One message from ``down/cmd``; ``settle()`` it once it has been dealt with."""

    payload: bytes
    dup: bool  # the broker says it may have delivered this before
    connection: int  # which client received it: a PUBACK goes only to that connection
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class _Flight:
    seqs: tuple[int, ...]
    newest_ts: int
    sent_mono: float


def tls_context(broker: BrokerConfig) -> ssl.SSLContext:
    """The TLS settings of an ``mqtts://`` broker: verify the server (and host name) always."""
    try:
        ctx = ssl.create_default_context(cafile=broker.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA file: {exc}", field="broker.ca_file") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.cert_file:
        try:
            ctx.load_cert_chain(broker.cert_file, broker.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load client certificate: {exc}", field="broker.cert_file"
            ) from exc
    return ctx


def _record_size(record: Record) -> int:
    return len(json.dumps(record.to_dict(), separators=(",", ":"), ensure_ascii=False)) + 1


def chunk_records(
    records: Iterable[Record], max_records: int, max_bytes: int
) -> list[list[Record]]:
    """Split into batches of at most ``max_records`` and (about) ``max_bytes``; a record larger
    than ``max_bytes`` goes alone."""
    chunks: list[list[Record]] = []
    current: list[Record] = []
    size = ENVELOPE_OVERHEAD
    for record in records:
        n = _record_size(record)
        if current and (len(current) >= max_records or size + n > max_bytes):
            chunks.append(current)
            current, size = [], ENVELOPE_OVERHEAD
        current.append(record)
        size += n
    if current:
        chunks.append(current)
    return chunks


class Publisher:
    """Publishes the outbox to the broker in its own thread (see the module doc)."""

    def __init__(
        self,
        gateway_id: str,
        broker: BrokerConfig,
        outbox: Outbox,
        batching: BatchingConfig | None = None,
        *,
        client_id: str | None = None,
        agent_version: str = __version__,
        profiles: Mapping[str, int] | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        clock_ms: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        on_command: Callable[[CommandDelivery], None] | None = None,
        on_profiles: Callable[[CommandDelivery], None] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.status_topic = wire.status_topic(gateway_id)
        self.command_topic = wire.down_topic(gateway_id, "cmd")
        self.profiles_topic = wire.down_topic(gateway_id, "profiles")
        self.ack_topic = wire.ack_topic(gateway_id)
        self._on_command = on_command
        self._on_profiles = on_profiles
        self._status_changed = threading.Event()  # set_profiles(): republish the status
        # thread-safe hand-over from the command executor to the publisher thread
        self._to_settle: collections.deque[CommandDelivery] = collections.deque()
        self._acks_out: collections.deque[bytes] = collections.deque(maxlen=MAX_PENDING_ACKS)
        self._client_no = 0  # numbers the paho clients (connections) of this publisher
        self.broker = broker
        self.outbox = outbox
        self.batching = batching or BatchingConfig()
        self.client_id = client_id or broker.client_id or f"shouhu-gw-{gateway_id}"
        self.agent_version = agent_version
        self.profiles = dict(profiles or {})
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._rng = rng or random.Random()
        self._tls = tls_context(broker) if broker.tls else None
        self._stop = threading.Event()
        self._drain_timeout_s = 0.0
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()  # guards the counters read by stats()
        # --- owned by the publisher thread ---
        self._connected = False
        self._refused: str | None = None
        self._inflight: dict[int, _Flight] = {}  # mid -> batch awaiting PUBACK
        self._inflight_seqs: set[int] = set()
        self._held: set[int] = set()  # refused by the broker (MQTT 5): retried next connection
        self._routine_since: float | None = None  # when unsent routine records were first seen
        self._status_mid: int | None = None
        self._status_acked = threading.Event()
        self._logged: set[str] = set()
        # --- counters ---
        self._published = 0
        self._acked = 0
        self._batches = 0
        self._connections = 0
        self._connect_failures = 0
        self._lag_ms: int | None = None
        self._rtt_ms: int | None = None
        self._last_error: str | None = None
        self._ever_connected = threading.Event()

    # --- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("publisher already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"publisher-{self.gateway_id}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """New records are in the outbox (thread-safe, never blocks)."""
        with contextlib.suppress(OSError):  # already woken (buffer full), or closed
            self._wake_w.send(b"\0")

    def stop(self, drain_timeout_s: float = 0.0, timeout_s: float = 10.0) -> None:
        """Stop; while connected, first try up to ``drain_timeout_s`` to empty the outbox.
        Publishes a retained ``offline`` status (a clean disconnect suppresses the Will)."""
        self._drain_timeout_s = drain_timeout_s
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s + drain_timeout_s)
            self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._ever_connected.wait(timeout_s)

    def settle(self, delivery: CommandDelivery) -> None:
        """The command is dealt with: acknowledge it to the broker (thread-safe). A delivery of
        a connection that has since dropped is not acknowledged: the broker sends it again."""
        self._to_settle.append(delivery)
        self.wake()

    def publish_ack(self, payload: bytes) -> None:
        """Queue a command answer for ``shouhu/v1/gw/{gw}/ack`` (thread-safe, never blocks)."""
        self._acks_out.append(payload)
        self.wake()

    def set_profiles(self, profiles: Mapping[str, int]) -> None:
        """The gateway now runs these profile versions: republish the retained status
        (thread-safe, never blocks; while offline it goes out with the next connection)."""
        with self._lock:
            self.profiles = dict(profiles)
        self._status_changed.set()
        self.wake()

    def _profile_versions(self) -> dict[str, int]:
        with self._lock:
            return dict(self.profiles)

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight (tests, demo, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0 and self.stats().inflight == 0:
                return True
            time.sleep(0.02)
        return False

    def stats(self) -> PublisherStats:
        with self._lock:
            return PublisherStats(
                connected=self._connected,
                published=self._published,
                acked=self._acked,
                batches=self._batches,
                reconnects=max(0, self._connections - 1),
                connect_failures=self._connect_failures,
                inflight=len(self._inflight_seqs),
                lag_ms=self._lag_ms,
                ack_rtt_ms=self._rtt_ms,
                last_error=self._last_error,
            )

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            client = self._new_client()
            try:
                self._connect(client)
            except BrokerError as exc:
                self._fail(exc.message)
                attempt += 1
                self._sleep(self._backoff(attempt))
                continue
            attempt = 0
            try:
                self._session(client)
            except Exception as exc:  # a bug must not end publishing: log, reconnect
                log.exception("publisher %s: session failed", self.gateway_id)
                self._fail(f"session failed: {exc}")
            finally:
                self._close(client)
            if not self._stop.is_set():
                self._sleep(self._backoff(1))

    def _backoff(self, attempt: int) -> float:
        cap = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(attempt - 1, 16))
        return max(self.reconnect_min_s, cap * self._rng.uniform(0.5, 1.0))

    def _sleep(self, seconds: float) -> None:
        """Wait, but return at once on stop()."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                select.select([self._wake_r], [], [], left)
                self._drain_wake()
            except (OSError, ValueError):
                self._stop.wait(left)

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._last_error = reason
            self._connect_failures += 1
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("publisher %s: %s (retrying)", self.gateway_id, reason)

    def _new_client(self) -> mqtt.Client:
        v5 = self.broker.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        self._client_no += 1
        if self._on_command is not None or self._on_profiles is not None:
            client.manual_ack_set(True)
            client.on_message = self._on_message
        client.max_inflight_messages_set(MAX_INFLIGHT_BATCHES + 1)
        client.max_queued_messages_set(0)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
            client.tls_insecure_set(False)
        offline = wire.encode_status(
            "offline", agent_version=self.agent_version, profiles=self._profile_versions()
        )
        client.will_set(self.status_topic, offline, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _connect(self, client: mqtt.Client) -> None:
        self._refused = None
        self._connected = False
        try:
            if self.broker.protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                client.connect(
                    self.broker.host,
                    self.broker.port,
                    self.broker.keepalive,
                    clean_start=False,
                    properties=props,
                )
            else:
                client.connect(self.broker.host, self.broker.port, self.broker.keepalive)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.broker.url}: {exc}") from exc
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while not self._connected and self._refused is None:
            if time.monotonic() > deadline or self._stop.is_set():
                self._close(client)
                raise BrokerError(f"no CONNACK from {self.broker.url}")
            if not self._io(client, 0.2):
                break
        if not self._connected:
            self._close(client)
            raise BrokerError(f"{self.broker.url} refused us: {self._refused or 'connection lost'}")

    def _session(self, client: mqtt.Client) -> None:
        with self._lock:
            self._connections += 1
            self._inflight.clear()
            self._inflight_seqs.clear()
            self._last_error = None
        self._held.clear()
        self._routine_since = None
        self._logged.clear()
        self._status_changed.clear()
        self._publish_online(client)
        subscriptions = [
            (topic, 1)
            for topic, handler in (
                (self.command_topic, self._on_command),
                (self.profiles_topic, self._on_profiles),
            )
            if handler is not None
        ]
        if subscriptions:
            client.subscribe(subscriptions)
        self._ever_connected.set()
        log.info("publisher %s: connected to %s", self.gateway_id, self.broker.url)
        while self._connected:
            if self._stop.is_set():
                self._goodbye(client)
                return
            self._commands(client)
            deadline = self._pump(client)
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if not self._io(client, timeout):
                break
        log.warning("publisher %s: connection to %s lost", self.gateway_id, self.broker.url)

    def _goodbye(self, client: mqtt.Client) -> None:
        """Clean shutdown: drain what we can, say ``offline`` (retained), disconnect."""
        deadline = time.monotonic() + self._drain_timeout_s
        while self._connected and time.monotonic() < deadline:
            self._commands(client)
            if self.outbox.depth() == 0 and not self._inflight:
                break
            self._pump(client, flush=True)
            self._io(client, 0.05)
        offline = wire.encode_status(
            "offline",
            agent_version=self.agent_version,
            profiles=self._profile_versions(),
            ts=self._clock_ms(),
        )
        info = client.publish(self.status_topic, offline, qos=1, retain=True)
        self._status_mid = info.mid
        deadline = time.monotonic() + 2.0
        while self._connected and not self._status_acked.is_set() and time.monotonic() < deadline:
            self._io(client, 0.05)
        client.disconnect()
        self._io(client, 0.0)

    def _close(self, client: mqtt.Client) -> None:
        with self._lock:
            self._connected = False
        with contextlib.suppress(Exception):  # a dead socket: nothing to tidy up
            client.disconnect()
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # --- I/O: paho's external-loop API under our select -----------------------------------------

    def _io(self, client: mqtt.Client, timeout: float) -> bool:
        """One round of socket I/O; False when the socket failed (connection gone)."""
        sock = client.socket()
        if sock is None:
            with self._lock:
                self._connected = False
            return False
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r],
                [sock] if client.want_write() else [],
                [],
                0.0 if pending else timeout,
            )
        except (OSError, ValueError):
            with self._lock:
                self._connected = False
            return False
        if self._wake_r in readable:
            self._drain_wake()
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if pending or sock in readable:
            rc = client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and sock in writable:
            rc = client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._connected = False
            return False
        return True

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # --- commands -----------------------------------------------------------------------------

    def _publish_online(self, client: mqtt.Client) -> None:
        online = wire.encode_status(
            "online",
            agent_version=self.agent_version,
            profiles=self._profile_versions(),
            ts=self._clock_ms(),
        )
        client.publish(self.status_topic, online, qos=1, retain=True)

    def _commands(self, client: mqtt.Client) -> None:
        """Publish a changed status and queued answers, then acknowledge what they answer."""
        if self._status_changed.is_set():
            self._status_changed.clear()
            self._publish_online(client)
        while self._acks_out:
            payload = self._acks_out[0]
            info = client.publish(self.ack_topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection is going: they wait for the next one
            self._acks_out.popleft()
        while self._to_settle:
            delivery = self._to_settle.popleft()
            if delivery.connection == self._client_no and delivery.qos > 0:
                client.ack(delivery.mid, delivery.qos)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        delivery = CommandDelivery(
            bytes(msg.payload), bool(msg.dup), self._client_no, msg.mid, msg.qos
        )
        handler = {
            self.command_topic: self._on_command,
            self.profiles_topic: self._on_profiles,
        }.get(msg.topic)
        if handler is None:
            client.ack(msg.mid, msg.qos)  # not something we subscribed to: let it go
            return
        try:
            handler(delivery)
        except Exception:  # the handler's bug must not cost the connection; do not retry it
            if "on_command" not in self._logged:
                self._logged.add("on_command")
                log.exception("publisher %s: command handler failed", self.gateway_id)
            client.ack(msg.mid, msg.qos)

    # --- batching -----------------------------------------------------------------------------

    def _pump(self, client: mqtt.Client, flush: bool = False) -> float | None:
        """Publish what is due; return when (monotonic) routine records fall due, if any."""
        b = self.batching
        fetch = b.max_records * 4
        excluded = self._inflight_seqs | self._held
        if len(self._inflight) >= MAX_INFLIGHT_BATCHES:
            return None
        # Urgent streams first and at once: an alarm never waits behind a batch of sightings.
        urgent = self.outbox.pending(fetch, streams=URGENT_STREAMS, exclude_seqs=excluded)
        for kind, records in _by_kind(urgent):
            for chunk in chunk_records(records, b.max_records, b.max_bytes):
                if not self._send(client, kind, chunk):
                    return None
        routine = self.outbox.pending(fetch, streams=ROUTINE_STREAMS, exclude_seqs=excluded)
        if not routine:
            self._routine_since = None
            return None
        now = time.monotonic()
        if self._routine_since is None:
            self._routine_since = now
        aged = flush or (now - self._routine_since) * 1000 >= b.max_age_ms
        left = False
        for kind, records in _by_kind(routine):
            chunks = chunk_records(records, b.max_records, b.max_bytes)
            for index, chunk in enumerate(chunks):
                # every chunk but the last was closed by a bound: it is full
                full = index < len(chunks) - 1 or len(chunk) >= b.max_records
                if not (aged or full):
                    left = True
                    continue
                if len(self._inflight) >= MAX_INFLIGHT_BATCHES:
                    return None  # the next PUBACK wakes us
                if not self._send(client, kind, chunk):
                    return None
        if left:
            return self._routine_since + b.max_age_ms / 1000
        self._routine_since = None
        return None

    def _send(self, client: mqtt.Client, kind: str, chunk: list[Record]) -> bool:
        try:
            payload = wire.encode_batch(self.gateway_id, chunk, sent=self._clock_ms())
        except (EnvelopeError, ValueError, TypeError) as exc:
            self._quarantine(chunk, str(exc))
            return True
        info = client.publish(wire.up_topic(self.gateway_id, kind), payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._connected = False
            return False
        flight = _Flight(tuple(r.seq for r in chunk), max(r.ts for r in chunk), time.monotonic())
        with self._lock:
            self._inflight[info.mid] = flight
            self._inflight_seqs.update(flight.seqs)
            self._published += len(chunk)
            self._batches += 1
        return True

    def _quarantine(self, chunk: list[Record], reason: str) -> None:
        """A record that cannot be encoded would block the queue forever: dead-letter it."""
        for record in chunk:
            try:
                wire.encode_batch(self.gateway_id, [record], sent=0)
            except (EnvelopeError, ValueError, TypeError) as exc:
                raw = repr(record.to_dict()).encode("utf-8", "replace")
                log.error(
                    "publisher %s: seq %d cannot be encoded: %s", self.gateway_id, record.seq, exc
                )
                self.outbox.dead_letter("publisher", f"cannot encode: {exc}", raw, {}, record.ts)
                self.outbox.delete([record.seq])

    # --- paho callbacks (run in our thread, inside loop_read / loop_write) ---------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            return
        with self._lock:
            self._connected = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if mid == self._status_mid:
            self._status_acked.set()
        with self._lock:
            flight = self._inflight.pop(mid, None)
            if flight is not None:
                self._inflight_seqs.difference_update(flight.seqs)
        if flight is None:
            return  # the retained status, or a message of an earlier connection
        if reason_code.is_failure:  # MQTT 5: the broker refused (e.g. not authorised)
            self._held.update(flight.seqs)
            self._fail(f"broker refused a batch: {reason_code}")
            return
        try:
            self.outbox.delete(flight.seqs)
        except StorageError as exc:  # the records stay and are published again: a duplicate
            self._fail(exc.message)
        now_ms = self._clock_ms()
        with self._lock:
            self._acked += len(flight.seqs)
            self._lag_ms = max(0, now_ms - flight.newest_ts)
            self._rtt_ms = int((time.monotonic() - flight.sent_mono) * 1000)
        self.wake()  # room in flight: publish more


def _by_kind(records: list[Record]) -> list[tuple[str, list[Record]]]:
    """Group by stream, keeping seq order inside each group."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.kind, []).append(record)
    return list(groups.items())
