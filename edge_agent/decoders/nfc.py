"""NFC decoders: taps on patrol boxes (NTAG 424 DNA SUN, NTAG21x UID) and school cards.

An NFC ``RawFrame`` (docs/nfc.md) carries the tag's NDEF message as ``payload`` (``b""`` when
the tag has none) and ``meta = {"uid", "technology", "product"}`` from nfcpy's tag object.

- ``decode_sun_tap``: the NDEF URI of an NTAG 424 DNA carries SUN parameters (encrypted
  PICCData or plain UID + counter mirroring, and an SDMMAC). The gateway only forwards them:
  the keys live in the cloud (``collector.sun``), so ``clone_proof`` means "verifiable", not
  "verified".
- ``decode_uid_tap``: UID-only tags. A patrol sticker (NTAG21x) is keyed ``nfc:<uid>``; a school
  card (``options.hash_uid: true``) becomes ``card:<keyed hash>`` (``shouhu.cardkey``) so its UID
  never leaves the gateway in clear. The hash key comes from the source's ``uid_hash_key_file``
  via ``meta["uid_hash_key"]``, never from a profile.

Pure: no I/O. Frames not for the profile give ``[]``; frames for it that are malformed raise
``DecodeError``; nothing else is raised, whatever the bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import ndef

from shouhu.cardkey import card_key
from shouhu.exceptions import DecodeError, ProfileError, ShouhuError
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile

TECHNOLOGIES: Final = ("Type1Tag", "Type2Tag", "Type3Tag", "Type4Tag")
# ISO/IEC 14443-3: a 4-byte UID starting 0x08 is a random ID, new on every activation.
RANDOM_UID_FIRST_BYTE: Final = 0x08
PICC_HEX_LEN: Final = 32  # encrypted PICCData (AES mode)
PLAIN_UID_HEX_LEN: Final = 14
PLAIN_CTR_HEX_LEN: Final = 6
MAC_HEX_LEN: Final = 16
BOX_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

SUN_MATCH_KEYS: Final = frozenset({"url_host", "url_path_prefix", "technology"})
SUN_OPTION_KEYS: Final = frozenset(
    {"picc_param", "cmac_param", "enc_param", "uid_param", "ctr_param", "box_param"}
)
SUN_DEFAULTS: Final[Mapping[str, str]] = {
    "picc_param": "picc_data",
    "cmac_param": "cmac",
    "enc_param": "enc",
    "uid_param": "uid",
    "ctr_param": "ctr",
}
UID_MATCH_KEYS: Final = frozenset({"technology", "product_prefix", "url_prefix", "uid_length"})
UID_OPTION_KEYS: Final = frozenset({"hash_uid"})

_HEX = re.compile(r"^[0-9a-fA-F]+$")


class SecretBytes(bytes):
    """Key bytes that never print: a frame's meta may end up in a log or the dead letters."""

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


# ---------------------------------------------------------------------------------------------
# Frame reading helpers
# ---------------------------------------------------------------------------------------------


def ndef_uris(payload: bytes) -> list[str]:
    """The URIs of the URI records in an NDEF message; ``DecodeError`` if it is not NDEF."""
    if not payload:
        return []
    try:
        records = list(ndef.message_decoder(payload, errors="strict"))
    except ndef.DecodeError as exc:
        raise DecodeError(f"tag NDEF message is malformed: {exc}") from exc
    except (ValueError, TypeError, IndexError, UnicodeError) as exc:  # ndeflib internals
        raise DecodeError(f"tag NDEF message is malformed: {exc!r}") from exc
    return [r.iri for r in records if isinstance(r, ndef.UriRecord)]  # .uri would %-quote "="


def meta_uid(frame: RawFrame) -> bytes | None:
    """The tag UID from ``meta["uid"]`` (hex), ``None`` when absent or randomised."""
    raw = frame.meta.get("uid")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _HEX.match(raw) or len(raw) % 2:
        raise DecodeError(f"frame meta uid is not hex: {str(raw)[:40]!r}")
    uid = bytes.fromhex(raw)
    if len(uid) == 4 and uid[0] == RANDOM_UID_FIRST_BYTE:
        return None
    return uid


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _technology_matches(frame: RawFrame, match: Mapping[str, Any]) -> bool:
    wanted = match.get("technology")
    return wanted is None or frame.meta.get("technology") in _as_list(wanted)


def _hex_param(query: Mapping[str, list[str]], name: str, lengths: Sequence[int]) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[0].strip()
    if not _HEX.match(value) or len(value) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise DecodeError(f"SUN parameter {name} must be {want} hex digits, got {value[:48]!r}")
    return value


# ---------------------------------------------------------------------------------------------
# NTAG 424 DNA SUN taps
# ---------------------------------------------------------------------------------------------


def _sun_url(frame: RawFrame, profile: Profile) -> tuple[str, str, dict[str, list[str]]] | None:
    """``(host, path, query)`` of the first URI this profile matches, or ``None``."""
    host_wanted = str(profile.match.get("url_host", "")).lower()
    path_prefix = str(profile.match.get("url_path_prefix", ""))
    for uri in ndef_uris(frame.payload):
        try:
            parts = urlsplit(uri)
            host = (parts.hostname or "").lower()
        except ValueError:
            continue  # not a URL (e.g. a bad IPv6 literal): not ours
        if host_wanted and host != host_wanted:
            continue
        if not parts.path.startswith(path_prefix):
            continue
        return host, parts.path, parse_qs(parts.query, keep_blank_values=True)
    return None


def decode_sun_tap(frame: RawFrame, profile: Profile) -> list[Reading]:
    """One ``tap`` from an NTAG 424 DNA whose URL carries SUN parameters."""
    found = sun_fields(frame, profile)
    if found is None:
        return []
    data, device_uid = found
    box = data.get("box")
    if device_uid is not None:
        device = "nfc:" + device_uid.hex()
    elif box is not None:
        device = "nfc-sun:" + box
    else:
        raise DecodeError("SUN tap with a randomised UID and no box parameter: no device key")
    return [Reading(frame.ts, "tap", profile.ref, device, data)]


def sun_fields(frame: RawFrame, profile: Profile) -> tuple[dict[str, Any], bytes | None] | None:
    """The tap's ``data`` and the UID that names the tag (``None`` if random), or ``None``
    when the frame is not this profile's; ``DecodeError`` when its SUN parameters are broken."""
    if not _technology_matches(frame, profile.match):
        return None
    found = _sun_url(frame, profile)
    if found is None:
        return None
    host, _path, query = found
    opts = {**SUN_DEFAULTS, **{k: str(v) for k, v in profile.options.items()}}
    cmac = _hex_param(query, opts["cmac_param"], (MAC_HEX_LEN,))
    picc = _hex_param(query, opts["picc_param"], (PICC_HEX_LEN,))
    plain_uid = _hex_param(query, opts["uid_param"], (PLAIN_UID_HEX_LEN,))
    plain_ctr = _hex_param(query, opts["ctr_param"], (PLAIN_CTR_HEX_LEN,))
    enc_values = query.get(opts["enc_param"])
    box_values = query.get(opts["box_param"]) if "box_param" in opts else None

    data: dict[str, Any] = {"technology": frame.meta.get("technology", ""), "url_host": host}
    if cmac is None:
        raise DecodeError(f"SUN URL on {host} has no {opts['cmac_param']} parameter")
    tag_uid = meta_uid(frame)
    if picc is not None:
        data.update(sun_mode="encrypted", picc_data=picc.upper())
        device_uid = tag_uid
    elif plain_uid is not None and plain_ctr is not None:
        data.update(
            sun_mode="plain", picc_data=(plain_uid + plain_ctr).upper(), counter=int(plain_ctr, 16)
        )
        url_uid = bytes.fromhex(plain_uid)
        if tag_uid is not None and tag_uid != url_uid:
            data["uid_mismatch"] = True  # the URL was copied onto another chip
        device_uid = tag_uid or url_uid
    else:
        raise DecodeError(
            f"SUN URL on {host} has neither {opts['picc_param']} nor {opts['uid_param']}+"
            f"{opts['ctr_param']}"
        )
    data["cmac"] = cmac.upper()
    if enc_values:
        enc = enc_values[0].strip()
        if not _HEX.match(enc) or len(enc) % 32:
            raise DecodeError(f"SUN parameter {opts['enc_param']} must be 32*n hex digits")
        data["enc"] = enc.upper()
    box = box_values[0] if box_values else None
    if box is not None and not BOX_RE.match(box):
        raise DecodeError(f"SUN box parameter is not a box id: {box[:40]!r}")
    if box is not None:
        data["box"] = box
    data["clone_proof"] = True
    return data, device_uid


# ---------------------------------------------------------------------------------------------
# UID-only taps
# ---------------------------------------------------------------------------------------------


def _uid_profile_matches(frame: RawFrame, profile: Profile) -> bool:
    match = profile.match
    if not _technology_matches(frame, match):
        return False
    prefixes = match.get("product_prefix")
    if prefixes is not None:
        product = str(frame.meta.get("product", ""))
        if not any(product.startswith(str(p)) for p in _as_list(prefixes)):
            return False
    lengths = match.get("uid_length")
    if lengths is not None:
        raw = frame.meta.get("uid")
        if not isinstance(raw, str) or len(raw) // 2 not in _as_list(lengths):
            return False
    url_prefix = match.get("url_prefix")
    if url_prefix is not None:
        return any(uri.startswith(str(url_prefix)) for uri in ndef_uris(frame.payload))
    return True


def _hash_key(frame: RawFrame) -> bytes:
    key = frame.meta.get("uid_hash_key")
    if isinstance(key, bytes) and key:
        return bytes(key)
    if isinstance(key, str) and key:
        try:
            return bytes.fromhex(key)
        except ValueError:
            raise DecodeError("uid hash key in frame meta is not hex") from None
    raise DecodeError(
        "student card seen but no uid hash key configured",
        hint="set uid_hash_key_file on the nfc source",
    )


def decode_uid_tap(frame: RawFrame, profile: Profile) -> list[Reading]:
    """One ``tap`` keyed by the tag's UID (``nfc:<uid>``) or its keyed hash (``card:<hash>``)."""
    if not _uid_profile_matches(frame, profile):
        return []
    if "uid" not in frame.meta or frame.meta.get("uid") in (None, ""):
        raise DecodeError("NFC tap without a UID")
    uid = meta_uid(frame)
    if uid is None:
        return []  # a random ID (phone, some bank cards) names no tag: not for a UID profile
    data: dict[str, Any] = {
        "technology": frame.meta.get("technology", ""),
        "product": str(frame.meta.get("product", "")),
        "clone_proof": False,
    }
    if profile.options.get("hash_uid") is True:
        key = _hash_key(frame)
        try:
            device = card_key(uid.hex(), key)
        except DecodeError:
            raise
        except ShouhuError as exc:  # ConfigError: the key is too short
            raise DecodeError(f"cannot hash the card UID: {exc.message}") from exc
    else:
        device = "nfc:" + uid.hex()
    return [Reading(frame.ts, "tap", profile.ref, device, data)]


# ---------------------------------------------------------------------------------------------
# Profile validation hook (called by shouhu.profiles when a profile loads)
# ---------------------------------------------------------------------------------------------


def _check_keys(section: str, values: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in values:
        if key not in allowed:
            names = ", ".join(sorted(allowed))
            raise ProfileError(f"{section}.{key}: unknown key (allowed: {names})")


def _check_strs(path: str, value: Any, choices: Sequence[str] | None = None) -> None:
    items = _as_list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ProfileError(f"{path}: expected a string or a list of strings, got {value!r}")
    if choices is not None:
        for item in items:
            if item not in choices:
                raise ProfileError(f"{path}: expected one of {', '.join(choices)}, got {item!r}")


def validate_profile(profile: Profile) -> None:
    """Check ``match``/``options`` of an ``ntag424-sun`` or ``nfc-uid`` profile."""
    if profile.decoder not in ("ntag424-sun", "nfc-uid"):
        return
    if profile.transport != "nfc":
        raise ProfileError(
            f"transport: decoder {profile.decoder} needs nfc, got {profile.transport!r}"
        )
    match, options = profile.match, profile.options
    if "technology" in match:
        _check_strs("match.technology", match["technology"], TECHNOLOGIES)
    if profile.decoder == "ntag424-sun":
        _check_keys("match", match, SUN_MATCH_KEYS)
        _check_keys("options", options, SUN_OPTION_KEYS)
        if "url_host" not in match:
            raise ProfileError("match.url_host: required for ntag424-sun (the SUN URL's host)")
        for key in ("url_host", "url_path_prefix"):
            if key in match and not isinstance(match[key], str):
                raise ProfileError(f"match.{key}: expected a string, got {match[key]!r}")
        for key, value in options.items():
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
                raise ProfileError(f"options.{key}: expected a query parameter name, got {value!r}")
        return
    _check_keys("match", match, UID_MATCH_KEYS)
    _check_keys("options", options, UID_OPTION_KEYS)
    for key in ("product_prefix", "url_prefix"):
        if key in match:
            _check_strs(f"match.{key}", match[key])
    if "uid_length" in match:
        lengths = _as_list(match["uid_length"])
        if not all(v in (4, 7, 8, 10) and not isinstance(v, bool) for v in lengths):
            raise ProfileError(
                f"match.uid_length: expected 4, 7, 8 or 10, got {match['uid_length']!r}"
            )
    if "hash_uid" in options and not isinstance(options["hash_uid"], bool):
        raise ProfileError(f"options.hash_uid: expected true or false, got {options['hash_uid']!r}")
