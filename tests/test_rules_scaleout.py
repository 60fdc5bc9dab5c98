"""Several collectors, one rule engine: shared subscription + shared rule state in PostgreSQL.

Two in-process collectors share the up stream through an MQTT 5 shared subscription and the
rules through ``rules_state`` (the private PostgreSQL of the session, one database per test,
which is also the registry). A plain paho client plays the household gateways; the family's
apprise ``json://`` URL points at a local HTTP receiver. Whichever collector receives a
message, the leader runs the rules: one incident, notified once; when the leader leaves (or
its lock session dies) the other collector takes over and resolves the same alert.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from http_receiver import HttpReceiver
from mqtt_peers import GatewayClient
from test_alerts_e2e import Listener, PointKeepingWriter, bodies, contact, unique, until

from collector.alerts.notifier import Notifier
from collector.alerts.store import AlertStore
from collector.config import parse_config
from collector.domain import Gateway, Household, SmokeAlarm
from collector.ingest import Collector
from collector.registry.store import RegistryStore
from collector.rules.engine import EngineConfig
from collector.rules.registry_view import StaticRegistry
from collector.rules_service import RulesService
from collector.rules_shared import InboxEntry, RuleInbox, SharedRules
from shouhu.exceptions import ConfigError, StorageError
from shouhu.model import Record

KITCHEN = "rflink:FA20RF:97e3b2"
SMOKE = "smoke-rflink@1"
pytestmark = pytest.mark.timeout(60)


class Cluster:
    """Collectors sharing one group and one PostgreSQL database."""

    def __init__(self, mosquitto: Any, url: str, tmp: Path) -> None:
        self.mosquitto = mosquitto
        self.url = url
        self.tmp = tmp
        self.group = unique("grp")
        self.running: list[Collector] = []

    def start(self) -> Collector:
        name = unique("col")
        doc = {
            "broker": {
                "url": f"mqtt://{self.mosquitto.host}:{self.mosquitto.port}",
                "client_id": name,
                "protocol": "5",
                "shared_group": self.group,
                # a stopped member's session (and its share of the group's messages) ends soon
                "session_expiry_s": 1,
            },
            "writer": {"kind": "sqlite", "path": str(self.tmp / f"{name}-records.db")},
            "state": {"path": str(self.tmp / f"{name}-state.db")},
            "registry": {"path": self.url},
            "rules_state": {},  # the registry's PostgreSQL
            "rules": {"tz": "UTC", "gateway": {"health_interval_s": 86400}},
            "alerts": {"escalate_after_s": 3600},
            "notify": {"attempts": 2, "backoff_s": 0.05},
        }
        config = parse_config(doc, "test.yaml")
        assert config.rules is not None and config.rules.shared_state == self.url
        col = Collector(config, writer=PointKeepingWriter({"path": doc["writer"]["path"]}))
        col.start()
        self.running.append(col)
        assert col.wait_connected(10), "collector did not connect"
        return col

    def stop(self, col: Collector) -> None:
        col.stop(drain_timeout=5)
        self.running.remove(col)

    def leaders(self) -> list[Collector]:
        return [c for c in self.running if c.shared_rules is not None and c.shared_rules.leading]

    def one_leader(self, timeout: float = 6.0) -> Collector:
        assert until(lambda: len(self.leaders()) == 1, timeout), "no single rules leader"
        return self.leaders()[0]

    def close(self) -> None:
        for col in list(self.running):
            self.stop(col)


@pytest.fixture
def world(
    mosquitto: Any, postgres: Any, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[tuple[Cluster, GatewayClient, HttpReceiver, Listener, str, str]]:
    url = postgres.create_database(unique_name("rules"))
    gw_a, gw_b = unique("gw-hall"), unique("gw-stair")
    with HttpReceiver() as rx:
        family = contact(rx, "Sun Li", "/family")
        with RegistryStore(url) as registry:
            registry.add_all(
                [
                    Gateway(gw_a, "willow-3", "home", 31.23, 121.47),
                    Gateway(gw_b, "willow-3-stair", "home", 31.2301, 121.4701),
                    Household(
                        "h-1",
                        "12 Willow Lane, flat 3",
                        frozenset({gw_a, gw_b}),
                        "district-4",
                        (SmokeAlarm(KITCHEN, "h-1", "kitchen"),),
                        (family,),
                    ),
                ]
            )
        listener = Listener(mosquitto.host, mosquitto.port, ["shouhu/v1/alerts/smoke"])
        gateways = GatewayClient(mosquitto.host, mosquitto.port)
        cluster = Cluster(mosquitto, url, tmp_path)
        try:
            yield cluster, gateways, rx, listener, gw_a, gw_b
        finally:
            cluster.close()
            gateways.close()
            listener.close()


def smoke_events(listener: Listener) -> list[dict[str, Any]]:
    return listener.alert_events("smoke", "h-1")


def alarm_everywhere(gateways: GatewayClient, gw_a: str, gw_b: str, rounds: int = 3) -> None:
    """Both gateways hear the alarm, several times: messages land on both collectors."""
    for _ in range(rounds):
        for gw, rssi in ((gw_a, -60), (gw_b, -75)):
            gateways.send(gw, "alarm", SMOKE, KITCHEN, {"event": "alarm", "rssi": rssi})


def test_one_incident_notified_once_and_resolved_after_the_leader_leaves(
    world: tuple[Cluster, GatewayClient, HttpReceiver, Listener, str, str],
) -> None:
    cluster, gateways, rx, listener, gw_a, gw_b = world
    first, second = cluster.start(), cluster.start()
    leader = cluster.one_leader()
    time.sleep(0.3)  # SUBACKs before anything is published

    alarm_everywhere(gateways, gw_a, gw_b)
    assert until(lambda: sum(c.stats().stored for c in (first, second)) == 6)
    assert first.stats().stored > 0 and second.stats().stored > 0, "the group shares the load"
    notified = bodies(rx.wait_for(1, "/family"))
    assert until(lambda: [e["state"] for e in smoke_events(listener)] == ["raised", "notified"])
    time.sleep(0.5)  # nothing more may come
    assert len(rx.wait_for(1, "/family")) == 1, "notified once"
    assert notified[0]["title"] == "Smoke alarm [critical]"
    alert_id = smoke_events(listener)[0]["id"]

    cluster.stop(leader)
    successor = cluster.one_leader(timeout=5)
    assert successor is not leader
    time.sleep(2.5)  # the broker ends the stopped member's session: all goes to the successor
    gateways.send(gw_b, "alarm", SMOKE, KITCHEN, {"event": "alarm_cleared"})
    assert until(lambda: smoke_events(listener)[-1]["state"] == "resolved")
    events = smoke_events(listener)
    assert {e["id"] for e in events} == {alert_id}, "the successor resolved the same alert"
    assert [e["state"] for e in events] == ["raised", "notified", "resolved"]
    resolved = [b for b in bodies(rx.wait_for(2, "/family")) if b["title"].startswith("Resolved")]
    assert len(resolved) == 1
    # the shared history says the same, for every collector and the CLI
    assert successor.alert_store is not None
    rows = successor.alert_store.list_alerts(open_only=False, kind="smoke")
    assert [(r.id, r.state) for r in rows] == [(alert_id, "resolved")]
    assert successor.stats().rules_leader is True and "rules leader" in successor.stats().line()


def test_a_leader_whose_lock_session_dies_is_replaced_and_fenced(
    world: tuple[Cluster, GatewayClient, HttpReceiver, Listener, str, str], postgres: Any
) -> None:
    cluster, gateways, rx, listener, gw_a, gw_b = world
    cluster.start()
    cluster.start()
    leader = cluster.one_leader()
    time.sleep(0.3)
    alarm_everywhere(gateways, gw_a, gw_b, rounds=2)
    rx.wait_for(1, "/family")
    assert until(lambda: [e["state"] for e in smoke_events(listener)] == ["raised", "notified"])
    alert_id = smoke_events(listener)[0]["id"]

    # The leader's lock session dies under it (a network cut, a server-side kill).
    assert leader.shared_rules is not None
    pid = leader.shared_rules.lock_pid
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        epoch_before = admin.execute("SELECT epoch FROM rules_leader").fetchone()
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        assert until(
            lambda: admin.execute("SELECT epoch FROM rules_leader").fetchone() != epoch_before,
            timeout=6,
        ), "nobody took over"
    cluster.one_leader(timeout=5)
    gateways.send(gw_a, "alarm", SMOKE, KITCHEN, {"event": "alarm_cleared"})
    assert until(lambda: smoke_events(listener)[-1]["state"] == "resolved")
    assert {e["id"] for e in smoke_events(listener)} == {alert_id}
    time.sleep(0.3)
    assert len(rx.wait_for(2, "/family")) == 2, "one alarm, one resolution: nothing twice"


def test_the_inbox_takes_a_redelivered_record_once_and_the_fence_refuses_a_stale_leader(
    postgres: Any, unique_name: Callable[[str], str]
) -> None:
    url = postgres.create_database(unique_name("inbox"))
    inbox = RuleInbox(url)
    record = Record(7, 1_700_000_000_000, "alarm", SMOKE, KITCHEN, {"event": "alarm"})
    try:
        inbox.append([InboxEntry("gw-1", record=record), InboxEntry("gw-1", status="online")])
        inbox.append([InboxEntry("gw-1", record=record)])  # redelivered to another collector
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT gw, kind, seq, body FROM rule_inbox ORDER BY id").fetchall()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("gw-1", "record", 7),
            ("gw-1", "status", None),
        ]
        assert Record.from_dict(json.loads(rows[0][3])) == record
    finally:
        inbox.close()

    # An alert store whose guard says "not leader" writes nothing.
    def stale(tx: Any) -> None:
        raise StorageError("stale leader")

    store = AlertStore(url, guard=stale)
    try:
        with pytest.raises(StorageError, match="stale leader"):
            store.record_step([], engine_state={"x": 1})
        assert store.load_state() == (None, None)
        request = store.request("ack", "a-1", "ops")  # the CLI path works on PostgreSQL too
        assert [p.id for p in store.pending()] == [request]
    finally:
        store.close()


def test_a_stale_leader_cannot_save_after_a_successor_took_over(
    postgres: Any, unique_name: Callable[[str], str]
) -> None:
    """The fence itself: no threads, two SharedRules driven by hand on one database."""
    url = postgres.create_database(unique_name("fence"))

    def make_service(store: AlertStore) -> RulesService:
        publish: Callable[[str, bytes, int, bool], None] = lambda *_: None  # noqa: E731
        return RulesService(EngineConfig(), StaticRegistry(), store, Notifier(store), publish)

    old, new = (
        SharedRules(url, make_service, holder="old"),
        SharedRules(url, make_service, holder="new"),
    )
    try:
        assert old._try_lead() and old.leading
        assert not new._try_lead() and not new.leading
        old.store.record_step([], engine_state={"by": "old"}, within=None)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (old.lock_pid,))
        assert until(lambda: new._try_lead(), timeout=3)
        # the old leader does not know yet: its step is refused, the state is the successor's
        with pytest.raises(StorageError, match="not the rules leader"):
            old.store.record_step([], engine_state={"by": "old, stale"})
        new.store.record_step([], engine_state={"by": "new"})
        assert new.store.load_state()[0] == {"by": "new"}
    finally:
        for shared in (old, new):
            shared.stop()
            shared.close()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"rules_state": {}}, "rules_state.url"),  # a SQLite registry cannot be shared
        ({"rules_state": {"url": "/tmp/state.db"}}, "rules_state.url"),
        ({"rules_state": {"url": "postgresql://h/db", "lease": 3}}, "rules_state.lease"),
    ],
)
def test_rules_state_config_is_checked(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "c.yaml")
    assert err.value.field == field


def test_rules_state_reuses_a_postgresql_registry_and_is_off_by_default() -> None:
    url = "postgresql://shouhu@db.example/shouhu"
    shared = parse_config({"registry": {"path": url}, "rules_state": {}})
    assert shared.rules is not None and shared.rules.shared_state == url
    alone = parse_config({"registry": {"path": url}})
    assert alone.rules is not None and alone.rules.shared_state is None
