"""The real test services start, answer, and keep their data over a restart."""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from services import InfluxDB1, Mosquitto, ServiceError, VictoriaMetrics, free_port

pytestmark = pytest.mark.services


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read()


def _post(url: str, body: bytes = b"") -> int:
    req = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


def test_mosquitto_accepts_a_qos1_publish_and_delivers_it(
    mosquitto: Mosquitto, unique_topic: str
) -> None:
    assert mosquitto.port not in (1883, 8883)
    received: list[bytes] = []
    got = threading.Event()
    subscribed = threading.Event()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_topic[-20:] + "-s")
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(bytes(msg.payload))
        got.set()

    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe(f"{unique_topic}/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique_topic[-20:] + "-p")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        assert subscribed.wait(5)
        info = pub.publish(f"{unique_topic}/x", b"hello", qos=1)
        info.wait_for_publish(5)
        assert info.is_published()  # PUBACK came back
        assert got.wait(5)
        assert received == [b"hello"]
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()


def test_influxdb_answers_ping(influxdb1: InfluxDB1) -> None:
    with urllib.request.urlopen(f"{influxdb1.url}/ping", timeout=5) as resp:
        assert resp.status == 204
        assert resp.headers["X-Influxdb-Version"].startswith("1.")


def test_victoria_metrics_answers_health(victoria: VictoriaMetrics) -> None:
    status, body = _get(f"{victoria.url}/health")
    assert (status, body.strip()) == (200, b"OK")


def test_influxdb_keeps_written_points_over_a_restart(tmp_path) -> None:
    with InfluxDB1(tmp_path / "influx") as server:
        port = server.port
        q = urllib.parse.urlencode({"q": "CREATE DATABASE keep"})
        assert _post(f"{server.url}/query?{q}") == 200
        assert (
            _post(f"{server.url}/write?db=keep", b"m,t=a v=1i 1000000000\nm,t=b v=2i 2000000000")
            == 204
        )

        server.kill()  # a crash, not a clean shutdown: the WAL must carry the points
        assert not server.running
        server.start()

        assert server.port == port
        q = urllib.parse.urlencode({"db": "keep", "q": "SELECT sum(v) FROM m"})
        status, body = _get(f"{server.url}/query?{q}")
        assert status == 200
        assert b'"values":[["1970-01-01T00:00:00Z",3]]' in body


def test_mosquitto_restart_keeps_port_and_data_dir(tmp_path) -> None:
    with Mosquitto(tmp_path / "mq") as broker:
        port, workdir = broker.port, broker.workdir
        broker.restart()
        assert (broker.port, broker.workdir) == (port, workdir)
        assert (workdir / "mosquitto.db").exists()  # written on the clean stop


def test_a_service_that_cannot_start_fails_with_its_log_tail(tmp_path) -> None:
    class BrokenMosquitto(Mosquitto):
        def config_text(self) -> str:
            return f"listener {self.port} 127.0.0.1\nno_such_option true\n"

    with pytest.raises(ServiceError, match="no_such_option"):
        BrokenMosquitto(tmp_path / "bad").start()


def test_free_port_is_not_a_standard_port() -> None:
    assert free_port() not in (1883, 8086, 8428)
