"""SerialSource through the real pyserial path (a pty and socket://), and its LineAssembler.

The recordings in ``serial_player`` carry the hard parts: garbage while the receiver resets,
lines split across reads, a CR and its LF in different reads, and the device unplugged and
plugged back on the same path.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serial_player import RFLINK_SESSION, PtyLink, TcpLink, play

from edge_agent.sources.serial import LineAssembler, SerialOptions, SerialSource
from shouhu.exceptions import ConfigError
from shouhu.model import RawFrame
from shouhu.profiles import Profile

FAST = {"read_timeout_s": 0.05, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
RFLINK_LINES = [
    b"20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;",
    b"20;01;MySensors=OFF;NO NRF24L01;",
    b"20;02;setGPIO=ON;",
    b"20;03;Cresta;ID=3001;TEMP=00b4;HUM=50;BAT=OK;",
    b"20;0D;FA20RF;ID=97e3b2;SMOKEALERT=ON;",
    b"20;0E;FA20RF;ID=97e3b2;SMOKEALERT=ON;",
    b"20;0F;FA20RF;ID=97e3b2;SMOKEALERT=ON;",
]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def take(frames: queue.Queue[RawFrame], n: int, timeout: float = 5.0) -> list[RawFrame]:
    return [frames.get(timeout=timeout) for _ in range(n)]


@pytest.fixture
def pty_link(tmp_path: Path) -> Iterator[PtyLink]:
    link = PtyLink(tmp_path / "ttyRFLink")
    yield link
    link.close()


@pytest.fixture
def tcp_link() -> Iterator[TcpLink]:
    link = TcpLink()
    yield link
    link.close()


def started(port: str, **options: object) -> tuple[SerialSource, queue.Queue[RawFrame]]:
    frames: queue.Queue[RawFrame] = queue.Queue()
    source = SerialSource("rf0", {"port": port, "line_terminator": "\r\n", **FAST, **options})
    source.start(frames.put)
    return source, frames


# --- pty ------------------------------------------------------------------------------------


def test_pty_session_with_garbage_and_split_lines(pty_link: PtyLink) -> None:
    source, frames = started(str(pty_link.path))
    try:
        wait_for(lambda: source.health()["present"])
        play(pty_link, RFLINK_SESSION, gap_s=0.02)
        got = take(frames, len(RFLINK_LINES))
        assert [f.payload for f in got] == RFLINK_LINES
        assert all(f.source == "rf0" and f.meta == {"port": str(pty_link.path)} for f in got)
        assert all(abs(f.ts - time.time() * 1000) < 10_000 for f in got)
        health = source.health()
        assert health["frames"] == len(RFLINK_LINES)
        assert health["dropped_lines"] == 1  # the reset noise (it joined no valid line)
        assert health["dropped_bytes"] == 4
        assert health["reconnects"] == 0
        assert frames.empty()
    finally:
        source.stop()
    assert source.health()["present"] is False


def test_pty_over_long_line_is_dropped_and_reading_goes_on(pty_link: PtyLink) -> None:
    source, frames = started(str(pty_link.path), max_line=64)
    try:
        wait_for(lambda: source.health()["present"])
        play(pty_link, [b"20;" + b"A" * 100, b"B" * 100 + b";\r\n", b"20;0D;FA20RF;ID=1;\r\n"])
        assert take(frames, 1)[0].payload == b"20;0D;FA20RF;ID=1;"
        health = source.health()
        assert health["dropped_lines"] == 1
        assert health["dropped_bytes"] == 3 + 100 + 100 + 1  # terminators are not counted
    finally:
        source.stop()


def test_pty_unplugged_and_back_on_the_same_path(pty_link: PtyLink) -> None:
    source, frames = started(str(pty_link.path))
    try:
        wait_for(lambda: source.health()["present"])
        pty_link.write(b"20;10;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n20;11;FA20RF;ID=97")
        assert take(frames, 1)[0].payload == b"20;10;FA20RF;ID=97e3b2;SMOKEALERT=ON;"

        pty_link.disconnect()
        wait_for(lambda: not source.health()["present"])
        time.sleep(0.3)  # several failed reopen attempts with backoff
        assert source.health()["errors"] >= 1

        pty_link.reconnect()
        wait_for(lambda: source.health()["present"])
        pty_link.write(b"20;12;FA20RF;ID=97e3b2;SMOKEALERT=OFF;\r\n")
        # the half line from before the disconnect is discarded, never glued to the new one
        assert take(frames, 1)[0].payload == b"20;12;FA20RF;ID=97e3b2;SMOKEALERT=OFF;"
        health = source.health()
        assert health["reconnects"] == 1
        assert health["frames"] == 2
        assert health["dropped_bytes"] == len(b"20;11;FA20RF;ID=97")
    finally:
        source.stop()


# --- socket:// ------------------------------------------------------------------------------


def test_socket_url_reconnects_on_the_same_port(tcp_link: TcpLink) -> None:
    source, frames = started(tcp_link.url, line_terminator="\n")
    try:
        assert tcp_link.wait_connected()
        wait_for(lambda: source.health()["present"])  # pyserial flushes input while opening
        play(tcp_link, [b"RX:A1B2C8\nRX:A1", b"B2C4\n"], gap_s=0.02)
        assert [f.payload for f in take(frames, 2)] == [b"RX:A1B2C8", b"RX:A1B2C4"]

        tcp_link.disconnect()
        wait_for(lambda: not source.health()["present"])
        tcp_link.reconnect()
        assert tcp_link.wait_connected()
        wait_for(lambda: source.health()["present"])
        tcp_link.write(b"RX:5F3E01\n")
        assert take(frames, 1)[0].payload == b"RX:5F3E01"
        assert source.health()["reconnects"] == 1
    finally:
        source.stop()


def test_missing_device_is_not_fatal_and_stop_is_prompt(tmp_path: Path) -> None:
    source, frames = started(str(tmp_path / "no-such-tty"))
    time.sleep(0.2)
    health = source.health()
    assert health["present"] is False
    assert health["frames"] == 0
    assert "cannot open" in str(health["last_error"])
    began = time.monotonic()
    source.stop()
    assert time.monotonic() - began < 1.0


def test_emit_failure_is_counted_and_reading_continues(tcp_link: TcpLink) -> None:
    got: list[bytes] = []

    def emit(frame: RawFrame) -> None:
        if frame.payload == b"boom":
            raise RuntimeError("agent queue broke")
        got.append(frame.payload)

    source = SerialSource("rf0", {"port": tcp_link.url, **FAST})
    source.start(emit)
    try:
        assert tcp_link.wait_connected()
        wait_for(lambda: source.health()["present"])
        tcp_link.write(b"boom\nRX:A1B2C8\n")
        wait_for(lambda: got == [b"RX:A1B2C8"])
        assert source.health()["errors"] == 1
        assert source.health()["frames"] == 1
    finally:
        source.stop()


# --- options --------------------------------------------------------------------------------


def test_profile_supplies_serial_defaults_and_gateway_options_win() -> None:
    profile = Profile(
        id="smoke-test",
        version=1,
        transport="serial",
        decoder="rflink",
        options={"baud": 9600, "framing": "7E2", "line_terminator": "\r\n"},
    )
    opts = SerialOptions.from_options("rf0", {"port": "/dev/ttyUSB0"}, profile)
    assert (opts.baudrate, opts.bytesize, opts.parity, opts.stopbits) == (9600, 7, "E", 2)
    assert opts.line_terminator == b"\r\n"
    opts = SerialOptions.from_options("rf0", {"port": "/dev/ttyUSB0", "baudrate": 57600}, profile)
    assert opts.baudrate == 57600


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "port"),
        ({"port": "/dev/ttyUSB0", "line_terminator": ";"}, "line_terminator"),
        ({"port": "/dev/ttyUSB0", "parity": "X"}, "parity"),
        ({"port": "/dev/ttyUSB0", "stopbits": 3}, "stopbits"),
        ({"port": "/dev/ttyUSB0", "bytesize": 9}, "bytesize"),
        ({"port": "/dev/ttyUSB0", "baudrate": "fast"}, None),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], field: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        SerialSource("rf0", options)
    assert info.value.field == field
    assert "sources.rf0" in info.value.message


# --- LineAssembler (pure) -------------------------------------------------------------------


def test_assembler_crlf_split_between_reads() -> None:
    lines = LineAssembler(b"\r\n")
    assert lines.feed(b"20;01;A;ID=1;\r") == []
    assert lines.feed(b"\n20;02;B;ID=2;\r\n\r\n") == [b"20;01;A;ID=1;", b"20;02;B;ID=2;"]
    assert lines.dropped_lines == 0


def test_assembler_drops_non_utf8_and_control_bytes() -> None:
    lines = LineAssembler(b"\n")
    out = lines.feed(b"ok one\n\xff\xfe bad\nnul\x00inside\nok\ttwo\r\n")
    assert out == [b"ok one", b"ok\ttwo"]
    assert lines.dropped_lines == 2
    assert lines.dropped_bytes == len(b"\xff\xfe bad") + len(b"nul\x00inside")


def test_assembler_reset_discards_partial_line() -> None:
    lines = LineAssembler(b"\n")
    assert lines.feed(b"20;11;FA20") == []
    lines.reset()
    assert lines.feed(b"RF;ID=1;\n") == [b"RF;ID=1;"]
    assert lines.dropped_bytes == len(b"20;11;FA20")


@settings(max_examples=200, deadline=None, print_blob=True)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF)).filter(bool),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    terminator=st.sampled_from([b"\n", b"\r\n"]),
)
def test_assembler_output_does_not_depend_on_chunking(
    lines: list[str], cuts: list[int], terminator: bytes
) -> None:
    encoded = [line.encode() for line in lines]
    stream = b"".join(line + terminator for line in encoded)
    assembler = LineAssembler(terminator, max_line=10_000)
    out: list[bytes] = []
    previous = 0
    for cut in sorted({min(c, len(stream)) for c in cuts}) + [len(stream)]:
        out += assembler.feed(stream[previous:cut])
        previous = cut
    assert out == [line for line in encoded if line.decode().isprintable()]


@settings(max_examples=200, deadline=None, print_blob=True)
@given(data=st.binary(max_size=2000), max_line=st.integers(min_value=1, max_value=64))
def test_assembler_never_returns_an_over_long_or_dirty_line(data: bytes, max_line: int) -> None:
    assembler = LineAssembler(b"\n", max_line=max_line)
    out = assembler.feed(data[: len(data) // 2]) + assembler.feed(data[len(data) // 2 :])
    for line in out:
        assert len(line) <= max_line
        assert b"\n" not in line
        assert line.decode("utf-8").isprintable() or "\t" in line.decode("utf-8")
    assert assembler.dropped_bytes <= len(data)


def test_shipped_profile_named_by_id_gives_the_receiver_settings() -> None:
    source = SerialSource("rf0", {"port": "/dev/ttyACM0", "profile": "smoke-rflink"})
    opts = source.options
    assert (opts.baudrate, opts.bytesize, opts.parity, opts.stopbits) == (57600, 8, "N", 1)
    assert opts.line_terminator == b"\n"
    with pytest.raises(ConfigError):
        SerialSource("rf0", {"port": "/dev/ttyACM0", "profile": "no-such-profile"})
