"""The embedded broker and ``shouhu demo``: no services, nothing lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from collector.broker import EmbeddedBroker
from collector.config import BrokerConfig, CollectorConfig, WriterConfig
from collector.ingest import Collector
from collector.writers.sqlite import SqliteWriter
from shouhu import wire
from shouhu.model import Record

TS = 1_763_800_000_000


def test_embedded_broker_carries_batches_to_the_collector(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        writer = SqliteWriter({"path": str(tmp_path / "r.db")})
        config = CollectorConfig(
            broker=BrokerConfig(host=broker.host, port=broker.port, client_id="test-col"),
            writer=WriterConfig("sqlite", {"path": str(tmp_path / "r.db")}),
            state_path=str(tmp_path / "state.db"),
        )
        col = Collector(config, writer=writer)
        col.start()
        try:
            assert col.wait_connected(10)
            time.sleep(0.2)
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gw")
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            records = [
                Record(s, TS + s, "alarm", "smoke@1", "rf:97e3b2", {"alarm": True}) for s in (1, 2)
            ]
            for _ in range(2):  # the second copy is a duplicate
                info = pub.publish(
                    wire.up_topic("gw-emb", "alarm"),
                    wire.encode_batch("gw-emb", records, TS),
                    qos=1,
                )
                info.wait_for_publish(5)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and col.stats().duplicates < 2:
                time.sleep(0.02)
            assert writer.seqs("gw-emb") == [1, 2]
            assert col.stats().duplicates == 2
            pub.disconnect()
            pub.loop_stop()
        finally:
            col.stop()


def test_embedded_broker_stops_and_frees_its_port() -> None:
    broker = EmbeddedBroker()
    broker.start()
    port = broker.port
    broker.stop()
    again = EmbeddedBroker(port=port)  # the same port can be taken again
    again.start()
    again.stop()


def run_demo_cli(tmp_path: Path, *args: str) -> dict[str, Any]:
    from shouhu.cli import main

    result = CliRunner().invoke(main, ["demo", *args, "--json", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_demo_loses_nothing(tmp_path: Path) -> None:
    summary = run_demo_cli(
        tmp_path, "--no-scenario", "--duration", "8", "--gateways", "2", "--wearers", "4"
    )
    assert summary["stored"] > 0
    assert summary["lost"] == 0
    assert summary["accepted"] == summary["stored"]
    assert summary["dead_letters"] == 0
    assert set(summary["by_gateway"]) == {"gw-demo-01", "gw-demo-02"}
    assert summary["latency_p99_ms"] is not None
    assert summary["scenario"] is None


@pytest.mark.timeout(120)
def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    summary = run_demo_cli(
        tmp_path, "--duration", "42", "--gateways", "2", "--wearers", "4", "--seed", "3"
    )
    assert summary["lost"] == 0 and summary["undrained"] == 0
    assert summary["accepted"] == summary["stored"] > 0
    assert summary["dead_letters"] == 0
    story_gateways = {
        "gw-wang-home", "gw-market-east", "gw-station-east", "gw-chen-hall", "gw-chen-stair",
        "gw-patrol-07", "gw-school-gate",
    }  # fmt: skip
    assert set(summary["by_gateway"]) == {"gw-demo-01", "gw-demo-02"} | story_gateways
    for gw in story_gateways:
        assert summary["by_gateway"][gw]["stored"] > 0, gw

    scenario = summary["scenario"]
    # one incident for two gateways, one replayed tag, one missed box, one wanderer
    assert scenario["alerts_by_kind"] == {
        "wanderer": 1, "smoke": 1, "patrol_abnormal": 1, "patrol_missed": 1,
    }  # fmt: skip
    assert scenario["notices_by_kind"] == {"school_arrival": 2}
    alerts = {a["kind"]: a for a in scenario["alerts"]}
    assert alerts["smoke"]["key"] == "h-chen" and alerts["smoke"]["state"] == "resolved"
    assert alerts["wanderer"]["key"] == "w-wang" and alerts["wanderer"]["severity"] == "critical"
    assert alerts["patrol_abnormal"]["title"] == "Abnormal patrol check-in: replay"
    assert alerts["patrol_missed"]["key"].startswith("route-river:box-river:")
    for a in scenario["alerts"]:
        assert a["latency_ms"] is not None and 0 <= a["latency_ms"] < 5000, a
    assert scenario["delivery_failures"] == 0

    # the kitchen alarm was heard by both household gateways: both sounded, then silenced
    for gw in ("gw-chen-hall", "gw-chen-stair"):
        assert scenario["commands"][gw] == ["10;FA20RF;5c81d0;1;ON;", "10;FA20RF;5c81d0;1;OFF;"]

    got: dict[str, list[dict[str, str]]] = {r["role"]: [] for r in scenario["recipients"]}
    for r in scenario["recipients"]:
        got[r["role"]] += r["messages"]
    titles = {role: [m["title"] for m in messages] for role, messages in got.items()}
    assert (
        "Wanderer: outside the safe zones during the risk schedule [critical]" in titles["family"]
    )
    assert titles["fire_brigade"] == ["Smoke alarm [critical]", "Resolved: Smoke alarm [critical]"]
    assert sorted(titles["police_desk"]) == [
        "Abnormal patrol check-in: replay [warning]", "Patrol checkpoint missed [warning]",
    ]  # fmt: skip
    assert titles["guardian"] == ["Student arrived at school"] * 2
    bodies = " ".join(m["body"] for messages in got.values() for m in messages)
    for text in ("Wang Fang", "8 Willow Lane, flat 2", "kitchen", "Xiao Ming arrived at Willow"):
        assert text in bodies


def test_local_channel_records_what_apprise_delivered() -> None:
    from collector.alerts.local_channel import LocalChannel
    from collector.alerts.notifier import apprise_send

    with LocalChannel() as channel:
        assert apprise_send(channel.url("/fire-brigade"), "Smoke alarm", "8 Willow Lane") == ""
        assert apprise_send(channel.url("parent"), "Arrived", "Xiao Ming") == ""
        assert channel.wait_for(2, timeout=5)
        [brigade] = channel.received("/fire-brigade")
        assert (brigade.title, brigade.body) == ("Smoke alarm", "8 Willow Lane")
        assert [r.body for r in channel.received("/parent")] == ["Xiao Ming"]
        assert not channel.wait_for(1, "/police-desk", timeout=0.05)
