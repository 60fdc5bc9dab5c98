"""Collector configuration: one YAML file, checked up front, every error naming its field.

The file is an outside shape (``CollectorConfigDoc``); inside the process it becomes frozen
dataclasses. See docs/collector.md and examples/collector.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypedDict

import yaml

from collector.alerts.lifecycle import LifecycleConfig
from collector.rules.engine import EngineConfig
from shouhu.broker_url import parse_broker_url
from shouhu.exceptions import ConfigError

WRITER_KINDS: Final = ("sqlite", "influx-v2", "influx-v1")
PROTOCOLS: Final = ("3.1.1", "5")
DEFAULT_CLIENT_ID: Final = "shouhu-collector"
DEFAULT_REGISTRY_NAME: Final = "registry.sqlite"  # beside the state database
# Any of these sections switches the rule engine, alerts and notifications on.
RULE_SECTIONS: Final = ("rules", "registry", "alerts", "notify", "rules_state")


class CollectorConfigDoc(TypedDict, total=False):
    """The YAML document as written by an operator."""

    broker: dict[str, Any]
    writer: dict[str, Any]
    state: dict[str, Any]
    retry_max_s: float
    status_interval_s: float
    registry: dict[str, Any]
    rules: dict[str, Any]
    alerts: dict[str, Any]
    notify: dict[str, Any]
    rules_state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where and how to subscribe. ``tls`` follows from an ``mqtts://`` URL or a ``ca_file``."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    # Fixed id: the persistent session (and its un-acked messages) belongs to this id.
    client_id: str = DEFAULT_CLIENT_ID
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    shared_group: str | None = None  # MQTT 5 only: share the up stream among collectors
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600  # MQTT 5: how long the broker keeps our session

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """Which time-series writer (a name in ``collector.writers.WRITERS``) and its options."""

    kind: str = "sqlite"
    options: Mapping[str, Any] = field(default_factory=lambda: {"path": "shouhu-records.db"})


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """The rule engine, alert lifecycle and notifier of a collector (docs/collector.md).

    ``engine`` is the ``rules:`` section as written; the collector fills battery thresholds and
    supervision intervals from the device profiles when it starts (``with_profiles``).
    """

    registry: str  # RegistryStore path or URL
    engine: EngineConfig = field(default_factory=EngineConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    notify_attempts: int = 3
    notify_backoff_s: float = 2.0
    # ``rules_state.url``: several collectors share the rules through this PostgreSQL database
    # (collector/rules_shared.py); None: this collector runs them alone, state in its state db
    shared_state: str | None = None


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything ``Collector`` needs. ``state_path`` holds dedup, dead letters, gateway status,
    and (with ``rules``) the alert history and the rule engine's state."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    state_path: str = "shouhu-collector-state.db"
    retry_max_s: float = 10.0  # cap of the back-off while the database is unavailable
    status_interval_s: float = 10.0  # `collector run` prints a status line this often
    rules: RulesConfig | None = None  # None: ingest only, no registry, no alerts


def _mapping(doc: Mapping[str, Any], key: str, source: str | None) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("must be a mapping", field=key, source=source)
    return value


def _opt_str(section: Mapping[str, Any], key: str, where: str, source: str | None) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", field=f"{where}.{key}", source=source)
    return value


def _number(
    section: Mapping[str, Any], key: str, default: float, where: str, source: str | None
) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        name = f"{where}.{key}" if where else key
        raise ConfigError(f"must be a positive number, got {value!r}", field=name, source=source)
    return float(value)


def _parse_broker(section: Mapping[str, Any], source: str | None) -> BrokerConfig:
    known = {
        "url",
        "username",
        "password",
        "ca_file",
        "client_id",
        "protocol",
        "shared_group",
        "keepalive_s",
        "session_expiry_s",
    }
    for key in section:
        if key not in known:
            raise ConfigError("unknown option", field=f"broker.{key}", source=source)
    url = section.get("url", "mqtt://127.0.0.1:1883")
    if not isinstance(url, str):
        raise ConfigError("must be a string", field="broker.url", source=source)
    address = parse_broker_url(url, source=source)
    host, port, tls = address.host, address.port, address.tls
    user = _opt_str(section, "username", "broker", source) or address.username
    password = _opt_str(section, "password", "broker", source) or address.password
    ca_file = _opt_str(section, "ca_file", "broker", source)
    if ca_file is not None and not Path(ca_file).is_file():
        raise ConfigError(f"no such file {ca_file!r}", field="broker.ca_file", source=source)
    client_id = _opt_str(section, "client_id", "broker", source) or DEFAULT_CLIENT_ID
    protocol = str(section.get("protocol", "3.1.1"))
    if protocol == "5.0":
        protocol = "5"
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"must be 3.1.1 or 5, got {section.get('protocol')!r}",
            field="broker.protocol",
            source=source,
        )
    group = _opt_str(section, "shared_group", "broker", source)
    if group is not None:
        if protocol != "5":
            raise ConfigError(
                "shared subscriptions need MQTT 5",
                field="broker.shared_group",
                source=source,
                hint="set broker.protocol: 5",
            )
        if any(c in group for c in "/+#"):
            raise ConfigError(
                "must not contain '/', '+' or '#'", field="broker.shared_group", source=source
            )
    return BrokerConfig(
        host=host,
        port=port,
        tls=tls or ca_file is not None,
        username=user,
        password=password,
        ca_file=ca_file,
        client_id=client_id,
        protocol=protocol,  # type: ignore[arg-type]
        shared_group=group,
        keepalive_s=int(_number(section, "keepalive_s", 30, "broker", source)),
        session_expiry_s=int(_number(section, "session_expiry_s", 7 * 24 * 3600, "broker", source)),
    )


def _parse_writer(section: Mapping[str, Any], source: str | None) -> WriterConfig:
    kind = section.get("kind", "sqlite")
    if isinstance(kind, str):
        kind = kind.replace("_", "-")  # influx_v2 and influx-v2 both name the same writer
    if kind not in WRITER_KINDS:
        raise ConfigError(
            f"unknown writer {kind!r}", field="writer.kind", source=source,
            hint=f"one of {', '.join(WRITER_KINDS)}",
        )  # fmt: skip
    options = {k: v for k, v in section.items() if k != "kind"}
    nested = options.pop("options", None)
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise ConfigError("must be a mapping", field="writer.options", source=source)
        options.update(nested)
    if kind == "sqlite" and not isinstance(options.get("path", ""), str):
        raise ConfigError("must be a file path", field="writer.path", source=source)
    if kind == "sqlite":
        options.setdefault("path", "shouhu-records.db")
    return WriterConfig(kind=kind, options=options)


def _whole_seconds(
    value: Any, name: str, source: str | None, *, minimum: int = 0, unit: str = " of seconds"
) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"must be a whole number{unit} >= {minimum}, got {value!r}",
            field=name,
            source=source,
        )
    return value


def _per_kind(section: Mapping[str, Any], key: str, source: str | None) -> dict[str, int]:
    value = section.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError("must be a mapping of alert kind to seconds", field=f"alerts.{key}",
                          source=source)  # fmt: skip
    return {
        str(kind): _whole_seconds(v, f"alerts.{key}.{kind}", source) for kind, v in value.items()
    }


def _parse_lifecycle(section: Mapping[str, Any], source: str | None) -> LifecycleConfig:
    known = ("escalate_after_s", "suppress_s", "escalate_after_by_kind", "suppress_by_kind")
    for key in section:
        if key not in known:
            raise ConfigError("unknown option", field=f"alerts.{key}", source=source,
                              hint=f"one of {', '.join(known)}")  # fmt: skip
    d = LifecycleConfig()
    return LifecycleConfig(
        escalate_after_s=_whole_seconds(
            section.get("escalate_after_s", d.escalate_after_s),
            "alerts.escalate_after_s",
            source,
            minimum=1,
        ),
        suppress_s=_whole_seconds(
            section.get("suppress_s", d.suppress_s), "alerts.suppress_s", source
        ),
        escalate_after_by_kind=_per_kind(section, "escalate_after_by_kind", source),
        suppress_by_kind=_per_kind(section, "suppress_by_kind", source),
    )


def _parse_rules_state(
    doc: Mapping[str, Any], registry_path: str, source: str | None
) -> str | None:
    """``rules_state: {url: postgresql://...}``; without ``url`` a PostgreSQL registry's URL."""
    if "rules_state" not in doc:
        return None
    section = _mapping(doc, "rules_state", source)
    for key in section:
        if key != "url":
            raise ConfigError("unknown option", field=f"rules_state.{key}", source=source,
                              hint="rules_state takes only url")  # fmt: skip
    url = _opt_str(section, "url", "rules_state", source) or registry_path
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"must be a postgresql:// URL, got {url!r}",
            field="rules_state.url",
            source=source,
            hint="set rules_state.url, or use a postgresql:// registry.path to share that one",
        )
    return url


def _parse_rules(doc: Mapping[str, Any], state_path: str, source: str | None) -> RulesConfig | None:
    """The rule sections, or None when the file has none of them (ingest only)."""
    if not any(key in doc for key in RULE_SECTIONS):
        return None
    registry = _mapping(doc, "registry", source)
    for key in registry:
        if key != "path":
            raise ConfigError(
                "unknown option",
                field=f"registry.{key}",
                source=source,
                hint="registry takes only path (a file or a postgresql:// URL)",
            )
    registry_path = _opt_str(registry, "path", "registry", source) or str(
        Path(state_path).parent / DEFAULT_REGISTRY_NAME
    )
    engine = EngineConfig.from_dict(dict(_mapping(doc, "rules", source)), source)
    notify = _mapping(doc, "notify", source)
    for key in notify:
        if key not in ("attempts", "backoff_s"):
            raise ConfigError("unknown option", field=f"notify.{key}", source=source,
                              hint="one of attempts, backoff_s")  # fmt: skip
    attempts = _whole_seconds(
        notify.get("attempts", 3), "notify.attempts", source, minimum=1, unit=""
    )
    return RulesConfig(
        registry=registry_path,
        shared_state=_parse_rules_state(doc, registry_path, source),
        engine=engine,
        lifecycle=_parse_lifecycle(_mapping(doc, "alerts", source), source),
        notify_attempts=attempts,
        notify_backoff_s=_number(notify, "backoff_s", 2.0, "notify", source),
    )


def parse_config(doc: Any, source: str | None = None) -> CollectorConfig:
    """Check a parsed YAML document and build the config, or raise ConfigError naming the field."""
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError("the collector configuration must be a mapping", source=source)
    for key in doc:
        if key not in CollectorConfigDoc.__annotations__:
            raise ConfigError("unknown section", field=str(key), source=source)
    state = _mapping(doc, "state", source)
    state_path = state.get("path", "shouhu-collector-state.db")
    if not isinstance(state_path, str) or not state_path:
        raise ConfigError("must be a file path", field="state.path", source=source)
    return CollectorConfig(
        broker=_parse_broker(_mapping(doc, "broker", source), source),
        writer=_parse_writer(_mapping(doc, "writer", source), source),
        state_path=state_path,
        retry_max_s=_number(doc, "retry_max_s", 10.0, "", source),
        status_interval_s=_number(doc, "status_interval_s", 10.0, "", source),
        rules=_parse_rules(doc, state_path, source),
    )


def load_config(path: str | Path) -> CollectorConfig:
    """Read and check a YAML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=str(p)) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(p)) from exc
    return parse_config(doc, str(p))
