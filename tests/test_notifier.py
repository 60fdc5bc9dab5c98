"""Notifier: real apprise deliveries to a local HTTP receiver; retries; one bad channel alone."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from http_receiver import HttpReceiver

from collector.alerts.notifier import Message, Notifier, apprise_send, channel_of
from collector.alerts.store import AlertStore
from collector.domain import Contact


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(contact: Contact, origin_ms: int | None = None) -> Message:
    return Message(
        contact=contact,
        title="Smoke alarm [critical]",
        body="Smoke alarm at 12 Willow Lane, flat 3 (kitchen).",
        kind="smoke",
        alert_id="smoke:h-1:1",
        state="notified",
        origin_ms=origin_ms,
    )


def test_json_and_form_channels_receive_title_and_body(tmp_path: Path) -> None:
    with HttpReceiver() as rx, AlertStore(str(tmp_path / "state.sqlite")) as store:
        family = Contact("c-1", "Sun Li", rx.url("json", "/family"))
        brigade = Contact("c-fb", "Brigade", rx.url("form", "/brigade"), "fire_brigade")
        notifier = Notifier(store, backoff_s=0.01)
        origin = int(time.time() * 1000) - 250
        notifier.submit(message(family, origin))
        notifier.submit(message(brigade, origin))
        assert notifier.wait_idle(10)
        notifier.stop()
        (j,) = rx.at("/family")
        assert j.json()["title"] == "Smoke alarm [critical]"
        assert "Willow Lane" in j.json()["message"]
        (f,) = rx.at("/brigade")
        assert f.form()["title"] == "Smoke alarm [critical]"
        assert "Willow Lane" in f.form()["message"]
        rows = store.deliveries("smoke:h-1:1")
    assert sorted((d.contact_id, d.channel, d.attempt, d.ok) for d in rows) == [
        ("c-1", "json", 1, True),
        ("c-fb", "form", 1, True),
    ]
    assert all(d.latency_ms is not None and 250 <= d.latency_ms < 10_000 for d in rows)


def test_a_refused_channel_is_retried_and_logged_while_another_delivers(tmp_path: Path) -> None:
    with HttpReceiver() as rx, AlertStore(str(tmp_path / "state.sqlite")) as store:
        dead = Contact("c-dead", "Nobody", f"json://127.0.0.1:{refused_port()}/x?cto=1&rto=1")
        alive = Contact("c-ok", "Sun Li", rx.url("json", "/ok"))
        notifier = Notifier(store, attempts=3, backoff_s=0.5)
        notifier.submit(message(dead))
        notifier.submit(message(alive))
        rx.wait_for(1, "/ok", timeout=5)
        assert notifier.wait_idle(15)
        notifier.stop()
        rows = store.deliveries()
    dead_rows = [d for d in rows if d.contact_id == "c-dead"]
    assert [(d.attempt, d.ok) for d in dead_rows] == [(1, False), (2, False), (3, False)]
    assert all(d.error and d.latency_ms is None for d in dead_rows)
    (ok,) = [d for d in rows if d.ok]
    assert ok.contact_id == "c-ok"
    # delivered while the dead channel was still in its backoff (0.5 s, then 1 s)
    assert ok.at_ms < dead_rows[-1].at_ms
    assert all(d.channel == "json" for d in rows)


def test_an_http_error_counts_as_failure_and_the_url_is_never_stored(tmp_path: Path) -> None:
    with HttpReceiver(status={"/broken": 500}) as rx, AlertStore(str(tmp_path / "s.sqlite")) as st:
        secret_url = rx.url("json", "/broken") + "?token=s3cret"
        notifier = Notifier(st, attempts=2, backoff_s=0.01)
        out = notifier.deliver_now(message(Contact("c-1", "X", secret_url)))
        assert [(d.attempt, d.ok) for d in out] == [(1, False), (2, False)]
        assert len(rx.at("/broken")) == 2
        for d in st.deliveries():
            assert "s3cret" not in d.error and d.channel == "json"


def test_an_unknown_scheme_is_reported_without_crashing() -> None:
    error = apprise_send("nosuchscheme://x", "t", "b")
    assert "does not understand" in error
    assert channel_of("tgram://bot/chat") == "tgram"
    assert channel_of("not a url") == "invalid"
