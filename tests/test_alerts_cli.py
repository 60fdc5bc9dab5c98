"""`shouhu alerts ...` against a real state db filled through the alert book."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.alerts import AlertBook, Publish
from collector.alerts.store import AlertStore, Delivery
from collector.domain import Contact
from collector.rules.actions import RaiseAlert
from shouhu.cli import main

T0 = 1_763_800_000_000
FAMILY = Contact("c-1", "Sun Li", "json://localhost/family", "family", 0)


def raise_(kind: str, key: str) -> RaiseAlert:
    return RaiseAlert(
        kind,
        key,
        "critical",
        f"{kind} {key}",
        "Sun Li's flat",
        (f"household:{key}",),
        (FAMILY,),
        {"n": 1},
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "state.sqlite")
    book = AlertBook()
    effects = book.apply(raise_("smoke", "h-1"), T0) + book.apply(
        raise_("aed_missing", "aed-2"), T0 + 1000
    )
    closed = book.find("aed_missing", "aed-2")
    assert closed is not None
    effects += book.resolve(closed.id, "desk", T0 + 5000)
    with AlertStore(path) as store:
        store.record_step(
            [e for e in effects if isinstance(e, Publish)], book_state=book.to_state()
        )
        store.log_delivery(
            Delivery(
                f"smoke:h-1:{T0}",
                "smoke",
                "notified",
                "c-1",
                "json",
                1,
                False,
                "refused",
                T0 + 10,
                None,
            )
        )
        store.log_delivery(
            Delivery(
                f"smoke:h-1:{T0}", "smoke", "notified", "c-1", "json", 2, True, "", T0 + 900, 900
            )
        )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["alerts", *args])
    return result.exit_code, result.output


def test_list_open_all_kind_and_json(db: str) -> None:
    code, out = run("list", "--db", db)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "kind", "severity", "state", "raised", "title"]
    assert len(lines) == 2 and f"smoke:h-1:{T0}" in lines[1] and "notified" in lines[1]
    code, out = run("list", "--all", "--json", "--db", db)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["kind"], r["state"]) for r in rows] == [
        ("aed_missing", "resolved"),
        ("smoke", "notified"),
    ]
    code, out = run("list", "--all", "--kind", "smoke", "--json", "--db", db)
    assert [json.loads(line)["key"] for line in out.splitlines()] == ["h-1"]
    code, out = run("list", "--kind", "wanderer", "--db", db)
    assert (code, out.strip()) == (0, "no open alerts")


def test_show_lists_transitions_and_deliveries(db: str) -> None:
    code, out = run("show", f"smoke:h-1:{T0}", "--db", db)
    assert code == 0, out
    assert "raised" in out and "notified" in out
    assert "c-1 via json #1  failed: refused" in out and "#2  ok 900 ms" in out
    assert "Sun Li" not in out  # the message and names stay with the notifier
    code, out = run("show", f"smoke:h-1:{T0}", "--json", "--db", db)
    detail = json.loads(out)
    assert [e["state"] for e in detail["events"]] == ["raised", "notified"]
    assert [d["ok"] for d in detail["deliveries"]] == [False, True]


def test_errors_are_one_line(db: str) -> None:
    code, out = run("show", "nope", "--db", db)
    assert code == 1 and out.strip() == "error: no alert 'nope' (see `shouhu alerts list --all`)"
    code, out = run("ack", "nope", "--by", "x", "--db", db)
    assert code == 1 and "no alert 'nope'" in out
    code, out = run("resolve", f"aed_missing:aed-2:{T0 + 1000}", "--by", "x", "--db", db)
    assert code == 1 and "no open alert" in out
    code, out = run("ack", f"smoke:h-1:{T0}", "--db", db)
    assert code == 2 and "--by" in out


def test_resolve_without_collector(db: str) -> None:
    code, out = run(
        "resolve", f"smoke:h-1:{T0}", "--by", "desk", "--reason", "false alarm", "--db", db
    )
    assert code == 0 and "resolved" in out
    code, out = run("list", "--db", db)
    assert out.strip() == "no open alerts"
    code, out = run("show", f"smoke:h-1:{T0}", "--json", "--db", db)
    assert json.loads(out)["events"][-1] == {
        "state": "resolved",
        "at_ms": json.loads(out)["events"][-1]["at_ms"],
        "actor": "desk",
        "detail": "false alarm",
    }
