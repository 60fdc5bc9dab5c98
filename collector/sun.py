"""NTAG 424 DNA SUN verification (NXP AN12196), on the collector only: keys never reach gateways.

A Secure Unique NFC (SUN) tag rewrites its NDEF URL on every read with the tag's UID and a read
counter, plus an 8-byte SDMMAC over them. Two mirroring modes are handled:

- encrypted PICCData (``picc_data`` = 32 hex digits): AES-128-CBC with the SDM meta read key and
  a zero IV gives ``tag || UID (7) || SDMReadCtr (3, little endian) || padding``; the tag byte
  says which of UID and counter are mirrored and the UID length (bits 7, 6 and 3..0).
- plain mirroring (``picc_data`` = UID (14 hex) + counter (6 hex, as the URL shows it, most
  significant byte first)); the meta read key is not used.

The MAC: ``SV2 = 3CC3 0001 0080 || UID || SDMReadCtr (LE)``, zero padded to 16 bytes;
``KSesSDMFileReadMAC = CMAC(file read key, SV2)``; ``CMAC(KSes, MAC input)`` truncated to its
odd-indexed bytes (1, 3, ..., 15). The MAC input is empty unless encrypted file data is mirrored
too, when it is that data's upper-case hex followed by ``&<mac param>=``.

A counter not above the last accepted one is a replay (a copied URL shown again). Pure: no I/O.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from shouhu.exceptions import ConfigError, DecodeError

SV2_PREFIX: Final = bytes.fromhex("3cc300010080")
UID_LEN: Final = 7
TAG_UID_MIRRORED: Final = 0x80
TAG_CTR_MIRRORED: Final = 0x40
ENCRYPTED_HEX_LEN: Final = 32  # AES PICCData; 48 would be LRP mode, which is not supported
PLAIN_HEX_LEN: Final = 20  # UID (7 bytes) + counter (3 bytes)
MAC_HEX_LEN: Final = 16

_HEX = re.compile(r"^[0-9a-fA-F]*$")


@dataclass(frozen=True, slots=True)
class SunVerdict:
    """The judgement on one SUN message.

    ``reason`` is ``valid``, ``bad_mac``, ``replay`` or ``bad_picc_data`` (decryption gave a
    tag byte no NTAG 424 DNA writes: wrong meta key or forged data). ``ok`` = valid and fresh.
    """

    uid: str  # lower-case hex, "" when the PICCData could not be read
    counter: int  # SDMReadCtr, -1 when unknown
    valid_mac: bool
    replay: bool
    ok: bool
    reason: str


def _hex_bytes(text: str, name: str, lengths: tuple[int, ...]) -> bytes:
    clean = text.strip()
    if not _HEX.match(clean) or len(clean) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise DecodeError(f"SUN {name} must be {want} hex digits, got {len(clean)}: {clean[:48]!r}")
    return bytes.fromhex(clean)


def _key(key: str | bytes, name: str) -> bytes:
    if isinstance(key, str):
        if not _HEX.match(key.strip()) or len(key.strip()) != 32:
            raise ConfigError(f"the SDM {name} key must be 32 hex digits (AES-128)")
        return bytes.fromhex(key.strip())
    if len(key) != 16:
        raise ConfigError(f"the SDM {name} key must be 16 bytes (AES-128)")
    return bytes(key)


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), 16 bytes."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def decrypt_picc_data(meta_key: bytes, picc: bytes) -> bytes:
    """AES-128-CBC decryption with a zero IV of one 16-byte PICCData block."""
    decryptor = Cipher(algorithms.AES(meta_key), modes.CBC(bytes(16))).decryptor()
    return decryptor.update(picc) + decryptor.finalize()


def sdm_mac(file_key: bytes, uid: bytes, counter_le: bytes, mac_input: bytes = b"") -> bytes:
    """The 8-byte SDMMAC a tag with this file read key writes for ``uid`` and counter."""
    sv2 = (SV2_PREFIX + uid + counter_le).ljust(16, b"\x00")
    session_key = aes_cmac(file_key, sv2)
    return aes_cmac(session_key, mac_input)[1::2]


def mac_input_for(enc_hex: str | None, mac_param: str = "cmac") -> bytes:
    """The MAC input when encrypted file data precedes the MAC in the URL (else empty)."""
    if not enc_hex:
        return b""
    _hex_bytes(enc_hex, "enc", tuple(range(32, 513, 32)))
    suffix = f"&{mac_param}=" if mac_param else ""  # "" when the MAC directly follows the data
    return f"{enc_hex.strip().upper()}{suffix}".encode("ascii")


def verify_sun(
    picc_data_hex: str,
    cmac_hex: str,
    meta_key: str | bytes,
    file_key: str | bytes,
    last_counter: int,
    *,
    enc_hex: str | None = None,
    mac_param: str = "cmac",
) -> SunVerdict:
    """Verify one SUN message; keys as 32 hex digits or 16 bytes.

    Raises ``DecodeError`` when the message cannot be read (bad hex, wrong lengths) and
    ``ConfigError`` when a key is malformed; a wrong MAC or an old counter is a verdict.
    """
    picc = _hex_bytes(picc_data_hex, "picc_data", (ENCRYPTED_HEX_LEN, PLAIN_HEX_LEN))
    mac = _hex_bytes(cmac_hex, "cmac", (MAC_HEX_LEN,))
    fkey = _key(file_key, "file read")
    mac_input = mac_input_for(enc_hex, mac_param)

    if len(picc) == PLAIN_HEX_LEN // 2:
        uid, counter_le = picc[:UID_LEN], picc[UID_LEN:][::-1]
    else:
        plain = decrypt_picc_data(_key(meta_key, "meta read"), picc)
        tag = plain[0]
        well_formed = tag & TAG_UID_MIRRORED and tag & TAG_CTR_MIRRORED and tag & 0x0F == UID_LEN
        if not well_formed:
            sdm_mac(fkey, bytes(UID_LEN), bytes(3), mac_input)  # same work: no timing oracle
            return SunVerdict("", -1, False, False, False, "bad_picc_data")
        uid, counter_le = plain[1 : 1 + UID_LEN], plain[1 + UID_LEN : 4 + UID_LEN]

    counter = int.from_bytes(counter_le, "little")
    valid_mac = hmac.compare_digest(sdm_mac(fkey, uid, counter_le, mac_input), mac)
    replay = valid_mac and counter <= last_counter
    if not valid_mac:
        reason = "bad_mac"
    elif replay:
        reason = "replay"
    else:
        reason = "valid"
    return SunVerdict(uid.hex(), counter, valid_mac, replay, valid_mac and not replay, reason)
