"""Signed profile bundles: how maintainers flash device profiles to gateways (pure).

A bundle is one JSON document, published retained on ``shouhu/v1/gw/{gw}/down/profiles``:

    {"v": 1, "serial": 7, "created": 1763800000000, "profiles": {"<id>": "<YAML text>", ...},
     "sig": "<base64 Ed25519 signature>", "key_id": "<first 16 hex of sha256(public key)>"}

The signature covers the canonical JSON of everything but ``sig`` (sorted keys, no spaces).
A gateway accepts a bundle only when the signature verifies with one of its trusted public
keys, every profile parses and validates, and ``serial`` is greater than the bundle it runs;
otherwise it keeps the previous profiles and says why on its ``ack`` topic. Ed25519 comes from
``cryptography`` (never hand-rolled): small keys, deterministic signatures, fast on a Pi.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shouhu.exceptions import ProfileError
from shouhu.profiles import Profile, parse_profile_text

BUNDLE_VERSION: Final = 1
MAX_BUNDLE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle: its serial and the profiles it carries, by id."""

    serial: int
    created: int
    key_id: str
    profiles: Mapping[str, Profile]

    def versions(self) -> dict[str, int]:
        return {pid: p.version for pid, p in sorted(self.profiles.items())}


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) for a maintainer's signing key."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ProfileError("signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ProfileError(
            "signing key is not Ed25519", hint="make one with `shouhu profiles keygen`"
        )
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ProfileError("trusted key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ProfileError("trusted key is not Ed25519")
    return key


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_bundle(
    profile_texts: Mapping[str, str], *, serial: int, created: int, private_key: Ed25519PrivateKey
) -> bytes:
    """Validate the YAML texts (id -> text) and sign them into a bundle document."""
    if serial < 1:
        raise ProfileError("bundle serial must be >= 1")
    for name, text in profile_texts.items():
        _parse_text(name, text)  # refuse to sign what a gateway would refuse
    body: dict[str, Any] = {
        "v": BUNDLE_VERSION,
        "serial": serial,
        "created": created,
        "key_id": key_id(private_key.public_key()),
        "profiles": dict(sorted(profile_texts.items())),
    }
    body["sig"] = base64.b64encode(private_key.sign(_canonical(body))).decode()
    return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()


def _parse_text(name: str, text: str) -> Profile:
    profile = parse_profile_text(text, f"bundle:{name}")
    if profile.id != name:
        raise ProfileError(f"bundle:{name}: carries profile id {profile.id!r}")
    return profile


def verify_bundle(
    payload: bytes, trusted: Sequence[Ed25519PublicKey], *, current_serial: int = 0
) -> Bundle:
    """Check signature, schema and serial; return the bundle or raise ProfileError with why."""
    if len(payload) > MAX_BUNDLE_BYTES:
        raise ProfileError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"bundle is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("v") != BUNDLE_VERSION:
        raise ProfileError("bundle has an unknown format version")
    sig = body.pop("sig", None)
    if not isinstance(sig, str):
        raise ProfileError("bundle is not signed")
    try:
        signature = base64.b64decode(sig, validate=True)
    except ValueError as exc:
        raise ProfileError("bundle signature is not base64") from exc
    message = _canonical(body)
    signer = next((k for k in trusted if _verifies(k, signature, message)), None)
    if signer is None:
        raise ProfileError("bundle signature does not verify with any trusted key")
    serial, created, texts = body.get("serial"), body.get("created"), body.get("profiles")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise ProfileError("bundle serial must be a positive integer")
    if serial <= current_serial:
        raise ProfileError(f"bundle serial {serial} is not newer than the running {current_serial}")
    if not isinstance(texts, dict) or not texts:
        raise ProfileError("bundle carries no profiles")
    profiles: dict[str, Profile] = {}
    for name, text in texts.items():
        if not isinstance(text, str):
            raise ProfileError(f"bundle:{name}: profile must be YAML text")
        profiles[name] = _parse_text(name, text)
    return Bundle(serial, int(created or 0), key_id(signer), profiles)


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def texts_from_files(paths: Sequence[Path]) -> dict[str, str]:
    """Profile id -> YAML text for the files (or directories of *.yaml) given."""
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    out: dict[str, str] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{f}: cannot read profile: {exc}") from exc
        pid = parse_profile_text(text, str(f)).id
        if pid in out:
            raise ProfileError(f"{f}: id: duplicate profile id {pid!r}")
        out[pid] = text
    return out
