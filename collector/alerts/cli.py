"""``shouhu alerts ...``: list, show, acknowledge and resolve alerts in the collector state db.

``ack``/``resolve`` while a collector runs (it ticked within the last 10 s) are *requests*: a
row in ``pending_actions`` that the collector applies in its next tick, so its in-memory alert
book stays the one truth and the contacts are told. With no collector running they change the
saved alert book directly (history only: nobody is notified, nothing is published).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import click

from collector.alerts.store import AlertRow, AlertStore, PendingKind
from shouhu.exceptions import ShouhuError

DEFAULT_DB: Final = "collector-state.sqlite"


def _db_option(f: Any) -> Any:
    return click.option(
        "--db",
        envvar="SHOUHU_STATE",
        default=DEFAULT_DB,
        show_default=True,
        help="Collector state database (env SHOUHU_STATE).",
    )(f)


@contextmanager
def _open(db: str) -> Iterator[AlertStore]:
    store = AlertStore(db)
    try:
        yield store
    finally:
        store.close()


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


@click.group()
def alerts() -> None:
    """Alerts: list, show, acknowledge, resolve (collector state db)."""


@alerts.command("list")
@click.option("--open/--all", "open_only", default=True, help="Only open alerts (default).")
@click.option("--kind", default=None, help="Only this kind (smoke, wanderer, ...).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@_db_option
def list_alerts(open_only: bool, kind: str | None, as_json: bool, db: str) -> None:
    """Newest first."""
    with _open(db) as store:
        found = store.list_alerts(open_only=open_only, kind=kind)
    if as_json:
        for a in found:
            click.echo(json.dumps(a.to_dict(), sort_keys=True))
        return
    if not found:
        click.echo("no open alerts" if open_only else "no alerts")
        return
    rows = [_row(a) for a in found]
    click.echo(_table(("id", "kind", "severity", "state", "raised", "title"), rows))


def _row(a: AlertRow) -> tuple[str, ...]:
    return (a.id, a.kind, a.severity, a.state, _when(a.raised_ms), a.title)


@alerts.command("show")
@click.argument("alert_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@_db_option
def show(alert_id: str, as_json: bool, db: str) -> None:
    """One alert with its transitions and delivery attempts."""
    with _open(db) as store:
        detail = store.show(alert_id)
    if as_json:
        out = {
            **detail.alert.to_dict(),
            "events": [
                {"state": e.state, "at_ms": e.at_ms, "actor": e.actor, "detail": e.detail}
                for e in detail.events
            ],
            "deliveries": [
                {
                    "state": d.state,
                    "contact": d.contact_id,
                    "channel": d.channel,
                    "attempt": d.attempt,
                    "ok": d.ok,
                    "error": d.error,
                    "at_ms": d.at_ms,
                    "latency_ms": d.latency_ms,
                }
                for d in detail.deliveries
            ],
        }
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    a = detail.alert
    click.echo(f"{a.id}  {a.kind}/{a.key}  {a.severity}  {a.state}")
    click.echo(f"title: {a.title}")
    click.echo(f"subjects: {', '.join(a.subjects) or '-'}")
    if a.acked_by:
        click.echo(f"acknowledged by: {a.acked_by}")
    click.echo("transitions:")
    for e in detail.events:
        click.echo(f"  {_when(e.at_ms)}  {e.state:<12}  {e.actor}  {e.detail}".rstrip())
    click.echo("deliveries:")
    for d in detail.deliveries:
        result = "ok" if d.ok else f"failed: {d.error}"
        latency = f" {d.latency_ms} ms" if d.latency_ms is not None else ""
        click.echo(
            f"  {_when(d.at_ms)}  {d.state:<12}  {d.contact_id} via {d.channel}"
            f" #{d.attempt}  {result}{latency}"
        )


def _act(db: str, action: PendingKind, alert_id: str, by: str, reason: str, wait_s: float) -> None:
    with _open(db) as store:
        if store.get(alert_id) is None:
            raise ShouhuError(f"no alert {alert_id!r}", hint="see `shouhu alerts list`")
        if not store.collector_alive():
            payload = store.apply_offline(action, alert_id, by, reason)
            click.echo(
                f"{alert_id} {payload['state']} (no collector running: recorded, nobody notified)"
            )
            return
        request = store.request(action, alert_id, by, reason)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            p = store.pending_action(request)
            if p is not None and p.done_ms is not None:
                if not p.ok:
                    raise ShouhuError(f"the collector refused: {p.error}")
                click.echo(f"{alert_id}: {action} applied by the running collector")
                return
            time.sleep(0.2)
    click.echo(f"{alert_id}: {action} requested; the running collector applies it on its next tick")


@alerts.command("ack")
@click.argument("alert_id", metavar="ID")
@click.option("--by", required=True, help="Who takes the alert in hand (stops escalation).")
@click.option(
    "--wait", "wait_s", default=5.0, show_default=True, help="Seconds to wait for the collector."
)
@_db_option
def ack(alert_id: str, by: str, wait_s: float, db: str) -> None:
    """Acknowledge a notified alert: escalation stops."""
    _act(db, "ack", alert_id, by, "", wait_s)


@alerts.command("resolve")
@click.argument("alert_id", metavar="ID")
@click.option("--by", required=True, help="Who resolves it.")
@click.option("--reason", default="resolved by hand", show_default=True)
@click.option(
    "--wait", "wait_s", default=5.0, show_default=True, help="Seconds to wait for the collector."
)
@_db_option
def resolve(alert_id: str, by: str, reason: str, wait_s: float, db: str) -> None:
    """Resolve an open alert by hand (the contacts reached hear about it)."""
    _act(db, "resolve", alert_id, by, reason, wait_s)
