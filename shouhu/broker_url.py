"""Broker URLs (``mqtt://`` / ``mqtts://``), read the same way by the agent, collector and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shouhu.exceptions import ConfigError

TLS_SCHEMES = frozenset({"mqtts", "ssl"})
PLAIN_SCHEMES = frozenset({"mqtt", "tcp"})


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int  # 8883 with TLS, 1883 without, unless the URL names one
    tls: bool
    username: str | None
    password: str | None
    path: str
    query: str


def parse_broker_url(
    url: str, *, field_name: str = "broker.url", source: str | None = None
) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://…`` → its parts, or ConfigError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"not a valid URL: {exc}", field=field_name, source=source) from exc
    if parts.scheme not in TLS_SCHEMES | PLAIN_SCHEMES or not parts.hostname:
        raise ConfigError(
            f"expected mqtt://host:port or mqtts://host:port, got {url!r}",
            field=field_name,
            source=source,
        )
    tls = parts.scheme in TLS_SCHEMES
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=parts.path,
        query=parts.query,
    )
