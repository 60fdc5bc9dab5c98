"""Alert lifecycle: a pure state machine from rule actions to deliveries and published events.

States and transitions (the table ``TRANSITIONS`` below is the only source of truth)::

    raised ──notify──► notified ──ack──► acknowledged ──resolve──► resolved
       │                 │  ▲                                        ▲
       │                 └──┘ escalate (next contact order)          │
       ├──────────────── resolve ────────────────────────────────────┤
                         notified ──resolve──────────────────────────┘

Rules:
- One open alert per ``(kind, key)``. A ``RaiseAlert`` for an open pair updates it (text, data,
  contacts; severity only goes up) and notifies nobody, unless the severity went up: then the
  contacts already reached hear again.
- Suppression: a pair re-raised within ``suppress_s`` of its last resolution opens an alert that
  stays ``raised``: published, not delivered, not escalated (a flapping condition).
- Notification goes to the contacts with the lowest ``order``; if nobody acknowledges within
  ``escalate_after_s``, to the next order, and so on until the orders run out.
- A ``ResolveAlert`` for a pair with no open alert does nothing.
- Every transition is an ``AlertEvent``; ``apply``/``ack``/``resolve``/``tick`` return effects for
  the I/O shell: ``DeliverTo`` (notifier) and ``Publish`` (``shouhu/v1/alerts/{kind}``; public
  fields only, never ``message``).
Nothing here reads the clock or does I/O: every entry point takes ``now_ms``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypedDict

from collector.domain import Contact
from collector.rules.actions import (
    SEVERITY_RANK,
    Action,
    RaiseAlert,
    ResolveAlert,
    Severity,
    StateDict,
    contact_from_dict,
    contact_to_dict,
)
from shouhu.exceptions import ShouhuError, StorageError

AlertState = Literal["raised", "notified", "acknowledged", "resolved"]
Trigger = Literal["notify", "escalate", "update", "ack", "resolve"]

TRANSITIONS: Final[Mapping[tuple[AlertState, Trigger], AlertState]] = {
    ("raised", "notify"): "notified",
    ("raised", "update"): "raised",
    ("raised", "resolve"): "resolved",
    ("notified", "escalate"): "notified",
    ("notified", "update"): "notified",
    ("notified", "ack"): "acknowledged",
    ("notified", "resolve"): "resolved",
    ("acknowledged", "update"): "acknowledged",
    ("acknowledged", "resolve"): "resolved",
}

STATE_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    escalate_after_s: int = 300
    suppress_s: int = 600
    escalate_after_by_kind: Mapping[str, int] = field(default_factory=dict)
    suppress_by_kind: Mapping[str, int] = field(default_factory=dict)

    def escalate_ms(self, kind: str) -> int:
        return self.escalate_after_by_kind.get(kind, self.escalate_after_s) * 1000

    def suppress_ms(self, kind: str) -> int:
        return self.suppress_by_kind.get(kind, self.suppress_s) * 1000


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of one alert: stored in the alert history and published."""

    alert_id: str
    kind: str
    key: str
    state: AlertState
    at_ms: int
    actor: str  # "rules", "escalation", or the id of the person who acted
    detail: str = ""  # public: no personal data


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    kind: str
    key: str
    severity: Severity
    title: str
    message: str  # for the notifier only
    subjects: tuple[str, ...]
    contacts: tuple[Contact, ...]
    data: Mapping[str, Any]
    state: AlertState
    raised_at: int
    updated_at: int
    order: int = -1  # highest contact order reached; -1 = nobody yet
    next_escalation_at: int | None = None
    acked_by: str | None = None
    suppressed: bool = False
    repeats: int = 0  # de-duplicated re-raises

    def reached(self) -> tuple[Contact, ...]:
        """Contacts notified so far."""
        return tuple(c for c in self.contacts if c.order <= self.order)


class PublicAlert(TypedDict):
    """What ``shouhu/v1/alerts/{kind}`` carries: ids and numbers, no personal data."""

    id: str
    kind: str
    key: str
    severity: str
    title: str
    state: str
    at: int
    actor: str
    detail: str
    subjects: list[str]
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliverTo:
    """Send ``alert`` (this ``event`` of it) to one contact through the notifier."""

    contact: Contact
    alert: Alert
    event: AlertEvent


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` on ``shouhu/v1/alerts/{event.kind}`` and store ``event``."""

    event: AlertEvent
    payload: PublicAlert


Effect: TypeAlias = DeliverTo | Publish


def public(alert: Alert, event: AlertEvent) -> PublicAlert:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "key": alert.key,
        "severity": alert.severity,
        "title": alert.title,
        "state": event.state,
        "at": event.at_ms,
        "actor": event.actor,
        "detail": event.detail,
        "subjects": list(alert.subjects),
        "data": dict(alert.data),
    }


def transition(state: AlertState, trigger: Trigger) -> AlertState:
    """The next state, or a ShouhuError naming the refused transition."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise ShouhuError(
            f"alert cannot {trigger} when {state}",
            hint="only notified alerts can be acknowledged",
        ) from None


class AlertBook:
    """The open alerts and the recent resolutions (for suppression)."""

    def __init__(self, config: LifecycleConfig | None = None) -> None:
        self.config = config or LifecycleConfig()
        self._open: dict[tuple[str, str], Alert] = {}
        self._resolved_at: dict[tuple[str, str], int] = {}

    # -- queries --------------------------------------------------------------------------

    def open_alerts(self) -> tuple[Alert, ...]:
        return tuple(sorted(self._open.values(), key=lambda a: (a.raised_at, a.id)))

    def get(self, alert_id: str) -> Alert | None:
        return next((a for a in self._open.values() if a.id == alert_id), None)

    def find(self, kind: str, key: str) -> Alert | None:
        return self._open.get((kind, key))

    # -- inputs ---------------------------------------------------------------------------

    def apply(self, action: Action, now_ms: int) -> list[Effect]:
        """Effects of one rule action; actions other than Raise/ResolveAlert yield none."""
        if isinstance(action, RaiseAlert):
            existing = self._open.get((action.kind, action.key))
            if existing is None:
                return self._open_alert(action, now_ms)
            return self._update(existing, action, now_ms)
        if isinstance(action, ResolveAlert):
            existing = self._open.get((action.kind, action.key))
            if existing is None:
                return []
            return self._resolve(existing, "rules", action.reason, now_ms)
        return []

    def ack(self, alert_id: str, by: str, now_ms: int) -> list[Effect]:
        """Someone took the alert in hand: escalation stops."""
        alert = self._require(alert_id)
        state = transition(alert.state, "ack")
        alert = dataclasses.replace(
            alert, state=state, acked_by=by, next_escalation_at=None, updated_at=now_ms
        )
        self._open[(alert.kind, alert.key)] = alert
        event = AlertEvent(alert.id, alert.kind, alert.key, state, now_ms, by, "acknowledged")
        return [Publish(event, public(alert, event))]

    def resolve(
        self, alert_id: str, by: str, now_ms: int, reason: str = "resolved by hand"
    ) -> list[Effect]:
        return self._resolve(self._require(alert_id), by, reason, now_ms)

    def tick(self, now_ms: int) -> list[Effect]:
        """Escalations that are due; forget resolutions older than any suppression window."""
        out: list[Effect] = []
        for alert in self.open_alerts():
            due = alert.next_escalation_at
            if alert.state == "notified" and due is not None and now_ms >= due:
                out.extend(self._escalate(alert, now_ms))
        longest = max([self.config.suppress_s, *self.config.suppress_by_kind.values()]) * 1000
        self._resolved_at = {k: t for k, t in self._resolved_at.items() if now_ms - t <= longest}
        return out

    # -- persistence ----------------------------------------------------------------------

    def to_state(self) -> StateDict:
        return {
            "v": STATE_VERSION,
            "open": [_alert_to_dict(a) for a in self.open_alerts()],
            "resolved": [[k, key, t] for (k, key), t in sorted(self._resolved_at.items())],
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], config: LifecycleConfig | None = None
    ) -> AlertBook:
        if state.get("v") != STATE_VERSION:
            raise StorageError(f"alert state version {state.get('v')!r} is not {STATE_VERSION}")
        book = cls(config)
        try:
            for d in state["open"]:
                a = _alert_from_dict(d)
                book._open[(a.kind, a.key)] = a
            for kind, key, t in state["resolved"]:
                book._resolved_at[(str(kind), str(key))] = int(t)
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"alert state is damaged: {exc!r}") from exc
        return book

    # -- transitions ----------------------------------------------------------------------

    def _require(self, alert_id: str) -> Alert:
        alert = self.get(alert_id)
        if alert is None:
            raise ShouhuError(f"no open alert {alert_id!r}", hint="it may be resolved already")
        return alert

    def _open_alert(self, action: RaiseAlert, now_ms: int) -> list[Effect]:
        pair = (action.kind, action.key)
        last = self._resolved_at.get(pair)
        suppressed = last is not None and now_ms - last < self.config.suppress_ms(action.kind)
        alert = Alert(
            id=f"{action.kind}:{action.key}:{now_ms}",
            kind=action.kind,
            key=action.key,
            severity=action.severity,
            title=action.title,
            message=action.message,
            subjects=action.subjects,
            contacts=action.contacts,
            data=action.data,
            state="raised",
            raised_at=now_ms,
            updated_at=now_ms,
            suppressed=suppressed,
        )
        self._open[pair] = alert
        detail = "suppressed: re-raised soon after resolution" if suppressed else ""
        event = AlertEvent(alert.id, alert.kind, alert.key, "raised", now_ms, "rules", detail)
        out: list[Effect] = [Publish(event, public(alert, event))]
        if not suppressed:
            out.extend(self._notify(alert, now_ms))
        return out

    def _update(self, alert: Alert, action: RaiseAlert, now_ms: int) -> list[Effect]:
        higher = SEVERITY_RANK[action.severity] > SEVERITY_RANK[alert.severity]
        state = transition(alert.state, "update")
        alert = dataclasses.replace(
            alert,
            state=state,
            severity=action.severity if higher else alert.severity,
            title=action.title,
            message=action.message,
            subjects=action.subjects,
            contacts=action.contacts,
            data=action.data,
            updated_at=now_ms,
            repeats=alert.repeats + 1,
        )
        self._open[(alert.kind, alert.key)] = alert
        if not higher:
            return []
        if alert.state == "raised":
            return self._notify(dataclasses.replace(alert, suppressed=False), now_ms)
        detail = f"severity raised to {alert.severity}"
        event = AlertEvent(alert.id, alert.kind, alert.key, alert.state, now_ms, "rules", detail)
        out: list[Effect] = [Publish(event, public(alert, event))]
        out.extend(DeliverTo(c, alert, event) for c in alert.reached())
        return out

    def _notify(self, alert: Alert, now_ms: int) -> list[Effect]:
        """raised -> notified: deliver to the lowest contact order."""
        orders = sorted({c.order for c in alert.contacts})
        first = orders[0] if orders else 0
        later = [o for o in orders if o > first]
        state = transition(alert.state, "notify")
        alert = dataclasses.replace(
            alert,
            state=state,
            order=first,
            next_escalation_at=now_ms + self.config.escalate_ms(alert.kind) if later else None,
            updated_at=now_ms,
        )
        self._open[(alert.kind, alert.key)] = alert
        group = [c for c in alert.contacts if c.order == first]
        detail = f"order {first}: {len(group)} contact(s)"
        event = AlertEvent(alert.id, alert.kind, alert.key, state, now_ms, "rules", detail)
        return [Publish(event, public(alert, event)), *(DeliverTo(c, alert, event) for c in group)]

    def _escalate(self, alert: Alert, now_ms: int) -> list[Effect]:
        orders = sorted({c.order for c in alert.contacts if c.order > alert.order})
        if not orders:
            self._open[(alert.kind, alert.key)] = dataclasses.replace(
                alert, next_escalation_at=None
            )
            return []
        nxt = orders[0]
        state = transition(alert.state, "escalate")
        alert = dataclasses.replace(
            alert,
            state=state,
            order=nxt,
            next_escalation_at=now_ms + self.config.escalate_ms(alert.kind)
            if len(orders) > 1
            else None,
            updated_at=now_ms,
        )
        self._open[(alert.kind, alert.key)] = alert
        group = [c for c in alert.contacts if c.order == nxt]
        detail = f"escalated to order {nxt}: {len(group)} contact(s)"
        event = AlertEvent(alert.id, alert.kind, alert.key, state, now_ms, "escalation", detail)
        return [Publish(event, public(alert, event)), *(DeliverTo(c, alert, event) for c in group)]

    def _resolve(self, alert: Alert, by: str, reason: str, now_ms: int) -> list[Effect]:
        state = transition(alert.state, "resolve")
        was_notified = alert.state != "raised"
        alert = dataclasses.replace(alert, state=state, next_escalation_at=None, updated_at=now_ms)
        del self._open[(alert.kind, alert.key)]
        self._resolved_at[(alert.kind, alert.key)] = now_ms
        event = AlertEvent(alert.id, alert.kind, alert.key, state, now_ms, by, reason)
        out: list[Effect] = [Publish(event, public(alert, event))]
        if was_notified:
            out.extend(DeliverTo(c, alert, event) for c in alert.reached())
        return out


def _alert_to_dict(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "key": a.key,
        "severity": a.severity,
        "title": a.title,
        "message": a.message,
        "subjects": list(a.subjects),
        "contacts": [contact_to_dict(c) for c in a.contacts],
        "data": dict(a.data),
        "state": a.state,
        "raised_at": a.raised_at,
        "updated_at": a.updated_at,
        "order": a.order,
        "next_escalation_at": a.next_escalation_at,
        "acked_by": a.acked_by,
        "suppressed": a.suppressed,
        "repeats": a.repeats,
    }


def _alert_from_dict(d: Mapping[str, Any]) -> Alert:
    return Alert(
        id=str(d["id"]),
        kind=str(d["kind"]),
        key=str(d["key"]),
        severity=d["severity"],
        title=str(d["title"]),
        message=str(d["message"]),
        subjects=tuple(d["subjects"]),
        contacts=tuple(contact_from_dict(c) for c in d["contacts"]),
        data=dict(d["data"]),
        state=d["state"],
        raised_at=int(d["raised_at"]),
        updated_at=int(d["updated_at"]),
        order=int(d["order"]),
        next_escalation_at=d["next_escalation_at"],
        acked_by=d["acked_by"],
        suppressed=bool(d["suppressed"]),
        repeats=int(d["repeats"]),
    )
