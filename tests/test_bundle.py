"""Signed profile bundles: what a gateway accepts and what it refuses."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from device_profiles import PROFILES_DIR
from shouhu.bundle import (
    build_bundle,
    generate_keypair,
    load_private_key,
    load_public_key,
    texts_from_files,
    verify_bundle,
)
from shouhu.cli import main
from shouhu.exceptions import ProfileError

TEXTS = texts_from_files([PROFILES_DIR])


@pytest.fixture(scope="module")
def keys() -> tuple:
    private_pem, public_pem = generate_keypair()
    return load_private_key(private_pem), load_public_key(public_pem)


def test_signed_bundle_round_trips(keys: tuple) -> None:
    private, public = keys
    payload = build_bundle(TEXTS, serial=3, created=1, private_key=private)
    bundle = verify_bundle(payload, [public], current_serial=2)
    assert bundle.serial == 3
    assert set(bundle.profiles) == set(TEXTS)
    assert bundle.versions()["amulet-ibeacon"] == 1


def test_tampered_bundle_is_refused(keys: tuple) -> None:
    private, public = keys
    body = json.loads(build_bundle(TEXTS, serial=3, created=1, private_key=private))
    body["profiles"]["amulet-ibeacon"] = body["profiles"]["amulet-ibeacon"].replace(
        "version: 1", "version: 9"
    )
    with pytest.raises(ProfileError, match="does not verify"):
        verify_bundle(json.dumps(body).encode(), [public])


def test_foreign_key_is_refused(keys: tuple) -> None:
    private, _ = keys
    _, other_public_pem = generate_keypair()
    payload = build_bundle(TEXTS, serial=3, created=1, private_key=private)
    with pytest.raises(ProfileError, match="does not verify"):
        verify_bundle(payload, [load_public_key(other_public_pem)])


def test_old_serial_is_refused(keys: tuple) -> None:
    private, public = keys
    payload = build_bundle(TEXTS, serial=3, created=1, private_key=private)
    with pytest.raises(ProfileError, match="not newer"):
        verify_bundle(payload, [public], current_serial=3)


def test_invalid_profile_cannot_be_signed(keys: tuple) -> None:
    private, _ = keys
    bad = {"amulet-ibeacon": TEXTS["amulet-ibeacon"].replace("transport: ble", "transport: lora")}
    with pytest.raises(ProfileError, match="transport"):
        build_bundle(bad, serial=1, created=1, private_key=private)


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b'{"v": 1}', b'{"v": 1, "sig": "!!"}'])
def test_garbage_is_refused_with_a_reason(keys: tuple, payload: bytes) -> None:
    with pytest.raises(ProfileError):
        verify_bundle(payload, [keys[1]])


def test_cli_keygen_sign_and_flash(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(main, ["profiles", "keygen", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    bundle = tmp_path / "bundle.json"
    result = runner.invoke(
        main,
        ["profiles", "sign", "--key", str(tmp_path / "bundle-signing.key"), "--serial", "5"]
        + ["--out", str(bundle)],
    )
    assert result.exit_code == 0, result.output
    public = load_public_key((tmp_path / "bundle-signing.pub").read_bytes())
    assert verify_bundle(bundle.read_bytes(), [public]).serial == 5

    result = runner.invoke(
        main,
        ["profiles", "flash", str(bundle), "--broker", f"mqtt://127.0.0.1:{mosquitto.port}"]
        + ["--gateway", "gw-flash-1"],
    )
    assert result.exit_code == 0, result.output
    got: list[bytes] = []
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        assert msg.retain
        got.append(msg.payload)
        done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("shouhu/v1/gw/gw-flash-1/down/profiles", qos=1)
    sub.loop_start()
    try:
        assert done.wait(10), "retained bundle not delivered"
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got[0] == bundle.read_bytes()


def test_cli_flash_to_a_dead_broker_says_so(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_text("{}")
    result = CliRunner().invoke(
        main,
        ["profiles", "flash", str(bundle), "--broker", "mqtt://127.0.0.1:1", "--gateway", "gw-1"],
    )
    assert result.exit_code == 3
    assert "cannot reach broker" in result.output
