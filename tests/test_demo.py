"""The embedded broker and ``shouhu demo``: no services, nothing lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
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


def test_demo_loses_nothing(tmp_path: Path) -> None:
    from shouhu.cli import main

    result = CliRunner().invoke(
        main,
        [
            "demo",
            "--duration",
            "8",
            "--gateways",
            "2",
            "--wearers",
            "4",
            "--json",
            "--workdir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["stored"] > 0
    assert summary["lost"] == 0
    assert summary["accepted"] == summary["stored"]
    assert summary["dead_letters"] == 0
    assert set(summary["by_gateway"]) == {"gw-demo-01", "gw-demo-02"}
    assert summary["latency_p99_ms"] is not None
