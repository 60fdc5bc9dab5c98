"""Collector ingest against a real Mosquitto and the real SqliteWriter.

Each test uses its own gateway ids and client ids: the broker is shared by the session.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from collector.cli import collector as collector_cli
from collector.config import BrokerConfig, CollectorConfig, WriterConfig, parse_config
from collector.deadletter import DeadLetters
from collector.ingest import Collector
from collector.writers.sqlite import SqliteWriter
from shouhu import wire
from shouhu.exceptions import ConfigError, StorageError, StorageUnavailable
from shouhu.model import Record

TS = 1_763_800_000_000
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def recs(*seqs: int, **data: Any) -> list[Record]:
    return [Record(s, TS + s, "tap", "nfc-tag@1", "nfc:04a1b2", {"n": s, **data}) for s in seqs]


def until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class Publisher:
    """A plain paho client standing in for a gateway (QoS 1, waits for each PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("pub"))
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def batch(self, gw: str, records: Sequence[Record], stream: str = "tap") -> None:
        self.publish(wire.up_topic(gw, stream), wire.encode_batch(gw, records, sent=TS))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: Any) -> Iterator[Publisher]:
    p = Publisher(mosquitto.host, mosquitto.port)
    yield p
    p.close()


def make_config(mosquitto: Any, tmp_path: Path, client_id: str, **kw: Any) -> CollectorConfig:
    return CollectorConfig(
        broker=BrokerConfig(host=mosquitto.host, port=mosquitto.port, client_id=client_id),
        writer=WriterConfig("sqlite", {"path": str(tmp_path / "records.db")}),
        state_path=str(tmp_path / "state.db"),
        **kw,
    )


def started(config: CollectorConfig, writer: Any) -> Collector:
    col = Collector(config, writer=writer)
    col.start()
    assert col.wait_connected(10), "collector did not connect"
    time.sleep(0.2)  # let the SUBACK land before anything is published
    return col


@pytest.mark.services
def test_good_duplicate_and_malformed_batches(
    mosquitto: Any, publisher: Publisher, tmp_path: Path
) -> None:
    gw = unique("gw")
    writer = SqliteWriter({"path": str(tmp_path / "records.db")})
    col = started(make_config(mosquitto, tmp_path, unique("col")), writer)
    try:
        publisher.batch(gw, recs(1, 2, 3))
        publisher.batch(gw, recs(1, 2, 3))  # a gateway retry: whole batch duplicated
        publisher.batch(gw, recs(3, 4))  # overlapping
        up = wire.up_topic(gw, "tap")
        publisher.publish(up, b"{not json")
        publisher.publish(up, json.dumps({"v": 99, "gw": gw, "sent": TS, "records": []}).encode())
        good_and_bad = json.loads(wire.encode_batch(gw, recs(5), sent=TS))
        good_and_bad["records"].append({"seq": 6, "kind": "tap"})  # lacks ts, profile, ...
        publisher.publish(up, json.dumps(good_and_bad).encode())
        publisher.publish(wire.status_topic(gw), b"{broken")

        assert until(lambda: writer.seqs(gw) == [1, 2, 3, 4, 5]), writer.seqs(gw)
        assert until(lambda: col.stats().dead_letters >= 4)
        assert col.wait_idle(5)
        stats = col.stats()
        assert stats.duplicates >= 4
        assert stats.in_flight == 0
        mine = [d for d in col.dead_letters.list(limit=100) if d.gw == gw or gw in d.topic]
        reasons = sorted(d.reason for d in mine)
        assert reasons == ["bad-envelope", "bad-envelope", "bad-record", "bad-status"]
        bad_record = next(d for d in mine if d.reason == "bad-record")
        assert json.loads(bad_record.payload) == {"seq": 6, "kind": "tap"}
        assert "lacks" in bad_record.detail
        assert next(d for d in mine if d.payload == b"{not json").reason == "bad-envelope"
    finally:
        col.stop()


@pytest.mark.services
def test_gateway_status_is_recorded(mosquitto: Any, publisher: Publisher, tmp_path: Path) -> None:
    gw = unique("gw")
    col = started(
        make_config(mosquitto, tmp_path, unique("col")),
        SqliteWriter({"path": str(tmp_path / "r.db")}),
    )
    try:
        status = wire.encode_status("online", agent_version="0.1.0", profiles={"nfc-tag": 2}, ts=TS)
        publisher.publish(wire.status_topic(gw), status)
        assert until(lambda: gw in col.gateway_status())
        got = col.gateway_status()[gw]
        assert (got["state"], got["agent"], got["profiles"]) == ("online", "0.1.0", {"nfc-tag": 2})
    finally:
        col.stop()


@pytest.mark.services
def test_mqtt5_shared_subscription_splits_work_between_collectors(
    mosquitto: Any, publisher: Publisher, tmp_path: Path
) -> None:
    gw = unique("gw")
    group = unique("grp")
    cols, writers = [], []
    for i in range(2):
        writer = SqliteWriter({"path": str(tmp_path / f"records-{i}.db")})
        config = CollectorConfig(
            broker=BrokerConfig(
                host=mosquitto.host, port=mosquitto.port, client_id=unique("col5"),
                protocol="5", shared_group=group,
            ),
            state_path=str(tmp_path / f"state-{i}.db"),
        )  # fmt: skip
        writers.append(writer)
        cols.append(started(config, writer))
    try:
        for seq in range(1, 21):
            publisher.batch(gw, recs(seq))
        assert until(lambda: sum(w.count(gw) for w in writers) == 20)
        both = sorted(writers[0].seqs(gw) + writers[1].seqs(gw))
        assert both == list(range(1, 21))  # each message went to exactly one collector
        assert all(w.count(gw) > 0 for w in writers)
    finally:
        for col in cols:
            col.stop()


class FlakyWriter:
    """Our Writer interface over a real SqliteWriter, made unavailable on demand."""

    def __init__(self, inner: SqliteWriter, fail_times: int = 0) -> None:
        self.inner = inner
        self.fail_times = fail_times
        self.down = threading.Event()
        self.attempts = 0

    def write(self, gw: str, records: Sequence[Record]) -> None:
        self.attempts += 1
        if self.down.is_set() or self.fail_times > 0:
            self.fail_times -= 1
            raise StorageUnavailable("test store is down")
        self.inner.write(gw, records)

    def ping(self) -> bool:
        return not self.down.is_set()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.services
def test_database_outage_holds_messages_then_stores_them_once(
    mosquitto: Any, publisher: Publisher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gw = unique("gw")
    inner = SqliteWriter({"path": str(tmp_path / "records.db")})
    writer = FlakyWriter(inner)
    writer.down.set()
    col = started(make_config(mosquitto, tmp_path, unique("col"), retry_max_s=0.2), writer)
    try:
        with caplog.at_level(logging.ERROR, logger="collector.ingest"):
            for seq in (1, 2, 3):
                publisher.batch(gw, recs(seq))
            assert until(lambda: col.stats().holding == 3)
            assert until(lambda: writer.attempts >= 4)  # it keeps retrying the first one
        stats = col.stats()
        assert stats.db_unavailable and stats.outages == 1 and stats.stored == 0
        assert col.health()["db_down_for_s"] >= 0
        held = [r for r in caplog.records if "database unavailable, holding" in r.getMessage()]
        assert len(held) == 1
        assert inner.seqs(gw) == []
        writer.down.clear()
        assert until(lambda: inner.seqs(gw) == [1, 2, 3])
        assert col.wait_idle(5)
        assert not col.stats().db_unavailable
    finally:
        col.stop()


@pytest.mark.services
def test_unacked_messages_are_redelivered_to_the_next_collector(
    mosquitto: Any, publisher: Publisher, tmp_path: Path
) -> None:
    """The collector dies while its database is down: the broker still has everything."""
    gw = unique("gw")
    client_id = unique("col")
    config = make_config(mosquitto, tmp_path, client_id, retry_max_s=0.2)
    dead = FlakyWriter(SqliteWriter({"path": str(tmp_path / "records.db")}))
    dead.down.set()
    col = started(config, dead)
    for seq in (1, 2, 3):
        publisher.batch(gw, recs(seq))
    assert until(lambda: col.stats().holding == 3)
    col.stop(drain_timeout=0.1)  # gives up: nothing was acked

    writer = SqliteWriter({"path": str(tmp_path / "records.db")})
    col = started(config, writer)
    try:
        assert until(lambda: writer.seqs(gw) == [1, 2, 3]), writer.seqs(gw)
        publisher.batch(gw, recs(3, 4))
        assert until(lambda: writer.seqs(gw) == [1, 2, 3, 4])
        assert col.wait_idle(5)
    finally:
        col.stop()


class PickyWriter(SqliteWriter):
    """Refuses records whose data says ``poison`` for good, like an InfluxDB type conflict."""

    def write(self, gw: str, records: Sequence[Record]) -> None:
        if any(r.data.get("poison") for r in records):
            raise StorageError("field type conflict")
        super().write(gw, records)


@pytest.mark.services
def test_records_the_store_refuses_are_dead_lettered(
    mosquitto: Any, publisher: Publisher, tmp_path: Path
) -> None:
    gw = unique("gw")
    writer = PickyWriter({"path": str(tmp_path / "records.db")})
    col = started(make_config(mosquitto, tmp_path, unique("col")), writer)
    try:
        publisher.batch(gw, [*recs(1), *recs(2, poison=True), *recs(3)])
        assert until(lambda: writer.seqs(gw) == [1, 3])
        assert col.wait_idle(5)
        refused = col.dead_letters.list(reason="storage-rejected")
        assert [json.loads(d.payload)["seq"] for d in refused if d.gw == gw] == [2]
        assert "field type conflict" in refused[0].detail
    finally:
        col.stop()


@pytest.mark.services
def test_garbage_never_stops_ingest(mosquitto: Any, publisher: Publisher, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    print(f"garbage seed {seed}")
    rng = random.Random(seed)
    gw = unique("gw")
    writer = SqliteWriter({"path": str(tmp_path / "records.db")})
    col = started(make_config(mosquitto, tmp_path, unique("col")), writer)
    try:
        up = wire.up_topic(gw, "alarm")
        for _ in range(20):
            publisher.publish(up, rng.randbytes(rng.randrange(0, 200)))
        publisher.publish(f"shouhu/v1/gw/{gw}/up/nonsense", wire.encode_batch(gw, recs(9), sent=TS))
        publisher.publish(f"shouhu/v1/gw/{gw.upper()}/up/tap", b"{}")
        publisher.batch(gw, recs(1), stream="alarm")
        assert until(lambda: writer.seqs(gw) == [1])
        assert col.wait_idle(5)
        assert until(lambda: col.stats().dead_letters == 22)
        counts = DeadLetters(str(tmp_path / "state.db")).counts()
        assert counts == {"bad-envelope": 20, "bad-topic": 2}
    finally:
        col.stop()


# --- configuration and CLI (no broker needed) ---------------------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"broker": {"url": "http://x"}}, "broker.url"),
        ({"broker": {"protocol": "4"}}, "broker.protocol"),
        ({"broker": {"shared_group": "g"}}, "broker.shared_group"),
        ({"broker": {"protocol": 5, "shared_group": "a/b"}}, "broker.shared_group"),
        ({"broker": {"ca_file": "/nonexistent/ca.pem"}}, "broker.ca_file"),
        ({"broker": {"colour": "red"}}, "broker.colour"),
        ({"writer": {"kind": "mongodb"}}, "writer.kind"),
        ({"state": {"path": 3}}, "state.path"),
        ({"retry_max_s": -1}, "retry_max_s"),
        ({"stuff": 1}, "stuff"),
    ],
)
def test_config_errors_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "c.yaml")
    assert info.value.field == field
    assert info.value.message.startswith(f"c.yaml:{field}:")


def test_config_defaults_and_url_parts() -> None:
    cfg = parse_config(
        {
            "broker": {"url": "mqtts://col:s3cret@broker.example:8884", "protocol": "5",
                       "shared_group": "shouhu"},
            "writer": {"kind": "influx_v2", "url": "http://influx:8086", "bucket": "b"},
        }
    )  # fmt: skip
    b = cfg.broker
    assert (b.host, b.port, b.tls, b.username, b.password) == (
        "broker.example",
        8884,
        True,
        "col",
        "s3cret",
    )
    assert (b.protocol, b.shared_group) == ("5", "shouhu")
    assert cfg.writer.kind == "influx-v2"
    assert dict(cfg.writer.options) == {"url": "http://influx:8086", "bucket": "b"}
    assert parse_config(None).writer.kind == "sqlite"


def test_example_config_is_valid() -> None:
    from collector.config import load_config

    example = Path(__file__).parent.parent / "examples" / "collector.yaml"
    assert load_config(example).broker.client_id == "shouhu-collector-1"


def test_cli_lists_dead_letters(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    store = DeadLetters(str(state))
    store.add(topic="shouhu/v1/gw/gw-1/up/tap", gw="gw-1", reason="bad-envelope",
              detail="payload is not UTF-8 JSON", payload=b"{oops")  # fmt: skip
    store.add(topic="shouhu/v1/gw/gw-1/up/tap", gw="gw-1", reason="bad-record",
              detail="record 0: record lacks ts", payload=b'{"seq": 1}')  # fmt: skip
    store.close()
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"state: {{path: {state}}}\nwriter: {{path: {tmp_path / 'r.db'}}}\n")
    result = CliRunner().invoke(collector_cli, ["deadletters", "--config", str(cfg), "list"])
    assert result.exit_code == 0, result.output
    assert "bad-envelope: 1, bad-record: 1" in result.output
    assert "{oops" in result.output
    result = CliRunner().invoke(
        collector_cli,
        ["deadletters", "--config", str(cfg), "list", "--json", "--reason", "bad-record"],
    )
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["reason"], r["payload"]) for r in rows] == [("bad-record", '{"seq": 1}')]


def test_cli_reports_a_bad_config_with_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text("broker: {protocol: 7}\n")
    from shouhu.cli import main

    result = CliRunner().invoke(main, ["collector", "deadletters", "--config", str(cfg), "list"])
    assert result.exit_code == 2
    assert "broker.protocol" in result.output
