"""Signed profile bundles on the gateway: the pure decision, the saved file, and the agent
taking (or refusing) bundles flashed through a real Mosquitto.

Bundles are made from the shipped profiles with ``amulet-ibeacon`` raised to a new version, so
"which set runs" shows in the status, in the ack and in the profile ref of a decoded frame.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from device_profiles import PROFILES_DIR
from edge_agent.agent import Agent
from edge_agent.bundles import (
    NO_TRUSTED_KEYS,
    Accepted,
    BundleState,
    Refused,
    Unchanged,
    load_saved_bundle,
    save_bundle,
)
from edge_agent.config import GatewayConfig, parse_config
from shouhu import wire
from shouhu.bundle import (
    build_bundle,
    generate_keypair,
    load_private_key,
    load_public_key,
    texts_from_files,
)
from shouhu.bundle_publish import publish_retained
from shouhu.cli import main
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame

SHIPPED = texts_from_files([PROFILES_DIR])
# the amulet golden frame (device 10001/4711) and what the radio adds
AMULET_FRAME = bytes.fromhex("0201061aff4c000215fda50693a4e24fb1afcfc6eb0764782527111267c5")
AMULET_META = {"rssi": -70, "address": "C3:00:00:12:34:56"}


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def texts_with_amulet(version: int) -> dict[str, str]:
    texts = dict(SHIPPED)
    texts["amulet-ibeacon"] = texts["amulet-ibeacon"].replace("version: 1", f"version: {version}")
    assert f"version: {version}" in texts["amulet-ibeacon"]
    return texts


class Signer:
    """A maintainer's key pair, with the public half written where a gateway config reads it."""

    def __init__(self, directory: Path, name: str) -> None:
        private_pem, public_pem = generate_keypair()
        self.private = load_private_key(private_pem)
        self.public = load_public_key(public_pem)
        self.public_file = directory / f"{name}.pub"
        self.public_file.write_bytes(public_pem)

    def bundle(self, serial: int, amulet_version: int) -> bytes:
        return build_bundle(
            texts_with_amulet(amulet_version),
            serial=serial,
            created=int(time.time() * 1000),
            private_key=self.private,
        )


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def maintainer(keydir: Path) -> Signer:
    return Signer(keydir, "maintainer")


@pytest.fixture(scope="module")
def stranger(keydir: Path) -> Signer:
    return Signer(keydir, "stranger")


def tampered(payload: bytes) -> bytes:
    """The same signature over a body someone changed (amulet version 7)."""
    body = json.loads(payload)
    body["profiles"]["amulet-ibeacon"] = body["profiles"]["amulet-ibeacon"].replace(
        "version: 2", "version: 7"
    )
    return json.dumps(body).encode()


# --- the decision (pure) ---------------------------------------------------------------------


def test_consider_accepts_newer_refuses_the_rest_and_answers_each_payload_once(
    maintainer: Signer, stranger: Signer
) -> None:
    state = BundleState([maintainer.public])
    good = maintainer.bundle(5, 2)
    decision = state.consider(good)
    assert isinstance(decision, Accepted) and decision.bundle.serial == 5
    assert decision.bundle.versions()["amulet-ibeacon"] == 2
    assert decision.ack(1).to_dict() == {
        "id": "profiles-5",
        "cmd": "profiles",
        "ok": True,
        "detail": f"applied bundle 5 ({len(SHIPPED)} profiles)",
        "ts": 1,
    }
    assert state.serial == 0  # consider only decides
    state.record(decision)
    assert state.serial == 5 and state.running is decision.bundle
    assert state.consider(good) == Unchanged("bundle 5 is running already")
    assert state.consider(b"") == Unchanged("the retained bundle was cleared")

    cases = [
        (tampered(maintainer.bundle(6, 2)), "profiles-6", "does not verify with any trusted key"),
        (stranger.bundle(7, 2), "profiles-7", "does not verify with any trusted key"),
        (maintainer.bundle(3, 2), "profiles-3", "bundle serial 3 is not newer than the running 5"),
        (maintainer.bundle(5, 3), "profiles-5", "bundle serial 5 is not newer than the running 5"),
        (b"\xffgarbage", None, "bundle is not JSON"),
        (b'{"v": 1, "serial": 9}', "profiles-9", "bundle is not signed"),
    ]
    for payload, ack_id, reason in cases:
        refused = state.consider(payload)
        assert isinstance(refused, Refused), payload
        ack = refused.ack(2)
        assert (ack.id, ack.cmd, ack.ok) == (ack_id, "profiles", False)
        assert reason in ack.detail
        state.record(refused)
        assert isinstance(state.consider(payload), Unchanged)  # the redelivery is quiet
    assert state.serial == 5


def test_without_trusted_keys_every_bundle_is_refused(maintainer: Signer) -> None:
    decision = BundleState([]).consider(maintainer.bundle(1, 2))
    assert isinstance(decision, Refused) and decision.reason == NO_TRUSTED_KEYS
    assert decision.ack(0).id == "profiles-1"


def test_saved_bundle_is_written_atomically_and_verified_again_on_load(
    tmp_path: Path, maintainer: Signer, stranger: Signer
) -> None:
    path = tmp_path / "state" / "outbox.bundle.json"
    assert load_saved_bundle(path, [maintainer.public]).bundle is None  # nothing saved yet
    payload = maintainer.bundle(4, 2)
    save_bundle(path, payload)
    assert path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    saved = load_saved_bundle(path, [maintainer.public])
    assert saved.bundle is not None and saved.bundle.serial == 4 and saved.reason is None

    dropped_key = load_saved_bundle(path, [stranger.public])  # the maintainer key was revoked
    assert dropped_key.bundle is None and "does not verify" in str(dropped_key.reason)
    assert "no trusted keys" in str(load_saved_bundle(path, []).reason)
    path.write_bytes(payload[: len(payload) // 2])  # a file cut short (by hand: save is atomic)
    assert "not JSON" in str(load_saved_bundle(path, [maintainer.public]).reason)


def test_trusted_keys_and_bundle_path_are_checked_in_the_config(
    tmp_path: Path, maintainer: Signer
) -> None:
    base: dict[str, Any] = {
        "gateway": {"id": "gw-1"},
        "broker": {"url": "mqtt://127.0.0.1:1"},
        "outbox": {"path": str(tmp_path / "gw-1.db")},
    }
    plain = parse_config(base, "gw.yaml")
    assert plain.trusted_keys == () and plain.bundle_file == tmp_path / "gw-1.bundle.json"
    keyed = parse_config(
        base
        | {
            "profiles": {
                "trusted_keys": [str(maintainer.public_file)],
                "bundle_path": str(tmp_path / "b.json"),
            }
        },
        "gw.yaml",
    )
    assert keyed.trusted_keys == (str(maintainer.public_file),)
    assert keyed.bundle_file == tmp_path / "b.json"

    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    bad = [
        ({"trusted_keys": str(maintainer.public_file)}, r"gw.yaml:profiles.trusted_keys: must be a list"),
        ({"trusted_keys": [str(tmp_path / "missing.pub")]}, r"gw.yaml:profiles.trusted_keys\[0\]: cannot read"),
        ({"trusted_keys": [str(not_a_key)]}, r"gw.yaml:profiles.trusted_keys\[0\]: .*not a PEM public key"),
        ({"bundle_path": ""}, r"gw.yaml:profiles.bundle_path: must be a non-empty string"),
        ({"trusted_key": []}, r"gw.yaml:profiles.trusted_key: unknown key"),
    ]  # fmt: skip
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config(base | {"profiles": section}, "gw.yaml")


def test_a_start_falls_back_to_the_shipped_profiles_when_the_saved_bundle_no_longer_verifies(
    tmp_path: Path, maintainer: Signer, stranger: Signer
) -> None:
    def agent(trusted: Signer) -> Agent:
        config = parse_config(
            {
                "gateway": {"id": "gw-restart"},
                "broker": {"url": "mqtt://127.0.0.1:1"},  # never started: nothing connects
                "outbox": {"path": str(tmp_path / "outbox.db")},
                "profiles": {"trusted_keys": [str(trusted.public_file)]},
            },
            "test",
        )
        return Agent(config)

    save_bundle(tmp_path / "outbox.bundle.json", maintainer.bundle(8, 2))
    trusting = agent(maintainer)
    try:
        assert trusting.bundle is not None and trusting.bundle.serial == 8
        assert trusting.profiles["amulet-ibeacon"].ref == "amulet-ibeacon@2"
        assert trusting.publisher.profiles["amulet-ibeacon"] == 2
    finally:
        trusting.stop()
    revoked = agent(stranger)
    try:
        assert revoked.bundle is None and revoked.bundles.serial == 0
        assert revoked.profiles["amulet-ibeacon"].ref == "amulet-ibeacon@1"
    finally:
        revoked.stop()


# --- against the broker ----------------------------------------------------------------------


class PushSource:
    """A BLE source the test feeds by hand (the radio's side of the agent's source contract)."""

    name = "ble-test"
    transport = "ble"

    def __init__(self) -> None:
        self._emit: Callable[[RawFrame], None] | None = None
        self._frames = 0

    def start(self, emit: Callable[[RawFrame], None]) -> None:
        self._emit = emit

    def stop(self) -> None:
        self._emit = None

    def health(self) -> Mapping[str, Any]:
        return {"frames": self._frames, "errors": 0, "present": self._emit is not None}

    def hear(self, payload: bytes, meta: Mapping[str, Any]) -> None:
        assert self._emit is not None, "not started"
        self._frames += 1
        self._emit(RawFrame(self.name, int(time.time() * 1000), payload, dict(meta)))


class GatewayWatch:
    """A maintainer's view of one gateway: its acks, its retained status, its sightings; and it
    pings through ``down/cmd`` to know the gateway has dealt with everything sent before."""

    def __init__(self, host: str, port: int, gw: str) -> None:
        self.gw, self.host, self.port = gw, host, port
        self._lock = threading.Lock()
        self.acks: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        subscribed = threading.Event()
        topics = [(wire.ack_topic(gw), 1), (wire.status_topic(gw), 1), (wire.up_topic(gw, "sighting"), 1)]  # fmt: skip
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{gw}")
        self.client.on_connect = lambda c, *a: c.subscribe(topics)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 10)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.topic == wire.ack_topic(self.gw):
                self.acks.append(json.loads(msg.payload))
            elif msg.topic == wire.status_topic(self.gw):
                self.statuses.append(wire.decode_status(bytes(msg.payload)))
            else:
                batch = wire.decode_batch(bytes(msg.payload), topic_gw=self.gw)
                self.records += [dict(r.to_dict()) for r in batch.records]

    def flash(self, payload: bytes) -> None:
        url = f"mqtt://{self.host}:{self.port}"
        publish_retained(url, {wire.down_topic(self.gw, "profiles"): payload}, timeout_s=5)

    def bundle_acks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.acks if a["cmd"] == "profiles"]

    def next_bundle_ack(self, seen: int) -> dict[str, Any]:
        assert wait_for(lambda: len(self.bundle_acks()) > seen), "no bundle ack"
        return self.bundle_acks()[seen]

    def amulet_version(self) -> int | None:
        with self._lock:
            status = self.statuses[-1] if self.statuses else None
        if status is None or status["state"] != "online":
            return None
        return int(status["profiles"]["amulet-ibeacon"])

    def profile_refs(self) -> list[str]:
        with self._lock:
            return [r["profile"] for r in self.records]

    def settled(self, timeout_s: float = 15.0) -> None:
        """Ping until answered: everything the gateway received before has been dealt with
        (bundles and commands share one queue, in order)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ping_id = f"ping-{uuid.uuid4().hex[:8]}"
            payload = json.dumps({"cmd": "ping", "id": ping_id}).encode()
            self.client.publish(wire.down_topic(self.gw, "cmd"), payload, qos=1).wait_for_publish(5)
            if wait_for(functools.partial(self._answered, ping_id), 0.5):
                return
        raise AssertionError("the gateway never answered a ping")

    def _answered(self, cmd_id: str) -> bool:
        with self._lock:
            return any(a["id"] == cmd_id for a in self.acks)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gw() -> str:
    return f"gw-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def watch(mosquitto: Any, gw: str) -> Iterator[GatewayWatch]:
    w = GatewayWatch(mosquitto.host, mosquitto.port, gw)
    yield w
    w.flash(b"")  # an empty retained message clears the topic
    w.close()


def gateway(gw: str, mosquitto: Any, tmp_path: Path, trusted: list[Path]) -> GatewayConfig:
    profiles = {"trusted_keys": [str(p) for p in trusted]} if trusted else {}
    return parse_config(
        {
            "gateway": {"id": gw},
            "broker": {"url": mosquitto.url},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "batching": {"max_age_ms": 20},
            "profiles": profiles,
        },
        "test",
    )


def kick(mosquitto: Any, config: GatewayConfig) -> None:
    """Take the gateway's client id over for a moment: the broker drops its connection, the
    agent reconnects and the retained bundle is delivered again."""
    intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id, clean_session=False)  # fmt: skip
    intruder.connect(mosquitto.host, mosquitto.port, 10)
    intruder.loop_start()
    time.sleep(0.1)
    intruder.disconnect()
    intruder.loop_stop()


def running(agent: Agent, source: PushSource, watch: GatewayWatch, ref: str) -> bool:
    """The agent decodes the amulet with ``ref``, both in memory and on the wire."""
    profile, _ = agent.decoder.decode("ble", RawFrame("t", 1, AMULET_FRAME, AMULET_META))
    source.hear(AMULET_FRAME, AMULET_META)
    return (
        profile is not None
        and profile.ref == ref
        and wait_for(lambda: ref in watch.profile_refs(), 5.0)
    )


def test_a_good_bundle_is_applied_acked_and_kept_across_a_restart(
    mosquitto: Any, gw: str, tmp_path: Path, watch: GatewayWatch, maintainer: Signer
) -> None:
    config = gateway(gw, mosquitto, tmp_path, [maintainer.public_file])
    source = PushSource()
    agent = Agent(config, sources=[source], reconnect_min_s=0.1)
    agent.start()
    try:
        watch.settled()
        assert watch.amulet_version() == 1 and watch.bundle_acks() == []
        assert running(agent, source, watch, "amulet-ibeacon@1")

        flashed = maintainer.bundle(5, 2)
        watch.flash(flashed)
        ack = watch.next_bundle_ack(0)
        assert ack | {"ts": 0} == {
            "id": "profiles-5",
            "cmd": "profiles",
            "ok": True,
            "detail": f"applied bundle 5 ({len(SHIPPED)} profiles)",
            "ts": 0,
        }
        assert abs(ack["ts"] - time.time() * 1000) < 60_000
        assert wait_for(lambda: watch.amulet_version() == 2)
        assert running(agent, source, watch, "amulet-ibeacon@2")
        assert config.bundle_file.read_bytes() == flashed  # kept for the next start
        assert agent.bundle is not None and agent.bundle.serial == 5

        kick(mosquitto, config)  # the retained bundle comes again: already running, no answer
        assert wait_for(lambda: agent.publisher.stats().reconnects >= 1)
        watch.settled()
        assert len(watch.bundle_acks()) == 1
    finally:
        agent.stop()

    again = Agent(config, sources=[source := PushSource()], reconnect_min_s=0.1)
    assert again.bundle is not None and again.bundle.serial == 5  # from the saved file
    again.start()
    try:
        watch.settled()
        assert wait_for(lambda: watch.amulet_version() == 2)
        assert running(again, source, watch, "amulet-ibeacon@2")
        assert len(watch.bundle_acks()) == 1  # the retained bundle is the running one: quiet
    finally:
        again.stop()


def test_bad_bundles_are_refused_with_the_reason_and_the_previous_profiles_stay(
    mosquitto: Any,
    gw: str,
    tmp_path: Path,
    watch: GatewayWatch,
    maintainer: Signer,
    stranger: Signer,
) -> None:
    config = gateway(gw, mosquitto, tmp_path, [maintainer.public_file])
    source = PushSource()
    agent = Agent(config, sources=[source], reconnect_min_s=0.1)
    agent.start()
    try:
        watch.settled()
        watch.flash(maintainer.bundle(5, 2))
        assert watch.next_bundle_ack(0)["ok"] is True
        applied = config.bundle_file.read_bytes()

        refusals = [
            (tampered(maintainer.bundle(6, 2)), "profiles-6", "bundle signature does not verify with any trusted key"),
            (stranger.bundle(7, 3), "profiles-7", "bundle signature does not verify with any trusted key"),
            (maintainer.bundle(3, 3), "profiles-3", "bundle serial 3 is not newer than the running 5"),
            (b"{not json", None, "bundle is not JSON"),
        ]  # fmt: skip
        for index, (payload, ack_id, reason) in enumerate(refusals, start=1):
            watch.flash(payload)
            ack = watch.next_bundle_ack(index)
            assert (ack["id"], ack["cmd"], ack["ok"]) == (ack_id, "profiles", False)
            assert ack["detail"].startswith(reason), ack["detail"]
        watch.settled()
        assert agent.bundle is not None and agent.bundle.serial == 5
        assert config.bundle_file.read_bytes() == applied
        assert watch.amulet_version() == 2
        assert running(agent, source, watch, "amulet-ibeacon@2")

        kick(mosquitto, config)  # the last refused payload is still retained: answered once
        assert wait_for(lambda: agent.publisher.stats().reconnects >= 1)
        watch.settled()
        assert len(watch.bundle_acks()) == 1 + len(refusals)
    finally:
        agent.stop()


def test_a_gateway_without_trusted_keys_refuses_bundles_with_a_clear_reason(
    mosquitto: Any, gw: str, tmp_path: Path, watch: GatewayWatch, maintainer: Signer
) -> None:
    config = gateway(gw, mosquitto, tmp_path, [])
    source = PushSource()
    agent = Agent(config, sources=[source], reconnect_min_s=0.1)
    agent.start()
    try:
        watch.settled()
        watch.flash(maintainer.bundle(1, 2))
        ack = watch.next_bundle_ack(0)
        assert (ack["id"], ack["ok"]) == ("profiles-1", False)
        assert ack["detail"] == NO_TRUSTED_KEYS
        assert "profiles.trusted_keys" in ack["detail"]
        watch.settled()
        assert watch.amulet_version() == 1 and agent.bundle is None
        assert not config.bundle_file.exists()
        assert running(agent, source, watch, "amulet-ibeacon@1")
    finally:
        agent.stop()


def test_keygen_sign_and_flash_from_the_cli_reach_the_gateway(
    mosquitto: Any, gw: str, tmp_path: Path, watch: GatewayWatch
) -> None:
    """The maintainer's path end to end: ``shouhu profiles keygen``, ``sign``, ``flash``."""
    runner = CliRunner()
    result = runner.invoke(main, ["profiles", "keygen", "--out", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    config = gateway(gw, mosquitto, tmp_path, [tmp_path / "keys" / "bundle-signing.pub"])
    agent = Agent(config, sources=[], reconnect_min_s=0.1)
    agent.start()
    try:
        watch.settled()
        bundle = tmp_path / "bundle-2.json"
        key = str(tmp_path / "keys" / "bundle-signing.key")
        for args in (
            ["profiles", "sign", "--key", key, "--serial", "2", "--out", str(bundle)],
            ["profiles", "flash", str(bundle), "--broker", mosquitto.url, "--gateway", gw],
        ):
            result = runner.invoke(main, args)
            assert result.exit_code == 0, result.output
        ack = watch.next_bundle_ack(0)
        assert (ack["id"], ack["ok"]) == ("profiles-2", True), ack
        assert config.bundle_file.read_bytes() == bundle.read_bytes()
    finally:
        agent.stop()
