"""Gateway commands: the pure parser, and the agent carrying them out against a real Mosquitto.

The receiver's end of the serial link is a TCP peer (``socket://``, as ser2net exposes an
RFLink): what the agent transmits arrives there as bytes. Commands and answers travel through
the broker on the gateway's own ``down/cmd`` and ``ack`` topics.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.agent import Agent
from edge_agent.commands import (
    LINE_END,
    Ack,
    Command,
    CommandBook,
    Rejected,
    encode_ack,
    parse_command,
    parse_transmit,
)
from edge_agent.config import GatewayConfig, parse_config
from shouhu import wire
from shouhu.exceptions import ConfigError

SOUND = "10;FA20RF;97e3b2;1;ON;"  # RFLink: protocol; address; button; action
SILENCE = "10;FA20RF;97e3b2;1;OFF;"
FAST_SERIAL = {"read_timeout_s": 0.05, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- the parser (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"cmd":"ping","id":"p-1"}', Command("ping", "p-1")),
        (
            b'{"cmd":"sound","id":42,"household":"hh-0042","device":"rflink:fa20rf:97e3b2"}',
            Command("sound", 42, "hh-0042", "rflink:fa20rf:97e3b2"),
        ),
        (b'{"cmd":"silence","id":"s","expires":1763800000000}', Command("silence", "s", expires=1763800000000)),
        (b'{"cmd":"sound","household":"hh-1","extra":[1]}', Command("sound", None, "hh-1")),
    ],
)  # fmt: skip
def test_valid_commands(payload: bytes, expected: Command) -> None:
    assert parse_command(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff\xfe", Rejected("not UTF-8 JSON: UnicodeDecodeError")),
        (b"{", Rejected("not UTF-8 JSON: JSONDecodeError")),
        (b"[1, 2]", Rejected("a command must be a JSON object, got list")),
        (b'{"cmd":"explode","id":"x-1"}', Rejected('unknown cmd "explode" (one of sound, silence, ping)', id="x-1")),
        (b'{"id":"x-2"}', Rejected("unknown cmd null (one of sound, silence, ping)", id="x-2")),
        (b'{"cmd":"sound","id":true}', Rejected("id must be an integer or 1-128 printable characters", cmd="sound")),
        (b'{"cmd":"sound","id":""}', Rejected("id must be an integer or 1-128 printable characters", cmd="sound")),
        (b'{"cmd":"ping","id":"a","household":5}', Rejected("household must be a string of 1-128 printable characters", id="a", cmd="ping")),
        (b'{"cmd":"ping","id":"a","expires":"soon"}', Rejected("expires must be integer ms since the epoch", id="a", cmd="ping")),
        (b'{"cmd":"ping","id":"' + b"x" * 20_000 + b'"}', Rejected("command larger than 16384 bytes")),
    ],
)  # fmt: skip
def test_malformed_commands_are_rejected_with_the_reason(
    payload: bytes, expected: Rejected
) -> None:
    assert parse_command(payload) == expected


@settings(max_examples=300, deadline=None, print_blob=True)
@given(st.binary(max_size=300))
def test_parse_never_raises_on_arbitrary_bytes(payload: bytes) -> None:
    assert isinstance(parse_command(payload), Command | Rejected)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None, print_blob=True)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "cmd": st.sampled_from(["sound", "silence", "ping"]) | json_values,
            "id": json_values,
            "household": json_values,
            "expires": json_values,
        },
    )
)
def test_parse_never_raises_on_arbitrary_objects(doc: dict[str, Any]) -> None:
    parsed = parse_command(json.dumps(doc).encode())
    if isinstance(parsed, Command):
        assert parsed.cmd == doc["cmd"] and parsed.id == doc.get("id")
    # the answer to anything is encodable
    ack = Ack(parsed.id, parsed.cmd, isinstance(parsed, Command), "", 1)
    assert json.loads(encode_ack(ack))["id"] == parsed.id


def test_command_book_answers_repeated_ids_and_forgets_the_oldest() -> None:
    book = CommandBook(capacity=2)
    first = Ack("a", "sound", True, "sent to rf0", 1)
    book.record(first)
    book.record(Ack(7, "ping", True, "pong", 2))
    assert book.answered("a") is first
    assert book.answered("7") is None  # the string "7" is not the integer 7
    assert book.answered(None) is None
    book.record(Ack(None, "ping", True, "pong", 3))  # no id: nothing to remember
    assert len(book) == 2
    book.record(Ack("b", "silence", True, "sent to rf0", 4))
    assert book.answered("a") is None and book.answered(7) is not None


def test_ack_has_exactly_the_contract_fields() -> None:
    ack = json.loads(encode_ack(Ack("c-1", "sound", True, "sent to rf0", 1763800000000)))
    assert ack == {"id": "c-1", "cmd": "sound", "ok": True, "detail": "sent to rf0", "ts": 1763800000000}  # fmt: skip


def test_transmit_option_is_checked() -> None:
    lines = parse_transmit("rf0", {"sound": SOUND, "silence": SILENCE})
    assert lines == {"sound": SOUND.encode() + LINE_END, "silence": SILENCE.encode() + LINE_END}
    assert parse_transmit("rf0", None) == {}
    with pytest.raises(ConfigError, match=r"sources.rf0.options.transmit: unknown command 'ping'"):
        parse_transmit("rf0", {"ping": "10;PING;"})
    with pytest.raises(ConfigError, match=r"transmit.sound: must be 1-256 printable ASCII"):
        parse_transmit("rf0", {"sound": "10;A;\r\n10;REBOOT;"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_transmit("rf0", ["10;A;"])


# --- against the broker ----------------------------------------------------------------------


class ReceiverPeer:
    """The receiver's side of ``socket://127.0.0.1:<port>``: accepts readers one after another
    and keeps every byte they write."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._data = bytearray()
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._clients.append(client)
            threading.Thread(target=self._read, args=(client,), daemon=True).start()

    def _read(self, client: socket.socket) -> None:
        while True:
            try:
                chunk = client.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._data += chunk

    def received(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def close(self) -> None:
        self._server.close()
        for client in self._clients:
            client.close()


class CommandChannel:
    """The collector's side: publishes commands (QoS 1) and collects the gateway's answers."""

    def __init__(self, host: str, port: int, gw: str) -> None:
        self.gw = gw
        self.acks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"cmd-{gw}"
        )
        self.client.on_connect = lambda c, *a: c.subscribe(wire.ack_topic(gw), qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 10)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append(json.loads(msg.payload))

    def send(self, command: dict[str, Any] | bytes) -> None:
        payload = command if isinstance(command, bytes) else json.dumps(command).encode()
        self.client.publish(wire.down_topic(self.gw, "cmd"), payload, qos=1).wait_for_publish(5)

    def answers(self, cmd_id: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.acks if a["id"] == cmd_id]

    def answered(self, cmd_id: Any) -> Callable[[], bool]:
        return lambda: bool(self.answers(cmd_id))

    def answer(self, cmd_id: Any, timeout_s: float = 10.0) -> dict[str, Any]:
        assert wait_for(self.answered(cmd_id), timeout_s), f"no ack for {cmd_id!r}"
        return self.answers(cmd_id)[0]

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Ping until answered: the gateway has subscribed (earlier pings may be lost)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ping_id = f"ready-{uuid.uuid4().hex[:8]}"
            self.send({"cmd": "ping", "id": ping_id})
            if wait_for(self.answered(ping_id), 0.5):
                return
        raise AssertionError("the gateway never answered a ping")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def gw() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def peer() -> Iterator[ReceiverPeer]:
    receiver = ReceiverPeer()
    yield receiver
    receiver.close()


@pytest.fixture
def channel(mosquitto: Any, gw: str) -> Iterator[CommandChannel]:
    ch = CommandChannel(mosquitto.host, mosquitto.port, gw)
    yield ch
    ch.close()


def gateway(
    gw: str, mosquitto: Any, tmp_path: Path, sources: list[dict[str, Any]]
) -> GatewayConfig:
    return parse_config(
        {
            "gateway": {"id": gw},
            "broker": {"url": mosquitto.url},
            "sources": sources,
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "batching": {"max_age_ms": 50},
        },
        "test",
    )


def rflink(name: str, port: str, transmit: dict[str, str]) -> dict[str, Any]:
    options = {"port": port, "profile": "smoke-rflink", "transmit": transmit, **FAST_SERIAL}
    return {"name": name, "type": "serial", "options": options}


def test_sound_silence_and_a_repeated_id_carried_out_once(
    mosquitto: Any, gw: str, tmp_path: Path, peer: ReceiverPeer, channel: CommandChannel
) -> None:
    transmit = {"sound": SOUND, "silence": SILENCE}
    agent = Agent(
        gateway(gw, mosquitto, tmp_path, [rflink("rf0", peer.url, transmit)]), reconnect_min_s=0.1
    )
    agent.start()
    try:
        channel.wait_ready()
        assert wait_for(lambda: agent.sources[0].health()["present"])
        channel.send({"cmd": "sound", "id": "c-1", "household": "hh-0042"})
        ack = channel.answer("c-1")
        assert ack["cmd"] == "sound" and ack["ok"] is True and ack["detail"] == "sent to rf0"
        assert set(ack) == {"id", "cmd", "ok", "detail", "ts"}
        assert abs(ack["ts"] - time.time() * 1000) < 60_000
        assert wait_for(lambda: peer.received() == b"10;FA20RF;97e3b2;1;ON;\r\n")

        channel.send({"cmd": "sound", "id": "c-1", "household": "hh-0042"})  # redelivered
        assert wait_for(lambda: len(channel.answers("c-1")) == 2)
        assert channel.answers("c-1")[1] == ack  # the same answer again
        channel.send({"cmd": "silence", "id": "c-2"})
        assert channel.answer("c-2")["ok"] is True
        assert wait_for(lambda: peer.received().count(b"\r\n") == 2)
        assert peer.received() == f"{SOUND}\r\n{SILENCE}\r\n".encode()  # c-1 went out once

        stats = agent.stats().commands
        assert stats.duplicates == 1 and stats.failed == 0 and stats.rejected == 0
        assert stats.executed >= 3  # the readiness pings, sound, silence
        assert agent.sources[0].health()["sent"] == 2
    finally:
        agent.stop()


def test_malformed_commands_are_answered_logged_once_and_dead_lettered(
    mosquitto: Any,
    gw: str,
    tmp_path: Path,
    channel: CommandChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = Agent(gateway(gw, mosquitto, tmp_path, []), reconnect_min_s=0.1)
    agent.start()
    try:
        channel.wait_ready()
        with caplog.at_level(logging.WARNING, logger="edge_agent.agent"):
            channel.send(b"\xffnot json")
            channel.send({"cmd": "explode", "id": "x-1"})
            channel.send(b"\xffnot json again")
            channel.send({"cmd": "sound", "id": "x-2"})  # valid, but nothing can transmit
            assert wait_for(lambda: len(channel.answers(None)) == 2)
            assert channel.answer("x-1")["ok"] is False
            refused = channel.answer("x-2")
        assert {a["detail"] for a in channel.answers(None)} == {
            "not UTF-8 JSON: UnicodeDecodeError"
        }
        assert all(a["ok"] is False and a["cmd"] is None for a in channel.answers(None))
        assert "unknown cmd" in channel.answer("x-1")["detail"]
        assert refused["ok"] is False and "no source can transmit 'sound'" in refused["detail"]
        warnings = [r.getMessage() for r in caplog.records if "not UTF-8 JSON" in r.getMessage()]
        assert len(warnings) == 1
        letters = [d for d in agent.outbox.dead_letters() if d.source == "commands"]
        assert len(letters) == 3 and letters[-1].raw_hex == b"\xffnot json".hex()

        channel.send({"cmd": "ping", "id": "still-alive"})
        assert channel.answer("still-alive") | {"ts": 0} == {
            "id": "still-alive", "cmd": "ping", "ok": True, "detail": "pong", "ts": 0,
        }  # fmt: skip
        stats = agent.stats().commands
        assert stats.rejected == 3 and stats.failed == 1
    finally:
        agent.stop()


def test_a_receiver_that_is_gone_is_reported_not_fatal(
    mosquitto: Any, gw: str, tmp_path: Path, channel: CommandChannel
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        gone = f"socket://127.0.0.1:{placeholder.getsockname()[1]}"  # nobody listens after this
    agent = Agent(
        gateway(gw, mosquitto, tmp_path, [rflink("rf-gone", gone, {"sound": SOUND})]),
        reconnect_min_s=0.1,
        transmit_retry_s=0.5,
    )
    agent.start()
    try:
        channel.wait_ready()
        began = time.monotonic()
        channel.send({"cmd": "sound", "id": 1})
        ack = channel.answer(1)
        assert time.monotonic() - began >= 0.5  # it kept trying for transmit_retry_s
        assert ack["ok"] is False and "rf-gone" in ack["detail"] and "not open" in ack["detail"]
        assert agent.stats().commands.failed == 1
    finally:
        agent.stop()


def test_a_command_sent_while_the_gateway_was_away_is_carried_out_on_return(
    mosquitto: Any, gw: str, tmp_path: Path, peer: ReceiverPeer, channel: CommandChannel
) -> None:
    """The agent's persistent session keeps its subscription: the broker queues the command."""
    config = gateway(gw, mosquitto, tmp_path, [rflink("rf0", peer.url, {"sound": SOUND})])
    first = Agent(config, reconnect_min_s=0.1)
    first.start()
    try:
        channel.wait_ready()
    finally:
        first.stop()
    channel.send({"cmd": "sound", "id": "while-away"})
    time.sleep(0.2)
    assert channel.answers("while-away") == [] and peer.received() == b""

    second = Agent(config, reconnect_min_s=0.1)
    second.start()
    try:
        assert channel.answer("while-away")["ok"] is True
        assert wait_for(lambda: peer.received() == f"{SOUND}\r\n".encode())
    finally:
        second.stop()
