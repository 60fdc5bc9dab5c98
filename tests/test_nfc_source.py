"""NfcSource against nfcpy's own ``udp`` driver, with a Type 3 Tag emulated on the other end.

nfcpy can only emulate Type 3 Tags (see tests/nfc_tag_emulator.py), so the end-to-end tests tap
a FeliCa-style tag; the frame shape (UID, technology, product, NDEF bytes) is the same for all.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from nfc_tag_emulator import EmulatedTag, uri_message

from edge_agent.decoders import get_decoder
from edge_agent.sources.nfc import NfcSource, TapDebouncer, backoff_s
from shouhu.cardkey import card_key
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame
from shouhu.profiles import load_profiles

IDM = bytes.fromhex("02fe0102030405f6")
URI = "https://patrol.shouhu.example/b/b-204"
HASH_KEY = bytes(range(32))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Collected:
    """Thread-safe list of emitted frames."""

    def __init__(self) -> None:
        self.frames: list[RawFrame] = []
        self._lock = threading.Lock()

    def __call__(self, frame: RawFrame) -> None:
        with self._lock:
            self.frames.append(frame)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def udp_port() -> int:
    return free_udp_port()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "uid-hash.key"
    path.write_text(HASH_KEY.hex() + "\n", encoding="ascii")
    return path


@contextmanager
def started(
    port: int, debounce_s: float, key_file: Path | None = None
) -> Iterator[tuple[NfcSource, Collected]]:
    options: dict[str, object] = {
        "path": f"udp:127.0.0.1:{port}",
        "targets": ["212F"],
        "debounce_s": debounce_s,
    }
    if key_file is not None:
        options["uid_hash_key_file"] = str(key_file)
    source = NfcSource("nfc-test", options)
    collected = Collected()
    source.start(collected)
    try:
        yield source, collected
    finally:
        source.stop()


@pytest.mark.timeout(60)
def test_tap_gives_one_frame_with_uid_and_ndef_and_repeats_are_debounced(
    udp_port: int, key_file: Path
) -> None:
    tag = EmulatedTag(udp_port, IDM, uri_message(URI))
    with started(udp_port, debounce_s=30.0, key_file=key_file) as (source, collected):
        assert tag.tap(hold_s=0.2)
        assert wait_for(lambda: len(collected.frames) == 1)
        assert tag.tap(hold_s=0.2)  # read again: the same tap as far as the gateway goes
        assert wait_for(lambda: source.health()["debounced"] == 1)
        health = source.health()
        assert health["frames"] == 1
        assert health["errors"] == 0
        assert health["present"] is True

    (frame,) = collected.frames
    assert frame.source == "nfc-test"
    assert frame.payload == uri_message(URI)
    assert frame.meta["uid"] == IDM.hex()
    assert frame.meta["technology"] == "Type3Tag"
    assert frame.meta["product"].startswith("FeliCa")
    assert abs(frame.ts - time.time() * 1000) < 60_000
    # the hash key rides along for the student-card decoder, but never prints
    assert "<secret>" in repr(frame.meta) and HASH_KEY.hex() not in repr(frame.meta)

    card = load_profiles()["student-card"]
    (reading,) = get_decoder(card.decoder)(frame, card)
    assert reading.device == card_key(IDM.hex(), HASH_KEY)
    assert IDM.hex() not in repr(reading)
    assert source.health()["present"] is False  # stopped


@pytest.mark.timeout(60)
def test_taps_after_the_debounce_window_are_separate_frames(udp_port: int) -> None:
    tag = EmulatedTag(udp_port, IDM, uri_message(URI))
    with started(udp_port, debounce_s=0.0) as (source, collected):
        assert tag.tap(hold_s=0.1)
        assert wait_for(lambda: len(collected.frames) == 1)
        assert tag.tap(hold_s=0.1)
        assert wait_for(lambda: len(collected.frames) == 2)
        assert source.health()["debounced"] == 0
    assert [f.meta["uid"] for f in collected.frames] == [IDM.hex(), IDM.hex()]
    assert "uid_hash_key" not in collected.frames[0].meta


@pytest.mark.timeout(30)
def test_missing_reader_is_reported_and_retried_until_stopped() -> None:
    source = NfcSource("nfc-gone", {"path": "tty:S99:pn532", "retry_max_s": 0.5})
    collected = Collected()
    source.start(collected)
    try:
        assert wait_for(lambda: source.health()["errors"] >= 3, timeout=10)
        health = source.health()
        assert health["present"] is False
        assert "cannot open reader" in health["last_error"]
    finally:
        began = time.monotonic()
        source.stop()
    assert time.monotonic() - began < 2.0
    assert collected.frames == []


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        NfcSource("n", {"pathh": "usb"})
    with pytest.raises(ConfigError):
        NfcSource("n", {"debounce_s": "soon"})
    short = tmp_path / "short.key"
    short.write_text("00ff", encoding="ascii")
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        NfcSource("n", {"uid_hash_key_file": str(short)})


def test_debouncer_window_slides_from_the_last_read() -> None:
    debouncer = TapDebouncer(2.0)
    assert debouncer.is_new_tap("04aa", 100.0)
    assert not debouncer.is_new_tap("04aa", 101.5)
    assert not debouncer.is_new_tap("04aa", 103.0)  # 1.5 s after the last read
    assert debouncer.is_new_tap("04bb", 103.0)  # another tag is another tap
    debouncer.touch("04aa", 110.0)  # it stayed on the reader until 110
    assert not debouncer.is_new_tap("04aa", 111.0)
    assert debouncer.is_new_tap("04aa", 113.5)


def test_debouncer_forgets_old_tags_but_not_recent_ones() -> None:
    debouncer = TapDebouncer(1.0)
    for n in range(300):
        assert debouncer.is_new_tap(f"{n:08x}", float(n))
    assert not debouncer.is_new_tap(f"{299:08x}", 299.5)
    assert len(debouncer._last_seen) < 300


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff_s(n, 5.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert backoff_s(10_000, 30.0) == 30.0
