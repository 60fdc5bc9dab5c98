"""Play recorded serial-receiver output into a real pyserial port: a pty or a TCP socket.

The far end of the link is what ``SerialSource`` opens, through pyserial's ordinary path:
- ``PtyLink``: a pseudo-terminal pair; the source opens a stable symlink to the slave (as udev's
  ``/dev/serial/by-id/...`` does), so "unplug, plug back" is a new pty behind the same path.
- ``TcpLink``: a listening socket; the source opens ``socket://127.0.0.1:<port>`` (ser2net,
  an ESP-Link or rtl_433 piped through ``nc -l`` look the same).

``disconnect()`` / ``reconnect()`` take the device away and bring it back on the same path.
Also a script, to feed a running agent by hand::

    python tests/serial_player.py --tcp 7000 rflink      # a recording below, or a file
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time
import tty
from collections.abc import Iterable, Sequence
from pathlib import Path

# Recorded receiver output, as the bytes arrived: chunk boundaries fall inside lines, the
# receiver's reset spits garbage, transmitters repeat their frame in bursts.
RFLINK_SESSION: tuple[bytes, ...] = (
    b"\x00\xf0\xfe\x1b",  # noise while the Arduino resets (joins the first line: dropped)
    b"\r\n20;00;Nodo RadioFrequencyLink - RFLink Gateway V1.1 - R46;\r\n",
    b"20;01;MySensors=OFF;NO NRF24L01;\r\n20;02;setGPIO=ON;\r\n",
    b"20;03;Cresta;ID=3001;TEMP=00b4;HUM=50;BAT=OK;\r\n",
    b"20;0D;FA20RF;ID=97e3b2;SMO",  # a line split across reads
    b"KEALERT=ON;\r",
    b"\n20;0E;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
    b"20;0F;FA20RF;ID=97e3b2;SMOKEALERT=ON;\r\n",
)
RTL433_SESSION: tuple[bytes, ...] = (
    b'{"time" : "2026-11-20 19:32:13", "model" : "Honeywell-Security", "id" : 641697, '
    b'"channel" : 8, "event" : 20, "alarm" : 1, "tamper" : 0, "battery_ok" : 1, "heartbeat" : 1}\n',
    b'{"time" : "2026-11-20 19:32:11", "model" : "Cavius-Security", "id" : 1234567, "battery_ok" : 1,'
    b' "net_id" : 98765432, "message" : 32, "text" : "Fire alarm", "mic" : "CRC"}\n',
)
EV1527_SESSION: tuple[bytes, ...] = (b"RX:A1B2C8\r\n", b"RX:A1B2C8\r\nRX:A1", b"B2C8\r\n")
RECORDINGS = {"rflink": RFLINK_SESSION, "rtl433": RTL433_SESSION, "ev1527": EV1527_SESSION}


class PtyLink:
    """A pty whose slave is reachable at ``path`` (a symlink that survives reconnects)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._master: int | None = None
        self._slave: int | None = None
        self.reconnect()

    def reconnect(self) -> None:
        """Plug the device (back) in: a new pty behind the same path."""
        self.disconnect()
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: bytes pass as written
        self._master, self._slave = master, slave
        tmp = self.path.with_suffix(".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)

    def disconnect(self) -> None:
        """Unplug: close both ends; the reader gets EIO and the path dangles."""
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def write(self, data: bytes) -> None:
        assert self._master is not None, "not connected"
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]

    def close(self) -> None:
        self.disconnect()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class TcpLink:
    """A one-client TCP server on 127.0.0.1; ``url`` is what pyserial opens."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._server: socket.socket | None = None
        self._client: socket.socket | None = None
        self._connected = threading.Event()
        self.reconnect()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def reconnect(self) -> None:
        """Listen (again) on the same port and accept the reader when it comes."""
        self.disconnect()
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(1)
        self.port = server.getsockname()[1]
        self._server = server
        self._connected.clear()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        try:
            client, _ = server.accept()
        except OSError:
            return  # closed before anyone came
        self._client = client
        self._connected.set()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        return self._connected.wait(timeout)

    def disconnect(self) -> None:
        for sock in (self._client, self._server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._client = self._server = None
        self._connected.clear()

    def write(self, data: bytes) -> None:
        if not self.wait_connected():
            raise TimeoutError("no reader connected")
        assert self._client is not None
        self._client.sendall(data)

    def close(self) -> None:
        self.disconnect()


def play(link: PtyLink | TcpLink, chunks: Iterable[bytes], gap_s: float = 0.0) -> None:
    """Write ``chunks`` one by one; ``gap_s`` apart lets the reader see them as separate reads."""
    for chunk in chunks:
        link.write(chunk)
        if gap_s:
            time.sleep(gap_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT")
    where.add_argument("--pty", type=Path, metavar="PATH", help="symlink a pty slave at PATH")
    parser.add_argument("recording", help=f"one of {sorted(RECORDINGS)} or a file of lines")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between chunks")
    parser.add_argument("--loop", action="store_true", help="play again and again")
    args = parser.parse_args(argv)
    if args.recording in RECORDINGS:
        chunks: Sequence[bytes] = RECORDINGS[args.recording]
    else:
        chunks = Path(args.recording).read_bytes().splitlines(keepends=True)
    link: PtyLink | TcpLink = TcpLink(args.tcp) if args.tcp is not None else PtyLink(args.pty)
    where_to = link.url if isinstance(link, TcpLink) else str(args.pty)
    print(f"serving {len(chunks)} chunks at {where_to}", file=sys.stderr)
    try:
        while True:
            play(link, chunks, args.gap)
            if not args.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
