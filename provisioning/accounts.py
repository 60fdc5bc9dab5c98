"""Broker accounts for gateways: Mosquitto password-file lines and ACL rules (pure).

A gateway may write only under its own ``{gw}`` and read only its own ``down/`` (see
docs/wire.md). Passwords are hashed the way ``mosquitto_passwd`` does it since Mosquitto 2.0
(``$7$`` = PBKDF2-HMAC-SHA512), so the lines can be appended to the broker's password file.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from shouhu import wire

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default


@dataclass(frozen=True, slots=True)
class GatewayAccount:
    gw: str
    username: str
    password: str


def new_account(gw: str, password: str | None = None) -> GatewayAccount:
    """An account named after the gateway with a fresh random password."""
    wire.status_topic(gw)  # validates the id
    return GatewayAccount(gw, gw, password or secrets.token_urlsafe(24))


def mosquitto_password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """``user:$7$101$salt$hash``: a line for Mosquitto's ``password_file``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"{username}:$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password_line(line: str, password: str) -> bool:
    """Check a password against a ``$7$`` line (used by tests and `provision check`)."""
    _user, _, rest = line.partition(":")
    parts = rest.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(digest))
    return secrets.compare_digest(got, digest)


def gateway_acl(gw: str, username: str | None = None) -> str:
    """ACL block for ``acl_file``: write own up/status/ack, read own down/."""
    root = f"{wire.ROOT}/gw/{gw}"
    return "\n".join(
        [
            f"user {username or gw}",
            f"topic write {root}/up/#",
            f"topic write {root}/status",
            f"topic write {root}/ack",
            f"topic read {root}/down/#",
            "",
        ]
    )


def collector_acl(username: str) -> str:
    """ACL block for a collector account: read every gateway's uplink and status, command them."""
    return "\n".join(
        [
            f"user {username}",
            f"topic read {wire.ROOT}/gw/+/up/#",
            f"topic read {wire.ROOT}/gw/+/status",
            f"topic read {wire.ROOT}/gw/+/ack",
            f"topic write {wire.ROOT}/gw/+/down/#",
            f"topic write {wire.ROOT}/alerts/#",
            "",
        ]
    )
