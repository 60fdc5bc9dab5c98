"""Alert lifecycle: raise, de-duplicate, escalate, acknowledge, resolve, suppress, persist."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

from collector.alerts import TRANSITIONS, AlertBook, DeliverTo, LifecycleConfig, Publish
from collector.alerts.lifecycle import Effect, transition
from collector.domain import Contact
from collector.rules.actions import Notice, RaiseAlert, ResolveAlert
from shouhu.exceptions import ShouhuError

SEC = 1000
DAUGHTER = Contact("c-1", "Wang Fang", "json://localhost/daughter", "family", 0)
SON = Contact("c-2", "Wang Lei", "json://localhost/son", "family", 0)
NEIGHBOUR = Contact("c-3", "Zhao Min", "json://localhost/neighbour", "family", 1)
DESK = Contact("c-4", "Police desk", "json://localhost/desk", "police_desk", 2)
CONFIG = LifecycleConfig(escalate_after_s=300, suppress_s=600)


def wander(severity: str = "warning", gw: str = "gw-street-1") -> RaiseAlert:
    return RaiseAlert(
        kind="wanderer",
        key="w-1",
        severity=severity,  # type: ignore[arg-type]
        title="Wanderer: outside the safe zones",
        message="Li Wei is outside the safe zones.",
        subjects=("wearer:w-1",),
        contacts=(DAUGHTER, SON, NEIGHBOUR, DESK),
        data={"gw": gw},
    )


def picture(effects: Sequence[Effect]) -> list[tuple[str, str, str]]:
    """(effect, event state, contact id) for each effect."""
    return [
        ("deliver", e.event.state, e.contact.id)
        if isinstance(e, DeliverTo)
        else ("publish", e.event.state, e.event.detail)
        for e in effects
    ]


def test_raise_notifies_the_first_order_then_escalates_until_acknowledged() -> None:
    book = AlertBook(CONFIG)
    t0 = 1_763_800_000_000
    out = book.apply(wander(), t0)
    assert picture(out) == [
        ("publish", "raised", ""),
        ("publish", "notified", "order 0: 2 contact(s)"),
        ("deliver", "notified", "c-1"),
        ("deliver", "notified", "c-2"),
    ]
    (alert,) = book.open_alerts()
    assert alert.id == f"wanderer:w-1:{t0}" and alert.state == "notified"
    assert book.tick(t0 + 299 * SEC) == []
    assert picture(book.tick(t0 + 300 * SEC)) == [
        ("publish", "notified", "escalated to order 1: 1 contact(s)"),
        ("deliver", "notified", "c-3"),
    ]
    assert book.tick(t0 + 400 * SEC) == []
    assert [e.event.actor for e in book.tick(t0 + 600 * SEC)] == ["escalation", "escalation"]
    assert book.tick(t0 + 900 * SEC) == []  # no order after 2
    out = book.ack(alert.id, "c-3", t0 + 901 * SEC)
    assert picture(out) == [("publish", "acknowledged", "acknowledged")]
    assert book.find("wanderer", "w-1").acked_by == "c-3"  # type: ignore[union-attr]


def test_ack_stops_escalation() -> None:
    book = AlertBook(CONFIG)
    book.apply(wander(), 0)
    book.ack(book.open_alerts()[0].id, "c-1", 10 * SEC)
    assert book.tick(3600 * SEC) == []


def test_duplicates_update_without_notifying_and_severity_up_renotifies() -> None:
    book = AlertBook(CONFIG)
    book.apply(wander(), 0)
    assert book.apply(wander(gw="gw-street-2"), 5 * SEC) == []
    (alert,) = book.open_alerts()
    assert alert.repeats == 1 and alert.data == {"gw": "gw-street-2"}
    out = book.apply(wander("critical"), 6 * SEC)
    assert picture(out) == [
        ("publish", "notified", "severity raised to critical"),
        ("deliver", "notified", "c-1"),
        ("deliver", "notified", "c-2"),
    ]
    assert book.apply(wander("info"), 7 * SEC) == []
    assert book.open_alerts()[0].severity == "critical"  # never goes down


def test_resolve_tells_who_was_reached_and_suppression_holds_back_a_flap() -> None:
    book = AlertBook(CONFIG)
    book.apply(wander(), 0)
    out = book.apply(ResolveAlert("wanderer", "w-1", "back in a safe zone"), 60 * SEC)
    assert picture(out) == [
        ("publish", "resolved", "back in a safe zone"),
        ("deliver", "resolved", "c-1"),
        ("deliver", "resolved", "c-2"),
    ]
    assert book.open_alerts() == ()
    assert book.apply(ResolveAlert("wanderer", "w-1", "again"), 61 * SEC) == []
    flap = book.apply(wander(), 120 * SEC)  # within 600 s of the resolution
    assert picture(flap) == [("publish", "raised", "suppressed: re-raised soon after resolution")]
    assert book.tick(3600 * SEC) == []  # a suppressed alert does not escalate
    with pytest.raises(ShouhuError, match="cannot ack when raised"):
        book.ack(book.open_alerts()[0].id, "c-1", 3601 * SEC)
    assert [
        e.event.state for e in book.apply(ResolveAlert("wanderer", "w-1", "ok"), 3602 * SEC)
    ] == ["resolved"]  # never delivered, so nobody is told it ended
    later = book.apply(wander(), 3602 * SEC + 601 * SEC)  # after the window: a full alert
    assert [p[0] for p in picture(later)] == ["publish", "publish", "deliver", "deliver"]


def test_manual_resolve_and_unknown_ids() -> None:
    book = AlertBook(CONFIG)
    book.apply(wander(), 0)
    alert_id = book.open_alerts()[0].id
    book.ack(alert_id, "c-1", SEC)
    out = book.resolve(alert_id, "c-1", 2 * SEC)
    assert [(e.event.state, e.event.actor) for e in out if isinstance(e, Publish)] == [
        ("resolved", "c-1")
    ]
    with pytest.raises(ShouhuError, match="no open alert"):
        book.ack(alert_id, "c-1", 3 * SEC)
    assert book.apply(Notice("footprint", (DAUGHTER,), "t", "m"), 0) == []


def test_published_payload_carries_no_personal_data() -> None:
    book = AlertBook(CONFIG)
    out = book.apply(wander(), 0) + book.tick(300 * SEC)
    payloads = [json.dumps(e.payload) for e in out if isinstance(e, Publish)]
    assert payloads and all("Li Wei" not in p and "Wang" not in p for p in payloads)
    assert json.loads(payloads[0])["subjects"] == ["wearer:w-1"]


STATES = ("raised", "notified", "acknowledged", "resolved")
TRIGGERS = ("notify", "escalate", "update", "ack", "resolve")


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(STATES, TRIGGERS)))
def test_transition_table_is_the_only_way(state: Any, trigger: Any) -> None:
    if (state, trigger) in TRANSITIONS:
        assert transition(state, trigger) == TRANSITIONS[(state, trigger)]
    else:
        with pytest.raises(ShouhuError):
            transition(state, trigger)
    assert all(s != "resolved" for s, _ in TRANSITIONS)  # resolved is final


def _timeline() -> list[tuple[str, Any, int]]:
    other = RaiseAlert(
        "smoke", "h-1", "critical", "Smoke alarm", "At 12 Willow Lane", (), (DESK, NEIGHBOUR)
    )
    return [
        ("apply", wander(), 0),
        ("apply", other, 10 * SEC),
        ("apply", wander(gw="gw-street-2"), 20 * SEC),
        ("tick", None, 300 * SEC),
        ("ack", ("wanderer", "c-3"), 310 * SEC),
        ("tick", None, 320 * SEC),
        ("apply", ResolveAlert("smoke", "h-1", "cleared"), 330 * SEC),
        ("apply", other, 400 * SEC),
        ("apply", ResolveAlert("wanderer", "w-1", "home"), 500 * SEC),
        ("tick", None, 2000 * SEC),
    ]


def _play(book: AlertBook, steps: list[tuple[str, Any, int]]) -> list[list[Effect]]:
    out: list[list[Effect]] = []
    for op, arg, now in steps:
        if op == "apply":
            out.append(book.apply(arg, now))
        elif op == "tick":
            out.append(book.tick(now))
        else:
            kind, by = arg
            alert = next(a for a in book.open_alerts() if a.kind == kind)
            out.append(book.ack(alert.id, by, now))
    return out


def test_state_round_trip_mid_timeline_gives_the_same_effects() -> None:
    steps = _timeline()
    full = _play(AlertBook(CONFIG), steps)
    assert sum(len(o) for o in full) > 10
    for cut in range(1, len(steps)):
        first = AlertBook(CONFIG)
        head = _play(first, steps[:cut])
        state = json.loads(json.dumps(first.to_state()))
        assert head + _play(AlertBook.from_state(state, CONFIG), steps[cut:]) == full, cut
