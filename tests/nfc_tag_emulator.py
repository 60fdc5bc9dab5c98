"""An NFC Forum Type 3 Tag carrying an NDEF message, emulated over nfcpy's own ``udp`` driver.

nfcpy's ``udp:HOST:PORT`` device simulates the RF link with UDP datagrams; a
``ContactlessFrontend("udp:...").connect(card=...)`` on the same port answers a reader's polling
as a tag. nfcpy's card emulation (``nfc.tag.emulate``) only implements Type 3 Tags
(``Type3TagEmulation``, FeliCa 212 kbps): the udp driver activates 106A targets too, but nfcpy has
no Type 2 / Type 4 emulation class to answer the tag commands that follow.

Run as a script for a manual test with a second terminal running the gateway:
``python tests/nfc_tag_emulator.py 54321 https://patrol.shouhu.example/b/b-204``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import ndef
import nfc
import nfc.clf
import nfc.tag.tt3

NDEF_SYSTEM_CODE = bytes.fromhex("12fc")
NDEF_READ_SERVICE = 0x000B  # read without encryption
# PMm: IC 0301 (FeliCa Standard); response-time bytes: request response 0x82 (~15 ms: the
# reader's presence check notices a removed tag in ~50 ms) and read 0xFF (~150 ms per block:
# a Python emulator sharing the GIL with the reader answers in time).
PMM = bytes.fromhex("03014b824fff93ff")
BLOCK = 16


def uri_message(uri: str) -> bytes:
    """The NDEF message bytes of one URI record."""
    return b"".join(ndef.message_encoder([ndef.UriRecord(uri)]))


def type3_memory(message: bytes) -> bytes:
    """Attribute information block + NDEF data blocks of a read-only Type 3 Tag (NFC Forum T3T)."""
    blocks = max(1, -(-len(message) // BLOCK))
    attr = bytearray(BLOCK)
    attr[0] = 0x10  # mapping version 1.0
    attr[1] = 4  # Nbr: blocks per read
    attr[2] = 1  # Nbw: blocks per write
    attr[3:5] = blocks.to_bytes(2, "big")  # Nmaxb
    attr[9] = 0x00  # WriteFlag: no write in progress
    attr[10] = 0x00  # RWFlag: read-only
    attr[11:14] = len(message).to_bytes(3, "big")  # Ln
    attr[14:16] = sum(attr[0:14]).to_bytes(2, "big")  # checksum
    return bytes(attr) + message.ljust(blocks * BLOCK, b"\x00")


class EmulatedTag:
    """A Type 3 Tag with ``idm`` (its 8-byte identifier) and an NDEF ``message``.

    ``tap(hold_s)`` brings it into the reader's field for ``hold_s`` seconds after the reader
    activated it (or until ``timeout_s`` passes without a reader), then takes it away.
    """

    def __init__(self, port: int, idm: bytes, message: bytes) -> None:
        if len(idm) != 8:
            raise ValueError("a Type 3 Tag IDm is 8 bytes")
        self.port = port
        self.idm = idm
        self.memory = type3_memory(message)
        self.activations = 0
        self.blocks_read = 0

    def _read_block(self, block: int, rb: bool, re: bool) -> bytes | None:
        start = block * BLOCK
        if start + BLOCK > len(self.memory):
            return None
        self.blocks_read += 1
        return self.memory[start : start + BLOCK]

    def _on_startup(self, target: nfc.clf.LocalTarget) -> nfc.clf.LocalTarget:
        target.brty = "212F"
        target.sensf_res = b"\x01" + self.idm + PMM + NDEF_SYSTEM_CODE
        return target

    def tap(self, hold_s: float = 0.3, timeout_s: float = 10.0, away_s: float = 0.3) -> bool:
        """One tap; True if a reader read the tag (activated it and read at least one block).

        The tag waits up to ``timeout_s`` for a reader, answers it for ``hold_s`` after the
        first block was read, then leaves the field and stays away for ``away_s`` (long
        enough for the reader's presence check to notice).
        """
        deadline = time.monotonic() + timeout_s
        before_reads = self.blocks_read
        # on-connect returns False: connect() hands back the emulated tag and we answer the
        # reader ourselves, with a timeout (nfcpy's own loop waits forever for a command).
        options: dict[str, Callable[..., Any] | float] = {
            "on-startup": self._on_startup,
            "on-connect": lambda tag: False,
            # nfcpy's udp listener returns after each listen timeout even mid-activation
            # (having answered a poll), so listen long enough to see the reader's next command.
            "timeout": min(2.0, timeout_s),
        }
        clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{self.port}")
        try:
            emulation = clf.connect(card=options, terminate=lambda: time.monotonic() > deadline)
            if isinstance(emulation, nfc.tag.tt3.Type3TagEmulation):
                self.activations += 1
                emulation.add_service(NDEF_READ_SERVICE, self._read_block, None)
                self._answer(clf, emulation, before_reads, hold_s, deadline)
        finally:
            clf.close()
        time.sleep(away_s)
        return self.blocks_read > before_reads

    def _answer(
        self,
        clf: nfc.ContactlessFrontend,
        emulation: nfc.tag.tt3.Type3TagEmulation,
        before_reads: int,
        hold_s: float,
        deadline: float,
    ) -> None:
        response = emulation.process_command(emulation.cmd)
        leave_at = deadline
        while time.monotonic() < leave_at:
            if self.blocks_read > before_reads and leave_at == deadline:
                leave_at = min(deadline, time.monotonic() + hold_s)
            try:
                command = clf.exchange(response, 0.1)
            except nfc.clf.TimeoutError:
                response = None
                continue
            except nfc.clf.CommunicationError:  # RFOFF: the reader went away
                return
            response = emulation.process_command(command) if command else None


def tap_in_thread(
    tag: EmulatedTag, hold_s: float = 0.3, timeout_s: float = 10.0
) -> threading.Thread:
    """Start ``tag.tap`` in a thread (the reader under test runs in another)."""
    thread = threading.Thread(target=tag.tap, args=(hold_s, timeout_s), daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 54321
    uri = sys.argv[2] if len(sys.argv) > 2 else "https://patrol.shouhu.example/b/b-204"
    emulated = EmulatedTag(port, bytes.fromhex("02fe0102030405f6"), uri_message(uri))
    print("read" if emulated.tap(hold_s=1.0, timeout_s=60) else "no reader came")
