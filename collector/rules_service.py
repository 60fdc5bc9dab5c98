"""The rules service: the I/O shell around the pure rule engine and alert book.

It feeds records and gateway status to ``RuleEngine``, applies its actions to the
``AlertBook`` and carries out what they decide:

============================  ===================================================================
action / effect               goes to
============================  ===================================================================
``DeliverTo``, ``Notice``     the notifier (apprise), with the personal ``message``
``Publish``                   ``shouhu/v1/alerts/{kind}`` (public fields only) + alert history
``SendCommand``               ``shouhu/v1/gw/{gw}/down/cmd``
``Verdict``, school notices,  derived points (``collector.derived``) through
alert events, gateway state   ``writer.write_points`` when the writer has it
``Rejected``                  the dead-letter callable (logged once per rule and reason)
============================  ===================================================================

After every step (a batch, a status change, a tick) the engine and book state are saved with
that step's alert events in one transaction, so a restarted collector carries on with the same
timers and open alerts. Side effects run after the save: a crash in between loses those
notifications rather than sending them twice (docs/alerts.md).

One lock serialises everything; ``start()`` runs ``tick()`` every second on its own thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from collector.alerts.lifecycle import (
    AlertBook,
    AlertEvent,
    DeliverTo,
    Effect,
    LifecycleConfig,
    Publish,
)
from collector.alerts.notifier import Message
from collector.alerts.store import AlertStore, Delivery, PendingAction, StoreTx
from collector.derived import (
    alert_event_point,
    gateway_state_point,
    patrol_checkin_point,
    school_tap_point,
)
from collector.points import Point
from collector.registry.store import Change
from collector.rules.actions import (
    Action,
    Notice,
    RaiseAlert,
    Rejected,
    ResolveAlert,
    SendCommand,
    Verdict,
)
from collector.rules.engine import EngineConfig, RuleEngine
from collector.rules.patrol import SunVerifier
from collector.rules.registry_view import RegistryView, StaticRegistry
from shouhu import wire
from shouhu.exceptions import ShouhuError
from shouhu.model import Record

log = logging.getLogger(__name__)

# publish(topic, payload, qos, retain): the collector's MQTT client
PublishFn = Callable[[str, bytes, int, bool], None]
# runs inside a step's save transaction (``AlertStore.record_step(within=...)``)
StepHook = Callable[[StoreTx], None]
SCHOOL_NOTICES = {"school_arrival": "arrival", "school_departure": "departure"}
REGISTRY_POLL_MS = 1000
MAX_LATENCY_PENDING = 1000


class RegistrySource(Protocol):
    """What the service needs of ``RegistryStore``: a cheap change counter and a snapshot."""

    def changes(self) -> Change: ...
    def snapshot(self) -> Any: ...  # RegistrySnapshot with .view()


class NotifierLike(Protocol):
    on_delivered: Callable[[Message, Delivery], None] | None

    def submit(self, message: Message) -> None: ...


class RulesService:
    """Thread-safe; construct, then ``start()`` the ticker, then feed ``handle``/``on_status``."""

    def __init__(
        self,
        engine_config: EngineConfig,
        registry_store: RegistrySource | RegistryView,
        alert_store: AlertStore,
        notifier: NotifierLike,
        publish: PublishFn,
        writer: object | None = None,
        clock: Callable[[], float] = time.time,
        *,
        lifecycle: LifecycleConfig | None = None,
        dead_letter: Callable[[Rejected], None] | None = None,
        verify_sun: SunVerifier | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.config = engine_config
        self.store = alert_store
        self.notifier = notifier
        self._publish = publish
        self._write_points: Callable[[Sequence[Point]], None] | None = getattr(
            writer, "write_points", None
        )
        self._clock = clock
        self._dead_letter = dead_letter
        self._tick_s = tick_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_rejects: set[tuple[str, str]] = set()
        self.counts: dict[str, int] = {"rejected": 0, "publish_errors": 0, "point_errors": 0}
        # alert events "notified" waiting for their first delivery (to write latency_ms)
        self._latency_pending: dict[tuple[str, int], tuple[AlertEvent, str, str]] = {}

        self._source: RegistrySource | None = None
        self._change: Change | None = None
        self._checked_ms = -REGISTRY_POLL_MS
        if hasattr(registry_store, "changes") and hasattr(registry_store, "snapshot"):
            self._source = registry_store  # type: ignore[assignment]
            self._reg: RegistryView = StaticRegistry()
        else:
            self._reg = registry_store  # type: ignore[assignment]

        self.engine, self.book = self._restore(engine_config, lifecycle, verify_sun)
        # what the store holds now: a step that changed nothing does not rewrite it
        self._saved: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
        if notifier.on_delivered is None:  # latency of notified events (derived points)
            notifier.on_delivered = self._delivered

    def _restore(
        self,
        config: EngineConfig,
        lifecycle: LifecycleConfig | None,
        verify_sun: SunVerifier | None,
    ) -> tuple[RuleEngine, AlertBook]:
        """The state the last run saved; a fresh start (logged) if there is none or it is bad."""
        engine_state, book_state = self.store.load_state()
        engine = RuleEngine(config, verify_sun)
        book = AlertBook(lifecycle)
        try:
            if engine_state is not None:
                engine = RuleEngine.from_state(config, engine_state, verify_sun)
            if book_state is not None:
                book = AlertBook.from_state(book_state, lifecycle)
        except ShouhuError as exc:
            log.error("saved rule/alert state unusable, starting fresh: %s", exc.one_line())
        return engine, book

    # --- inputs -------------------------------------------------------------------------

    def handle(self, gw: str, records: Iterable[Record], *, within: StepHook | None = None) -> None:
        """Records of ``gw`` that were durably written; runs the rules on each.

        ``within`` runs inside the step's save transaction (the shared rules leader marks its
        inbox rows consumed there, collector/rules_shared.py).

        A ``health`` record also writes the gateway's ``gateway_state`` point (online), when
        the registry knows the gateway: the city map shows where it is and that it is up.
        """
        with self._lock:
            now = self._now_ms()
            reg = self._registry(now)
            work: list[tuple[list[Action], int]] = []
            health_ts: list[int] = []
            for record in records:
                work.append((self.engine.handle(gw, record, now, reg), record.ts))
                if record.kind == "health":
                    health_ts.append(record.ts)
            self._step(work, now, reg, within=within)
            gateway = reg.gateway(gw) if health_ts else None
            if gateway is not None:
                self._write([gateway_state_point(gateway, True, max(health_ts))])

    def open_alert_count(self) -> int:
        """Alerts not resolved yet (for the collector's status line)."""
        with self._lock:
            return len(self.book.open_alerts())

    def on_status(self, gw: str, state: str, *, within: StepHook | None = None) -> None:
        """The retained status of ``gw`` changed (``online``/``offline``)."""
        with self._lock:
            now = self._now_ms()
            reg = self._registry(now)
            actions = self.engine.on_status(gw, state, now, reg)
            gateway = reg.gateway(gw)
            if gateway is not None and state in ("online", "offline"):
                self._write([gateway_state_point(gateway, state == "online", now)])
            self._step([(actions, now)], now, reg, within=within)

    def tick(self) -> None:
        """Timers, escalations and ack/resolve requests from the CLI; call every second."""
        with self._lock:
            now = self._now_ms()
            reg = self._registry(now)
            effects: list[tuple[Effect, int]] = []
            for p in self.store.pending():
                effects.extend((e, now) for e in self._apply_pending(p, now))
            work = [(self.engine.tick(now, reg), now)]
            effects.extend((e, now) for e in self.book.tick(now))
            self._step(work, now, reg, effects, heartbeat=True)

    def ack(self, alert_id: str, by: str) -> None:
        """Someone took the alert in hand (ShouhuError if it cannot be acknowledged)."""
        with self._lock:
            now = self._now_ms()
            effects = [(e, now) for e in self.book.ack(alert_id, by, now)]
            self._step([], now, self._registry(now), effects)

    def resolve(self, alert_id: str, by: str, reason: str = "resolved by hand") -> None:
        with self._lock:
            now = self._now_ms()
            effects = [(e, now) for e in self.book.resolve(alert_id, by, now, reason)]
            self._step([], now, self._registry(now), effects)

    # --- ticker thread ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rules-tick", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.store.clear_heartbeat()
        except ShouhuError as exc:
            log.warning("cannot clear the collector heartbeat: %s", exc.one_line())

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.tick()
            except ShouhuError as exc:
                log.error("rules tick failed: %s", exc.one_line())
            except Exception:  # the ticker must outlive a bug in one rule
                log.exception("rules tick failed")

    # --- the step -----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _registry(self, now_ms: int) -> RegistryView:
        """The registry snapshot, reloaded when its change counter moved (polled ≤ 1/s)."""
        if self._source is None:
            return self._reg
        if self._change is not None and now_ms - self._checked_ms < REGISTRY_POLL_MS:
            return self._reg
        self._checked_ms = now_ms
        try:
            change = self._source.changes()
            if change != self._change:
                self._reg = self._source.snapshot().view()
                self._change = change
        except ShouhuError as exc:
            log.warning("registry unavailable, keeping the last snapshot: %s", exc.one_line())
        return self._reg

    def _apply_pending(self, p: PendingAction, now: int) -> list[Effect]:
        try:
            if p.action == "ack":
                effects = self.book.ack(p.alert_id, p.by, now)
            else:
                effects = self.book.resolve(p.alert_id, p.by, now, p.reason or "resolved by hand")
        except ShouhuError as exc:
            self.store.finish(p.id, False, exc.one_line())
            return []
        self.store.finish(p.id, True)
        return effects

    def _step(
        self,
        work: Sequence[tuple[list[Action], int]],
        now: int,
        reg: RegistryView,
        effects: Sequence[tuple[Effect, int]] = (),
        *,
        heartbeat: bool = False,
        within: StepHook | None = None,
    ) -> None:
        """Apply actions to the book, save the state with the events, then carry out."""
        all_effects: list[tuple[Effect, int]] = list(effects)
        others: list[tuple[Action, int]] = []
        for actions, origin in work:
            for action in actions:
                if isinstance(action, RaiseAlert | ResolveAlert):
                    all_effects.extend((e, origin) for e in self.book.apply(action, now))
                else:
                    others.append((action, origin))
        publishes = [e for e, _ in all_effects if isinstance(e, Publish)]
        engine_state, book_state = self.engine.to_state(), self.book.to_state()
        self.store.record_step(
            publishes,
            engine_state=None if engine_state == self._saved[0] else engine_state,
            book_state=None if book_state == self._saved[1] else book_state,
            heartbeat_ms=now if heartbeat else None,
            within=within,
        )
        self._saved = (engine_state, book_state)
        points: list[Point] = []
        for effect, origin in all_effects:
            points.extend(self._carry_out_effect(effect, origin, reg))
        for action, origin in others:
            points.extend(self._carry_out(action, origin, reg))
        self._write(points)

    def _carry_out_effect(self, effect: Effect, origin: int, reg: RegistryView) -> list[Point]:
        if isinstance(effect, DeliverTo):
            alert, event = effect.alert, effect.event
            prefix = {"resolved": "Resolved: ", "acknowledged": "Acknowledged: "}.get(
                event.state, ""
            )
            self.notifier.submit(
                Message(
                    contact=effect.contact,
                    title=f"{prefix}{alert.title} [{alert.severity}]",
                    body=f"{alert.message}\n\n{event.state}: {event.detail} (alert {alert.id})",
                    kind=alert.kind,
                    alert_id=alert.id,
                    state=event.state,
                    origin_ms=origin,
                    event_ms=event.at_ms,
                )
            )
            return []
        payload = effect.payload
        self._send(wire.alerts_topic(effect.event.kind), payload)
        district = _district(payload["subjects"], reg)
        if effect.event.state == "notified":
            pending = (effect.event.alert_id, effect.event.at_ms)
            self._latency_pending[pending] = (effect.event, payload["severity"], district)
            while len(self._latency_pending) > MAX_LATENCY_PENDING:  # never delivered
                del self._latency_pending[next(iter(self._latency_pending))]
        out = [alert_event_point(effect.event, payload["severity"], district)]
        if effect.event.kind == "gateway_offline" and effect.event.state in ("raised", "resolved"):
            gateway = reg.gateway(effect.event.key)
            if gateway is not None:
                online = effect.event.state == "resolved"
                out.append(gateway_state_point(gateway, online, effect.event.at_ms))
        return out

    def _carry_out(self, action: Action, origin: int, reg: RegistryView) -> list[Point]:
        if isinstance(action, Notice):
            for contact in action.contacts:
                self.notifier.submit(
                    Message(contact, action.title, action.message, action.kind, None, "", origin)
                )
            direction = SCHOOL_NOTICES.get(action.kind)
            school = action.data.get("school")
            if direction is not None and isinstance(school, str):
                ts = action.data.get("ts")
                at = ts if isinstance(ts, int) else origin
                return [school_tap_point(school, direction, at)]  # type: ignore[arg-type]
            return []
        if isinstance(action, SendCommand):
            command = dict(action.command)
            # the gateway executes an id once: a QoS 1 redelivery must not sound alarms twice
            command.setdefault("id", uuid.uuid4().hex)
            self._send(wire.down_topic(action.gw, "cmd"), command)
            return []
        if isinstance(action, Verdict):
            box = reg.patrol_box(action.box)
            lat, lon = (box.lat, box.lon) if box is not None else (None, None)
            return [patrol_checkin_point(action, lat=lat, lon=lon)]
        if isinstance(action, Rejected):
            self._reject(action)
        return []

    def _reject(self, r: Rejected) -> None:
        self.counts["rejected"] += 1
        reason = (r.rule, r.reason.partition(":")[0])
        if reason not in self._logged_rejects:
            self._logged_rejects.add(reason)
            log.warning(
                "rule %s cannot read record %s/%d: %s (further ones only counted)",
                r.rule,
                r.gw,
                r.seq,
                r.reason,
            )
        if self._dead_letter is not None:
            try:
                self._dead_letter(r)
            except ShouhuError as exc:
                log.error("cannot dead-letter a rejected record: %s", exc.one_line())

    def _send(self, topic: str, payload: Any) -> None:
        try:
            body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
            self._publish(topic, body, 1, False)
        except (ShouhuError, OSError, ValueError, TypeError) as exc:
            self.counts["publish_errors"] += 1
            log.error("cannot publish on %s: %s", topic, exc)

    def _write(self, points: Sequence[Point]) -> None:
        if not points or self._write_points is None:
            return
        try:
            self._write_points(points)
        except ShouhuError as exc:
            self.counts["point_errors"] += 1
            log.error("cannot write %d derived point(s): %s", len(points), exc.one_line())

    def _delivered(self, message: Message, d: Delivery) -> None:
        """First successful delivery of a ``notified`` event: rewrite its point with latency."""
        if message.alert_id is None or message.event_ms is None or d.latency_ms is None:
            return
        with self._lock:
            found = self._latency_pending.pop((message.alert_id, message.event_ms), None)
        if found is None:
            return
        event, severity, district = found
        # the same event (id, state, actor, time) again: the point is rewritten, not added
        self._write([alert_event_point(event, severity, district, latency_ms=d.latency_ms)])


def _district(subjects: Sequence[str], reg: RegistryView) -> str:
    """The district of a household subject (``household:h-1``), for the command board."""
    for s in subjects:
        kind, _, key = s.partition(":")
        if kind == "household":
            h = reg.household(key)
            if h is not None:
                return h.district
    return ""
