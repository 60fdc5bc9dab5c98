"""The edge agent: radios → decoders → aggregator → outbox → publisher, wired from a config.

    source threads ──emit──► queue ──► worker thread: decode (profiles) → aggregate → outbox
                                                                                   │ wake
                                                      publisher thread ◄───────────┘ → MQTT
    down/cmd ─► publisher thread ─► command queue ─► command thread: parse, carry out, answer

``Agent`` holds no global state and installs no signal handlers, so one process can run
several (``shouhu demo``). A bad frame never stops it: a decoder's ``DecodeError`` (or any
other exception, which is a decoder bug) is counted, logged once per (source, reason) and
parked with its raw bytes in the outbox's dead-letter table. On ``stop()`` the aggregator's
pending exits are written to the outbox before anything else shuts down.

Commands (``shouhu/v1/gw/{gw}/down/cmd``, ``edge_agent.commands``): ``sound``/``silence`` write
the ``transmit`` line configured for them to every source that has one (a serial RFLink),
``ping`` only answers. Every command is answered on ``.../ack`` and acknowledged to the broker
after it was carried out; a repeated id is answered again but carried out once; a malformed
command is answered ``ok: false`` and logged once.

Profile bundles (``shouhu/v1/gw/{gw}/down/profiles``, ``edge_agent.bundles``) go through the
same command thread: a bundle the trusted keys verify, with a newer serial, is stored (atomic
write), then the decoder is swapped in one assignment (the worker reads ``self.decoder`` once
per frame, so it sees the old set or the new one, never half of one), the retained status is
republished and the bundle answered ``ok: true``; anything else is answered ``ok: false`` with
the reason and the running profiles stay. At start a saved bundle, verified again, wins over
the configured profiles.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from edge_agent.aggregator import Aggregator
from edge_agent.bundles import (
    Accepted,
    BundleState,
    Refused,
    Unchanged,
    claimed_serial,
    load_saved_bundle,
    load_trusted_keys,
    save_bundle,
)
from edge_agent.commands import Ack, Command, CommandBook, Rejected, encode_ack, parse_command
from edge_agent.config import GatewayConfig, SourceConfig
from edge_agent.decoders.dispatch import FrameDecoder
from edge_agent.decoders.serial import BurstFilter
from edge_agent.health import ProcessProbe, health_reading
from edge_agent.outbox import Outbox, OutboxStats
from edge_agent.publisher import CommandDelivery, Publisher, PublisherStats
from edge_agent.sources.base import SOURCES, Source
from shouhu.bundle import Bundle
from shouhu.exceptions import ConfigError, DecodeError, ShouhuError, StorageError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile, load_profiles

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 20_000  # frames waiting for the worker; beyond, frames are dropped (counted)
WORKER_BATCH: Final = 1_000  # frames decoded per outbox transaction at most
MAX_LOGGED_REASONS: Final = 1_000
TRANSMIT_RETRY_EVERY_S: Final = 0.2
COMMAND_QUEUE_SIZE: Final = 256  # commands waiting to be carried out; beyond, answered "busy"
_STOP: Final = object()  # queue sentinel: sources are stopped, flush and end


@dataclass(frozen=True, slots=True)
class _BundleMessage:
    """A ``down/profiles`` delivery waiting in the command queue (commands are bare)."""

    delivery: CommandDelivery


@runtime_checkable
class Transmitter(Protocol):
    """A source that can also send (``SerialSource``): ``transmit`` maps a command to its line."""

    name: str
    transmit: Mapping[str, bytes]

    def send(self, line: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class CommandStats:
    received: int  # messages on down/cmd
    executed: int  # commands carried out (ok or not)
    duplicates: int  # repeated ids answered without carrying them out again
    rejected: int  # malformed, expired or refused for lack of room
    failed: int  # carried out with ok false (no transmitter, device absent)


@dataclass(frozen=True, slots=True)
class AgentStats:
    frames: int  # frames the sources handed over
    frames_dropped: int  # frames lost because the queue was full
    unmatched: int  # frames no profile claimed (a BLE radio hears many strangers)
    decode_errors: int  # frames dead-lettered
    readings: int  # readings the decoders produced
    accepted: int  # records this agent wrote to the outbox since start
    store_errors: int  # readings the outbox refused
    present: int  # beacons in range now
    outbox: OutboxStats
    publisher: PublisherStats
    commands: CommandStats


def load_source(config: SourceConfig) -> Source:
    """Build a source from its config (``SOURCES`` names the class; imported lazily)."""
    target = SOURCES[config.type]
    module_name, cls_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"source type {config.type!r} cannot be loaded: {exc}",
            field=f"sources.{config.name}.type",
        ) from exc
    source: Source = cls(config.name, config.options)
    return source


class Agent:
    """One gateway's pipeline (see the module doc). ``start()``/``stop()`` or ``run(event)``."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        profiles: Mapping[str, Profile] | None = None,
        sources: list[Source] | None = None,
        clock_ms: Callable[[], int] | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        transmit_retry_s: float = 3.0,
    ) -> None:
        self.config = config
        # how long sound/silence keep trying a receiver that is not open (e.g. reconnecting)
        self.transmit_retry_s = transmit_retry_s
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.bundles = BundleState(load_trusted_keys(config.trusted_keys))
        self.profiles = self._initial_profiles(profiles)
        self.decoder = FrameDecoder(self.profiles)
        agg = config.aggregator
        self.aggregator = Aggregator(
            int(agg.update_interval_s * 1000), int(agg.away_timeout_s * 1000), agg.ema_alpha
        )
        self.sources: list[Source] = (
            sources if sources is not None else [load_source(s) for s in config.sources]
        )
        self.outbox = Outbox(config.outbox.path, config.outbox.max_records)
        self.command_book = CommandBook()
        self._commands: queue.Queue[Any] = queue.Queue(COMMAND_QUEUE_SIZE)
        self._command_thread: threading.Thread | None = None
        self._command_counts = dict.fromkeys(
            ("received", "executed", "duplicates", "rejected", "failed"), 0
        )
        try:
            self.publisher = Publisher(
                config.id,
                config.broker,
                self.outbox,
                config.batching,
                client_id=config.client_id,
                profiles={p.id: p.version for p in self.profiles.values()},
                reconnect_min_s=reconnect_min_s,
                reconnect_max_s=reconnect_max_s,
                clock_ms=self._clock_ms,
                on_command=self._on_command,
                on_profiles=self._on_profiles,
            )
        except BaseException:  # e.g. an unreadable client certificate: no open file left
            self.outbox.close()
            raise
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._sources_stopped = threading.Event()
        self._stopped = False
        self._probe: ProcessProbe | None = None
        self._started_ms = self._clock_ms()
        self._logged: set[tuple[str, str]] = set()
        # counters (the worker writes, stats() reads; the lock keeps them consistent)
        self._frames = 0
        self._dropped = 0
        self._unmatched = 0
        self._decode_errors = 0
        # profile ref -> filter collapsing the repeated frames of one RF burst (serial receivers)
        self._bursts: dict[str, BurstFilter] = {}
        self._readings = 0
        self._accepted = 0
        self._store_errors = 0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError(f"agent {self.config.id} already started")
        self._started_ms = self._clock_ms()
        self._probe = ProcessProbe()
        self._command_thread = threading.Thread(
            target=self._command_loop, name=f"agent-cmd-{self.config.id}", daemon=True
        )
        self._command_thread.start()
        self.publisher.start()
        self._worker = threading.Thread(
            target=self._work, name=f"agent-{self.config.id}", daemon=True
        )
        self._worker.start()
        for source in self.sources:
            source.start(self._emitter(source))
        log.info(
            "agent %s: %d sources, %d profiles, outbox %s",
            self.config.id,
            len(self.sources),
            len(self.profiles),
            self.config.outbox.path,
        )

    def stop_sources(self, timeout_s: float = 10.0) -> None:
        """Stop the radios, decode what they already heard and write the aggregator's exits
        to the outbox. The publisher keeps running (it drains the outbox)."""
        if self._sources_stopped.is_set():
            return
        for source in self.sources:
            try:
                source.stop()
            except Exception:
                log.exception("agent %s: source %s failed to stop", self.config.id, source.name)
        self._sources_stopped.set()
        if self._worker is not None:
            self._queue.put(_STOP)  # blocks only if full; the worker is draining it
            self._worker.join(timeout_s)

    def stop(self, drain_timeout_s: float = 1.0) -> None:
        """Graceful shutdown: radios off, exits flushed, outbox drained for up to
        ``drain_timeout_s`` while connected, ``offline`` status, outbox closed."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_sources()
        if self._command_thread is not None:  # after the radios: a command may still use one
            self._commands.put(_STOP)
            self._command_thread.join(5.0)
        self.publisher.stop(drain_timeout_s=drain_timeout_s)
        self.outbox.close()

    def run(self, stop_event: threading.Event) -> None:
        """Run until ``stop_event`` is set (the CLI sets it on SIGTERM/SIGINT)."""
        self.start()
        try:
            stop_event.wait()
        finally:
            self.stop()

    def stats(self) -> AgentStats:
        with self._lock:
            counts = (
                self._frames,
                self._dropped,
                self._unmatched,
                self._decode_errors,
                self._readings,
                self._accepted,
                self._store_errors,
            )
            commands = CommandStats(**self._command_counts)
        return AgentStats(
            *counts,
            present=len(self.aggregator.present()),
            outbox=self.outbox.stats(),
            publisher=self.publisher.stats(),
            commands=commands,
        )

    # --- profile bundles ----------------------------------------------------------------------

    @property
    def bundle(self) -> Bundle | None:
        """The bundle the gateway runs; None while it runs the shipped/configured profiles."""
        return self.bundles.running

    def _initial_profiles(self, given: Mapping[str, Profile] | None) -> dict[str, Profile]:
        """A saved bundle that still verifies; else ``given``; else the configured dirs."""
        saved = load_saved_bundle(self.config.bundle_file, self.bundles.trusted_keys)
        if saved.bundle is not None:
            self.bundles = BundleState(
                self.bundles.trusted_keys, running=saved.bundle, running_digest=saved.digest
            )
            log.info(
                "agent %s: running saved bundle %d (%d profiles) from %s",
                self.config.id,
                saved.bundle.serial,
                len(saved.bundle.profiles),
                self.config.bundle_file,
            )
            return dict(saved.bundle.profiles)
        if saved.reason is not None:
            log.warning("agent %s: not using the saved bundle: %s", self.config.id, saved.reason)
        return dict(given) if given is not None else load_profiles(self.config.profile_dirs)

    def _on_profiles(self, delivery: CommandDelivery) -> None:
        """In the publisher thread: queue the bundle for the command thread."""
        try:
            self._commands.put_nowait(_BundleMessage(delivery))
        except queue.Full:  # the retained bundle comes again with the next connection
            self._log_once("profiles", "command queue full: bundle left for the next connection")
            serial = claimed_serial(delivery.payload)
            ack = Refused("busy: try again later", "", serial).ack(self._clock_ms())
            self._answer(delivery, ack)

    def _apply_bundle(self, payload: bytes) -> Ack | None:
        """Decide, apply, remember; the answer, or None for a quiet repeat."""
        decision = self.bundles.consider(payload)
        if isinstance(decision, Unchanged):
            return None
        if isinstance(decision, Accepted):
            try:
                decoder = FrameDecoder(decision.bundle.profiles)  # decoders import now
                save_bundle(self.config.bundle_file, payload)
            except ShouhuError as exc:
                # not remembered as refused: a disk that was full may have room next time
                log.warning("agent %s: bundle not applied: %s", self.config.id, exc.one_line())
                return Refused(exc.one_line(), decision.digest, decision.bundle.serial).ack(
                    self._clock_ms()
                )
            with self._lock:
                self.decoder = decoder
                self.profiles = dict(decision.bundle.profiles)
            self.bundles.record(decision)
            self.publisher.set_profiles(decision.bundle.versions())
            log.info(
                "agent %s: applied bundle %d: %s",
                self.config.id,
                decision.bundle.serial,
                ", ".join(f"{pid}@{v}" for pid, v in decision.bundle.versions().items()),
            )
            return decision.ack(self._clock_ms())
        self.bundles.record(decision)
        self._log_once("profiles", f"bundle refused: {decision.reason}")
        return decision.ack(self._clock_ms())

    # --- commands -----------------------------------------------------------------------------

    def _on_command(self, delivery: CommandDelivery) -> None:
        """In the publisher thread: queue it; never block the MQTT connection."""
        self._count_command("received")
        try:
            self._commands.put_nowait(delivery)
        except queue.Full:
            self._count_command("rejected")
            self._log_once("commands", "command queue full: answering busy")
            parsed = parse_command(delivery.payload)
            self._answer(delivery, Ack(parsed.id, parsed.cmd, False, "busy", self._clock_ms()))

    def _command_loop(self) -> None:
        while True:
            delivery = self._commands.get()
            if delivery is _STOP:
                return
            if isinstance(delivery, _BundleMessage):
                self._bundle_message(delivery.delivery)
                continue
            try:
                ack = self._command(delivery)
            except Exception as exc:  # a bug here must not stop commands (nor the gateway)
                log.exception("agent %s: command failed", self.config.id)
                ack = Ack(None, None, False, f"internal error: {exc}", self._clock_ms())
            self._answer(delivery, ack)

    def _bundle_message(self, delivery: CommandDelivery) -> None:
        try:
            answer = self._apply_bundle(delivery.payload)
        except Exception as exc:  # a bug here must not stop commands (nor the gateway)
            log.exception("agent %s: applying a bundle failed", self.config.id)
            serial = claimed_serial(delivery.payload)
            answer = Refused(f"internal error: {exc}", "", serial).ack(self._clock_ms())
        if answer is not None:
            self.publisher.publish_ack(encode_ack(answer))
        self.publisher.settle(delivery)

    def _answer(self, delivery: CommandDelivery, ack: Ack) -> None:
        self.publisher.publish_ack(encode_ack(ack))
        self.publisher.settle(delivery)

    def _command(self, delivery: CommandDelivery) -> Ack:
        now = self._clock_ms()
        parsed = parse_command(delivery.payload)
        if isinstance(parsed, Rejected):
            self._count_command("rejected")
            self._log_once("commands", f"malformed command: {parsed.reason}")
            raw = delivery.payload[:4096]
            with contextlib.suppress(StorageError):
                self.outbox.dead_letter("commands", parsed.reason, raw, {}, now)
            return Ack(parsed.id, parsed.cmd, False, parsed.reason, now)
        earlier = self.command_book.answered(parsed.id)
        if earlier is not None:
            self._count_command("duplicates")
            return earlier
        if parsed.expired(now):
            self._count_command("rejected")
            ack = Ack(parsed.id, parsed.cmd, False, "expired: not carried out", now)
        else:
            ack = self._carry_out(parsed, now)
            self._count_command("executed")
            if not ack.ok:
                self._count_command("failed")
        self.command_book.record(ack)
        return ack

    def _carry_out(self, command: Command, now: int) -> Ack:
        if command.cmd == "ping":
            return Ack(command.id, command.cmd, True, "pong", now)
        targets = [
            (source, source.transmit[command.cmd])
            for source in self.sources
            if isinstance(source, Transmitter) and command.cmd in source.transmit
        ]
        if not targets:
            detail = f"no source can transmit {command.cmd!r} (set options.transmit)"
            self._log_once("commands", detail)
            return Ack(command.id, command.cmd, False, detail, self._clock_ms())
        sent: list[str] = []
        errors: dict[str, str] = {}
        deadline = time.monotonic() + self.transmit_retry_s
        while True:
            for source, line in targets:
                if source.name in sent:
                    continue
                try:
                    source.send(line)
                except ShouhuError as exc:
                    errors[source.name] = exc.message
                    continue
                sent.append(source.name)
                errors.pop(source.name, None)
            if not errors or time.monotonic() >= deadline or self._stopped:
                break
            time.sleep(TRANSMIT_RETRY_EVERY_S)
        failed = list(errors.values())
        for message in failed:
            self._log_once("commands", message)
        parts = ([f"sent to {', '.join(sent)}"] if sent else []) + failed
        log.info(
            "agent %s: command %s (id %r, household %s): %s",
            self.config.id,
            command.cmd,
            command.id,
            command.household,
            "; ".join(parts),
        )
        return Ack(command.id, command.cmd, not failed, "; ".join(parts), self._clock_ms())

    def _count_command(self, what: str) -> None:
        with self._lock:
            self._command_counts[what] += 1

    # --- sources → queue ----------------------------------------------------------------------

    def _emitter(self, source: Source) -> Callable[[RawFrame], None]:
        name, transport = source.name, source.transport

        def emit(frame: RawFrame) -> None:
            try:
                self._queue.put_nowait((name, transport, frame))
            except queue.Full:
                with self._lock:
                    self._dropped += 1
                self._log_once(name, "frame queue full: dropping frames")

        return emit

    # --- the worker -------------------------------------------------------------------------------

    def _work(self) -> None:
        health_every_ms = int(self.config.health_interval_s * 1000)
        next_health = self._clock_ms() + health_every_ms
        stopping = False
        while not stopping:
            now = self._clock_ms()
            deadline = min(filter(None, (self.aggregator.next_deadline(), next_health)))
            timeout = min(1.0, max(0.0, (deadline - now) / 1000))
            items: list[Any] = []
            try:
                items.append(self._queue.get(timeout=timeout))
                while len(items) < WORKER_BATCH:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            out: list[Reading] = []
            try:
                for item in items:
                    if item is _STOP:
                        stopping = True
                        continue
                    out += self._frame(*item)
                now = self._clock_ms()
                out += self.aggregator.tick(now)
                if now >= next_health:
                    next_health = now + health_every_ms
                    out.append(self._health(now))
                if stopping:
                    out += self.aggregator.flush(now)
            except Exception:  # a bug here must not stop the gateway
                log.exception("agent %s: worker error", self.config.id)
            if out:
                self._store(out)
                self.publisher.wake()

    def _frame(self, source: str, transport: str, frame: RawFrame) -> list[Reading]:
        with self._lock:
            self._frames += 1
        try:
            profile, readings = self.decoder.decode(transport, frame)
        except DecodeError as exc:
            self._dead_letter(source, frame, exc.message)
            return []
        except Exception as exc:  # noqa: BLE001 - a decoder bug: the frame is parked, we go on
            reason = f"decoder failed: {type(exc).__name__}: {exc}"
            if (source, reason) not in self._logged and len(self._logged) < MAX_LOGGED_REASONS:
                self._logged.add((source, reason))
                log.exception("agent %s: source %s: %s", self.config.id, source, reason)
            self._dead_letter(source, frame, reason)
            return []
        if profile is None:
            with self._lock:
                self._unmatched += 1
            return []
        if profile.transport == "serial" and profile.alerts.debounce_s > 0:
            burst = self._bursts.get(profile.ref)  # by ref: a new version starts afresh
            if burst is None:
                burst = self._bursts[profile.ref] = BurstFilter(profile.alerts.debounce_s)
            readings = [r for r in readings if burst.accept(r)]  # one reading per RF burst
        now = self._clock_ms()
        out: list[Reading] = []
        for reading in readings:
            out += self.aggregator.feed(reading, now)
        with self._lock:
            self._readings += len(readings)
        return out

    def _dead_letter(self, source: str, frame: RawFrame, reason: str) -> None:
        with self._lock:
            self._decode_errors += 1
        self._log_once(source, reason)
        try:
            self.outbox.dead_letter(source, reason, bytes(frame.payload), frame.meta, frame.ts)
        except StorageError as exc:
            self._log_once("outbox", exc.message)

    def _store(self, readings: list[Reading]) -> None:
        try:
            records = self.outbox.append(readings)
        except StorageError:
            records = []
            for reading in readings:  # find the one the outbox refuses; keep the rest
                try:
                    records += self.outbox.append([reading])
                except StorageError as exc:
                    with self._lock:
                        self._store_errors += 1
                    self._log_once("outbox", exc.message)
                    raw = repr(reading).encode("utf-8", "replace")
                    with contextlib.suppress(StorageError):
                        self.outbox.dead_letter("outbox", exc.message, raw, {}, reading.ts)
        with self._lock:
            self._accepted += len(records)

    def _health(self, now: int) -> Reading:
        sources: dict[str, Mapping[str, Any]] = {}
        for source in self.sources:
            try:
                sources[source.name] = source.health()
            except Exception as exc:  # noqa: BLE001 - a source's health must not stop health
                sources[source.name] = {"frames": None, "errors": None, "present": False}
                self._log_once(source.name, f"health() failed: {exc}")
        with self._lock:
            decode_errors, dropped = self._decode_errors, self._dropped
        return health_reading(
            self.config.id,
            now,
            started_ms=self._started_ms,
            outbox=self.outbox.stats(),
            publisher=self.publisher.stats(),
            sources=sources,
            decode_errors=decode_errors,
            frames_dropped=dropped,
            usage=self._probe.usage() if self._probe is not None else None,
        )

    def _log_once(self, source: str, reason: str) -> None:
        key = (source, reason)
        if key in self._logged or len(self._logged) >= MAX_LOGGED_REASONS:
            return
        self._logged.add(key)
        log.warning("agent %s: source %s: %s (logged once)", self.config.id, source, reason)
