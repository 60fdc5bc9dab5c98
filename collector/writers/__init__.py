"""Time-series writers, chosen by name from ``WRITERS`` and imported lazily.

    writer = make_writer("influx_v1", {"url": "http://127.0.0.1:8086", "database": "shouhu"})
    writer.write("gw-east-017", records)

Each writer class is constructed as ``cls(options)`` with its own options TypedDict.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from shouhu.exceptions import ConfigError

if TYPE_CHECKING:
    from collector.writers.base import Writer

WRITERS: Final[Mapping[str, str]] = {
    "influx_v2": "collector.writers.influx_v2:InfluxV2Writer",
    "influx_v1": "collector.writers.influx_v1:InfluxV1Writer",
    "sqlite": "collector.writers.sqlite:SqliteWriter",
}


def make_writer(kind: str, options: Mapping[str, Any]) -> Writer:
    """Build the writer named ``kind`` (a key of ``WRITERS``) from its options."""
    kind = kind.replace("-", "_")  # "influx-v1" in YAML names the "influx_v1" writer
    try:
        target = WRITERS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown writer {kind!r}", field="writer", hint=f"one of {', '.join(WRITERS)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"writer {kind!r} is not available: {exc}", field="writer") from exc
    writer: Writer = cls(options)
    return writer
