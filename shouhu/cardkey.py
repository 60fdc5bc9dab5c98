"""Card keys: a school card's UID turned into a keyed hash, so the clear UID is never stored.

The gateway and the registry import hash with the same function and the same secret key, so a
tap's device key (``card:<hex>``) finds the student without either side keeping the UID.
HMAC-SHA256 over the UID bytes, first 24 hex digits (96 bits: collisions are out of reach for a
city's cards, and the key stops anyone from hashing guessed UIDs).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Final

from shouhu.exceptions import ConfigError, DecodeError

CARD_PREFIX: Final = "card:"
CARD_KEY_HEX_DIGITS: Final = 24
MIN_KEY_BYTES: Final = 16
CARD_KEY_PATTERN: Final = re.compile(r"^card:[0-9a-f]{24}$")

_UID_SEPARATORS = re.compile(r"[\s:-]")


def normalize_uid(uid_hex: str) -> bytes:
    """The UID's bytes from hex written as ``04A1B2C3D4E5F6``, ``04:a1:b2...`` or ``04 a1 ...``.

    ISO 14443 UIDs are 4, 7 or 10 bytes, a FeliCa IDm 8; anything else is not a card UID.
    """
    text = _UID_SEPARATORS.sub("", uid_hex)
    try:
        uid = bytes.fromhex(text)
    except ValueError as exc:
        raise DecodeError(f"card UID is not hex: {uid_hex!r}") from exc
    if len(uid) not in (4, 7, 8, 10):
        raise DecodeError(f"card UID must be 4, 7, 8 or 10 bytes, got {len(uid)}: {uid_hex!r}")
    return uid


def card_key(uid_hex: str, key: bytes) -> str:
    """The device key of a card: ``"card:"`` + HMAC-SHA256(key, UID bytes) hex, first 24 digits."""
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the card hash key must be at least {MIN_KEY_BYTES} bytes")
    digest = hmac.new(key, normalize_uid(uid_hex), hashlib.sha256).hexdigest()
    return CARD_PREFIX + digest[:CARD_KEY_HEX_DIGITS]


def is_card_key(text: str) -> bool:
    """Is ``text`` an already hashed card key (``card:`` + 24 lower-case hex digits)?"""
    return CARD_KEY_PATTERN.match(text) is not None


def load_key_file(path: str | Path) -> bytes:
    """The card hash key from a file holding it as hex on one line (at least 16 bytes).

    Generate one with ``python -c "import secrets; print(secrets.token_hex(32))"``.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the card hash key: {exc}", source=source) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError("the card hash key file must hold hex digits", source=source) from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the card hash key must be at least {MIN_KEY_BYTES} bytes", source=source
        )
    return key
