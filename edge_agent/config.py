"""Gateway configuration: one YAML file (``gateway.yaml``), checked up front.

The file is an outside shape (``GatewayConfigDoc``); inside the process it becomes frozen
dataclasses. Every mistake is a ``ConfigError`` that names the file and the field, e.g.
``gateway.yaml:broker.url: must start with mqtt:// or mqtts://``. Unknown keys are errors: a
typo must not silently fall back to a default. See docs/agent.md and examples/gateway.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypedDict

import yaml

from edge_agent.sources.base import SOURCES
from shouhu import wire
from shouhu.broker_url import parse_broker_url
from shouhu.exceptions import ConfigError

SOURCE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PROTOCOLS: Final = ("3.1.1", "5")


class GatewayConfigDoc(TypedDict, total=False):
    """The YAML document as an installer writes it."""

    gateway: dict[str, Any]
    broker: dict[str, Any]
    sources: list[dict[str, Any]]
    profiles: dict[str, Any]
    outbox: dict[str, Any]
    batching: dict[str, Any]
    aggregator: dict[str, Any]
    health: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where to publish. ``tls`` is fixed by the URL scheme: ``mqtts://`` never goes plaintext."""

    url: str
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # None with mqtts:// = the system's trusted CAs
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    client_id: str = ""  # "" = "shouhu-gw-<gateway id>"
    keepalive: int = 60
    protocol: Literal["3.1.1", "5"] = "3.1.1"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One radio: ``type`` is a name in ``edge_agent.sources.base.SOURCES``."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: str = "shouhu-outbox.db"
    max_records: int = 200_000


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """A batch of a routine stream goes out when any bound is reached."""

    max_records: int = 500
    max_bytes: int = 256 * 1024
    max_age_ms: int = 500


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    update_interval_s: float = 30.0
    away_timeout_s: float = 20.0
    ema_alpha: float = 0.3


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything ``edge_agent.agent.Agent`` needs."""

    id: str
    broker: BrokerConfig
    site: str = ""
    sources: tuple[SourceConfig, ...] = ()
    profile_dirs: tuple[str, ...] | None = None  # None = the profiles shipped with Shouhu
    trusted_keys: tuple[str, ...] = ()  # PEM public keys that may sign bundles; () = refuse all
    bundle_path: str | None = None  # the last accepted bundle; None = next to the outbox
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    health_interval_s: float = 30.0

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"shouhu-gw-{self.id}"

    @property
    def bundle_file(self) -> Path:
        """Where the accepted bundle is kept: ``profiles.bundle_path``, or beside the outbox
        (``outbox.db`` → ``outbox.bundle.json``), so each agent of one process has its own."""
        if self.bundle_path is not None:
            return Path(self.bundle_path)
        return Path(self.outbox.path).with_suffix(".bundle.json")


# ---------------------------------------------------------------------------------------------
# checking helpers: each raises ConfigError naming ``where``
# ---------------------------------------------------------------------------------------------


class _Check:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, where: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, field=where, source=self.source, hint=hint)

    def section(
        self, doc: Mapping[str, Any], key: str, allowed: frozenset[str]
    ) -> Mapping[str, Any]:
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                raise self.fail(
                    f"{key}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        return value

    def string(self, section: Mapping[str, Any], key: str, where: str) -> str | None:
        value = section.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def file(self, section: Mapping[str, Any], key: str, where: str) -> str | None:
        value = self.string(section, key, where)
        if value is not None and not Path(value).is_file():
            raise self.fail(f"{where}.{key}", f"no such file {value!r}")
        return value

    def integer(
        self, section: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 1
    ) -> int:
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{where}.{key}", f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(
        self,
        section: Mapping[str, Any],
        key: str,
        where: str,
        default: float,
        *,
        maximum: float | None = None,
    ) -> float:
        value = section.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        if bad or (maximum is not None and value > maximum):
            bound = f"in (0, {maximum}]" if maximum is not None else "> 0"
            raise self.fail(f"{where}.{key}", f"must be a number {bound}, got {value!r}")
        return float(value)


_GATEWAY_KEYS: Final = frozenset({"id", "site"})
_BROKER_KEYS: Final = frozenset(
    {"url", "username", "password", "password_file", "ca_file", "cert_file", "key_file"}
    | {"client_id", "keepalive", "protocol"}
)
_SOURCE_KEYS: Final = frozenset({"name", "type", "options"})
_PROFILES_KEYS: Final = frozenset({"dirs", "trusted_keys", "bundle_path"})
_OUTBOX_KEYS: Final = frozenset({"path", "max_records"})
_BATCHING_KEYS: Final = frozenset({"max_records", "max_bytes", "max_age_ms"})
_AGGREGATOR_KEYS: Final = frozenset({"update_interval_s", "away_timeout_s", "ema_alpha"})
_HEALTH_KEYS: Final = frozenset({"interval_s"})


def _parse_broker(check: _Check, doc: Mapping[str, Any]) -> BrokerConfig:
    section = check.section(doc, "broker", _BROKER_KEYS)
    url = section.get("url")
    if url is None:
        raise check.fail("broker.url", "required field is missing", hint="e.g. mqtts://host:8883")
    if not isinstance(url, str) or not url.startswith(("mqtt://", "mqtts://")):
        raise check.fail("broker.url", "must start with mqtt:// or mqtts://")
    address = parse_broker_url(url, source=check.source)
    if address.path not in ("", "/") or address.query:
        raise check.fail("broker.url", f"must be scheme://host[:port] only, got {url!r}")
    tls = address.tls
    username = check.string(section, "username", "broker") or address.username
    password = check.string(section, "password", "broker") or address.password
    password_file = check.file(section, "password_file", "broker")
    if password_file is not None:
        if "password" in section:
            raise check.fail("broker.password_file", "give password or password_file, not both")
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise check.fail("broker.password_file", f"cannot read: {exc}") from exc
    if password is not None and username is None:
        raise check.fail("broker.username", "required when a password is given")
    ca_file = check.file(section, "ca_file", "broker")
    cert_file = check.file(section, "cert_file", "broker")
    key_file = check.file(section, "key_file", "broker")
    if not tls:
        for key, value in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
            if value is not None:
                raise check.fail(
                    f"broker.{key}", "needs a TLS broker URL", hint="use mqtts://host:8883"
                )
    if key_file is not None and cert_file is None:
        raise check.fail("broker.key_file", "needs broker.cert_file")
    client_id = check.string(section, "client_id", "broker") or ""
    protocol = str(section.get("protocol", "3.1.1"))
    protocol = "5" if protocol in ("5.0", "v5") else protocol
    if protocol not in PROTOCOLS:
        raise check.fail("broker.protocol", f"must be 3.1.1 or 5, got {section['protocol']!r}")
    return BrokerConfig(
        url=url,
        host=address.host,
        port=address.port,
        tls=tls,
        username=username,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        client_id=client_id,
        keepalive=check.integer(section, "keepalive", "broker", 60, minimum=5),
        protocol=protocol,  # type: ignore[arg-type]
    )


def _parse_sources(check: _Check, doc: Mapping[str, Any]) -> tuple[SourceConfig, ...]:
    raw = doc.get("sources") or []
    if not isinstance(raw, list):
        raise check.fail("sources", "must be a list of {name, type, options}")
    out: list[SourceConfig] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"sources[{index}]"
        if not isinstance(item, Mapping):
            raise check.fail(where, "must be a mapping with name, type, options")
        for key in item:
            if key not in _SOURCE_KEYS:
                raise check.fail(f"{where}.{key}", "unknown key (allowed: name, options, type)")
        name = item.get("name")
        if not isinstance(name, str) or not SOURCE_NAME_RE.match(name):
            raise check.fail(f"{where}.name", f"must be 1-63 letters, digits, '_.-', got {name!r}")
        if name in seen:
            raise check.fail(f"{where}.name", f"duplicate source name {name!r}")
        seen.add(name)
        kind = item.get("type")
        if kind not in SOURCES:
            raise check.fail(f"{where}.type", f"must be one of {', '.join(SOURCES)}, got {kind!r}")
        options = item.get("options") or {}
        if not isinstance(options, Mapping):
            raise check.fail(f"{where}.options", "must be a mapping")
        out.append(SourceConfig(name=name, type=str(kind), options=dict(options)))
    return tuple(out)


def _parse_profile_dirs(check: _Check, doc: Mapping[str, Any]) -> tuple[str, ...] | None:
    section = check.section(doc, "profiles", _PROFILES_KEYS)
    dirs = section.get("dirs")
    if dirs is None:
        return None
    if not isinstance(dirs, list) or not all(isinstance(d, str) and d for d in dirs):
        raise check.fail("profiles.dirs", "must be a list of directories or files")
    for d in dirs:
        if not Path(d).exists():
            raise check.fail("profiles.dirs", f"no such file or directory {d!r}")
    return tuple(dirs)


def _parse_trusted_keys(check: _Check, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """PEM files of the keys that may sign bundles, each checked to be an Ed25519 public key."""
    section = check.section(doc, "profiles", _PROFILES_KEYS)
    paths = section.get("trusted_keys")
    if paths is None:
        return ()
    from edge_agent.bundles import load_trusted_keys  # cryptography: only when keys are given

    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise check.fail("profiles.trusted_keys", "must be a list of PEM public key files")
    load_trusted_keys(paths, check.source)
    return tuple(paths)


def parse_config(doc: Any, source: str | None = None) -> GatewayConfig:
    """Check a parsed YAML document and build the config, or raise ConfigError naming the field."""
    check = _Check(source)
    if not isinstance(doc, Mapping):
        raise ConfigError("the gateway configuration must be a mapping", source=source)
    for key in doc:
        if key not in GatewayConfigDoc.__annotations__:
            allowed = ", ".join(GatewayConfigDoc.__annotations__)
            raise check.fail(str(key), f"unknown section (allowed: {allowed})")
    gateway = check.section(doc, "gateway", _GATEWAY_KEYS)
    gw_id = gateway.get("id")
    if gw_id is None:
        raise check.fail("gateway.id", "required field is missing")
    if not isinstance(gw_id, str) or not wire.GATEWAY_ID_RE.match(gw_id):
        raise check.fail(
            "gateway.id",
            f"must be 1-63 characters of a-z, 0-9 and '-', got {gw_id!r}",
        )
    site = gateway.get("site", "")
    if not isinstance(site, str):
        raise check.fail("gateway.site", f"must be a string, got {site!r}")

    outbox = check.section(doc, "outbox", _OUTBOX_KEYS)
    outbox_path = check.string(outbox, "path", "outbox") or "shouhu-outbox.db"
    batching = check.section(doc, "batching", _BATCHING_KEYS)
    aggregator = check.section(doc, "aggregator", _AGGREGATOR_KEYS)
    health = check.section(doc, "health", _HEALTH_KEYS)
    profiles = check.section(doc, "profiles", _PROFILES_KEYS)
    return GatewayConfig(
        id=gw_id,
        site=site,
        broker=_parse_broker(check, doc),
        sources=_parse_sources(check, doc),
        profile_dirs=_parse_profile_dirs(check, doc),
        trusted_keys=_parse_trusted_keys(check, doc),
        bundle_path=check.string(profiles, "bundle_path", "profiles"),
        outbox=OutboxConfig(
            path=outbox_path,
            max_records=check.integer(outbox, "max_records", "outbox", 200_000),
        ),
        batching=BatchingConfig(
            max_records=check.integer(batching, "max_records", "batching", 500),
            max_bytes=check.integer(batching, "max_bytes", "batching", 256 * 1024, minimum=1024),
            max_age_ms=check.integer(batching, "max_age_ms", "batching", 500, minimum=0),
        ),
        aggregator=AggregatorConfig(
            update_interval_s=check.number(aggregator, "update_interval_s", "aggregator", 30.0),
            away_timeout_s=check.number(aggregator, "away_timeout_s", "aggregator", 20.0),
            ema_alpha=check.number(aggregator, "ema_alpha", "aggregator", 0.3, maximum=1.0),
        ),
        health_interval_s=check.number(health, "interval_s", "health", 30.0),
    )


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check a ``gateway.yaml``; errors name the file (by its name) and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=str(p)) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"not valid YAML{where}: {problem}", source=str(p)) from exc
    return parse_config(doc, str(p))
