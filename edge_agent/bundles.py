"""The gateway's side of signed profile bundles: which bundle it runs, and whether to take a new one.

    down/profiles (retained) ──► BundleState.consider(payload) ──► Accepted | Refused | Unchanged
                                                                      │ the agent applies it
                                 BundleState.record(decision) ◄───────┘ and remembers the outcome

Rules (docs/agent.md, "Profile bundles"):

- a bundle is accepted only if ``shouhu.bundle.verify_bundle`` accepts it with the configured
  trusted keys and a serial greater than the running one; without trusted keys every bundle is
  refused (a gateway must never run profiles nobody it trusts signed);
- the retained message comes again on every reconnect: the payload of the running bundle is a
  quiet ``Unchanged``, and so is a payload already refused (it is answered once per process)
  and an empty one (the maintainer cleared the retained topic);
- ``consider`` only decides; ``record`` is called once the agent has applied (or failed to
  apply) a decision, so a bundle that could not be stored is tried again on the next delivery.

``save_bundle`` / ``load_saved_bundle`` keep the accepted payload (still signed) in one file,
written atomically; at start it is verified again before it is trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.commands import Ack
from shouhu.bundle import Bundle, load_public_key, verify_bundle
from shouhu.exceptions import ConfigError, ProfileError, StorageError

ACK_CMD: Final = "profiles"
REFUSED_MEMORY: Final = 64  # refused payloads remembered (by digest) so they are answered once
NO_TRUSTED_KEYS: Final = (
    "no trusted keys configured (profiles.trusted_keys): bundles are refused, "
    "the gateway keeps its shipped profiles"
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified bundle, newer than the running one: apply it."""

    bundle: Bundle
    digest: str  # sha256 of the payload

    def ack(self, ts: int) -> Ack:
        n = len(self.bundle.profiles)
        detail = f"applied bundle {self.bundle.serial} ({n} profile{'s' if n != 1 else ''})"
        return Ack(ack_id(self.bundle.serial), ACK_CMD, True, detail, ts)


@dataclass(frozen=True, slots=True)
class Refused:
    """A bundle the gateway will not run; the previous profiles stay."""

    reason: str
    digest: str
    serial: int | None = None  # as the payload claims it (unverified), for the ack id

    def ack(self, ts: int) -> Ack:
        return Ack(ack_id(self.serial), ACK_CMD, False, self.reason, ts)


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The running bundle again, or a payload already refused: nothing to do or answer."""

    why: str


Decision = Accepted | Refused | Unchanged


def ack_id(serial: int | None) -> str | None:
    """``profiles-<serial>``; None when the payload does not say (not JSON, no serial)."""
    return None if serial is None else f"profiles-{serial}"


def digest_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def claimed_serial(payload: bytes) -> int | None:
    """The serial a payload claims, read without trusting it (for the ack id only)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    serial = body.get("serial") if isinstance(body, dict) else None
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        return None
    return serial


class BundleState:
    """The bundle a gateway runs (serial 0: none, the shipped profiles) and its trusted keys.

    State that matters: ``running`` and its payload digest (a redelivery of it is quiet), and
    the digests of the newest refused payloads (each is answered once). Not thread-safe: the
    agent's command thread alone calls ``consider``/``record``.
    """

    def __init__(
        self,
        trusted_keys: Sequence[Ed25519PublicKey],
        *,
        running: Bundle | None = None,
        running_digest: str | None = None,
    ) -> None:
        self.trusted_keys = tuple(trusted_keys)
        self.running = running
        self.running_digest = running_digest
        self._refused: OrderedDict[str, None] = OrderedDict()

    @property
    def serial(self) -> int:
        return self.running.serial if self.running is not None else 0

    def consider(self, payload: bytes) -> Decision:
        """Decide about one payload from ``down/profiles``. Never raises."""
        if not payload:  # a maintainer cleared the retained topic: no bundle on offer
            return Unchanged("the retained bundle was cleared")
        digest = digest_of(payload)
        if digest == self.running_digest:
            return Unchanged(f"bundle {self.serial} is running already")
        if digest in self._refused:
            return Unchanged("this payload was refused already")
        serial = claimed_serial(payload)
        if not self.trusted_keys:
            return Refused(NO_TRUSTED_KEYS, digest, serial)
        try:
            bundle = verify_bundle(payload, self.trusted_keys, current_serial=self.serial)
        except ProfileError as exc:
            return Refused(exc.one_line(), digest, serial)
        return Accepted(bundle, digest)

    def record(self, decision: Decision) -> None:
        """Remember what the agent did with a decision (an ``Accepted`` that it applied, a
        ``Refused`` it answered)."""
        if isinstance(decision, Accepted):
            self.running, self.running_digest = decision.bundle, decision.digest
            self._refused.pop(decision.digest, None)
        elif isinstance(decision, Refused):
            self._refused[decision.digest] = None
            self._refused.move_to_end(decision.digest)
            while len(self._refused) > REFUSED_MEMORY:
                self._refused.popitem(last=False)


# --- I/O at the edge: trusted keys, the saved bundle --------------------------------------------


def load_trusted_keys(
    paths: Sequence[str | Path], source: str | None = None
) -> list[Ed25519PublicKey]:
    """Read PEM public keys; ConfigError names the config ``source``, the field and the file."""
    keys: list[Ed25519PublicKey] = []
    for index, path in enumerate(paths):
        where = f"profiles.trusted_keys[{index}]"
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read {str(path)!r}: {exc.strerror}", field=where, source=source
            ) from exc
        try:
            keys.append(load_public_key(pem))
        except ProfileError as exc:
            raise ConfigError(
                f"{str(path)!r}: {exc.message}",
                field=where,
                source=source,
                hint="give the bundle-signing.pub made by `shouhu profiles keygen`",
            ) from exc
    return keys


def save_bundle(path: str | Path, payload: bytes) -> None:
    """Write atomically: a temp file in the same directory, fsync, rename, fsync the directory.
    A power cut leaves the old file or the new one, never half of one."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot store the bundle in {str(target)!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SavedBundle:
    """What a start found in the bundle file."""

    bundle: Bundle | None  # None: nothing usable (then ``reason`` says why, if a file was there)
    digest: str | None = None
    reason: str | None = None


def load_saved_bundle(path: str | Path, trusted_keys: Sequence[Ed25519PublicKey]) -> SavedBundle:
    """The saved bundle, verified again (the keys may have changed since). Never raises."""
    target = Path(path)
    try:
        payload = target.read_bytes()
    except FileNotFoundError:
        return SavedBundle(None)
    except OSError as exc:
        return SavedBundle(None, reason=f"cannot read {str(target)!r}: {exc}")
    if not trusted_keys:
        return SavedBundle(None, reason=f"{target}: {NO_TRUSTED_KEYS}")
    try:
        bundle = verify_bundle(payload, trusted_keys, current_serial=0)
    except ProfileError as exc:
        return SavedBundle(None, reason=f"{target}: {exc.one_line()}")
    return SavedBundle(bundle, digest_of(payload))
