"""Alert store: history and state round trip, restart with the same alerts and timers."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.alerts import AlertBook, LifecycleConfig, Publish
from collector.alerts.store import AlertStore, Delivery
from collector.domain import Contact
from collector.rules.actions import RaiseAlert
from shouhu.exceptions import ShouhuError

T0 = 1_763_800_000_000
DAUGHTER = Contact("c-1", "Wang Fang", "json://localhost/daughter", "family", 0)
DESK = Contact("c-4", "Police desk", "json://localhost/desk", "police_desk", 1)
CONFIG = LifecycleConfig(escalate_after_s=300)


def wander() -> RaiseAlert:
    return RaiseAlert(
        kind="wanderer",
        key="w-1",
        severity="warning",
        title="Wanderer: outside the safe zones",
        message="Li Wei is outside the safe zones.",
        subjects=("wearer:w-1",),
        contacts=(DAUGHTER, DESK),
        data={"gw": "gw-street-1"},
    )


def publishes(effects: list) -> list[Publish]:  # type: ignore[type-arg]
    return [e for e in effects if isinstance(e, Publish)]


def test_events_and_state_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite")
    book = AlertBook(CONFIG)
    with AlertStore(path) as store:
        assert store.load_state() == (None, None)
        effects = book.apply(wander(), T0)
        store.record_step(
            publishes(effects), engine_state={"v": 1, "x": [1]}, book_state=book.to_state()
        )
    with AlertStore(path) as store:  # a new process
        engine_state, book_state = store.load_state()
        assert engine_state == {"v": 1, "x": [1]}
        assert book_state is not None
        again = AlertBook.from_state(book_state, CONFIG)
        assert again.open_alerts() == book.open_alerts()
        # the escalation timer carried over: due at T0 + 300 s, not earlier
        assert again.tick(T0 + 299_000) == []
        escalated = again.tick(T0 + 300_000)
        assert [e.event.detail for e in publishes(escalated)] == [
            "escalated to order 1: 1 contact(s)"
        ]
        (row,) = store.list_alerts()
        assert (row.kind, row.key, row.state, row.raised_ms) == ("wanderer", "w-1", "notified", T0)
        assert row.subjects == ("wearer:w-1",) and row.data == {"gw": "gw-street-1"}
        detail = store.show(row.id)
        assert [(e.state, e.actor) for e in detail.events] == [
            ("raised", "rules"),
            ("notified", "rules"),
        ]


def test_list_show_and_personal_data_kept_out(tmp_path: Path) -> None:
    book = AlertBook(CONFIG)
    with AlertStore(str(tmp_path / "s.sqlite")) as store:
        effects = book.apply(wander(), T0)
        alert_id = book.open_alerts()[0].id
        effects += book.ack(alert_id, "officer-7", T0 + 1000)
        effects += book.resolve(alert_id, "officer-7", T0 + 2000, "found at the market")
        store.record_step(publishes(effects), book_state=book.to_state())
        store.log_delivery(
            Delivery(alert_id, "wanderer", "notified", "c-1", "json", 1, True, "", T0 + 40, 40)
        )
        assert store.list_alerts() == []
        (row,) = store.list_alerts(open_only=False, kind="wanderer")
        assert (row.state, row.acked_by, row.updated_ms) == ("resolved", "officer-7", T0 + 2000)
        assert store.list_alerts(open_only=False, kind="smoke") == []
        detail = store.show(alert_id)
        assert [e.state for e in detail.events] == [
            "raised",
            "notified",
            "acknowledged",
            "resolved",
        ]
        assert [(d.contact_id, d.latency_ms) for d in detail.deliveries] == [("c-1", 40)]
        with pytest.raises(ShouhuError, match="no alert"):
            store.show("nope")
    text = (tmp_path / "s.sqlite").read_bytes()
    # the name is in the saved alert book only while the alert is open; this one is resolved
    assert b"Li Wei" not in text.replace(b"\x00", b"")


def test_pending_requests_and_offline_apply(tmp_path: Path) -> None:
    book = AlertBook(CONFIG)
    now = [T0 / 1000]
    with AlertStore(str(tmp_path / "s.sqlite"), clock=lambda: now[0]) as store:
        store.record_step(publishes(book.apply(wander(), T0)), book_state=book.to_state())
        alert_id = book.open_alerts()[0].id
        assert not store.collector_alive()
        store.record_step([], heartbeat_ms=T0)
        assert store.collector_alive(T0 + 5000) and not store.collector_alive(T0 + 60_000)
        store.clear_heartbeat()
        assert not store.collector_alive(T0)

        rid = store.request("ack", alert_id, "officer-7")
        (p,) = store.pending()
        assert (p.id, p.action, p.alert_id, p.by) == (rid, "ack", alert_id, "officer-7")
        store.finish(rid, False, "alert cannot ack when acknowledged")
        assert store.pending() == []
        done = store.pending_action(rid)
        assert done is not None and done.ok is False and "cannot ack" in done.error

        payload = store.apply_offline("ack", alert_id, "officer-7")
        assert payload["state"] == "acknowledged"
        _, saved = store.load_state()
        assert saved is not None
        assert AlertBook.from_state(saved).open_alerts()[0].acked_by == "officer-7"
        with pytest.raises(ShouhuError, match="cannot ack"):
            store.apply_offline("ack", alert_id, "officer-8")
        assert store.get(alert_id) is not None
        assert store.get(alert_id).state == "acknowledged"  # type: ignore[union-attr]
